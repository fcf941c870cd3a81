"""The quality gate's decision: floor, champion tolerance, seed stability, per-segment gaps."""

from __future__ import annotations

import numpy as np
import pytest

from modelpilot.training.gate import Check, GateConfig, Holdout, decide, segment_aucs

CONFIG = GateConfig(min_auc=0.7, auc_tolerance=0.01, max_seed_spread=0.03, max_segment_gap=0.1, min_segment_rows=50)


def holdout(n: int = 600, seed: int = 0) -> Holdout:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    segments = rng.integers(0, 2, n).astype(np.float64)
    return Holdout(labels=labels, segments=segments, segment_name="protocol")


def scores(target: Holdout, separation: float, seed: int = 1) -> np.ndarray:
    """Probabilities whose AUC grows with `separation` (0: random)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, target.labels.size) + separation * target.labels
    return 1.0 / (1.0 + np.exp(-logits))


def check(decision_checks: tuple[Check, ...], name: str) -> Check:
    return next(c for c in decision_checks if c.name == name)


def test_without_champion_a_model_above_the_floor_passes() -> None:
    data = holdout()
    decision = decide(data, scores(data, 2.5), None, [0.9, 0.905], CONFIG)
    assert decision.passed
    assert {c.name for c in decision.checks} == {"floor", "stability", "segments"}
    assert "floor 0.7000" in decision.reason


def test_without_champion_a_model_below_the_floor_fails_with_its_auc_in_the_reason() -> None:
    data = holdout()
    decision = decide(data, scores(data, 0.2), None, [], CONFIG)
    assert not decision.passed
    assert decision.reason.startswith("auc 0.")
    assert "< floor 0.7000" in decision.reason


def test_a_candidate_within_tolerance_of_the_champion_passes() -> None:
    data = holdout()
    champion = scores(data, 2.0, seed=1)
    decision = decide(data, champion.copy(), champion, [], CONFIG, champion_label="champion v1")
    assert decision.passed
    assert "champion v1" in str(check(decision.checks, "champion"))


def test_a_candidate_worse_than_the_champion_beyond_tolerance_fails() -> None:
    data = holdout()
    decision = decide(data, scores(data, 1.0, seed=2), scores(data, 3.0, seed=1), [], CONFIG, "champion v4")
    assert not decision.passed
    assert not check(decision.checks, "champion").passed
    assert "< champion v4" in decision.reason


def test_the_floor_still_applies_when_a_weak_champion_exists() -> None:
    data = holdout()
    weak = scores(data, 0.1, seed=1)
    decision = decide(data, weak.copy(), weak, [], CONFIG)
    assert not decision.passed
    assert "floor" in decision.reason


def test_seeds_that_disagree_beyond_the_spread_fail_stability() -> None:
    data = holdout()
    decision = decide(data, scores(data, 2.5), None, [0.90, 0.86, 0.91], CONFIG)
    assert not decision.passed
    assert "spread over 3 seeds 0.0500 > 0.0300" in decision.reason


def test_a_diverged_seed_fails_stability() -> None:
    data = holdout()
    assert not decide(data, scores(data, 2.5), None, [0.9, float("nan")], CONFIG).passed


def test_a_segment_far_worse_than_the_champion_there_fails_even_if_overall_auc_is_fine() -> None:
    data = holdout()
    champion = scores(data, 3.0, seed=1)
    candidate = champion.copy()
    in_segment_one = data.segments == 1
    # Scramble the candidate in segment 1 only: overall AUC drops less than the segment's.
    rng = np.random.default_rng(9)
    candidate[in_segment_one] = rng.permutation(candidate[in_segment_one])
    decision = decide(data, candidate, champion, [], GateConfig(min_auc=0.0, auc_tolerance=0.5, max_segment_gap=0.1))
    assert not decision.passed
    assert "protocol=1 auc" in decision.reason
    assert "protocol=0" not in decision.reason


def test_without_champion_segments_are_compared_with_the_overall_auc() -> None:
    data = holdout()
    candidate = scores(data, 3.0)
    rng = np.random.default_rng(3)
    candidate[data.segments == 0] = rng.random(int((data.segments == 0).sum()))
    decision = decide(data, candidate, None, [], CONFIG)
    assert not decision.passed
    assert "below overall" in decision.reason


def test_segments_too_small_or_with_one_class_are_not_judged() -> None:
    labels = np.array([0, 1] * 40 + [0] * 60 + [0, 1] * 10, dtype=np.int64)
    segments = np.array([0.0] * 80 + [1.0] * 60 + [2.0] * 20)
    data = Holdout(labels=labels, segments=segments, segment_name="protocol")
    aucs = segment_aucs(data, np.linspace(0, 1, labels.size), CONFIG)
    assert list(aucs) == ["protocol=0"]


@pytest.mark.parametrize("tolerance", [0.0, 0.05])
def test_tolerance_moves_the_bar(tolerance: float) -> None:
    data = holdout()
    champion = scores(data, 2.0, seed=1)
    candidate = scores(data, 1.8, seed=1)  # slightly worse than the champion
    decision = decide(data, candidate, champion, [], GateConfig(auc_tolerance=tolerance, max_segment_gap=1.0))
    assert decision.passed is (tolerance > 0)
