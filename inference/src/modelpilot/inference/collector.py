"""Pausing Python's cyclic garbage collector while a large body is parsed.

Parsing a body of millions of small containers (JSON arrays, CSV rows) allocates objects fast enough
to trigger collection after collection, each walking every object allocated so far: on an 8 MiB body of
empty arrays that tripled the parse time. A parse creates no reference cycles, so collecting during it
finds nothing; the collector is paused while any large parse runs (parses overlap in decode threads,
hence the count) and runs again as before once the last one ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """How many paused blocks run now, and whether the collector ran before the first of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.was_enabled = False


_PAUSES = _Pauses()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection inside the block (and any other paused block running at once)."""
    with _PAUSES.lock:
        if _PAUSES.count == 0:
            _PAUSES.was_enabled = gc.isenabled()
            gc.disable()
        _PAUSES.count += 1
    try:
        yield
    finally:
        with _PAUSES.lock:
            _PAUSES.count -= 1
            if _PAUSES.count == 0 and _PAUSES.was_enabled:
                gc.enable()
