"""Dashboards and Prometheus rules: valid, consistent with each other, and only on metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart.conftest import CHART, Render, by_kind

DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
RULES = CHART / "files" / "prometheus" / "modelpilot.rules.yaml"
RULE_TESTS = CHART / "files" / "prometheus" / "modelpilot.rules.test.yaml"

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> set[str]:
    """Series names the operator and the inference server really export, read from their registries."""
    from prometheus_client import REGISTRY

    import modelpilot.operator.metrics  # noqa: F401 - registers the operator's metrics
    from modelpilot.inference.metrics import ServingMetrics
    from modelpilot.inference.predlog.metrics import PredictionLogMetrics

    serving = ServingMetrics("model", "1", "stable")
    PredictionLogMetrics(serving.registry)  # registered when the prediction log is on
    families = [*REGISTRY.collect(), *serving.registry.collect()]
    names = {
        f"{family.name}{suffix}"
        for family in families
        if family.name.startswith("modelpilot_")
        for suffix in SUFFIXES.get(family.type, ("",))
    }
    return names | {"up"}  # Prometheus's own scrape health


KNOWN_SERIES = exported_series()
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def recorded_names() -> set[str]:
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def series_in(expression: str) -> set[str]:
    """Metric and recording-rule names an expression selects (label names and functions left out)."""
    text = re.sub(r'"[^"]*"', '""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in NAME.finditer(text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_KEYWORDS:
            continue  # a function call or an operator keyword
        names.add(match.group())
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_metric_contract_the_rules_rely_on_is_exported() -> None:
    for name in (
        "modelpilot_http_requests_total",
        "modelpilot_http_request_duration_seconds_bucket",
        "modelpilot_predictions_total",
        "modelpilot_batch_size_bucket",
        "modelpilot_feature_observations_total",
        "modelpilot_operator_reconciles_total",
        "modelpilot_operator_rollouts_total",
        "modelpilot_operator_canary_weight",
        "modelpilot_operator_rollout_duration_seconds_bucket",
    ):
        assert name in KNOWN_SERIES, name


def test_series_parser_finds_metrics_not_labels() -> None:
    found = series_in(
        'histogram_quantile(0.9, sum by (le, track) (rate(modelpilot_batch_size_bucket{model=~"$m"}[5m])))'
        " / on (track) group_left up > 0 and model:x:rate5m"
    )
    assert found == {"modelpilot_batch_size_bucket", "up", "model:x:rate5m"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_dashboard_is_valid_and_uses_only_known_series(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"]
    assert dashboard["title"].startswith("modelpilot")
    assert [var for var in dashboard["templating"]["list"] if var["type"] == "datasource"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    expressions = dashboard_expressions(dashboard)
    assert expressions
    known = KNOWN_SERIES | recorded_names()
    for expression in expressions:
        used = series_in(expression)
        assert used, expression
        assert used <= known, f"unknown series {used - known} in {expression}"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_rules_use_only_known_series_and_cover_the_alerts_operators_need() -> None:
    known = KNOWN_SERIES | recorded_names()
    alerts = set()
    for group in rule_groups():
        for rule in group["rules"]:
            used = series_in(rule["expr"])
            assert used <= known, f"unknown series {used - known} in {rule.get('record') or rule.get('alert')}"
            if "alert" in rule:
                alerts.add(rule["alert"])
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                assert rule["annotations"]["runbook_url"].startswith("docs/operations.md#")
    assert {
        "ModelpilotHighErrorRate",
        "ModelpilotHighLatencyP99",
        "ModelpilotRolloutStuck",
        "ModelpilotRollbacks",
        "ModelpilotOperatorDown",
        "ModelpilotReconcileErrors",
        "ModelpilotFeatureDrift",
    } <= alerts
    assert {"model:request_errors:ratio_rate5m", "model:request_latency_seconds:p99_5m"} <= recorded_names()


def test_runbook_has_a_section_per_alert() -> None:
    runbook = (CHART.parents[1] / "docs" / "operations.md").read_text().lower()
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                assert f"### {rule['alert'].lower()}" in runbook, rule["alert"]


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is needed: apt-get install prometheus (hack/test installs it)", pytrace=False)
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_and_dashboards_ship_the_files_unchanged(render: Render) -> None:
    manifests = render(prometheusRule__enabled="true")
    [rule] = by_kind(manifests, "PrometheusRule")
    assert rule["spec"]["groups"] == rule_groups()
    configmaps = {cm["metadata"]["name"]: cm for cm in by_kind(manifests, "ConfigMap")}
    assert len(configmaps) == len(DASHBOARDS)
    for configmap in configmaps.values():
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(key, text)] = configmap["data"].items()
        assert json.loads(text) == json.loads((CHART / "files" / "dashboards" / key).read_text())
    assert not by_kind(render(), "PrometheusRule"), "PrometheusRule needs the prometheus-operator CRDs: opt-in"


def test_pod_monitor_scrapes_the_port_the_serving_pods_name_metrics(render: Render) -> None:
    """/metrics is not on the prediction port (http): a scrape of that port would find nothing."""
    from modelpilot.operator.builders.serving import METRICS_PATH, METRICS_PORT_NAME

    [monitor] = by_kind(render(metrics__podMonitor__enabled="true"), "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == METRICS_PORT_NAME
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == METRICS_PATH
    assert monitor["spec"]["selector"] == {"matchExpressions": [{"key": "modelpilot.io/track", "operator": "Exists"}]}


def test_the_end_to_end_prometheus_scrapes_the_same_port_as_the_pod_monitor() -> None:
    """hack/e2e's in-cluster Prometheus stands in for the PodMonitor: same pods, same port, same path."""
    from modelpilot.operator.builders.serving import METRICS_PORT_NAME

    manifests = yaml.safe_load_all((CHART.parents[1] / "hack" / "e2e.d" / "prometheus.yaml").read_text())
    [config] = [m for m in manifests if m and m["kind"] == "ConfigMap" and m["metadata"]["name"] == "prometheus"]
    [job] = yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"]
    keep = {rule["source_labels"][0]: rule["regex"] for rule in job["relabel_configs"] if rule.get("action") == "keep"}
    assert keep == {
        "__meta_kubernetes_pod_label_modelpilot_io_track": ".+",
        "__meta_kubernetes_pod_container_port_name": METRICS_PORT_NAME,
    }
    assert job.get("metrics_path", "/metrics") == "/metrics"
