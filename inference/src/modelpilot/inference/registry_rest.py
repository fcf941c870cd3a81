"""The MLflow model registry over its REST API, with the standard library only (mlflow takes seconds to import).

Loading needs three answers from the registry: which version an alias or stage points to, where that
version's files are, and the files themselves (`artifacts_rest`). Credentials and TLS come from the
environment variables MLflow's own clients read: `MLFLOW_TRACKING_TOKEN` (Bearer), or
`MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` (Basic; also from `~/.mlflow/credentials`),
`MLFLOW_TRACKING_INSECURE_TLS`, `MLFLOW_TRACKING_SERVER_CERT_PATH`, `MLFLOW_TRACKING_CLIENT_CERT_PATH`
and `MLFLOW_HTTP_REQUEST_TIMEOUT`. `registry_client` answers None when the configuration asks for something
only mlflow implements (auth and header plugins, SigV4, workspaces, non-HTTP tracking URIs); the caller
then goes through mlflow as before.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

USER_AGENT = "modelpilot-serve"
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_ATTEMPTS = 3
_BACKOFF_SECONDS = 0.5
_DEFAULT_TIMEOUT_SECONDS = 120.0
_CHUNK_BYTES = 1024 * 1024


class RegistryError(RuntimeError):
    """The registry could not answer; the message is what /readyz shows as the reason."""


class RegistryHttpError(RegistryError):
    """The registry answered with an error status."""

    def __init__(self, message: str, *, status: int, error_code: str, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.server_message = server_message


@dataclass(frozen=True)
class Connection:
    """How to talk to one MLflow server: its base URL plus the headers and TLS settings every call carries."""

    base_url: str
    authorization: str | None
    ssl_context: ssl.SSLContext | None
    timeout: float

    def with_base(self, base_url: str) -> Connection:
        """The same credentials for another base URL (an artifact proxy named in an artifact URI)."""
        return Connection(base_url.rstrip("/"), self.authorization, self.ssl_context, self.timeout)


def registry_client(tracking_uri: str) -> RegistryClient | None:
    """A REST client for `tracking_uri`, or None when only mlflow can honour the configuration."""
    parsed = urllib.parse.urlsplit(tracking_uri)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname or "@" in parsed.netloc:
        return None
    if os.environ.get("MLFLOW_TRACKING_AUTH") or _env_flag("MLFLOW_TRACKING_AWS_SIGV4"):
        return None
    if (os.environ.get("MLFLOW_WORKSPACE") or "").strip() or _has_request_header_plugins():
        return None
    base = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
    connection = Connection(
        base_url=base,
        authorization=_authorization(),
        ssl_context=_ssl_context() if parsed.scheme == "https" else None,
        timeout=_timeout(),
    )
    return RegistryClient(connection)


class RegistryClient:
    """The registry calls loading makes; errors become sentences about the model, not about HTTP."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def url(self) -> str:
        """The tracking server's base URL."""
        return self.connection.base_url

    def pin_version(self, name: str, version: str | None, alias: str | None) -> str:
        """The version number behind `version` (a number, a stage or `latest`) or `alias`."""
        if alias is not None:
            return self._version_by_alias(name, alias)
        assert version is not None
        if version.isdigit():
            return version
        stage = None if version.lower() == "latest" else version
        return self._latest_version(name, stage)

    def artifact_uri(self, name: str, version: str) -> str:
        """Where the files of `name` version `version` are (`mlflow-artifacts:/…`, `s3://…`, a path…)."""
        params = {"name": name, "version": version}
        try:
            answer = get_json(self.connection, "/api/2.0/mlflow/model-versions/get-download-uri", params)
        except RegistryHttpError as error:
            if error.status == 404:
                self._require_model(name)
                raise RegistryError(f"model {name!r} has no version {version} in the registry at {self.url}") from None
            raise
        uri = answer.get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            raise RegistryError(f"the registry at {self.url} gave no download URI for model {name!r} version {version}")
        return uri

    def run_artifact_uri(self, name: str, version: str) -> str | None:
        """The artifact root of the run that logged `name` version `version`; None without a run."""
        found = get_json(self.connection, "/api/2.0/mlflow/model-versions/get", {"name": name, "version": version})
        run_id = (found.get("model_version") or {}).get("run_id")
        if not isinstance(run_id, str) or not run_id:
            return None
        run = get_json(self.connection, "/api/2.0/mlflow/runs/get", {"run_id": run_id})
        uri = ((run.get("run") or {}).get("info") or {}).get("artifact_uri")
        return uri if isinstance(uri, str) and uri else None

    def _version_by_alias(self, name: str, alias: str) -> str:
        params = {"name": name, "alias": alias}
        try:
            answer = get_json(self.connection, "/api/2.0/mlflow/registered-models/alias", params)
        except RegistryHttpError as error:
            if error.status in {400, 404}:
                self._require_model(name)
                if "alias" in error.server_message.lower():
                    raise RegistryError(f"model {name!r} has no alias {alias!r}") from None
            raise
        return _version_of(answer.get("model_version"), f"alias {alias!r} of model {name!r}")

    def _latest_version(self, name: str, stage: str | None) -> str:
        body: dict[str, Any] = {"name": name} if stage is None else {"name": name, "stages": [stage]}
        try:
            answer = post_json(self.connection, "/api/2.0/mlflow/registered-models/get-latest-versions", body)
        except RegistryHttpError as error:
            if error.status == 404:
                self._require_model(name)
            raise
        versions = answer.get("model_versions") or []
        numbers = [int(_version_of(v, f"model {name!r}")) for v in versions]
        if not numbers:
            where = "" if stage is None else f" in stage {stage!r}"
            raise RegistryError(f"model {name!r} has no version{where}")
        return str(max(numbers))

    def _require_model(self, name: str) -> None:
        """Raise "not in the registry" when `name` does not exist; return when it does (or cannot tell)."""
        try:
            get_json(self.connection, "/api/2.0/mlflow/registered-models/get", {"name": name})
        except RegistryHttpError as error:
            if error.status == 404:
                raise RegistryError(f"model {name!r} is not in the registry at {self.url}") from None


