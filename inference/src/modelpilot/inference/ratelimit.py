"""Token-bucket rate limit per client, with a bounded number of tracked clients."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from modelpilot.inference.errors import RateLimitedError

_MAX_CLIENTS = 10_000


class RateLimiter:
    """`rate` requests per second per client with bursts up to `burst`; the least recent clients are forgotten."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, round(rate)))
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Spend one token for `client` or raise `RateLimitedError` with the wait until the next one."""
        now = self._clock()
        tokens = self._tokens(client, now)
        if tokens < 1.0:
            self._store(client, tokens, now)
            raise RateLimitedError((1.0 - tokens) / self.rate)
        self._store(client, tokens - 1.0, now)

    def check_left(self, client: str) -> None:
        """Raise `RateLimitedError` when `client` has no token left, without spending one."""
        now = self._clock()
        tokens = self._tokens(client, now)
        self._store(client, tokens, now)
        if tokens < 1.0:
            raise RateLimitedError((1.0 - tokens) / self.rate)

    def spend(self, client: str) -> None:
        """Spend one token for `client` if it has one; never raises."""
        now = self._clock()
        self._store(client, max(0.0, self._tokens(client, now) - 1.0), now)

    def _tokens(self, client: str, now: float) -> float:
        tokens, stamp = self._buckets.pop(client, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def _store(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
