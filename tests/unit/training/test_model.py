"""The mixture-of-experts module: shapes, gates, and normalisation inside the module."""

from __future__ import annotations

import torch

from modelpilot.training.data import FEATURES, generate_flows
from modelpilot.training.model import GatingView, MixtureOfExperts


def raw_rows(n: int) -> torch.Tensor:
    return torch.from_numpy(generate_flows(n, seed=0)[FEATURES].to_numpy().copy())


def test_forward_gives_one_logit_per_class_and_gates_one_weight_per_expert() -> None:
    torch.manual_seed(0)
    model = MixtureOfExperts(n_features=len(FEATURES), n_classes=2, n_experts=5).eval()
    x = raw_rows(7)
    assert model(x).shape == (7, 2)
    gates = model.gates(x)
    assert gates.shape == (7, 5)
    assert torch.allclose(gates.sum(dim=1), torch.ones(7))
    assert bool((gates >= 0).all())


def test_logits_are_the_gate_weighted_sum_of_the_experts() -> None:
    torch.manual_seed(1)
    model = MixtureOfExperts(n_features=len(FEATURES), n_experts=3).eval()
    x = raw_rows(4)
    z = model.normalise(x)
    experts = torch.stack([expert(z) for expert in model.experts], dim=1)
    expected = (model.gates(x).unsqueeze(-1) * experts).sum(dim=1)
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_gating_view_forward_is_the_gates() -> None:
    model = MixtureOfExperts(n_features=len(FEATURES)).eval()
    x = raw_rows(3)
    assert torch.equal(GatingView(model)(x), model.gates(x))


def test_normalisation_fitted_on_training_rows_standardises_them_and_is_saved() -> None:
    x = raw_rows(1000)
    model = MixtureOfExperts(n_features=len(FEATURES))
    model.fit_normalisation(x)
    z = model.normalise(x)
    assert torch.allclose(z.mean(dim=0), torch.zeros(len(FEATURES)), atol=1e-3)
    # Heavy-tailed byte counts come out on the same scale as ratios.
    assert float(z.abs().max()) < 20
    assert {"feature_mean", "feature_scale"} <= set(model.state_dict())


def test_a_constant_column_does_not_divide_by_zero() -> None:
    x = raw_rows(100)
    x[:, 0] = 5.0
    model = MixtureOfExperts(n_features=len(FEATURES))
    model.fit_normalisation(x)
    assert bool(torch.isfinite(model(x)).all())
