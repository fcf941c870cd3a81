"""Adaptive micro-batching: concurrent requests share one forward pass.

The batcher never waits when the server is idle: a lone request runs at once. The request that finds
the model free leads: it yields once so requests that are already runnable can queue, takes them into
its pass and runs it in its own task (no hand-over to a worker task). While a pass runs, new requests
queue up; the worker runs them next, all in one pass (up to `max_batch_size` rows). Only when requests
are known to be mid-decode does a pass wait, at most `max_wait`, for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from modelpilot.inference.prediction import NotRowAlignedError, Prediction
from modelpilot.inference.runners import concat_features
from modelpilot.inference.validation import Features, row_count

log = logging.getLogger("modelpilot.inference")

RunFn = Callable[[Features, bool, "dict[str, Any] | None"], Prediction]
BatchHook = Callable[[Features, Prediction], None]


@dataclass
class _Item:
    features: Features
    rows: int
    want_gates: bool
    params: dict[str, Any] | None
    future: asyncio.Future[Prediction] = field(repr=False)


class MicroBatcher:
    """Queues requests and runs them in as few forward passes as the load allows."""

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_size: int,
        max_wait_seconds: float,
        executor: Executor | None = None,
        on_batch: BatchHook | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_seconds
        self._executor = executor
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.decoding = 0  # requests that entered a prediction route and have not been submitted yet
        self._decoded: asyncio.Future[None] | None = None  # a waiting pass's wake-up when a decode ends
        self._busy = False  # a leader or the worker holds requests: newcomers queue
        self._free = asyncio.Event()  # set while nobody holds the model
        self._free.set()

    def start(self) -> None:
        """Start the worker task on the running loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(
        self, features: Features, *, want_gates: bool = False, params: dict[str, Any] | None = None
    ) -> Prediction:
        """Queue one request's features and wait for its rows of the result."""
        if self._queue is None:
            return self._run(features, want_gates, params)
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        item = _Item(features, row_count(features), want_gates, params, future)
        if self._busy or not self._queue.empty():
            self._queue.put_nowait(item)
            return await future
        batch = [item]
        self._hold()
        try:
            await self._collect_and_execute(batch)
        except asyncio.CancelledError:
            # The leader's request went away; the requests it took along still get their answer.
            for other in batch[1:]:
                if not other.future.done():
                    self._queue.put_nowait(other)
            raise
        finally:
            self._release(len(batch) - 1)
        return future.result()

    def decoding_started(self) -> None:
        """A prediction request is reading its body: a pass may wait (at most `max_wait`) for it."""
        self.decoding += 1

    def decoding_finished(self) -> None:
        """That request is decoded (it submits right after, in the same step) or failed."""
        self.decoding -= 1
        if self._decoded is not None:
            _resolve(self._decoded)

    async def run_alone(self, features: Features, *, want_gates: bool = False) -> Prediction:
        """One forward pass outside the queue (bulk CSV), off the loop when an executor is set."""
        if self._executor is None:
            return self._run(features, want_gates, None)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, features, want_gates, None)

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            await self._free.wait()  # a leader's pass goes first
            batch = [first]
            self._hold()
            try:
                await self._collect_and_execute(batch)
            finally:
                self._release(len(batch))

    async def _collect_and_execute(self, batch: list[_Item]) -> None:
        """Take queued requests along (when the first has room and no params), then run the pass."""
        first = batch[0]
        if first.params is None and first.rows < self.max_batch_size:
            await self._collect(batch)
        await self._execute(batch)

    def _hold(self) -> None:
        self._busy = True
        self._free.clear()

    def _release(self, dequeued: int) -> None:
        assert self._queue is not None
        for _ in range(dequeued):
            self._queue.task_done()
        self._busy = False
        self._free.set()

    async def _collect(self, batch: list[_Item]) -> None:
        assert self._queue is not None
        queue = self._queue
        rows = batch[0].rows
        await asyncio.sleep(0)  # let requests that are already runnable reach the queue
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch_size:
            if queue.empty():
                remaining = deadline - loop.time()
                if self.decoding <= 0 or remaining <= 0:
                    return
                await self._until_decoded(loop, deadline)
                continue
            item = queue._queue[0]  # type: ignore[attr-defined]  # peek: a request that would overflow waits
            if item.params is not None or rows + item.rows > self.max_batch_size:
                return
            batch.append(queue.get_nowait())
            rows += item.rows

    async def _until_decoded(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Sleep until a request being decoded is done, or the loop's clock reaches `deadline` (no busy wait)."""
        decoded: asyncio.Future[None] = loop.create_future()
        self._decoded = decoded
        timer = loop.call_at(deadline, _resolve, decoded)
        try:
            await decoded
        finally:
            timer.cancel()
            self._decoded = None

    async def _execute(self, batch: list[_Item]) -> None:
        want_gates = any(item.want_gates for item in batch)
        try:
            features = concat_features([item.features for item in batch])
            prediction = await self._call(features, want_gates, batch[0].params)
            parts = _split(prediction, batch)
        except (NotRowAlignedError, KeyError, ValueError) as error:
            if len(batch) == 1:
                _fail(batch, error)
                return
            # Outputs that cannot be split per request (or mismatched layouts): one pass each.
            for item in batch:
                await self._execute([item])
            return
        except Exception as error:
            _fail(batch, error)
            return
        if self._on_batch is not None:
            try:
                self._on_batch(features, prediction)
            except Exception:
                log.exception("batch metrics failed")
        for item, part in zip(batch, parts, strict=True):
            if not item.future.done():
                item.future.set_result(part)

    async def _call(self, features: Features, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        if self._executor is None:
            return self._run(features, want_gates, params)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, features, want_gates, params)


def _split(prediction: Prediction, batch: list[_Item]) -> list[Prediction]:
    if len(batch) == 1:
        return [prediction]
    parts, start = [], 0
    for item in batch:
        parts.append(prediction.take(start, start + item.rows))
        start += item.rows
    return parts


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(batch: list[_Item], error: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