def get_json(connection: Connection, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    """GET `path` (with a query) and decode the JSON object it answers."""
    with _open(connection, "GET", path, params=params) as response:
        return _json_object(response.read(), connection, path)


def post_json(connection: Connection, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body to `path` and decode the JSON object it answers."""
    with _open(connection, "POST", path, body=json.dumps(body).encode()) as response:
        return _json_object(response.read(), connection, path)


def read_bounded(connection: Connection, path: str, limit: int) -> bytes:
    """GET `path` whole; raises `RegistryError` past `limit` bytes (never reads more than one byte beyond)."""
    with _open(connection, "GET", path) as response:
        data = response.read(limit + 1)
    if len(data) > limit:
        raise RegistryError(f"{path} is larger than {limit} bytes")
    return data


def download(connection: Connection, path: str, destination: Path) -> int:
    """Stream `path` into `destination`; returns the bytes written."""
    written = 0
    with _open(connection, "GET", path) as response, destination.open("wb") as out:
        while chunk := response.read(_CHUNK_BYTES):
            out.write(chunk)
            written += len(chunk)
    return written


@contextmanager
def _open(
    connection: Connection,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Iterator[HTTPResponse]:
    """One request, retried on connection failures and transient statuses like MLflow's client does."""
    url = connection.base_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if connection.authorization:
        headers["Authorization"] = connection.authorization
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            response = urllib.request.urlopen(request, timeout=connection.timeout, context=connection.ssl_context)
        except urllib.error.HTTPError as error:
            with error:
                failure: RegistryError = _http_error(error, connection, path)
            if error.code not in _TRANSIENT_STATUSES or attempt == _ATTEMPTS:
                raise failure from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            failure = RegistryError(f"the MLflow server at {connection.base_url} is unreachable: {reason}")
            if attempt == _ATTEMPTS:
                raise failure from None
        else:
            with response:
                yield response
            return
        time.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))


