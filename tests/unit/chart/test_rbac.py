"""The operator's RBAC: least privilege, and cluster-wide only when it serves the whole cluster."""

from __future__ import annotations

import yaml

from tests.unit.chart.conftest import CHART, KUBE_VERSION, Manifest, Render, by_kind, run_helm

NAMESPACED = CHART / "ci" / "namespaced-values.yaml"
WRITE_VERBS = {"create", "patch", "update", "delete"}


def grants(rules: list[dict[str, list[str]]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) → verbs."""
    result: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result.setdefault((group, resource), set()).update(rule["verbs"])
    return result


def test_no_wildcards_anywhere(ci_manifests: list[Manifest]) -> None:
    for role in by_kind(ci_manifests, "ClusterRole") + by_kind(ci_manifests, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['kind']}/{role['metadata']['name']} {key}"
            assert "resourceNames" not in rule or rule["resourceNames"]


def test_cluster_wide_install_grants_one_cluster_role_and_no_roles(render: Render) -> None:
    manifests = render()
    [cluster_role] = by_kind(manifests, "ClusterRole")
    [binding] = by_kind(manifests, "ClusterRoleBinding")
    assert not by_kind(manifests, "Role")
    assert not by_kind(manifests, "RoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    [subject] = binding["subjects"]
    [account] = by_kind(manifests, "ServiceAccount")
    assert (subject["name"], subject["namespace"]) == (account["metadata"]["name"], "modelpilot")
    verbs = grants(cluster_role["rules"])
    assert verbs[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert verbs[("", "namespaces")] == {"list", "watch"}
    [peering] = by_kind(manifests, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "mp-modelpilot-operator"


def test_namespaced_install_grants_roles_only_in_the_served_namespaces(render: Render) -> None:
    manifests = render(NAMESPACED)
    assert not by_kind(manifests, "ClusterRole")
    assert not by_kind(manifests, "ClusterRoleBinding")
    roles = by_kind(manifests, "Role")
    bindings = by_kind(manifests, "RoleBinding")
    assert {role["metadata"]["namespace"] for role in roles} == {"ml-team-a", "ml-team-b"}
    assert {binding["metadata"]["namespace"] for binding in bindings} == {"ml-team-a", "ml-team-b"}
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == "modelpilot"
    for role in roles:
        verbs = grants(role["rules"])
        assert ("", "namespaces") not in verbs
        assert verbs[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}
        assert verbs[("", "secrets")] == {"get"}
    peerings = by_kind(manifests, "KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == {"ml-team-a", "ml-team-b"}
    assert not by_kind(manifests, "ClusterKopfPeering")
    [statefulset] = by_kind(manifests, "StatefulSet")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPILOT_NAMESPACES"] == "ml-team-a,ml-team-b"
    assert env["MODELPILOT_CLUSTER_PEERING"] == "false"


def test_the_operator_gets_what_it_needs_and_no_more(render: Render) -> None:
    [cluster_role] = by_kind(render(), "ClusterRole")
    verbs = grants(cluster_role["rules"])
    assert verbs[("modelpilot.io", "modeldeployments")] == {"get", "list", "watch", "patch", "update"}
    assert verbs[("modelpilot.io", "modeldeployments/status")] >= {"patch", "update"}
    assert verbs[("", "events")] == {"create", "patch"}
    owned = [
        ("apps", "deployments"),
        ("", "services"),
        ("", "serviceaccounts"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "grpcroutes"),
    ]
    for key in owned:
        assert verbs[key] == {"get", "list", "watch"} | WRITE_VERBS, key
    assert verbs[("", "pods")] == {"get", "list", "watch"}
    assert verbs[("apps", "replicasets")] == {"get", "list", "watch"}
    # The shadow phase reads, by name, whether a route's Gateways can mirror.
    assert verbs[("gateway.networking.k8s.io", "gateways")] == {"get"}
    assert verbs[("gateway.networking.k8s.io", "gatewayclasses")] == {"get"}
    # Secrets: not cluster-wide by default (see below).
    assert ("", "secrets") not in verbs
    granted_resources = {resource for _, resource in verbs}
    for forbidden in ("roles", "rolebindings", "clusterroles", "clusterrolebindings", "nodes", "pods/exec"):
        assert forbidden not in granted_resources


def test_rbac_can_be_left_to_the_cluster_admin(render: Render) -> None:
    manifests = render(rbac__create="false", serviceAccount__create="false", serviceAccount__name="existing")
    assert not [m for m in manifests if m["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]
    [statefulset] = by_kind(manifests, "StatefulSet")
    assert statefulset["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_secrets_are_read_by_name_only_in_the_namespaces_granted(render: Render) -> None:
    manifests = render(**{"rbac__secretNamespaces": "{ml-team-a,ml-team-b}"})
    [cluster_role] = by_kind(manifests, "ClusterRole")
    assert ("", "secrets") not in grants(cluster_role["rules"])
    roles = by_kind(manifests, "Role")
    assert {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles} == {
        ("ml-team-a", "mp-modelpilot-operator-secrets"),
        ("ml-team-b", "mp-modelpilot-operator-secrets"),
    }
    for role in roles:
        # Read one by name, never list (which would reveal every Secret's data) or write; nothing else.
        assert grants(role["rules"]) == {("", "secrets"): {"get"}}
    bindings = by_kind(manifests, "RoleBinding")
    assert {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings} == {
        (r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles
    }
    assert all(b["subjects"][0]["name"] == "mp-modelpilot-operator" for b in bindings)


def test_cluster_wide_secrets_only_when_asked(render: Render) -> None:
    manifests = render(rbac__clusterWideSecrets="true", **{"rbac__secretNamespaces": "{ml-team-a}"})
    [cluster_role] = by_kind(manifests, "ClusterRole")
    assert grants(cluster_role["rules"])[("", "secrets")] == {"get"}
    assert not by_kind(manifests, "Role"), "no per-namespace grant needed on top of the cluster-wide one"


def _autoscaler_env(manifests: list[Manifest]) -> str:
    [operator] = by_kind(manifests, "StatefulSet")
    env = {var["name"]: var.get("value") for var in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["MODELPILOT_AUTOSCALER"])


def _keda_verbs(manifests: list[Manifest]) -> list[set[str]]:
    roles = by_kind(manifests, "ClusterRole") + by_kind(manifests, "Role")
    return [
        grants(role["rules"])[("keda.sh", "scaledobjects")]
        for role in roles
        if ("keda.sh", "scaledobjects") in grants(role["rules"])
    ]


def test_without_keda_the_operator_uses_hpas_and_gets_no_keda_rights(render: Render) -> None:
    manifests = render()  # helm template serves no keda.sh API: auto means hpa
    assert _autoscaler_env(manifests) == "hpa"
    assert _keda_verbs(manifests) == []


def test_auto_picks_keda_when_the_cluster_serves_scaled_objects() -> None:
    result = run_helm(
        "template",
        "mp",
        str(CHART),
        "--namespace",
        "modelpilot",
        "--kube-version",
        KUBE_VERSION,
        "--api-versions",
        "keda.sh/v1alpha1/ScaledObject",
    )
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert _autoscaler_env(manifests) == "keda"
    assert _keda_verbs(manifests) == [{"get", "list", "watch", "create", "patch", "update", "delete"}]


def test_keda_backend_grants_scaled_objects_in_every_served_namespace(render: Render) -> None:
    manifests = render(NAMESPACED, operator__autoscaler="keda")
    assert _autoscaler_env(manifests) == "keda"
    assert len(_keda_verbs(manifests)) == len(by_kind(manifests, "Role")) == 2


def test_hpa_backend_is_kept_even_where_keda_is_served() -> None:
    result = run_helm(
        "template",
        "mp",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "operator.autoscaler=hpa",
        "--api-versions",
        "keda.sh/v1alpha1/ScaledObject",
    )
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert _autoscaler_env(manifests) == "hpa"
    assert _keda_verbs(manifests) == []


def test_namespace_patterns_keep_the_cluster_role_and_narrow_where_the_operator_acts(render: Render) -> None:
    manifests = render(operator__namespacePatterns="{team-*,!team-sandbox}")
    assert by_kind(manifests, "ClusterRole")
    assert not by_kind(manifests, "Role")
    [statefulset] = by_kind(manifests, "StatefulSet")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPILOT_NAMESPACES"] == "team-*,!team-sandbox"
    assert env["MODELPILOT_CLUSTER_PEERING"] == "true"  # the ClusterKopfPeering the ClusterRole may patch
    assert by_kind(manifests, "ClusterKopfPeering")


def test_namespaces_and_patterns_together_are_refused_with_a_message() -> None:
    result = run_helm(
        "template", "mp", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "operator.watchNamespaces={ml-a}", "--set", "operator.namespacePatterns={ml-*}",
    )  # fmt: skip
    assert result.returncode != 0
    assert "not both" in result.stderr
