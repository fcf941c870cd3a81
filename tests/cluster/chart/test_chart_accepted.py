"""Every object the Helm chart renders is accepted by the real API server (server-side apply, dry run).

Each ci/*-values.yaml variant is rendered into a fresh namespace that enforces the `restricted` Pod
Security Standard, with strict field validation, so unknown fields, wrong types and non-compliant pods
fail here. prometheus-operator kinds are left out: their CRDs are not part of this cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.cluster import Cluster
from tests.unit.chart.conftest import CHART, CI_VALUES, render_chart

PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
KOPF_CRDS = CHART / "crds" / "kopf-peerings.yaml"


@pytest.fixture(scope="module")
def chart_crds(cluster: Cluster, modelpilot_crd: dict[str, object]) -> None:
    """The chart's CRDs installed (the ModelDeployment one by the shared fixture, Kopf's here)."""
    cluster.run_kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=chart-test", "-f", str(KOPF_CRDS)
    )
    cluster.run_kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev",
    )  # fmt: skip


@pytest.mark.usefixtures("chart_crds")
@pytest.mark.parametrize("values", CI_VALUES, ids=[path.stem for path in CI_VALUES])
def test_rendered_chart_is_accepted(cluster: Cluster, namespace: str, values: Path, tmp_path: Path) -> None:
    cluster.run_kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    overrides: dict[str, str] = {}
    if "watchNamespaces" in values.read_text():
        # Roles and KopfPeerings go into the served namespaces, which must exist: serve the test's own.
        overrides["operator__watchNamespaces"] = f"{{{namespace}}}"
    if "secretNamespaces" in values.read_text():
        # So do the Secret-reading Roles: grant them in the test's own namespace.
        overrides["rbac__secretNamespaces"] = f"{{{namespace}}}"
    manifests = [
        manifest
        for manifest in render_chart(values, namespace=namespace, **overrides)
        if manifest["kind"] not in PROMETHEUS_OPERATOR_KINDS
    ]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(manifests))

    result = cluster.run_kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "--field-manager=helm",
        "--namespace", namespace, "-f", str(rendered),
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(manifests), result.stdout


@pytest.mark.usefixtures("chart_crds")
def test_a_privileged_variant_would_be_refused(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """The restricted namespace really refuses: the same test pod, made root, is rejected."""
    cluster.run_kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    [pod] = [m for m in render_chart(namespace=namespace) if m["kind"] == "Pod"]
    pod["spec"]["securityContext"] = {"runAsNonRoot": False, "runAsUser": 0}
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    result = cluster.run_kubectl(
        "apply", "--server-side", "--dry-run=server", "--namespace", namespace, "-f", str(manifest), check=False
    )
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr
