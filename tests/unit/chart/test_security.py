"""Every pod the chart renders meets the restricted Pod Security Standard and writes only to volumes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.chart.conftest import CHART, KUBE_VERSION, Manifest, Render, pod_specs, run_helm


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def test_every_container_is_locked_down(ci_manifests: list[Manifest]) -> None:
    pods = list(pod_specs(ci_manifests))
    assert pods, "the chart renders no pods"
    for where, spec in pods:
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, where
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_namespace), f"{where} {host_namespace}"
        for container in containers(spec):
            context = container.get("securityContext", {})
            label = f"{where} container {container['name']}"
            assert context.get("runAsNonRoot") is True, label
            assert context.get("readOnlyRootFilesystem") is True, label
            assert context.get("allowPrivilegeEscalation") is False, label
            assert context.get("capabilities", {}).get("drop") == ["ALL"], label
            assert not context.get("capabilities", {}).get("add"), label
            assert not context.get("privileged"), label
            assert context.get("runAsUser", pod_context.get("runAsUser", 0)) > 0, label


def test_every_container_has_memory_limits_and_a_writable_tmp(ci_manifests: list[Manifest]) -> None:
    for where, spec in pod_specs(ci_manifests):
        volumes = {volume["name"] for volume in spec.get("volumes", [])}
        for container in containers(spec):
            assert container.get("resources", {}).get("limits", {}).get("memory"), f"{where} {container['name']}"
            if where.startswith("Pod/"):
                continue  # The test pod only runs wget to stdout.
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in volumes, f"{where} {container['name']} has no /tmp volume"


def test_images_are_pinned(ci_manifests: list[Manifest]) -> None:
    for where, spec in pod_specs(ci_manifests):
        for container in containers(spec):
            image = container["image"]
            tag = image.rsplit("@", 1)[-1] if "@" in image else image.rsplit(":", 1)[-1]
            assert ":" in image, f"{where}: {image}"
            assert tag not in {"", "latest"}, f"{where}: {image}"


@pytest.mark.parametrize("replicas", [2, 3])
def test_operator_replicas_get_unique_peering_priorities(render: Render, replicas: int) -> None:
    manifests = render(operator__replicas=str(replicas))
    [statefulset] = [m for m in manifests if m["kind"] == "StatefulSet"]
    assert statefulset["spec"]["replicas"] == replicas
    env = {item["name"]: item for item in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The StatefulSet ordinal is unique per replica; Kopf freezes every replica on equal priorities.
    assert env["MODELPILOT_PRIORITY"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["MODELPILOT_PEERING"]["value"] == "mp-modelpilot-operator"


def test_several_replicas_without_peering_are_refused(render: Render) -> None:
    result = run_helm(
        "template", "mp", str(CHART), "--kube-version", KUBE_VERSION, "--set", "operator.peering.enabled=false"
    )
    assert result.returncode != 0
    assert "needs operator.peering.enabled" in result.stderr
