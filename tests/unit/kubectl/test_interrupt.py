"""Ctrl-C while a command waits: marked by the handler, raised only at the command's own safe points."""

from __future__ import annotations

import os
import signal
import time

import pytest

from modelpilot.kubectl.interrupt import TICK_SECONDS, interruptible


def test_ctrl_c_during_a_request_is_raised_at_the_next_sleep_not_inside_the_request() -> None:
    before = signal.getsignal(signal.SIGINT)
    with interruptible() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)  # delivered while "the HTTP client" runs
        time.sleep(0.05)  # the request runs to its end: the handler raised nothing
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            interrupt.sleep(30)
    assert time.monotonic() - started < 0.5
    assert signal.getsignal(signal.SIGINT) is before, "the previous handler is back"


def test_ctrl_c_during_a_sleep_ends_it_within_a_tick() -> None:
    with interruptible() as interrupt:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        previous_alarm = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                interrupt.sleep(30)
        finally:
            signal.signal(signal.SIGALRM, previous_alarm)
    assert time.monotonic() - started < 0.2 + 3 * TICK_SECONDS


def test_without_ctrl_c_a_sleep_lasts_its_time() -> None:
    with interruptible() as interrupt:
        started = time.monotonic()
        interrupt.sleep(0.3)
        interrupt.check()
    assert time.monotonic() - started >= 0.3
