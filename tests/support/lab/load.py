"""A bounded load generator: a fixed rate of MLflow `/invocations` requests to a loopback URL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

MAX_IN_FLIGHT = 256


@dataclass
class LoadReport:
    """What a load run sent and got back."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0 counts connection errors
    backends: Counter[str] = field(default_factory=Counter)  # track/version the splitter reported
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None


async def generate_load(
    url: str,
    body: bytes,
    *,
    rate: float,
    seconds: float,
    stop: asyncio.Event,
    report: LoadReport,
    headers: dict[str, str] | None = None,
) -> LoadReport:
    """POST `body` to `url` `rate` times a second (open loop) for `seconds` or until `stop` is set."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the lab's load stays on loopback, not {host}")
    interval = 1.0 / rate
    in_flight: set[asyncio.Task[None]] = set()
    sent_headers = {"content-type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> None:
            begun = time.monotonic()
            try:
                async with session.post(url, data=body, headers=sent_headers) as response:
                    await response.read()
                    report.statuses[response.status] += 1
                    report.backends[response.headers.get("x-lab-backend", "")] += 1
            except aiohttp.ClientError:
                report.statuses[0] += 1
            report.latencies.append(time.monotonic() - begun)

        deadline = report.started + seconds
        next_at = report.started
        while not stop.is_set() and next_at < deadline:
            if len(in_flight) < MAX_IN_FLIGHT:
                task = asyncio.create_task(one())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                report.sent += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
    report.finished = time.monotonic()
    return report
