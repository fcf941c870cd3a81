"""Reads of one registered model shared between resources (`resolve(ref, max_age=…)`), against a real MLflow
server: a shared answer is never older than the window it was asked with, two models never share an answer,
and a webhook, this client's own writes or a failed read end the sharing. The clock is the test's, so the
window's edges are exact; requests are counted by the operator's registry latency metric."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from kubernetes.client import ApiClient
from mlflow import MlflowClient
from prometheus_client import REGISTRY

from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.registry import Credentials, MlflowRegistry, ModelNotFoundError, ResolvedVersions
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import ModelRef
from tests.support.mlflow_server import MlflowServer

WINDOW = 2.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def model_reads() -> float:
    """GET /registered-models/get requests answered 200 or 404 so far (the metric counts every client)."""
    return sum(
        REGISTRY.get_sample_value(
            "modelpilot_operator_registry_request_duration_seconds_count", {"operation": "get", "outcome": outcome}
        )
        or 0.0
        for outcome in ("200", "404")
    )


def new_model(client: MlflowClient, versions: int, champion: str) -> str:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run_id = client.create_run(experiment_id="0").info.run_id
    for _ in range(versions):
        client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", champion)
    return name


@pytest.fixture
def client(mlflow: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def registry(mlflow: MlflowServer, clock: Clock) -> AsyncIterator[MlflowRegistry]:
    shared = MlflowRegistry(mlflow.url, clock=clock)
    yield shared
    await shared.aclose()


async def test_a_shared_answer_is_never_older_than_the_window(
    registry: MlflowRegistry, client: MlflowClient, clock: Clock
) -> None:
    name = new_model(client, 2, champion="1")
    ref = ModelRef(name=name, alias="champion")
    before = model_reads()
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"
    client.set_registered_model_alias(name, "champion", "2")

    clock.now += WINDOW  # the first read started exactly WINDOW ago: still shared
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"
    assert model_reads() - before == 1
    # A caller with a narrower window does not take an answer older than its own.
    assert (await registry.resolve(ref, max_age=WINDOW / 4)).stable == "2"
    assert model_reads() - before == 2

    clock.now += WINDOW + 0.001  # past the window of the latest read: the server is asked again
    client.set_registered_model_alias(name, "champion", "1")
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"
    assert model_reads() - before == 3


async def test_without_a_window_every_resolve_asks_the_server(registry: MlflowRegistry, client: MlflowClient) -> None:
    name = new_model(client, 2, champion="1")
    ref = ModelRef(name=name, alias="champion")
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"
    client.set_registered_model_alias(name, "champion", "2")
    before = model_reads()

    # What confirms a write (a promotion's read) never takes a shared answer, however fresh.
    assert (await registry.resolve(ref)).stable == "2"
    assert (await registry.resolve(ref)).stable == "2"
    assert model_reads() - before == 2


async def test_concurrent_reads_of_two_models_share_per_model_and_never_mix(
    registry: MlflowRegistry, client: MlflowClient
) -> None:
    first = new_model(client, 3, champion="1")
    client.set_registered_model_alias(first, "challenger", "3")
    second = new_model(client, 3, champion="2")
    refs = {
        first: ModelRef(name=first, alias="champion", candidate_alias="challenger"),
        second: ModelRef(name=second, alias="champion", candidate_alias="challenger"),
    }
    expected = {
        first: ResolvedVersions(stable="1", candidate="3"),
        second: ResolvedVersions(stable="2", candidate=None),
    }
    order = [first, second] * 10
    before = model_reads()

    answers = await asyncio.gather(*(registry.resolve(refs[name], max_age=WINDOW) for name in order))

    assert [answer == expected[name] for name, answer in zip(order, answers, strict=True)] == [True] * len(order)
    assert model_reads() - before == 2  # one request per model, the other 18 resolves joined them
    # The same model seen through another pointer (stage, other alias) is answered from the same read, correctly.
    assert (await registry.resolve(ModelRef(name=first, alias="challenger"), max_age=WINDOW)).stable == "3"
    assert model_reads() - before == 2


async def test_a_webhook_or_a_write_of_this_client_ends_the_sharing(
    registry: MlflowRegistry, client: MlflowClient
) -> None:
    name = new_model(client, 3, champion="1")
    ref = ModelRef(name=name, alias="champion")
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"

    client.set_registered_model_alias(name, "champion", "2")
    registry.forget(name)  # what a registry webhook for the model does
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "2"

    await registry.set_alias(name, "champion", "3")
    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "3"
    await registry.delete_alias(name, "champion")
    assert (await registry.resolve(ref, max_age=WINDOW)).stable is None


async def test_a_read_made_while_this_client_writes_is_not_shared_after_the_write(clock: Clock) -> None:
    # A server on loopback that holds the alias write until the test lets it go, and answers reads at once:
    # a read made while the write is under way shows the model as it was (MLflow itself answers too fast to
    # show the order).
    champion = {"version": "1"}
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next((int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")), 0)
        await reader.readexactly(length)
        if head.startswith(b"GET"):
            aliases = [{"alias": "champion", "version": champion["version"]}]
            body = json.dumps({"registered_model": {"name": "m", "aliases": aliases}})
        else:
            await release.wait()
            champion["version"] = "2"
            body = "{}"
        head_out = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write((head_out + body).encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    registry = MlflowRegistry(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", clock=clock)
    ref = ModelRef(name="m", alias="champion")
    try:
        write = asyncio.ensure_future(registry.set_alias("m", "champion", "2"))
        await asyncio.sleep(0.2)  # the write is at the server, held
        assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"  # the model as it was at that moment
        release.set()
        await write

        assert (await registry.resolve(ref, max_age=WINDOW)).stable == "2"
    finally:
        await registry.aclose()
        server.close()


async def test_a_failed_read_is_not_shared_once_it_is_over(registry: MlflowRegistry, client: MlflowClient) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    ref = ModelRef(name=name, alias="champion")
    with pytest.raises(ModelNotFoundError):
        await registry.resolve(ref, max_age=WINDOW)
    client.create_registered_model(name)
    run_id = client.create_run(experiment_id="0").info.run_id
    client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", "1")

    assert (await registry.resolve(ref, max_age=WINDOW)).stable == "1"


async def test_a_registry_webhook_makes_every_client_of_the_runtime_ask_again(
    mlflow: MlflowServer, client: MlflowClient
) -> None:
    runtime = Runtime(settings=OperatorSettings(), kube=KubeApi(ApiClient()))  # it makes no Kubernetes call here
    name = new_model(client, 2, champion="1")
    ref = ModelRef(name=name, alias="champion")
    anonymous = runtime.registry(mlflow.url, Credentials())
    with_token = runtime.registry(mlflow.url, Credentials(token="t"))
    try:
        assert anonymous is not with_token  # clients (and what they share) are per server and credentials
        for shared in (anonymous, with_token):
            assert (await shared.resolve(ref, max_age=60)).stable == "1"
        client.set_registered_model_alias(name, "champion", "2")

        await runtime.wake_model(name, "model_version_alias.created")

        for shared in (anonymous, with_token):
            assert (await shared.resolve(ref, max_age=60)).stable == "2"
    finally:
        await runtime.aclose()
