"""Ctrl-C in the commands that wait: `status --watch`, and an act waiting for the operator's answer.

By default Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Inside the HTTP
client that can be between taking a lock and entering the block that releases it; the process then hangs at
exit, when the connection pool is closed and waits for that lock. So while a command waits, SIGINT only
marks the interrupt, and the command raises KeyboardInterrupt itself between requests.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# How soon a sleep notices Ctrl-C.
TICK_SECONDS = 0.1


class Interrupt:
    """Whether Ctrl-C was pressed; `sleep` and `check` turn it into KeyboardInterrupt at a safe point."""

    def __init__(self) -> None:
        self.requested = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler: only marks the interrupt."""
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed."""
        if self.requested:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or raise KeyboardInterrupt within a tick of Ctrl-C."""
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, TICK_SECONDS))


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    """SIGINT marks the interrupt while the block runs (in the main thread; elsewhere signals are not ours)."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = signal.signal(signal.SIGINT, interrupt.on_signal)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
