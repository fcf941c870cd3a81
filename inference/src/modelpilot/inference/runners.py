"""What runs a forward pass: the native torch path, and MLflow pyfunc for every other flavor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from modelpilot.inference.flatgraph import FlatProgram, flat_forward, same_results
from modelpilot.inference.gates_program import answers_gates
from modelpilot.inference.prediction import Prediction
from modelpilot.inference.validation import Features, row_count


class Runner(Protocol):
    """Runs validated features through a loaded model."""

    as_matrix: bool
    gates_supported: bool
    records_output: bool
    description: str

    def run(self, features: Features, *, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        """Predict for all rows of `features`."""
        ...


class TorchRunner:
    """A torch module called directly on a float tensor: no pandas, no autograd, one conversion each way.

    For pt2 models the module is the exported program's `forward` only; the gating weights then come from
    the model's second exported program, `gates` (see `gates_program`), when it has one. A pickled module
    keeps its own `gates(x)` method.
    """

    as_matrix = True
    records_output = False

    def __init__(
        self,
        module: Any,
        *,
        device: str,
        serialization: str,
        column_output: bool = False,
        samples: Sequence[np.ndarray[Any, Any]] = (),
        gates: Any = None,
    ) -> None:
        """`samples`: inputs on which a flattened graph (see `flatgraph`) must answer exactly as the module;
        `gates`: the model's exported gates program (pt2), used when it answers one row of weights per row."""
        import torch

        self._torch = torch
        self.module = module
        self.device = torch.device(device)
        self.serialization = serialization
        tensors = [torch.from_numpy(sample).to(self.device) for sample in samples]
        self._forward, flat = self._fastest(module, tensors)
        self._gates: Any = getattr(module, "gates", None) if callable(getattr(module, "gates", None)) else None
        if gates is not None and answers_gates(gates, tensors):
            self._gates = self._fastest(gates, tensors)[0]
        self.gates_supported = self._gates is not None
        # MLflow answers column-based torch models with records keyed by output position.
        self.records_output = column_output
        self.description = f"pytorch ({serialization}) on {device}" + (", flat graph" if flat else "")
        if gates is not None:
            self.description += ", gates program" if self.gates_supported else ", gates program unusable"

    def _fastest(self, module: Any, samples: list[Any]) -> tuple[Any, bool]:
        """The fastest callable computing `module(x)`: its flat graph when it answers exactly as the module on the
        samples (CPU only), else the graph's own `forward`, else the module; and whether it is the flat graph.
        A `FlatProgram` was checked where its plan was made (see `pt2_child`)."""
        if isinstance(module, FlatProgram):
            return module.forward, True
        forward = graph_forward(module) or module
        if samples and self.device.type == "cpu":
            candidate = flat_forward(module)
            if candidate is not None and same_results(candidate, forward, samples):
                return candidate, True
        return forward, False

    def run(self, features: Features, *, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        """Forward (and gates when asked) under inference_mode."""
        assert isinstance(features, np.ndarray)
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(features)
            if self.device.type != "cpu":
                batch = batch.to(self.device, non_blocking=True)
            output = self._forward(batch)
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"the model returned {type(output).__name__}, expected one tensor")
            gates = self._gates(batch) if want_gates and self._gates is not None else None
            values = output.cpu().numpy()
            gate_values = None if gates is None else gates.cpu().numpy()
        return Prediction(values=values, rows=len(values), gates=gate_values, labelled=False)


class PyfuncRunner:
    """Any MLflow pyfunc model; column inputs become a DataFrame here and only here."""

    gates_supported = False
    records_output = False

    def __init__(self, model: Any, *, as_matrix: bool, column_names: tuple[str, ...]) -> None:
        self.model = model
        self.as_matrix = as_matrix
        self.column_names = column_names
        self.description = f"pyfunc ({model.metadata.flavors.get('python_function', {}).get('loader_module')})"

    def run(self, features: Features, *, want_gates: bool, params: dict[str, Any] | None) -> Prediction:
        """`PyFuncModel.predict` on an ndarray (tensor signature) or a DataFrame (column signature)."""
        rows = row_count(features)
        if isinstance(features, dict):
            import pandas as pd

            data: Any = pd.DataFrame({n: features[n] for n in self.column_names if n in features})
        else:
            data = features
        values = self.model.predict(data, params=params) if params else self.model.predict(data)
        return Prediction(values=values, rows=rows, labelled=False)


def graph_forward(module: Any) -> Any:
    """The `forward` of a torch.export module whose graph checks its own input guards, or None.

    Calling a module runs its forward pre-hooks. On a module unlifted from an exported program those
    re-check, per call, that the inputs have the traced pytree structure — one tensor, which the
    validator guarantees here — and the graph then checks its shape guards itself (`_guards_fn`).
    Calling `forward` directly keeps the graph's guards and skips the per-call hook dispatch.
    """
    if hasattr(module, "_guards_fn") and hasattr(module, "_in_spec") and callable(getattr(module, "forward", None)):
        return module.forward
    return None


def concat_features(parts: list[Features]) -> Features:
    """One feature set from several requests' features (same layout)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, dict):
        return {name: np.concatenate([p[name] for p in parts if isinstance(p, dict)]) for name in first}
    return np.concatenate([p for p in parts if isinstance(p, np.ndarray)])
