"""The torch runner: exported programs are called through their graph's forward, with its guards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from modelpilot.inference.runners import TorchRunner, graph_forward


class Scale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=-1)


def _exported() -> Any:
    batch = torch.export.Dim("batch")
    example = (torch.randn(4, 3),)
    return torch.export.export(Scale().eval(), example, dynamic_shapes=({0: batch},)).module()


def test_exported_module_runs_its_graph_forward_without_per_call_hooks() -> None:
    module = _exported()
    calls: list[int] = []
    module.register_forward_pre_hook(lambda *_: calls.append(1))
    runner = TorchRunner(module, device="cpu", serialization="pt2")
    rows = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    prediction = runner.run(rows, want_gates=False, params=None)
    assert calls == []
    with torch.inference_mode():
        expected = module(torch.from_numpy(rows)).numpy()
    assert calls == [1]
    np.testing.assert_allclose(prediction.values, expected, rtol=1e-6)
    assert prediction.classes is not None
    assert prediction.classes.tolist() == expected.argmax(axis=1).tolist()


def test_the_graph_still_checks_its_shape_guards() -> None:
    runner = TorchRunner(_exported(), device="cpu", serialization="pt2")
    with pytest.raises(Exception, match="Guard failed"):
        runner.run(np.zeros((2, 4), dtype=np.float32), want_gates=False, params=None)


def test_a_plain_module_is_called_with_its_hooks() -> None:
    module = Scale().eval()
    assert graph_forward(module) is None
    calls: list[int] = []
    module.register_forward_pre_hook(lambda *_: calls.append(1))
    TorchRunner(module, device="cpu", serialization="pickle").run(
        np.zeros((2, 3), dtype=np.float32), want_gates=False, params=None
    )
    assert calls == [1]
