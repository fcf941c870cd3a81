"""PSI and KS from binned counts, checked against scipy on the same samples (empty bins included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import rel_entr  # type: ignore[import-untyped]
from scipy.stats import ks_2samp  # type: ignore[import-untyped]

from modelpilot.operator.drift import EMPTY_BIN_SHARE, judge, ks, psi

counts = st.lists(st.integers(min_value=0, max_value=500), min_size=2, max_size=12)


def test_psi_of_a_textbook_shift() -> None:
    assert psi([25, 25, 25, 25], [10, 20, 30, 40]) == pytest.approx(0.228217, abs=1e-6)


def test_psi_is_zero_for_the_same_shares_whatever_the_totals() -> None:
    assert psi([10, 30, 60], [100, 300, 600]) == pytest.approx(0.0, abs=1e-12)


@given(st.data())
def test_psi_is_the_symmetric_kullback_leibler_divergence_scipy_computes(data: st.DataObject) -> None:
    reference = data.draw(counts.filter(lambda c: sum(c) > 0))
    served = data.draw(st.lists(st.integers(0, 500), min_size=len(reference), max_size=len(reference)))
    if sum(served) == 0:
        served[0] = 1
    e = np.maximum(np.asarray(reference) / sum(reference), EMPTY_BIN_SHARE)
    a = np.maximum(np.asarray(served) / sum(served), EMPTY_BIN_SHARE)
    expected = float(np.sum(rel_entr(a, e) + rel_entr(e, a)))
    assert psi(reference, served) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(st.data())
def test_ks_is_scipys_two_sample_statistic_of_the_binned_samples(data: st.DataObject) -> None:
    reference = data.draw(counts.filter(lambda c: sum(c) > 0))
    served = data.draw(
        st.lists(st.integers(0, 500), min_size=len(reference), max_size=len(reference)).filter(lambda c: sum(c) > 0)
    )
    bins = np.arange(len(reference))
    expected = ks_2samp(np.repeat(bins, reference), np.repeat(bins, served)).statistic
    assert ks(reference, served) == pytest.approx(float(expected), abs=1e-12)


def test_an_empty_bin_on_one_side_gives_a_large_but_finite_psi() -> None:
    value = psi([50, 50, 0], [40, 40, 20])
    assert 1.0 < value < 10.0


def test_bins_must_match() -> None:
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2, 3], [1, 2])


def test_too_few_served_inputs_is_unknown_never_drifted() -> None:
    reference = {"bytes": [25, 25, 25, 25], "port": [50, 50]}
    verdict = judge("psi", 0.2, reference, {"bytes": [0, 0, 3, 4], "port": [1, 0]}, min_inputs=100)
    assert not verdict.known
    assert verdict.score is None
    assert verdict.drifted == ()


def test_the_verdict_names_the_features_over_the_threshold_worst_first() -> None:
    reference = {"a": [25, 25, 25, 25], "b": [25, 25, 25, 25], "c": [50, 50]}
    served = {"a": [100, 200, 300, 400], "b": [10, 10, 10, 970], "c": [500, 500]}
    verdict = judge("psi", 0.2, reference, served, min_inputs=100)
    assert verdict.drifted == ("b", "a")
    assert verdict.score == pytest.approx(psi(reference["b"], served["b"]))
    ks_verdict = judge("ks", 0.15, reference, served, min_inputs=100)  # KS of "a" is 0.2, of "b" 0.72
    assert ks_verdict.drifted == ("b", "a")
