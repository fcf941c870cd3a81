"""The seeded flow generator: deterministic, imbalanced, learnable, and moved by its drift knob."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelpilot.training.data import FEATURES, LABEL, SEGMENT_FEATURE, generate_flows


def test_same_seed_gives_identical_rows_and_another_seed_does_not() -> None:
    first = generate_flows(500, seed=3)
    pd.testing.assert_frame_equal(first, generate_flows(500, seed=3))
    assert not first.equals(generate_flows(500, seed=4))


def test_columns_are_the_features_in_order_then_the_label() -> None:
    frame = generate_flows(50, seed=0)
    assert list(frame.columns) == [*FEATURES, LABEL]
    assert len(FEATURES) == 20
    assert all(frame[name].dtype == np.float32 for name in FEATURES)
    assert set(frame[LABEL].unique()) <= {0, 1}


def test_attacks_are_a_minority_of_roughly_fifteen_percent() -> None:
    share = generate_flows(20000, seed=1)[LABEL].mean()
    assert 0.12 < share < 0.22


def test_features_are_correlated_like_real_flows() -> None:
    frame = generate_flows(5000, seed=2)
    log_volume = np.log1p(frame[["src_packets", "src_bytes"]])
    assert log_volume.corr().iloc[0, 1] > 0.5


def test_attack_rows_differ_from_benign_ones_so_the_task_is_learnable() -> None:
    frame = generate_flows(5000, seed=5)
    attack, benign = frame[frame[LABEL] == 1], frame[frame[LABEL] == 0]
    assert attack["unique_dst_ports"].mean() > 1.5 * benign["unique_dst_ports"].mean()
    assert attack["syn_ratio"].mean() > benign["syn_ratio"].mean()


def test_protocol_segments_are_the_three_protocols() -> None:
    frame = generate_flows(2000, seed=6)
    assert set(frame[SEGMENT_FEATURE].unique()) == {0.0, 1.0, 2.0}


def test_drift_shifts_the_distribution_and_grows_with_the_knob() -> None:
    reference = generate_flows(5000, seed=8)
    shifted = generate_flows(5000, seed=8, drift=1.0)
    further = generate_flows(5000, seed=8, drift=2.0)

    def volume(frame: pd.DataFrame) -> float:
        return float(np.log1p(frame["src_bytes"]).mean())

    assert volume(reference) < volume(shifted) < volume(further)
    assert (shifted[SEGMENT_FEATURE] == 1.0).mean() > (reference[SEGMENT_FEATURE] == 1.0).mean() + 0.05
    # The labels' meaning stays: drift moves inputs, not the attack share.
    assert abs(shifted[LABEL].mean() - reference[LABEL].mean()) < 0.02
