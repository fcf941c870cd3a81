"""The micro-batcher: shared forward passes under concurrency, no waiting when idle."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from modelpilot.inference.batching import MicroBatcher
from modelpilot.inference.prediction import Prediction
from modelpilot.inference.validation import Features


class RecordingModel:
    """Doubles its input and records the size of every forward pass."""

    def __init__(self, row_aligned: bool = True) -> None:
        self.batches: list[int] = []
        self.row_aligned = row_aligned

    def __call__(self, features: Features, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        assert isinstance(features, np.ndarray)
        self.batches.append(len(features))
        values: Any = features * 2 if self.row_aligned else {"total": float(features.sum())}
        return Prediction(values=values, rows=len(features))


async def _with_batcher(model: RecordingModel, max_batch: int = 64, wait: float = 0.0) -> MicroBatcher:
    batcher = MicroBatcher(model, max_batch_size=max_batch, max_wait_seconds=wait)
    batcher.start()
    return batcher


async def test_concurrent_requests_share_forward_passes_and_get_their_own_rows() -> None:
    model = RecordingModel()
    batcher = await _with_batcher(model)
    inputs = [np.full((i % 3 + 1, 2), i, dtype=np.float32) for i in range(12)]
    results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
    await batcher.stop()
    assert len(model.batches) < len(inputs)
    assert sum(model.batches) == sum(len(x) for x in inputs)
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result.values, x * 2)


async def test_a_lone_request_runs_at_once_even_with_a_max_wait() -> None:
    model = RecordingModel()
    batcher = await _with_batcher(model, wait=0.5)
    start = time.perf_counter()
    await batcher.submit(np.ones((1, 2), dtype=np.float32))
    assert time.perf_counter() - start < 0.1
    await batcher.stop()


async def test_batcher_waits_for_requests_being_decoded() -> None:
    model = RecordingModel()
    batcher = await _with_batcher(model, wait=0.5)
    batcher.decoding_started()
    first = asyncio.ensure_future(batcher.submit(np.ones((1, 2), dtype=np.float32)))
    await asyncio.sleep(0.02)
    batcher.decoding_finished()
    second = await batcher.submit(np.ones((1, 2), dtype=np.float32))
    await first
    await batcher.stop()
    assert model.batches == [2]
    assert second.rows == 1


async def test_waiting_for_a_decode_that_never_ends_sleeps_until_the_max_wait() -> None:
    model = RecordingModel()
    batcher = await _with_batcher(model, wait=0.3)
    batcher.decoding_started()  # a client that never sends the rest of its body
    wall, cpu = time.perf_counter(), time.process_time()
    await batcher.submit(np.ones((1, 2), dtype=np.float32))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await batcher.stop()
    assert model.batches == [1]
    assert 0.25 <= wall < 1.0
    assert cpu < 0.1  # asleep, not spinning on the event loop


async def test_batches_never_exceed_the_max_rows() -> None:
    model = RecordingModel()
    batcher = await _with_batcher(model, max_batch=4)
    await asyncio.gather(*(batcher.submit(np.ones((3, 2), dtype=np.float32)) for _ in range(5)))
    big = await batcher.submit(np.ones((10, 2), dtype=np.float32))
    await batcher.stop()
    assert max(model.batches[:-1]) <= 4
    assert model.batches[-1] == 10
    assert big.rows == 10


async def test_outputs_without_a_row_axis_fall_back_to_one_pass_per_request() -> None:
    model = RecordingModel(row_aligned=False)
    batcher = await _with_batcher(model)
    inputs = [np.full((2, 2), i, dtype=np.float32) for i in range(3)]
    results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
    await batcher.stop()
    assert [r.values["total"] for r in results] == [0.0, 4.0, 8.0]


async def test_a_lone_request_runs_in_its_own_task() -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    def run(features: Features, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        tasks.append(asyncio.current_task())
        return Prediction(values=features, rows=len(features))

    batcher = MicroBatcher(run, max_batch_size=64, max_wait_seconds=0.0)
    batcher.start()
    await batcher.submit(np.ones((1, 2), dtype=np.float32))
    await batcher.stop()
    assert tasks == [asyncio.current_task()]


def _held_first(model: RecordingModel, release: threading.Event) -> Any:
    """The model, with its first forward pass held (in the executor's thread) until `release` is set."""

    def run(features: Features, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        if not model.batches:
            release.wait(5)
        return model(features, want_gates, params)

    return run


async def test_requests_arriving_during_an_offloaded_pass_share_the_next_one() -> None:
    release = threading.Event()
    model = RecordingModel()
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(_held_first(model, release), max_batch_size=64, max_wait_seconds=0.0, executor=executor)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 2), dtype=np.float32)))
        await asyncio.sleep(0.05)  # the first pass is now running in the thread
        later = [asyncio.ensure_future(batcher.submit(np.full((1, 2), i, dtype=np.float32))) for i in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *later)
        await batcher.stop()
    assert model.batches == [1, 5]
    for i, result in enumerate(results[1:]):
        np.testing.assert_array_equal(result.values, np.full((1, 2), i * 2, dtype=np.float32))


async def test_a_cancelled_leader_still_answers_the_requests_it_took_along() -> None:
    release = threading.Event()
    model = RecordingModel()
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(_held_first(model, release), max_batch_size=64, max_wait_seconds=0.0, executor=executor)
        batcher.start()
        inputs = [np.full((1, 2), i, dtype=np.float32) for i in range(4)]
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        await asyncio.sleep(0.05)  # the first request leads one pass with all four, now in the thread
        tasks[0].cancel()
        release.set()
        results = await asyncio.gather(*tasks[1:])
        await batcher.stop()
    assert tasks[0].cancelled()
    for x, result in zip(inputs[1:], results, strict=True):
        np.testing.assert_array_equal(result.values, x * 2)
