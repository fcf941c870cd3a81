"""The one module that talks to the MLflow Model Registry, over its REST API.

The operator is asyncio (Kopf); MLflow's Python client is synchronous and heavy, so the registry is
read and written over `http_client` (aiohttp, Kopf's own stack) against the documented `/api/2.0/mlflow`
endpoints.
The rest of the operator depends on the `Registry` protocol, not on this implementation.

Reads of one registered model can be shared: `resolve(ref, max_age=…)` takes the answer of a read of the same
model by this client (one per tracking server and credentials) that started at most `max_age` seconds ago, or
is still under way, instead of asking again. A thousand resources polling one model every minute then cost
about one request per `max_age`, not sixteen a second. A read that failed is never shared once it is over;
`forget(name)` (a registry webhook for the model) and this client's own writes to a model's aliases or stages
end the sharing of what was read before, so the next resolve asks the server. `max_age=0` (the default, and
what a read that confirms a write uses) always asks.

The tracking URI comes from the spec: whoever writes a ModelDeployment chooses the server, and so what
it answers. An error's message, which reaches the status and Events, is therefore made of the method,
the path, the status code and fixed words only, never of the answer's body or headers; the body's start
goes to the operator's log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from modelpilot.operator import metrics
from modelpilot.operator.http_client import Answer, HttpClient, UnreachableError
from modelpilot.operator.spec import ModelRef

API = "/api/2.0/mlflow"
LOGGED_BODY_CHARS = 300

logger = logging.getLogger(__name__)


class RegistryError(Exception):
    """The registry could not answer; the reason is in the message."""

    reason = "RegistryError"


class RegistryUnavailableError(RegistryError):
    """Network error, timeout or a 5xx: worth retrying later."""

    reason = "RegistryUnreachable"


class ModelNotFoundError(RegistryError):
    """The registered model does not exist."""

    reason = "ModelNotFoundError"


class RegistryRejectedError(RegistryError):
    """The registry refused the request (4xx other than not found): retrying will not help."""

    reason = "RegistryRejectedError"


@dataclass(frozen=True)
class Credentials:
    """MLflow tracking credentials, as read from the spec's Secret."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_secret_data(cls, data: dict[str, str]) -> Credentials:
        """Credentials from decoded Secret data (MLflow's own environment variable names)."""
        return cls(
            token=data.get("MLFLOW_TRACKING_TOKEN"),
            username=data.get("MLFLOW_TRACKING_USERNAME"),
            password=data.get("MLFLOW_TRACKING_PASSWORD"),
        )

    def headers(self) -> dict[str, str]:
        """HTTP headers that authenticate a request."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def auth(self) -> aiohttp.BasicAuth | None:
        """HTTP basic auth, when a username is set and no token."""
        if self.username and not self.token:
            return aiohttp.BasicAuth(self.username, self.password or "")
        return None


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as far as the operator cares."""

    name: str
    version: str
    source: str = ""
    run_id: str = ""
    status: str = "READY"
    stage: str = "None"
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        """The `models:/` URI the serving pods load."""
        return f"models:/{self.name}/{self.version}"

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> ModelVersion:
        """From the REST API's `model_version` object."""
        return cls(
            name=raw["name"],
            version=str(raw["version"]),
            source=raw.get("source", ""),
            run_id=raw.get("run_id", ""),
            status=raw.get("status", "READY"),
            stage=raw.get("current_stage", "None"),
            tags={tag["key"]: tag.get("value", "") for tag in raw.get("tags", [])},
            aliases=tuple(raw.get("aliases", [])),
        )


@dataclass(frozen=True)
class ResolvedVersions:
    """The versions the registry's pointers name right now."""

    stable: str | None
    candidate: str | None


Pointers = tuple[dict[str, str], dict[str, str]]  # (alias → version, stage → version) of one registered model


@dataclass(frozen=True)
class _ModelRead:
    """One read of a registered model's pointers: when it started, and its outcome (or the read under way)."""

    started: float
    pointers: asyncio.Future[Pointers]


class Registry(Protocol):
    """What the operator needs from a model registry."""

    async def resolve(self, ref: ModelRef, *, max_age: float = 0.0) -> ResolvedVersions: ...

    async def get_version(self, name: str, version: str) -> ModelVersion: ...

    async def set_alias(self, name: str, alias: str, version: str) -> None: ...

    async def delete_alias(self, name: str, alias: str) -> None: ...

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...

    async def transition_stage(self, name: str, version: str, stage: str, *, archive_existing: bool) -> None: ...


