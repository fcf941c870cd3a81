"""The torch runner: exported programs run through their graph's forward or its flattened form, with its guards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from modelpilot.inference.flatgraph import flat_forward, same_results
from modelpilot.inference.runners import TorchRunner, graph_forward
from modelpilot.training.model import MixtureOfExperts
from tests.api.inference.models import make_moe


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
    classes = prediction.labels()
    assert classes is not None
    assert classes.tolist() == expected.argmax(axis=1).tolist()


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


class Reshaping(torch.nn.Module):
    """Ops without a public torch binding (view, expand), keyword arguments, constants and a tuple output."""

    offset: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor([0.5, -1.0, 2.0]))
        self.dropout = torch.nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.dropout(x + self.offset).view(x.shape[0], 3, 1).expand(-1, 3, 2)
        return torch.sum(y, dim=(1, 2), keepdim=False).clamp(min=-1e6), torch.nn.functional.gelu(x, approximate="tanh")


@pytest.mark.parametrize("model", [make_moe(), MixtureOfExperts(3, hidden_units=8).eval(), Reshaping().eval()])
def test_a_flattened_graph_answers_exactly_as_the_exported_module(model: torch.nn.Module) -> None:
    width = 20 if isinstance(model, type(make_moe())) else 3
    batch = torch.export.Dim("batch")
    module = torch.export.export(model, (torch.randn(4, width),), dynamic_shapes=({0: batch},)).module()
    flat = flat_forward(module)
    assert flat is not None
    samples = [torch.randn(rows, width) * 3 for rows in (2, 3, 7)]
    if not isinstance(model, Reshaping):  # one tensor out: the check the runner makes
        assert same_results(flat, graph_forward(module), samples)
    with torch.inference_mode():
        for sample in samples:
            got, expected = flat(sample), module(sample)
            for a, b in zip(
                got if isinstance(got, tuple) else (got,),
                expected if isinstance(expected, tuple) else (expected,),
                strict=True,
            ):
                assert torch.equal(a, b)
        with pytest.raises(Exception, match="Guard failed"):
            flat(torch.zeros(2, width + 1))


def test_the_runner_uses_the_flat_graph_only_when_it_answers_as_the_module() -> None:
    module = _exported()
    samples = [np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32)]
    assert TorchRunner(module, device="cpu", serialization="pt2", samples=samples).description.endswith("flat graph")
    assert not same_results(lambda x: x * 2, graph_forward(module), [torch.ones(2, 3)])
    assert not same_results(lambda x: 1 / 0, graph_forward(module), [torch.ones(2, 3)])
