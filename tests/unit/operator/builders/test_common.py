"""Names, labels, owner references and the GPU toleration rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelpilot.operator.builders.common import (
    Owner,
    gpu_amount,
    is_valid_label_value,
    label_value,
    labels,
    pod_tolerations,
    requests_gpu,
    selector,
    track_name,
)
from modelpilot.operator.spec import Resources, Toleration
from modelpilot.operator.spec.kube import quantity_amount
from tests.unit.operator.builders.examples import OWNER, replicas_raw, spec_of

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def test_owner_reference_makes_the_model_deployment_the_controller() -> None:
    assert OWNER.reference() == {
        "apiVersion": "modelpilot.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": OWNER.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_track_names() -> None:
    assert track_name("fraud", "stable") == "fraud-stable"
    assert track_name("fraud", "canary") == "fraud-canary"


def test_labels_carry_the_standard_and_modelpilot_keys() -> None:
    result = labels(OWNER, spec_of(replicas_raw()), component="serving", track="canary", version="12")
    assert result == {
        "app.kubernetes.io/name": "modelpilot-serving",
        "app.kubernetes.io/instance": "fraud",
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/part-of": "modelpilot",
        "app.kubernetes.io/managed-by": "modelpilot",
        "modelpilot.io/deployment": "fraud",
        "modelpilot.io/model": "fraud-detector",
        "modelpilot.io/track": "canary",
        "modelpilot.io/version": "12",
    }


def test_labels_without_track_or_version_leave_those_keys_out() -> None:
    result = labels(OWNER, spec_of(replicas_raw()), component="router")
    assert "modelpilot.io/track" not in result
    assert "modelpilot.io/version" not in result


@pytest.mark.parametrize(
    "model_name",
    [
        "fraud-detector",
        "Fraud Detector (v2)",
        "team/fraud.detector",
        "_leading-and-trailing_",
        "x" * 256,
        "a" * 62 + "/" + "b" * 40,
        "détecteur de fraude",
        "///",
        "模型",
    ],
)
def test_model_label_is_valid_for_any_model_name(model_name: str) -> None:
    raw = replicas_raw()
    raw["model"]["name"] = model_name
    result = labels(OWNER, spec_of(raw), component="serving", track="stable", version="3")
    for key, value in result.items():
        assert is_valid_label_value(value), f"{key}={value!r}"


def test_label_value_keeps_valid_values_and_keeps_distinct_long_names_distinct() -> None:
    assert label_value("fraud-detector") == "fraud-detector"
    assert label_value("Fraud Detector") == "Fraud-Detector"
    first, second = label_value("m" * 70 + "1"), label_value("m" * 70 + "2")
    assert first != second
    assert len(first) == len(second) == 63
    assert label_value("模型") != label_value("模型模型")


@pytest.mark.parametrize("value", ["", "a", "a.b_c-d", "A" * 63])
def test_valid_label_values(value: str) -> None:
    assert is_valid_label_value(value)


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "a/b", "A" * 64])
def test_invalid_label_values(value: str) -> None:
    assert not is_valid_label_value(value)


def test_selector_selects_serving_pods_by_deployment_and_track_never_by_version() -> None:
    assert selector("fraud", "stable") == {
        "modelpilot.io/deployment": "fraud",
        "app.kubernetes.io/component": "serving",
        "modelpilot.io/track": "stable",
    }
    both = selector("fraud", None)
    assert "modelpilot.io/track" not in both
    assert all("version" not in key for key in [*both, *selector("fraud", "canary")])


def test_selector_matches_the_labels_of_the_pods_it_selects() -> None:
    pod_labels = labels(Owner("x" * 80, "ml", "u"), spec_of(replicas_raw()), component="serving", track="canary")
    assert selector("x" * 80, "canary").items() <= pod_labels.items()


@pytest.mark.parametrize(
    "resources",
    [
        Resources(limits={"nvidia.com/gpu": 1}),
        Resources(limits={"nvidia.com/gpu": "2"}),
        Resources(requests={"nvidia.com/gpu": 1}),
    ],
)
def test_gpu_request_adds_the_gpu_toleration(resources: Resources) -> None:
    assert pod_tolerations([], resources) == [GPU_TOLERATION]


def test_no_gpu_adds_no_toleration() -> None:
    assert pod_tolerations([], Resources(limits={"cpu": "1", "nvidia.com/gpu": 0})) == []


@pytest.mark.parametrize(
    "existing",
    [
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
        Toleration(key="nvidia.com/gpu", operator="Equal", value="present"),
        Toleration(operator="Exists"),
    ],
)
def test_gpu_toleration_is_not_duplicated_when_the_spec_has_one(existing: Toleration) -> None:
    result = pod_tolerations([existing], Resources(limits={"nvidia.com/gpu": 1}))
    assert len(result) == 1
    assert result[0]["operator"] == existing.operator


def test_a_gpu_toleration_for_another_effect_does_not_cover_no_schedule() -> None:
    existing = Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoExecute")
    result = pod_tolerations([existing], Resources(limits={"nvidia.com/gpu": 1}))
    assert result[-1] == GPU_TOLERATION
    assert len(result) == 2


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(1, "1"), ("1500m", "1.5"), ("2Ki", "2048"), ("1e3", "1000"), ("+.5", "0.5"), ("3M", "3000000"), ("0Gi", "0")],
)
def test_quantity_amount_reads_every_suffix(amount: int | str, expected: str) -> None:
    assert quantity_amount(amount) == Decimal(expected)


def test_a_gpu_amount_in_any_quantity_form_counts_its_gpus() -> None:
    assert gpu_amount(Resources(limits={"nvidia.com/gpu": "2000m"})) == 2
    assert not requests_gpu(Resources(limits={"nvidia.com/gpu": "0m"}))
    assert requests_gpu(Resources(requests={"nvidia.com/gpu": "1e0"}))
