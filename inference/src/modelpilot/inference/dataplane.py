"""The transport-free data plane: model lifecycle, readiness, faults and batched prediction."""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from modelpilot.inference.batching import MicroBatcher
from modelpilot.inference.cpus import usable_cpus
from modelpilot.inference.decoding import DecodedRequest
from modelpilot.inference.errors import (
    InjectedFaultError,
    InvalidInputError,
    ModelNotReadyError,
    PredictionFailedError,
    ServingError,
    UnknownModelError,
)
from modelpilot.inference.metrics import ServingMetrics
from modelpilot.inference.model import ServedModel
from modelpilot.inference.prediction import Prediction
from modelpilot.inference.settings import Settings
from modelpilot.inference.validation import Features

if TYPE_CHECKING:
    from modelpilot.inference.predlog.service import PredictionLog

log = logging.getLogger("modelpilot.inference")


class FaultInjector:
    """Testing only: fails an exact share of calls, evenly spread (0.2 → every 5th), and adds latency."""

    def __init__(self, error_rate: float, latency_ms: float) -> None:
        self.error_rate = error_rate
        self.latency = latency_ms / 1000.0
        self._calls = 0

    @property
    def active(self) -> bool:
        """True when any fault is configured."""
        return self.error_rate > 0 or self.latency > 0

    async def apply(self) -> None:
        """Sleep the configured latency, then raise `InjectedFaultError` when this call is due to fail."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if self.error_rate > 0:
            self._calls += 1
            if math.floor(self._calls * self.error_rate + 1e-9) > math.floor(
                (self._calls - 1) * self.error_rate + 1e-9
            ):
                raise InjectedFaultError("injected failure (MODELPILOT_FAULT_ERROR_RATE)")


class DataPlane:
    """Owns the model, the batcher and the metrics; the HTTP layer only decodes and encodes."""

    def __init__(
        self,
        settings: Settings,
        model: ServedModel,
        metrics: ServingMetrics,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.draining = False
        offload = settings.offload_inference == "always" or (settings.offload_inference == "auto" and usable_cpus() > 1)
        # One worker thread: forward passes stay serial, the event loop keeps decoding meanwhile.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="forward") if offload else None
        # Large bodies and CSV uploads are parsed here, off the event loop; the pool's size bounds how many
        # parses (and their transient Python objects) exist at once.
        self.decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self.batcher = MicroBatcher(
            self._run,
            max_batch_size=settings.max_batch_size,
            max_wait_seconds=settings.max_batch_wait_ms / 1000.0,
            executor=self._executor,
            on_batch=metrics.observe_batch,
        )
        self.faults = FaultInjector(settings.fault_error_rate, settings.fault_latency_ms)
        self._load_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start batching and the prediction log; load the model in the background unless it is loaded already."""
        self.batcher.start()
        if self.prediction_log is not None:
            self.prediction_log.start()
        if self.model.ready:
            self._on_ready()
        else:
            self._load_task = asyncio.get_running_loop().create_task(self._load_until_ready(), name="model-load")

    async def stop(self) -> None:
        """Stop taking new predictions, finish queued ones, release the worker thread."""
        self.draining = True
        self.metrics.set_ready(False)
        if self._load_task is not None:
            self._load_task.cancel()
        await self.batcher.stop()
        if self.prediction_log is not None:  # after the last prediction; flushes what it can
            await asyncio.to_thread(self.prediction_log.stop)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

    async def _load_until_ready(self) -> None:
        while not self.model.ready:
            try:
                await asyncio.to_thread(self.model.load)
            except Exception:
                # The reason stays visible on /readyz; a registry that was down may be back later.
                await asyncio.sleep(self.settings.load_retry_seconds)
        self._on_ready()

    def _on_ready(self) -> None:
        self.metrics.set_identity(self.model.name, self.model.version, self.settings.track)
        faulty = {v.strip() for v in self.settings.fault_versions.split(",") if v.strip()}
        if faulty and self.model.version not in faulty:
            self.faults = FaultInjector(0.0, 0.0)
        if self.model.loaded is not None:
            self.metrics.features.reset(self.model.loaded.schema.features, self.model.loaded.references)
        self.metrics.set_ready(True)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) for /readyz: ready only when loaded, warmed up, and not shutting down."""
        if self.draining:
            return False, {"status": "draining", "reason": "the server is shutting down"}
        body = {
            "status": self.model.state,
            "reason": self.model.reason,
            "model": self.model.name,
            "version": self.model.version,
        }
        return self.model.ready, body

    def check_name(self, name: str) -> None:
        """404 for a model name this server does not serve."""
        if name != self.model.name:
            raise UnknownModelError(f"model {name!r} is not served here; this server serves {self.model.name!r}")

    async def predict(self, request: DecodedRequest, request_id: str | None = None) -> Prediction:
        """Batched prediction for one decoded request; logged under `request_id` when the log is on."""
        if self.draining:
            raise ModelNotReadyError("the server is shutting down", state="draining")
        if request.want_gates and not self._gates_supported():
            raise InvalidInputError(
                "return_gates",
                "this model does not expose gating weights (a pt2 export keeps only forward, and this one has no "
                "gates program, extra_files/gates.pt2)",
            )
        if self.faults.active:
            await self.faults.apply()
        try:
            prediction = await self.batcher.submit(
                request.features, want_gates=request.want_gates, params=request.params
            )
        except ServingError:
            raise
        except Exception as error:
            log.exception("prediction failed")
            raise PredictionFailedError(f"the model failed on valid input: {type(error).__name__}: {error}") from error
        if self.prediction_log is not None:
            self.prediction_log.record(request_id, request.features, prediction)
        return prediction

    async def predict_chunk(self, features: Features) -> Prediction:
        """One forward pass over a bulk chunk, outside the request queue."""
        try:
            prediction = await self.batcher.run_alone(features)
        except ServingError:
            raise
        except Exception as error:
            log.exception("prediction failed")
            raise PredictionFailedError(f"the model failed on valid input: {type(error).__name__}: {error}") from error
        self.metrics.observe_batch(features, prediction)
        return prediction

    def _gates_supported(self) -> bool:
        return self.model.loaded is not None and self.model.loaded.runner.gates_supported

    def _run(self, features: Features, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        return self.model.predict(features, want_gates=want_gates, params=params)
