"""The mixture-of-experts tabular classifier.

Raw feature rows go in; the module compresses heavy tails (signed log1p) and standardises with
statistics fixed at training time, so a served model needs no separate preprocessing. A gating
network weighs a few small expert MLPs per row; the logits are the gate-weighted sum of the
experts' logits. `gates(x)` exposes those weights, which tell which expert handled a row.
"""

from __future__ import annotations

import torch
from torch import nn


def compress_tails(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log1p(|x|): byte and packet counts span orders of magnitude, this evens them out."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


class MixtureOfExperts(nn.Module):
    """Gate-weighted experts over standardised, tail-compressed features: `forward(x) -> logits [N, classes]`."""

    feature_mean: torch.Tensor
    feature_scale: torch.Tensor

    def __init__(
        self,
        n_features: int,
        n_classes: int = 2,
        n_experts: int = 4,
        hidden_units: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_classes = n_classes
        self.n_experts = n_experts
        # Buffers, not parameters: set once from the training split and saved with the weights.
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(n_features, hidden_units),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_units, n_classes),
            )
            for _ in range(n_experts)
        )
        self.gate = nn.Sequential(nn.Linear(n_features, hidden_units), nn.ReLU(), nn.Linear(hidden_units, n_experts))

    def fit_normalisation(self, x: torch.Tensor) -> None:
        """Fix the standardisation statistics from training rows (raw features, [N, n_features])."""
        compressed = compress_tails(x.float())
        mean = compressed.mean(dim=0)
        scale = compressed.std(dim=0)
        # Constant columns would divide by zero; leave them centred instead.
        scale = torch.where(scale > 1e-6, scale, torch.ones_like(scale))
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(scale)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features to the standardised inputs the experts and the gate see."""
        return (compress_tails(x) - self.feature_mean) / self.feature_scale

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gating weights [N, n_experts] for raw feature rows x [N, n_features]; each row sums to 1."""
        return torch.softmax(self.gate(self.normalise(x)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, n_classes] for raw feature rows x [N, n_features]."""
        z = self.normalise(x)
        weights = torch.softmax(self.gate(z), dim=-1)
        expert_logits = torch.stack([expert(z) for expert in self.experts], dim=1)  # [N, experts, classes]
        return (weights.unsqueeze(-1) * expert_logits).sum(dim=1)


class GatingView(nn.Module):
    """A module whose forward is the gates of a MixtureOfExperts, so the gates can be exported on their own."""

    def __init__(self, model: MixtureOfExperts) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gating weights [N, n_experts]."""
        return self.model.gates(x)
