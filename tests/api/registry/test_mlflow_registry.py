"""The operator's registry client against a real MLflow tracking server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from mlflow import MlflowClient

from modelpilot.operator.registry import (
    MlflowRegistry,
    ModelNotFoundError,
    RegistryUnavailableError,
    ResolvedVersions,
)
from modelpilot.operator.spec import ModelRef
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port


def _model_with_versions(client: MlflowClient, count: int) -> str:
    name = f"m-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run_id = client.create_run(experiment_id="0").info.run_id
    for _ in range(count):
        client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    return name


@pytest.fixture
async def registry(mlflow: MlflowServer) -> AsyncIterator[MlflowRegistry]:
    client = MlflowRegistry(mlflow.url)
    yield client
    await client.aclose()


@pytest.fixture
def client(mlflow: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)


async def test_resolves_alias_and_candidate_alias(registry: MlflowRegistry, client: MlflowClient) -> None:
    name = _model_with_versions(client, 3)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "3")
    ref = ModelRef(name=name, alias="champion", candidate_alias="challenger")

    assert await registry.resolve(ref) == ResolvedVersions(stable="1", candidate="3")

    client.set_registered_model_alias(name, "champion", "2")
    client.delete_registered_model_alias(name, "challenger")
    assert await registry.resolve(ref) == ResolvedVersions(stable="2", candidate=None)


async def test_resolves_legacy_stages(registry: MlflowRegistry, client: MlflowClient) -> None:
    name = _model_with_versions(client, 3)
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Staging")
    ref = ModelRef(name=name, stage="Production", candidate_stage="Staging")
    assert await registry.resolve(ref) == ResolvedVersions(stable="1", candidate="2")


async def test_writes_alias_tag_and_stage(registry: MlflowRegistry, client: MlflowClient) -> None:
    name = _model_with_versions(client, 2)
    await registry.set_alias(name, "champion", "2")
    await registry.set_version_tag(name, "2", "modelpilot.io/promoted", "2026-11-23T00:00:00Z")
    await registry.transition_stage(name, "1", "Production", archive_existing=False)
    await registry.transition_stage(name, "2", "Production", archive_existing=True)

    assert client.get_model_version_by_alias(name, "champion").version == "2"
    version = await registry.get_version(name, "2")
    assert version.tags["modelpilot.io/promoted"] == "2026-11-23T00:00:00Z"
    assert version.stage == "Production"
    assert (await registry.get_version(name, "1")).stage == "Archived"

    await registry.delete_alias(name, "champion")
    await registry.delete_alias(name, "champion")  # already gone: no error
    assert (await registry.resolve(ModelRef(name=name, alias="champion"))).stable is None


async def test_missing_model_is_model_not_found(registry: MlflowRegistry) -> None:
    with pytest.raises(ModelNotFoundError):
        await registry.resolve(ModelRef(name="does-not-exist", alias="champion"))


async def test_unreachable_server_is_unavailable() -> None:
    registry = MlflowRegistry(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    try:
        with pytest.raises(RegistryUnavailableError, match="unreachable"):
            await registry.resolve(ModelRef(name="m", alias="champion"))
    finally:
        await registry.aclose()