def _http_error(error: urllib.error.HTTPError, connection: Connection, path: str) -> RegistryHttpError:
    raw = error.read()
    error_code, server_message = "", raw.decode("utf-8", "replace").strip()[:500]
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error_code = str(document.get("error_code") or "")
        server_message = str(document.get("message") or server_message)
    where = f"the MLflow server at {connection.base_url}"
    if error.code == 401:
        message = (
            f"{where} refused the credentials (401 Unauthorized); set MLFLOW_TRACKING_TOKEN, or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    elif error.code == 403:
        message = f"{where} denied access (403 Forbidden) to {path}: {server_message or 'no permission'}"
    else:
        message = f"{where} answered {error.code} to {path}: {server_message or error.reason}"
    return RegistryHttpError(message, status=error.code, error_code=error_code, server_message=server_message)


def _json_object(raw: bytes, connection: Connection, path: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RegistryError(f"the MLflow server at {connection.base_url} answered {path} with something not JSON")
    return document


def _version_of(model_version: Any, what: str) -> str:
    version = model_version.get("version") if isinstance(model_version, dict) else None
    if not isinstance(version, str | int) or not str(version).isdigit():
        raise RegistryError(f"the registry answered no version number for {what}")
    return str(version)


def _env_flag(name: str) -> bool:
    """An MLflow boolean environment variable: true/false/1/0, case-insensitive."""
    value = os.environ.get(name)
    if value is None:
        return False
    if value.lower() not in {"true", "false", "1", "0"}:
        raise ValueError(f"{name} must be one of true, false, 1, 0 (case-insensitive), got {value!r}")
    return value.lower() in {"true", "1"}


def _authorization() -> str | None:
    """Basic when a username and password are known (environment over `~/.mlflow/credentials`), else Bearer."""
    file_username = file_password = None
    credentials_file = Path("~/.mlflow/credentials").expanduser()
    if credentials_file.is_file():
        config = configparser.ConfigParser()
        config.read(credentials_file)
        if config.has_section("mlflow"):
            file_username = config["mlflow"].get("mlflow_tracking_username")
            file_password = config["mlflow"].get("mlflow_tracking_password")
    username = os.environ.get("MLFLOW_TRACKING_USERNAME") or file_username
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or file_password
    if username and password:
        return "Basic " + base64.standard_b64encode(f"{username}:{password}".encode()).decode()
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return f"Bearer {token}"
    return None


def _ssl_context() -> ssl.SSLContext:
    """Verification as MLflow's client (requests) does it: certifi's CAs unless a bundle is named."""
    insecure = _env_flag("MLFLOW_TRACKING_INSECURE_TLS")
    server_cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    if insecure and server_cert:
        raise ValueError("MLFLOW_TRACKING_INSECURE_TLS is true, so MLFLOW_TRACKING_SERVER_CERT_PATH must not be set")
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        bundle = server_cert or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle is None:
            try:
                import certifi

                bundle = certifi.where()
            except ImportError:
                bundle = None
        if bundle is not None and Path(bundle).is_dir():
            context = ssl.create_default_context(capath=bundle)
        else:
            context = ssl.create_default_context(cafile=bundle)
    if client_cert := os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        context.load_cert_chain(client_cert)
    return context


def _timeout() -> float:
    value = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
    if not value:
        return _DEFAULT_TIMEOUT_SECONDS
    try:
        return float(int(value))
    except ValueError:
        raise ValueError(f"MLFLOW_HTTP_REQUEST_TIMEOUT must be a whole number of seconds, got {value!r}") from None


def _has_request_header_plugins() -> bool:
    """Installed `mlflow.request_header_provider` plugins add headers only mlflow knows how to compute."""
    from importlib.metadata import entry_points

    return bool(entry_points(group="mlflow.request_header_provider"))
