"""The MLflow Model Registry side of a run: reachability, the current champion, registering and gating a version."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

TAG_PREFIX = "modelpilot.io/"
GATE_TAG = f"{TAG_PREFIX}gate"
GATE_REASON_TAG = f"{TAG_PREFIX}gate-reason"
SEMVER_TAG = f"{TAG_PREFIX}semver"
# Set at registration from the run key: a restarted run finds the version its earlier attempt registered.
RUN_KEY_TAG = f"{TAG_PREFIX}run-key"
MAX_TAG_LENGTH = 4000  # MLflow refuses longer tag values (limits differ by backend; this fits all)


class RegistryUnreachableError(Exception):
    """MLflow did not answer within the allowed attempts."""


def wait_for_tracking_server(tracking_uri: str, attempts: int, backoff_seconds: float) -> None:
    """Return once an http(s) tracking server answers /health; retry with doubling waits, then give up.

    Other tracking URIs (a local directory, sqlite) need no server and return at once.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = f"{tracking_uri.rstrip('/')}/health"
    last_error = "no attempt"
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=10):
                return
        except urllib.error.HTTPError as error:
            if error.code < 500:  # e.g. 401 from an auth proxy: the server is there
                return
            last_error = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            last_error = str(getattr(error, "reason", error))
        if attempt < attempts:
            wait = backoff_seconds * 2 ** (attempt - 1)
            log.warning("MLflow at %s not reachable (%s), attempt %d/%d, next in %.1fs", tracking_uri, last_error,
                        attempt, attempts, wait)  # fmt: skip
            time.sleep(wait)
    raise RegistryUnreachableError(f"MLflow at {tracking_uri} unreachable after {attempts} attempts: {last_error}")


@dataclass(frozen=True)
class RegistryTarget:
    """Which registered model and which alias or stage names mean champion and candidate."""

    model_name: str
    champion_alias: str
    candidate_alias: str
    champion_stage: str | None = None
    candidate_stage: str | None = None

    @property
    def champion_label(self) -> str:
        """How the champion is named in messages: its alias or its stage."""
        return f"stage {self.champion_stage}" if self.champion_stage else f"@{self.champion_alias}"

    @property
    def candidate_label(self) -> str:
        """How the candidate marker is named in messages."""
        return f"stage {self.candidate_stage}" if self.candidate_stage else f"@{self.candidate_alias}"


def find_champion_version(client: MlflowClient, target: RegistryTarget) -> str | None:
    """The version that holds the champion alias (or stage), or None when there is none yet."""
    try:
        if target.champion_stage:
            with warnings.catch_warnings():  # stages are deprecated in MLflow, still supported
                warnings.simplefilter("ignore")
                versions = client.get_latest_versions(target.model_name, stages=[target.champion_stage])
            return str(versions[0].version) if versions else None
        aliases = client.get_registered_model(target.model_name).aliases
        version = aliases.get(target.champion_alias)
        return str(version) if version is not None else None
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":  # no registered model yet
            return None
        raise


def load_champion(model_name: str, version: str) -> torch.nn.Module:
    """The champion as a torch module mapping raw feature rows to logits."""
    module = mlflow.pytorch.load_model(f"models:/{model_name}/{version}")
    if not callable(module):
        raise TypeError(f"version {version} of {model_name} did not load as a torch module")
    return module  # type: ignore[no-any-return]


def clip_tag(value: str) -> str:
    """A tag value short enough for every MLflow backend."""
    return value if len(value) <= MAX_TAG_LENGTH else value[: MAX_TAG_LENGTH - 3] + "..."


def register_version(model_uri: str, model_name: str, tags: dict[str, str]) -> str:
    """Register `model_uri` as a new version (never overwrites one) with its tags set at creation; its number."""
    version = mlflow.register_model(
        model_uri, model_name, tags={key: clip_tag(value) for key, value in tags.items()}, await_registration_for=120
    )
    return str(version.version)


def find_version_by_run_key(client: MlflowClient, model_name: str, run_key: str) -> ModelVersion | None:
    """The version of `model_name` an earlier attempt of the run `run_key` registered, or None."""
    # The filter names only the tag (run keys are checked to need no quoting); the model is checked here, so
    # a model name needs no escaping inside the filter.
    found = client.search_model_versions(f"tags.`{RUN_KEY_TAG}` = '{run_key}'")
    mine = [version for version in found if version.name == model_name]
    return min(mine, key=lambda version: int(version.version)) if mine else None


def mark_candidate(client: MlflowClient, target: RegistryTarget, version: str) -> None:
    """Point the candidate alias at `version`, or move it to the candidate stage (others stay where they are)."""
    if target.candidate_stage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.transition_model_version_stage(
                target.model_name, version, target.candidate_stage, archive_existing_versions=False
            )
    else:
        client.set_registered_model_alias(target.model_name, target.candidate_alias, version)
