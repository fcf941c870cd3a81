"""Requests sent through the Gateway's listener on loopback at a fixed rate, each recorded with the canary
weight the ModelDeployment showed when it was sent: what the split at the Gateway is measured from."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

# Responses within this long after the weight changed may still follow the old weight (Traefik reloads).
SETTLE_SECONDS = 3.0


@dataclass
class Answer:
    at: float
    weight: int  # the canary weight the ModelDeployment's status showed when the request was sent
    status: int  # 0: no answer
    version: str | None


@dataclass
class GatewayLoad:
    """Sends one body through the Gateway at a fixed rate (open loop: slow answers do not slow the sending
    down), for a bounded time, from a scheduling thread and a bounded pool of senders."""

    client: httpx.Client
    path: str
    body: dict[str, Any]
    rate: float
    seconds: float
    weight: int = 0
    since: float = field(default_factory=time.monotonic)  # when `weight` was last changed
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-load", daemon=True)
        self._thread.start()

    def set_weight(self, weight: int) -> None:
        if weight != self.weight:
            self.weight, self.since = weight, time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def since_weight(self, weight: int, at: float) -> list[Answer]:
        """Answers to requests sent at `weight` (settled) after `at`."""
        return [answer for answer in self.answers if answer.weight == weight and answer.at >= at]

    def _send(self, weight: int) -> None:
        try:
            response = self.client.post(self.path, json=self.body)
            version = response.json().get("model_version") if response.status_code == 200 else None
            answer = Answer(time.monotonic(), weight, response.status_code, version)
        except httpx.HTTPError:
            answer = Answer(time.monotonic(), weight, 0, None)
        self.answers.append(answer)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        period = 1 / self.rate
        next_at = time.monotonic()
        with ThreadPoolExecutor(16, thread_name_prefix="gateway-send") as senders:
            while not self._stop.is_set() and time.monotonic() < deadline:
                settled = time.monotonic() - self.since >= SETTLE_SECONDS
                senders.submit(self._send, self.weight if settled else -1)
                next_at += period
                self._stop.wait(max(next_at - time.monotonic(), 0.0))
