"""values.yaml is documented key by key, and values.schema.json refuses values that would break the chart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart.conftest import CHART, KUBE_VERSION, Manifest, Render, by_kind, run_helm

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):")


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [path for key, value in node.items() for path in leaf_paths(value, (*prefix, str(key)))]
    return [prefix]


def documented_paths(text: str) -> set[tuple[str, ...]]:
    """Key paths whose line comes right after a comment line."""
    documented: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in text.splitlines():
        match = KEY_LINE.match(line)
        if match and not line.lstrip().startswith("- "):
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            if previous.lstrip().startswith("#"):
                documented.add(tuple(key for _, key in stack))
        if line.strip():
            previous = line
    return documented


def test_every_value_is_commented() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = documented_paths(text)
    for path in leaf_paths(yaml.safe_load(text)):
        assert any(path[:n] in documented for n in range(1, len(path) + 1)), ".".join(path)


def test_schema_forbids_unknown_top_level_keys() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])


BAD_VALUES = {
    "no-replicas": ({"operator": {"replicas": 0}}, "/operator/replicas"),
    "writable-root": ({"operator": {"securityContext": {"readOnlyRootFilesystem": False}}}, "readOnlyRootFilesystem"),
    "root-pod": ({"operator": {"podSecurityContext": {"runAsNonRoot": False}}}, "runAsNonRoot"),
    "typo": ({"opertor": {"replicas": 2}}, "opertor"),
    "log-format": ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
    "bad-namespace": ({"operator": {"watchNamespaces": ["Team_A"]}}, "/operator/watchNamespaces/0"),
    "bad-port": ({"operator": {"ports": {"health": 8081, "metrics": 70000, "webhook": 8443}}}, "metrics"),
    "bad-interval": ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
    "bad-router-proxy": ({"operator": {"routerProxies": ["gateway"]}}, "/operator/routerProxies/0"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_schema_rejects_bad_values(case: str, tmp_path: Path) -> None:
    values, where = BAD_VALUES[case]
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = run_helm("template", "mp", str(CHART), "--kube-version", KUBE_VERSION, "--values", str(values_file))
    assert result.returncode != 0, f"{case} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr


def test_ci_variants_render(ci_manifests: list[Manifest]) -> None:
    kinds = {manifest["kind"] for manifest in ci_manifests}
    assert {"StatefulSet", "ServiceAccount", "Service"} <= kinds
    for manifest in ci_manifests:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelpilot", manifest["kind"]


def test_services_target_ports_the_pods_declare(ci_manifests: list[Manifest]) -> None:
    pods = {
        manifest["metadata"]["name"]: manifest["spec"]["template"]
        for manifest in ci_manifests
        if manifest["kind"] in {"StatefulSet", "Deployment"}
    }
    for service in by_kind(ci_manifests, "Service"):
        selector = service["spec"]["selector"]
        [template] = [t for t in pods.values() if selector.items() <= t["metadata"]["labels"].items()]
        port_names = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{service['metadata']['name']} → {port['targetPort']}"


def test_network_policy_opens_only_the_metrics_and_webhook_ports(render: Render) -> None:
    [policy] = by_kind(render(), "NetworkPolicy")
    ports = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert ports == {"metrics", "webhook"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [without_webhook] = by_kind(render(webhook__enabled="false"), "NetworkPolicy")
    assert {p["port"] for r in without_webhook["spec"]["ingress"] for p in r["ports"]} == {"metrics"}


def test_webhook_secret_feeds_the_operator(render: Render) -> None:
    manifests = render()
    [secret] = by_kind(manifests, "Secret")
    [statefulset] = by_kind(manifests, "StatefulSet")
    env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    reference = env["MODELPILOT_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": secret["metadata"]["name"], "key": "secret"}
    assert len(secret["data"]["secret"]) >= 48
    external = render(webhook__existingSecret="mlflow-webhook")
    assert not by_kind(external, "Secret")
    [statefulset] = by_kind(external, "StatefulSet")
    env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPILOT_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-webhook"


def test_router_proxies_reach_the_operator_as_one_comma_separated_setting(render: Render) -> None:
    def router_proxies(manifests: list[Manifest]) -> str:
        [statefulset] = by_kind(manifests, "StatefulSet")
        env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
        value: str = env["MODELPILOT_ROUTER_PROXIES"]["value"]
        return value

    assert router_proxies(render()) == ""
    assert router_proxies(render(**{"operator__routerProxies": "{10.42.0.0/16,fd00::/8}"})) == "10.42.0.0/16,fd00::/8"


def test_bundled_mlflow_accepts_its_service_name_and_keeps_its_data(render: Render) -> None:
    manifests = render(mlflow__enabled="true")
    [deployment] = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("mlflow")]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    hosts = next(arg for arg in args if arg.startswith("--allowed-hosts="))
    assert "mp-modelpilot-mlflow:*" in hosts
    assert "mp-modelpilot-mlflow.modelpilot*" in hosts
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    [claim] = by_kind(manifests, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_bundled_mlflow_keeps_sqlite_by_default_and_takes_a_postgresql_uri_from_a_secret(render: Render) -> None:
    def container(manifests: list[Manifest]) -> Any:
        [deployment] = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("mlflow")]
        return deployment["spec"]["template"]["spec"]["containers"][0]

    quick_start = container(render(mlflow__enabled="true"))
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in quick_start["args"]
    assert "MLFLOW_BACKEND_STORE_URI" not in {e["name"] for e in quick_start["env"]}
    shared = container(render(mlflow__enabled="true", mlflow__backendStore__secretName="mlflow-db"))
    assert not any(arg.startswith("--backend-store-uri") for arg in shared["args"])
    [uri] = [e for e in shared["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI"]
    assert uri["valueFrom"] == {"secretKeyRef": {"name": "mlflow-db", "key": "uri"}}


def test_the_prediction_log_names_its_secret_to_the_operator_and_migrates_in_a_hook_job(render: Render) -> None:
    assert not by_kind(render(), "Job")
    manifests = render(predictionLog__enabled="true", predictionLog__secretName="predlog", predictionLog__port="6432")
    [statefulset] = by_kind(manifests, "StatefulSet")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPILOT_PREDICTION_LOG_SECRET"] == "predlog"
    assert env["MODELPILOT_PREDICTION_LOG_SECRET_KEY"] == "dsn"
    assert env["MODELPILOT_PREDICTION_LOG_PORT"] == "6432"
    [job] = by_kind(manifests, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "modelpilot.inference.predlog", "migrate"]
    assert container["image"].startswith("ghcr.io/modelpilot/modelpilot-inference:")
    assert container["env"] == [
        {"name": "MODELPILOT_PREDLOG_DSN", "valueFrom": {"secretKeyRef": {"name": "predlog", "key": "dsn"}}}
    ]
    without_job = render(predictionLog__enabled="true", predictionLog__migration__enabled="false")
    assert not by_kind(without_job, "Job")


def test_the_e2e_values_operator_serves_the_e2e_and_demo_namespaces_and_no_other(render: Render) -> None:
    from modelpilot.operator.settings import OperatorSettings

    demo = re.search(r'^NAMESPACE = "([^"]+)"', (CHART.parents[1] / "hack" / "demo.py").read_text(), re.MULTILINE)
    assert demo is not None
    [operator] = by_kind(render(CHART / "ci" / "e2e-values.yaml"), "StatefulSet")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = OperatorSettings(namespaces=env["MODELPILOT_NAMESPACES"])
    assert settings.serves_namespace(demo.group(1))
    assert settings.serves_namespace("e2e-1a2b3c")
    assert not settings.serves_namespace("test-1a2b3c")  # the cluster tests' namespaces have operators of their own


def test_bundled_mlflow_takes_extra_environment_after_its_own(render: Render) -> None:
    values = CHART / "ci" / "e2e-values.yaml"
    [deployment] = [d for d in by_kind(render(values), "Deployment") if d["metadata"]["name"].endswith("mlflow")]
    env = [(e["name"], e.get("value")) for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert ("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https") in env
    assert env.index(("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")) > env.index(
        ("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    )


def test_bundled_mlflow_admits_only_the_operator_and_its_pods_and_no_private_webhooks(render: Render) -> None:
    manifests = render(mlflow__enabled="true")
    [policy] = [p for p in by_kind(manifests, "NetworkPolicy") if p["metadata"]["name"].endswith("mlflow")]
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {}} not in peers, "not every pod of the cluster"
    assert peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert peers[1]["podSelector"]["matchExpressions"] == [{"key": "modelpilot.io/deployment", "operator": "Exists"}]
    [deployment] = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("mlflow")]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "false"
