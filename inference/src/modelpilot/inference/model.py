"""The served model: `load()`, `ready`, `predict()`; the state /readyz reports."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from modelpilot.inference.errors import ModelNotReadyError
from modelpilot.inference.loading import LoadedModel, load_model, parse_registry_uri, warmup_features
from modelpilot.inference.oip import output_metadata
from modelpilot.inference.prediction import Prediction
from modelpilot.inference.settings import Settings
from modelpilot.inference.validation import Features, Validator

log = logging.getLogger("modelpilot.inference")


class ServedModel:
    """One model, loaded once; `state` is loading → ready, or failed with `reason`."""

    def __init__(self, settings: Settings, loader: Callable[[Settings], LoadedModel] = load_model) -> None:
        self.settings = settings
        self._loader = loader
        self._lock = threading.Lock()
        self.state = "loading"
        self.reason = "the model is loading"
        self.loaded: LoadedModel | None = None
        self.validator: Validator | None = None
        self.outputs: list[dict[str, Any]] = []
        self.name = settings.model_name or _name_in_uri(settings.model_uri)
        self.version = settings.model_version

    @property
    def ready(self) -> bool:
        """True once the model is loaded and a warm-up prediction succeeded."""
        return self.state == "ready"

    def load(self) -> None:
        """Download, build the runner, warm it up. Failures are kept in `state`/`reason`, then re-raised."""
        with self._lock:
            if self.ready:
                return
            self.state, self.reason = "loading", "the model is loading"
            try:
                loaded = self._loader(self.settings)
                validator = Validator(
                    loaded.schema, as_matrix=loaded.runner.as_matrix, allow_nan=self.settings.allow_nan
                )
                warmup = warmup_features(loaded.schema)
                try:
                    answer = loaded.runner.run(warmup, want_gates=loaded.runner.gates_supported, params=None)
                except Exception as error:
                    raise RuntimeError(
                        f"warm-up prediction on 2 rows failed: {error}. A pt2 model exported from a one-row "
                        "input example has a fixed batch size of 1; log it with an input example of 2+ rows"
                    ) from error
            except Exception as error:
                self.state, self.reason = "failed", f"{type(error).__name__}: {error}"
                log.error("model failed to load", extra={"fields": {"reason": self.reason}})
                raise
            self.loaded, self.validator = loaded, validator
            # What the Open Inference Protocol's model metadata lists: the outputs as the warm-up returned them.
            self.outputs = [output_metadata(answer.values, "output")]
            if answer.gates is not None:
                self.outputs.append(output_metadata(answer.gates, "gates"))
            self.name = self.settings.model_name or loaded.source.name
            self.version = self.settings.model_version or loaded.source.version
            self.state, self.reason = "ready", "model loaded and warmed up"

    def require_validator(self) -> Validator:
        """The validator, or 503 while the model is not ready."""
        if self.validator is None or not self.ready:
            raise ModelNotReadyError(self.reason, state=self.state)
        return self.validator

    def predict(
        self, features: Features, *, want_gates: bool = False, params: dict[str, Any] | None = None
    ) -> Prediction:
        """Run the model on validated features."""
        if self.loaded is None or not self.ready:
            raise ModelNotReadyError(self.reason, state=self.state)
        return self.loaded.runner.run(features, want_gates=want_gates, params=params)

    def describe(self) -> dict[str, Any]:
        """Name, version, track, signature and runner, for `GET /v1/models/{name}`."""
        info: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "track": self.settings.track,
            "uri": self.settings.model_uri,
            "state": self.state,
            "reason": self.reason,
        }
        if self.loaded is not None:
            info["signature"] = {"inputs": self.loaded.schema.describe()}
            info["runner"] = self.loaded.runner.description
            info["gates"] = self.loaded.runner.gates_supported
        return info


def _name_in_uri(uri: str) -> str:
    try:
        return parse_registry_uri(uri)[0]
    except ValueError:
        return "model"
