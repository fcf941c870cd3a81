"""The training reference's bins, served values counted into them, and the metrics the operator reads."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelpilot.inference.metrics import ServingMetrics
from modelpilot.inference.reference import MAX_EDGES, FeatureReference, ReferenceError, parse_reference
from modelpilot.training.reference import reference_statistics

REFERENCE = FeatureReference(edges=(0.0, 1.0, 2.0, 3.0), shares=(0.3, 0.3, 0.4))


def _document(**features: Any) -> bytes:
    return json.dumps({"layout_version": 1, "rows": 10, "bins": 3, "features": features}).encode()


def _feature(edges: list[float], shares: list[float]) -> dict[str, Any]:
    return {"bin_edges": edges, "proportions": shares}


def test_values_are_counted_below_in_each_bin_and_above_with_the_last_edge_closed() -> None:
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.9999, 3.0, 3.5, np.nan])
    assert REFERENCE.labels == ("below", "0", "1", "2", "above")
    assert REFERENCE.count(values).tolist() == [1, 2, 1, 2, 1]


def _counted_one_by_one(edges: tuple[float, ...], values: list[float]) -> list[int]:
    """The bins' definition, value by value: below, [edge, next edge) …, the last bin closed, above."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        if math.isnan(value):  # NaN counts nowhere
            continue
        if value < edges[0]:
            counts[0] += 1
        elif value > edges[-1]:
            counts[-1] += 1
        else:
            counts[min(sum(edge <= value for edge in edges), len(edges) - 1)] += 1
    return counts


@given(
    edges=st.lists(st.floats(-1e6, 1e6, width=32), min_size=2, max_size=8, unique=True).map(sorted),
    picks=st.lists(st.integers(0, 7), max_size=40),
    others=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=40),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_counts_follow_the_bins_definition_for_every_value(
    edges: list[float], picks: list[int], others: list[float], dtype: type[np.floating[Any]]
) -> None:
    # Values on the edges themselves (where the bins' ends matter), and any others, NaN and ±inf included.
    values = np.array([edges[i % len(edges)] for i in picks] + others, dtype=dtype)
    reference = FeatureReference(tuple(edges), tuple([1.0 / (len(edges) - 1)] * (len(edges) - 1)))
    typed_edges = tuple(float(edge) for edge in np.asarray(edges, dtype=dtype))
    expected = _counted_one_by_one(typed_edges, [float(value) for value in values])
    assert reference.count(values).tolist() == expected


def test_the_training_runs_own_reference_parses_and_bins_its_data_as_it_says() -> None:
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"bytes": rng.lognormal(size=5000), "port": rng.integers(0, 3, size=5000).astype(float)})
    document = json.dumps(reference_statistics(frame, ["bytes", "port"])).encode()
    parsed = parse_reference(document, ("bytes", "port", "other"))
    assert set(parsed) == {"bytes", "port"}
    for name, reference in parsed.items():
        counts = reference.count(frame[name].to_numpy())
        assert counts[0] == counts[-1] == 0, "the training data is inside its own edges"
        assert np.allclose(counts[1:-1] / counts.sum(), reference.shares)


def test_a_tensor_input_takes_the_reference_features_in_order() -> None:
    document = _document(bytes=_feature([0, 1, 2], [0.5, 0.5]), port=_feature([0, 5], [1.0]))
    parsed = parse_reference(document, ("input[0]", "input[1]"))
    assert parsed["input[0]"].edges == (0.0, 1.0, 2.0)
    assert parsed["input[1]"].edges == (0.0, 5.0)
    assert parse_reference(document, ("input[0]",)) == {}, "a width that differs says nothing by position"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{", "not JSON"),
        (json.dumps({"layout_version": 2, "features": {}}).encode(), "layout version 1"),
        (_document(a=_feature([0, 1, 1], [0.5, 0.5])), "edges must increase"),
        (_document(a=_feature([0, 1, 2], [0.5, 0.6])), "sum to 1"),
        (_document(a=_feature([0, 1, 2], [0.5])), "one share per bin"),
        (_document(a=_feature(list(range(MAX_EDGES + 1)), [1 / MAX_EDGES] * MAX_EDGES)), "one share per bin"),
        (_document(a={"bin_edges": [0, "x"], "proportions": [1.0]}), "finite numbers"),
        (b'{"layout_version": 1, "features": {"a": {"bin_edges": [0, NaN], "proportions": [1]}}}', "finite"),
        (
            b'{"layout_version": 1, "features": {"a": {"bin_edges": [0, 1' + b"0" * 400 + b'], "proportions": [1]}}}',
            "finite",
        ),
        (b" " * (1 << 20) + b"{}", "larger than"),
    ],
)
def test_an_unusable_reference_is_refused_with_the_reason(document: bytes, reason: str) -> None:
    with pytest.raises(ReferenceError, match=reason):
        parse_reference(document, ("a",))


def test_the_metrics_export_served_counts_and_reference_shares_per_bin() -> None:
    metrics = ServingMetrics("fraud", "3", "stable")
    metrics.set_identity("fraud", "3", "stable")
    metrics.features.reset(("amount", "hour"), {"amount": REFERENCE})
    metrics.features.observe([np.array([[0.5, 1.0], [2.5, 2.0], [9.0, 3.0]], dtype=np.float32)])
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    served = {s.labels["bin"]: s.value for s in families["modelpilot_feature_bin"].samples}
    shares = {s.labels["bin"]: s.value for s in families["modelpilot_feature_reference_share"].samples}
    assert served == {"below": 0, "0": 1, "1": 0, "2": 1, "above": 1}
    assert shares == {"below": 0.0, "0": 0.3, "1": 0.3, "2": 0.4, "above": 0.0}
    labels = families["modelpilot_feature_bin"].samples[0].labels
    identity = (labels["feature"], labels["model"], labels["version"], labels["track"])
    assert identity == ("amount", "fraud", "3", "stable")
    metrics.features.reset(("amount",))
    again = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    assert not again["modelpilot_feature_bin"].samples, "no reference, no bins"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=6),
    max_leaves=40,
)


numbers = st.lists(
    st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.integers(10**308, 10**400) | st.booleans(),
    max_size=70,
)
feature_objects = st.fixed_dictionaries({"bin_edges": numbers | json_values, "proportions": numbers | json_values})


@given(
    features=st.dictionaries(st.sampled_from(["a", "b", "c"]), feature_objects | json_values, max_size=3),
    layout=st.sampled_from([1, 2, "1", None]),
    raw=st.binary(max_size=64),
)
def test_any_document_parses_or_is_refused_with_a_reference_error(
    features: dict[str, Any], layout: Any, raw: bytes
) -> None:
    documents = [raw, json.dumps({"layout_version": layout, "features": features}).encode()]
    for document in documents:
        try:
            parsed = parse_reference(document, ("a", "b"))
        except ReferenceError:
            continue
        assert all(len(ref.shares) == len(ref.edges) - 1 for ref in parsed.values())
