"""A real MLflow server delivers registry webhooks to the operator's receiver on loopback."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import httpx
import pytest
from aiohttp import web
from mlflow import MlflowClient

from modelpilot.operator.webhooks import DEFAULT_PATH, webhook_app
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port

SECRET = "webhook-secret-for-tests"
ALIAS_EVENT: Final = "model_version_alias.created"


@dataclass
class Receiver:
    """The operator's webhook app on a loopback port, recording wake-ups and answered statuses."""

    url: str
    woken: asyncio.Queue[tuple[str, str, float]] = field(default_factory=asyncio.Queue)
    statuses: list[int] = field(default_factory=list)
    refused: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    found = Receiver(url=f"http://127.0.0.1:{port}{DEFAULT_PATH}")

    async def wake(model_name: str, event: str) -> None:
        found.woken.put_nowait((model_name, event, time.perf_counter()))

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        found.statuses.append(response.status)
        if response.status == 401:
            found.refused.set()
        return response

    app = webhook_app(SECRET, wake)
    app.middlewares.append(record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield found
    await runner.cleanup()


@pytest.fixture
def client(mlflow: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)


def _model_with_versions(client: MlflowClient, count: int) -> str:
    name = f"wh-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run_id = client.create_run(experiment_id="0").info.run_id
    for _ in range(count):
        client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    return name


async def _next_wake_for(receiver: Receiver, name: str) -> tuple[str, float]:
    """The next wake-up for model `name` (other tests' models may wake the receiver too)."""
    while True:
        model, event, at = await receiver.woken.get()
        if model == name:
            return event, at


async def test_setting_an_alias_wakes_the_receiver_with_the_model_name(
    client: MlflowClient, receiver: Receiver
) -> None:
    name = await asyncio.to_thread(_model_with_versions, client, 2)
    webhook = await asyncio.to_thread(
        client.create_webhook, name=f"hook-{name}", url=receiver.url, events=[ALIAS_EVENT], secret=SECRET
    )
    try:
        await asyncio.sleep(1.1)  # past the server's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL=1 in conftest)
        delays = []
        for round_ in range(5):
            version = str(1 + round_ % 2)
            started = time.perf_counter()
            await asyncio.to_thread(client.set_registered_model_alias, name, "challenger", version)
            event, woken_at = await asyncio.wait_for(_next_wake_for(receiver, name), 30)
            assert event == ALIAS_EVENT
            delays.append(woken_at - started)
        print(
            f"\nalias set -> wake: median {statistics.median(delays) * 1000:.1f} ms, "
            f"max {max(delays) * 1000:.1f} ms over {len(delays)} alias sets"
        )
        assert max(delays) < 5.0
    finally:
        await asyncio.to_thread(client.delete_webhook, webhook.webhook_id)


async def test_a_delivery_signed_with_another_secret_is_refused(client: MlflowClient, receiver: Receiver) -> None:
    name = await asyncio.to_thread(_model_with_versions, client, 1)
    webhook = await asyncio.to_thread(
        client.create_webhook, name=f"bad-{name}", url=receiver.url, events=[ALIAS_EVENT], secret="not-the-secret"
    )
    try:
        await asyncio.sleep(1.1)
        await asyncio.to_thread(client.set_registered_model_alias, name, "challenger", "1")
        await asyncio.wait_for(receiver.refused.wait(), 30)
        assert 200 not in receiver.statuses
        assert all(model != name for model, _, _ in _drain(receiver.woken))
    finally:
        await asyncio.to_thread(client.delete_webhook, webhook.webhook_id)


async def test_unsigned_and_garbled_posts_are_refused(receiver: Receiver) -> None:
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(receiver.url, content=b'{"entity": "model_version_alias"}')
        assert unsigned.status_code == 401
    assert receiver.woken.empty()


def _drain(queue: asyncio.Queue[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
