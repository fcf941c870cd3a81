"""The example ModelDeployments parse with the operator's models and fit the CRD's OpenAPI schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # the environment has no stubs for it
import pytest
import yaml

from modelpilot.operator.crd import build_crd
from modelpilot.operator.spec import parse_spec
from tests.unit.chart.conftest import REPO

EXAMPLES = sorted((REPO / "k8s" / "examples").glob("*.yaml"))


def refuse_unknown_fields(node: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties, as the API server's
    strict field validation (kubectl's default) treats unknown fields as errors rather than pruning them."""
    if isinstance(node, list):
        return [refuse_unknown_fields(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: refuse_unknown_fields(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    strict: dict[str, Any] = refuse_unknown_fields(schema)
    strict["properties"]["metadata"] = {"type": "object"}
    return strict


def test_unknown_fields_are_errors() -> None:
    document = yaml.safe_load((REPO / "k8s" / "examples" / "minimal.yaml").read_text())
    document["spec"]["serving"]["targetCPUUtilization"] = 70
    with pytest.raises(jsonschema.ValidationError, match="targetCPUUtilization"):
        jsonschema.Draft4Validator(crd_schema()).validate(document)


def test_the_documented_examples_exist() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "fraud-detector-gateway.yaml",
        "fraud-detector-ingress.yaml",
        "fraud-detector-stages.yaml",
        "minimal.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_is_valid(path: Path) -> None:
    [document] = list(yaml.safe_load_all(path.read_text()))
    assert document["apiVersion"] == "modelpilot.io/v1alpha1"
    assert document["kind"] == "ModelDeployment"
    # CRD schemas are OpenAPI v3.0: draft-4 semantics (boolean exclusiveMinimum); CEL rules run in the
    # API server (cluster tests) and their pydantic twins in parse_spec.
    jsonschema.Draft4Validator(crd_schema()).validate(document)
    parse_spec(document["spec"])


def test_gateway_example_shows_every_capability() -> None:
    document = yaml.safe_load((REPO / "k8s" / "examples" / "fraud-detector-gateway.yaml").read_text())
    spec = parse_spec(document["spec"])
    assert spec.model.candidate_alias
    assert spec.traffic.router == "gateway"
    assert spec.traffic.header is not None
    assert spec.serving.auth is not None
    assert spec.serving.resources.limits["nvidia.com/gpu"] == 1
    assert spec.serving.autoscaling is not None
    assert spec.serving.autoscaling.request_rate is not None
    assert spec.request_rate_prometheus == "http://prometheus-operated.monitoring:9090"  # the analysis's
    assert "eks.amazonaws.com/role-arn" in spec.serving.service_account.annotations
    assert spec.rollout is not None
    assert spec.rollout.analysis.metrics
    assert spec.training is not None
    assert spec.training.schedule
    assert spec.training.retrain_on_drift
    assert any(t.key == "nvidia.com/gpu" for t in spec.training.tolerations)
    assert spec.training.service_account_name


def test_minimal_example_has_only_required_fields() -> None:
    document = yaml.safe_load((REPO / "k8s" / "examples" / "minimal.yaml").read_text())
    assert set(document["spec"]) == set(crd_schema()["properties"]["spec"]["required"])


def test_stage_example_uses_legacy_stages_and_replica_routing() -> None:
    document = yaml.safe_load((REPO / "k8s" / "examples" / "fraud-detector-stages.yaml").read_text())
    spec = parse_spec(document["spec"])
    assert (spec.model.stage, spec.model.candidate_stage, spec.traffic.router) == ("Production", "Staging", "replicas")
