"""The per-resource reconcile loop: run, then sleep until the next poll or a wake-up."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from modelpilot.operator import metrics
from modelpilot.operator.handlers.reconcile import reconcile
from modelpilot.operator.kubeapi import KubeError
from modelpilot.operator.runtime import Runtime

logger = logging.getLogger(__name__)

ERROR_REQUEUE_SECONDS = 5.0


async def run_reconcile_loop(
    runtime: Runtime, namespace: str, name: str, body: kopf.Body, stopped: kopf.DaemonStopped
) -> None:
    """Reconcile `namespace/name` until Kopf stops the daemon (resource deleted or operator exiting) or the
    operator releases the resource itself (its namespace is being deleted, handlers/terminating)."""
    runtime.released.discard((namespace, name))  # a new resource of a name released before
    wakeup = runtime.wakeup(namespace, name)

    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message[:1024])

    while not stopped and not runtime.is_released(namespace, name):
        wakeup.clear()
        started = time.perf_counter()
        try:
            outcome = await reconcile(runtime, namespace, name, emit, seen=body)
        except (KubeError, OSError) as error:
            # The API server hiccuped: nothing was half-done that the next run will not redo.
            logger.warning("reconcile of %s/%s failed: %s", namespace, name, error)
            metrics.RECONCILES.labels(result="error").inc()
            delay = ERROR_REQUEUE_SECONDS
        else:
            if outcome is None:
                return
            metrics.RECONCILES.labels(result=outcome.result).inc()
            delay = outcome.requeue_after
        finally:
            metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
        await _sleep(wakeup, stopped, delay)


async def _sleep(wakeup: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    async def until_stopped() -> Any:
        return await stopped.wait()

    waiters = {asyncio.ensure_future(wakeup.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
