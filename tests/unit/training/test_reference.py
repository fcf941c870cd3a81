"""Reference statistics: the drift baseline written next to each model."""

from __future__ import annotations

import json
import math

import numpy as np

from modelpilot.training.data import FEATURES, generate_flows
from modelpilot.training.reference import feature_statistics, reference_statistics


def test_every_feature_has_summary_edges_and_proportions_that_sum_to_one() -> None:
    document = reference_statistics(generate_flows(2000, seed=0), FEATURES)
    assert document["layout_version"] == 1
    assert set(document["features"]) == set(FEATURES)
    for stats in document["features"].values():
        assert len(stats["bin_edges"]) == len(stats["proportions"]) + 1
        assert math.isclose(sum(stats["proportions"]), 1.0)
        assert stats["min"] <= stats["mean"] <= stats["max"]
    json.dumps(document)  # plain JSON, no numpy types


def test_continuous_features_get_deciles_of_about_ten_percent_each() -> None:
    stats = feature_statistics(np.random.default_rng(0).normal(size=10000))
    assert len(stats["proportions"]) == 10
    assert all(abs(share - 0.1) < 0.01 for share in stats["proportions"])


def test_discrete_and_constant_features_get_one_bin_per_value() -> None:
    protocol = feature_statistics(np.array([0.0] * 70 + [1.0] * 25 + [2.0] * 5))
    assert protocol["bin_edges"] == [0.0, 1.0, 2.0, 3.0]
    assert protocol["proportions"] == [0.7, 0.25, 0.05]
    constant = feature_statistics(np.full(10, 3.0))
    assert constant["bin_edges"] == [3.0, 4.0]
    assert constant["proportions"] == [1.0]
    assert constant["std"] == 0.0