class MlflowRegistry:
    """`Registry` over MLflow's REST API."""

    def __init__(
        self,
        tracking_uri: str,
        credentials: Credentials | None = None,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        credentials = credentials or Credentials()
        self.tracking_uri = tracking_uri.rstrip("/")
        self._client = HttpClient(timeout=timeout, headers=credentials.headers(), auth=credentials.auth())
        self._clock = clock
        self._reads: dict[str, _ModelRead] = {}  # the latest read of each registered model, by name

    async def aclose(self) -> None:
        """Close the connection pool."""
        self._reads.clear()
        await self._client.aclose()

    def forget(self, name: str) -> None:
        """Share nothing read of model `name` so far: the next resolve of it asks the server."""
        self._reads.pop(name, None)

    async def resolve(self, ref: ModelRef, *, max_age: float = 0.0) -> ResolvedVersions:
        """Stable and candidate versions from one read of the registered model (aliases and stages): a read of
        the same model that started at most `max_age` seconds ago (or is under way) when there is one."""
        aliases, stages = await self._model_pointers(ref.name, max_age)

        def pointer(alias: str | None, stage: str | None) -> str | None:
            if alias is not None:
                return aliases.get(alias)
            if stage is not None:
                return stages.get(stage)
            return None

        return ResolvedVersions(
            stable=pointer(ref.alias, ref.stage),
            candidate=pointer(ref.candidate_alias, ref.candidate_stage),
        )

    async def _model_pointers(self, name: str, max_age: float) -> Pointers:
        now = self._clock()
        read = self._reads.get(name)
        if max_age > 0 and read is not None and now - read.started <= max_age:
            metrics.REGISTRY_SHARED_READS.inc()
            # Shielded: one caller given up (its daemon stopped) does not cancel the read the others wait for.
            return await asyncio.shield(read.pointers)
        read = _ModelRead(now, asyncio.ensure_future(self._read_pointers(name)))
        self._reads[name] = read
        read.pointers.add_done_callback(lambda done: self._settled(name, read))
        return await asyncio.shield(read.pointers)

    def _settled(self, name: str, read: _ModelRead) -> None:
        """A failed read is not shared once it is over (its error was the server's state of that moment)."""
        failed = read.pointers.cancelled() or read.pointers.exception() is not None
        if failed and self._reads.get(name) is read:
            del self._reads[name]

    async def _read_pointers(self, name: str) -> Pointers:
        try:
            found = await self._call("GET", "/registered-models/get", params={"name": name})
        except ModelNotFoundError:
            raise ModelNotFoundError(f"registered model {name} not found at {self.tracking_uri}") from None
        model = found.get("registered_model")
        if not isinstance(model, dict):
            raise RegistryRejectedError(f"GET /registered-models/get answered without a registered_model for {name}")
        try:
            return _pointers(model)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RegistryRejectedError(f"GET /registered-models/get answered a malformed model for {name}") from None

    async def get_version(self, name: str, version: str) -> ModelVersion:
        """One model version with its tags."""
        body = await self._call("GET", "/model-versions/get", params={"name": name, "version": version})
        try:
            return ModelVersion.from_api(body["model_version"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RegistryRejectedError(f"GET /model-versions/get answered a malformed version {version}") from None

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (moving it if it pointed elsewhere)."""
        await self._write_pointers(
            name, "POST", "/registered-models/alias", {"name": name, "alias": alias, "version": version}
        )

    async def delete_alias(self, name: str, alias: str) -> None:
        """Remove `alias`; an alias that does not exist is already gone."""
        try:
            await self._write_pointers(name, "DELETE", "/registered-models/alias", {"name": name, "alias": alias})
        except ModelNotFoundError:
            return

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set a tag on a model version."""
        await self._call(
            "POST",
            "/model-versions/set-tag",
            json={"name": name, "version": version, "key": key, "value": value},
        )

    async def transition_stage(self, name: str, version: str, stage: str, *, archive_existing: bool) -> None:
        """Move a version to a legacy stage (deprecated by MLflow, still served by MLflow 3)."""
        await self._write_pointers(
            name,
            "POST",
            "/model-versions/transition-stage",
            {"name": name, "version": version, "stage": stage, "archive_existing_versions": archive_existing},
        )

    async def _write_pointers(self, name: str, method: str, path: str, body: dict[str, Any]) -> None:
        """A write that moves an alias or a stage of model `name`. Whatever was read of the model before it
        ended — reads under way included — is shared no more, whether the write succeeded or not."""
        try:
            await self._call(method, path, json=body)
        finally:
            self.forget(name)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "error"
        try:
            try:
                response = await self._client.request(method, self.tracking_uri + API + path, params=params, json=json)
            except UnreachableError as error:
                logger.info("registry %s %s%s failed: %r", method, self.tracking_uri, path, error.__cause__)
                raise RegistryUnavailableError(
                    f"{self.tracking_uri} unreachable ({error.kind}) for {method} {path}"
                ) from error
            outcome = str(response.status)
            if response.status >= 400:
                logger.info(
                    "registry %s %s%s answered %d: %s",
                    method,
                    self.tracking_uri,
                    path,
                    response.status,
                    response.text(LOGGED_BODY_CHARS),
                )
            if response.status >= 500:
                raise RegistryUnavailableError(f"{self.tracking_uri} answered {response.status} to {method} {path}")
            if response.status >= 400:
                raise _client_error(response, method, path)
            try:
                body = response.json_value() if response.body else {}
            except ValueError:
                raise RegistryRejectedError(f"{method} {path} answered {response.status} with no JSON") from None
            if not isinstance(body, dict):
                raise RegistryRejectedError(f"{method} {path} answered {response.status} with no JSON object")
            return body
        finally:
            metrics.REGISTRY_LATENCY.labels(operation=path.rsplit("/", 1)[-1], outcome=outcome).observe(
                time.perf_counter() - started
            )


def _pointers(model: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(alias → version, stage → version) of a registered model as the REST API returns it."""
    aliases = {str(item["alias"]): str(item["version"]) for item in model.get("aliases", [])}
    stages: dict[str, str] = {}
    for version in model.get("latest_versions", []):
        stage = version.get("current_stage", "None")
        if stage != "None":
            # latest_versions holds the newest version per stage; keep the highest if several appear.
            current = stages.get(stage)
            if current is None or int(version["version"]) > int(current):
                stages[stage] = str(version["version"])
    return aliases, stages


def _client_error(response: Answer, method: str, path: str) -> RegistryError:
    status = response.status
    try:
        payload = response.json_value()
    except ValueError:
        payload = None
    code = payload.get("error_code") if isinstance(payload, dict) else None
    if status == 404 or code == "RESOURCE_DOES_NOT_EXIST":
        return ModelNotFoundError(f"{method} {path}: not found ({status})")
    # MLflow's error codes are a closed set of words; anything else the server says stays out.
    named = f" {code}" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
    return RegistryRejectedError(f"{method} {path} refused ({status}{named})")


_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,63}")
