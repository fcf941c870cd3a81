"""A bounded load generator: a fixed rate of MLflow `/invocations` requests to a loopback URL.

With `LabelledTraffic`, each request sends its own row with an `X-Request-Id`, and the ground truth of every
answered request is posted to `POST /v1/labels` `delay` seconds later, in batches, as delayed labels arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

MAX_IN_FLIGHT = 256
LABEL_POST_SECONDS = 0.5  # how often due labels are posted


@dataclass(frozen=True)
class LabelledTraffic:
    """Request `i` sends `body(i)` with X-Request-Id `{prefix}-{i}`; its answer's `label(i)` goes to
    `labels_url` (a lab URL) `delay` seconds after the answer. Requests answered with an error get no label."""

    body: Callable[[int], bytes]
    label: Callable[[int], int]
    labels_url: str
    prefix: str
    delay: float = 2.0


@dataclass
class LoadReport:
    """What a load run sent and got back."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0 counts connection errors
    backends: Counter[str] = field(default_factory=Counter)  # track/version the splitter reported
    latencies: list[float] = field(default_factory=list)
    answered_ids: dict[str, str] = field(default_factory=dict)  # X-Request-Id → track/version (labelled traffic)
    labels_posted: int = 0  # labels in batches answered 200
    label_statuses: Counter[int] = field(default_factory=Counter)  # per batch; 0 counts connection errors
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None


class _LabelPoster:
    """The labels of answered requests, posted in batches once `delay` has passed since each answer."""

    def __init__(self, traffic: LabelledTraffic, session: aiohttp.ClientSession, report: LoadReport) -> None:
        self.traffic = traffic
        self.session = session
        self.report = report
        self.due: list[tuple[float, dict[str, object]]] = []  # (when, label item), in answer order

    def answered(self, index: int, request_id: str, backend: str) -> None:
        """Request `index` was answered 200: its label is due `delay` seconds from now."""
        self.report.answered_ids[request_id] = backend
        item = {"request_id": request_id, "row": 0, "label": self.traffic.label(index)}
        self.due.append((time.monotonic() + self.traffic.delay, item))

    async def post(self, everything: bool = False) -> None:
        """Post the labels due now (or all of them) in one batch."""
        now = time.monotonic()
        count = len(self.due)
        if not everything:
            count = next((index for index, (at, _) in enumerate(self.due) if at > now), count)
        if count == 0:
            return
        batch = [item for _, item in self.due[:count]]
        del self.due[:count]
        try:
            async with self.session.post(self.traffic.labels_url, json=batch) as response:
                await response.read()
                self.report.label_statuses[response.status] += 1
                if response.status == 200:
                    self.report.labels_posted += len(batch)
        except aiohttp.ClientError:
            self.report.label_statuses[0] += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Post due labels every `LABEL_POST_SECONDS` until `stop` is set. Never cancelled: a batch cut off
        mid-post would be neither posted nor due any more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=LABEL_POST_SECONDS)
            await self.post()

    async def finish(self) -> None:
        """Wait until the last labels are due (their answers came last) and post them."""
        if self.due:
            await asyncio.sleep(max(0.0, self.due[-1][0] - time.monotonic()))
            await self.post(everything=True)


async def generate_load(
    url: str,
    body: bytes,
    *,
    rate: float,
    seconds: float,
    stop: asyncio.Event,
    report: LoadReport,
    headers: dict[str, str] | None = None,
    labelled: LabelledTraffic | None = None,
) -> LoadReport:
    """POST `body` (or `labelled`'s bodies) to `url` `rate` times a second (open loop) for `seconds` or until
    `stop` is set; labels due after the last answer are posted before it returns."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the lab's load stays on loopback, not {host}")
    interval = 1.0 / rate
    in_flight: set[asyncio.Task[None]] = set()
    sent_headers = {"content-type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        labels = _LabelPoster(labelled, session, report) if labelled is not None else None

        async def one(index: int) -> None:
            begun = time.monotonic()
            request_body, request_headers, request_id = body, sent_headers, ""
            if labelled is not None:
                request_id = f"{labelled.prefix}-{index}"
                request_body = labelled.body(index)
                request_headers = {**sent_headers, "x-request-id": request_id}
            try:
                async with session.post(url, data=request_body, headers=request_headers) as response:
                    await response.read()
                    report.statuses[response.status] += 1
                    backend = response.headers.get("x-lab-backend", "")
                    report.backends[backend] += 1
                    if labels is not None and response.status == 200:
                        labels.answered(index, request_id, backend)
            except aiohttp.ClientError:
                report.statuses[0] += 1
            report.latencies.append(time.monotonic() - begun)

        posting_done = asyncio.Event()
        poster = asyncio.create_task(labels.run(posting_done)) if labels is not None else None
        deadline = report.started + seconds
        next_at = report.started
        while not stop.is_set() and next_at < deadline:
            if len(in_flight) < MAX_IN_FLIGHT:
                task = asyncio.create_task(one(report.sent))
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
        if poster is not None and labels is not None:
            posting_done.set()
            await poster
            await labels.finish()
    report.finished = time.monotonic()
    return report
