"""The objects of one serving track, and the replica split of the replicas router."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelpilot.operator.builders.serving import (
    PredictionLogPlan,
    build_track,
    track_object_keys,
    unbuilt_track_keys,
)
from modelpilot.operator.spec import SecretKeyRef
from tests.unit.operator.builders.examples import OWNER, gateway_raw, ingress_raw, replicas_raw, spec_of, track_plan
from tests.unit.operator.builders.golden import assert_matches_golden


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def _pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = _by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    return spec


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _pod_spec(objects)["containers"][0]
    return container


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in _container(objects)["env"]}


def test_canary_track_of_the_full_example_matches_golden() -> None:
    objects = build_track(OWNER, spec_of(gateway_raw()), track_plan("canary", version="8", min_replicas=1))
    assert_matches_golden("serving-canary-gateway", objects)


def test_fixed_replicas_track_matches_golden() -> None:
    assert_matches_golden("serving-stable-ingress", build_track(OWNER, spec_of(ingress_raw()), track_plan(replicas=3)))


def test_every_object_is_owned_namespaced_and_labelled_with_track_and_version() -> None:
    for obj in build_track(OWNER, spec_of(gateway_raw()), track_plan("canary", version="8")):
        meta = obj["metadata"]
        assert meta["name"] == "fraud-canary"
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [OWNER.reference()]
        assert meta["labels"]["modelpilot.io/track"] == "canary"
        assert meta["labels"]["modelpilot.io/version"] == "8"


def test_objects_come_in_apply_order_and_match_the_deletion_keys() -> None:
    objects = build_track(OWNER, spec_of(gateway_raw()), track_plan())
    kinds = [obj["kind"] for obj in objects]
    assert kinds == [
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    built = {(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert built == set(track_object_keys("fraud", "stable"))
    assert track_object_keys("fraud", "stable")[0][1] == "HorizontalPodAutoscaler"


def test_replicas_are_omitted_when_the_hpa_owns_them() -> None:
    objects = build_track(OWNER, spec_of(gateway_raw()), track_plan(replicas=5))
    assert "replicas" not in _by_kind(objects)["Deployment"]["spec"]
    hpa = _by_kind(objects)["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-stable"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)


def test_without_autoscaling_the_deployment_has_replicas_and_there_is_no_hpa() -> None:
    spec = spec_of(ingress_raw())
    objects = build_track(OWNER, spec, track_plan(replicas=3))
    assert _by_kind(objects)["Deployment"]["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in _by_kind(objects)
    assert unbuilt_track_keys("fraud", spec, "stable") == [
        ("autoscaling/v2", "HorizontalPodAutoscaler", "fraud-stable")
    ]
    assert unbuilt_track_keys("fraud", spec_of(gateway_raw()), "stable") == []


def test_canary_hpa_minimum_comes_from_the_plan_and_stays_within_bounds() -> None:
    spec = spec_of(gateway_raw())
    hpa = _by_kind(build_track(OWNER, spec, track_plan("canary", min_replicas=1)))["HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 1
    zero = _by_kind(build_track(OWNER, spec, track_plan("canary", min_replicas=0)))["HorizontalPodAutoscaler"]
    assert zero["spec"]["minReplicas"] == 1
    big = _by_kind(build_track(OWNER, spec, track_plan("canary", min_replicas=50)))["HorizontalPodAutoscaler"]
    assert big["spec"]["minReplicas"] <= big["spec"]["maxReplicas"]


def test_hpa_scales_on_cpu_and_the_optional_pods_metric() -> None:
    metrics = _by_kind(build_track(OWNER, spec_of(gateway_raw()), track_plan()))["HorizontalPodAutoscaler"]["spec"][
        "metrics"
    ]
    assert metrics[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert metrics[1]["pods"] == {
        "metric": {"name": "model_requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "50"},
    }


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    objects = build_track(OWNER, spec_of(replicas_raw()), track_plan())
    pod = _pod_spec(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = _container(objects)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in _container(objects)["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    account = _by_kind(objects)["ServiceAccount"]
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_rolling_update_never_drops_below_the_ready_count() -> None:
    strategy = _by_kind(build_track(OWNER, spec_of(replicas_raw()), track_plan()))["Deployment"]["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_pod_template_carries_the_version_but_the_selector_does_not() -> None:
    deployment = _by_kind(build_track(OWNER, spec_of(replicas_raw()), track_plan(version="42")))["Deployment"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert template_labels["modelpilot.io/version"] == "42"
    match = deployment["spec"]["selector"]["matchLabels"]
    assert "modelpilot.io/version" not in match
    assert match.items() <= template_labels.items()


def test_env_names_the_model_version_and_track_and_keeps_fixed_values_fixed() -> None:
    raw = gateway_raw()
    raw["serving"]["env"] = [
        {"name": "MODELPILOT_MODEL_VERSION", "value": "999"},
        {"name": "DO_NOT_TRACK", "value": "false"},
        {"name": "EXTRA", "value": "1"},
    ]
    objects = build_track(OWNER, spec_of(raw), track_plan("canary", version="8"))
    env = _env(objects)
    assert env["MODELPILOT_MODEL_URI"] == "models:/fraud-detector/8"
    assert env["MODELPILOT_MODEL_VERSION"] == "8"
    assert env["MODELPILOT_TRACK"] == "canary"
    assert env["MODELPILOT_PORT"] == "8080"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow:5000"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["DO_NOT_TRACK"] == "false"
    assert env["EXTRA"] == "1"
    names = [var["name"] for var in _container(objects)["env"]]
    assert len(names) == len(set(names)), "server-side apply rejects duplicate env names"


def test_credentials_come_from_the_secret_only_when_one_is_named() -> None:
    with_secret = _container(build_track(OWNER, spec_of(gateway_raw()), track_plan()))
    assert with_secret["envFrom"] == [{"secretRef": {"name": "mlflow-auth"}}]
    assert "envFrom" not in _container(build_track(OWNER, spec_of(replicas_raw()), track_plan()))


def test_probes_gate_readiness_on_the_model_and_allow_a_slow_start() -> None:
    container = _container(build_track(OWNER, spec_of(replicas_raw()), track_plan()))
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_liveness_outlasts_the_longest_parse_of_one_body() -> None:
    """Parsing a maximal JSON body can hold the interpreter for about a second; /healthz waits for it."""
    container = _container(build_track(OWNER, spec_of(replicas_raw()), track_plan()))
    assert container["livenessProbe"]["timeoutSeconds"] >= 2
    assert container["startupProbe"]["timeoutSeconds"] >= 2


def test_gpu_limits_pass_through_and_bring_the_gpu_toleration() -> None:
    objects = build_track(OWNER, spec_of(gateway_raw()), track_plan())
    assert _container(objects)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in _pod_spec(objects)["tolerations"]
    assert _pod_spec(objects)["nodeSelector"] == {"node.kubernetes.io/instance-type": "g5.xlarge"}
    assert "tolerations" not in _pod_spec(build_track(OWNER, spec_of(replicas_raw()), track_plan()))


def test_prometheus_scrapes_the_metrics_port_which_the_service_does_not_carry() -> None:
    raw = replicas_raw()
    raw["serving"]["port"] = 9100
    raw["serving"]["env"] = [{"name": "MODELPILOT_METRICS_PORT", "value": "0"}]
    objects = build_track(OWNER, spec_of(raw), track_plan())
    annotations = _by_kind(objects)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert _container(objects)["ports"] == [
        {"name": "http", "containerPort": 9100, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert _env(objects)["MODELPILOT_METRICS_PORT"] == "9090"  # the pod's port and the server's agree
    assert _env(objects)["MODELPILOT_GRPC_PORT"] == "8081"
    assert _by_kind(objects)["Service"]["spec"]["ports"] == [  # Open Inference Protocol gRPC beside HTTP
        {"name": "http", "port": 9100, "targetPort": "http", "protocol": "TCP"},
        {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
    ]


def test_bulk_uploads_spool_to_a_size_limited_volume_and_tmp_stays_for_the_model() -> None:
    raw = replicas_raw()
    raw["serving"]["env"] = [{"name": "MODELPILOT_SPOOL_DIR", "value": "/"}]
    objects = build_track(OWNER, spec_of(raw), track_plan())
    assert _env(objects)["MODELPILOT_SPOOL_DIR"] == "/var/spool/modelpilot"
    mounts = {mount["mountPath"]: mount["name"] for mount in _container(objects)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in _pod_spec(objects)["volumes"]}
    assert volumes[mounts["/var/spool/modelpilot"]]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}  # model files of any size are downloaded there
    assert _container(objects)["securityContext"]["readOnlyRootFilesystem"] is True


def test_trusted_proxies_of_the_plan_reach_the_server_and_the_spec_may_override_them() -> None:
    raw = gateway_raw()
    assert "MODELPILOT_TRUSTED_PROXIES" not in _env(build_track(OWNER, spec_of(raw), track_plan()))
    plan = track_plan(trusted_proxies="10.0.0.0/8")
    assert _env(build_track(OWNER, spec_of(raw), plan))["MODELPILOT_TRUSTED_PROXIES"] == "10.0.0.0/8"
    raw["serving"]["env"] = [{"name": "MODELPILOT_TRUSTED_PROXIES", "value": "10.1.0.0/16"}]
    assert _env(build_track(OWNER, spec_of(raw), plan))["MODELPILOT_TRUSTED_PROXIES"] == "10.1.0.0/16"


@pytest.mark.parametrize(
    ("tracking_uri", "registry_port"),
    [("http://mlflow.mlflow:5000", 5000), ("https://mlflow.example.com", 443), ("http://mlflow", 80)],
)
def test_network_policy_admits_predictions_from_anywhere_metrics_from_pods_and_lets_out_dns_registry_and_artifacts(
    tracking_uri: str, registry_port: int
) -> None:
    raw = replicas_raw()
    raw["registry"]["trackingUri"] = tracking_uri
    policy = _by_kind(build_track(OWNER, spec_of(raw), track_plan()))["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 8081}]},
        {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 9090}]},
    ]
    egress_ports = {(port["protocol"], port["port"]) for rule in policy["egress"] for port in rule["ports"]}
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", registry_port), ("TCP", 443), ("TCP", 80)}


def test_the_prediction_log_dsn_comes_from_its_secret_and_its_port_is_let_out() -> None:
    raw = replicas_raw()
    raw["serving"]["env"] = [{"name": "MODELPILOT_PREDLOG_DSN", "value": "postgresql://plain@db/x"}]
    secret = SecretKeyRef(name="predlog", key="dsn")
    plan = replace(track_plan(), prediction_log=PredictionLogPlan(secret=secret, port=6432))
    objects = build_track(OWNER, spec_of(raw), plan)
    dsn = [var for var in _container(objects)["env"] if var["name"] == "MODELPILOT_PREDLOG_DSN"]
    assert dsn == [{"name": "MODELPILOT_PREDLOG_DSN", "valueFrom": {"secretKeyRef": {"name": "predlog", "key": "dsn"}}}]
    policy = _by_kind(objects)["NetworkPolicy"]["spec"]
    assert ("TCP", 6432) in {(port["protocol"], port["port"]) for rule in policy["egress"] for port in rule["ports"]}
    without = build_track(OWNER, spec_of(raw), track_plan())
    assert _env(without)["MODELPILOT_PREDLOG_DSN"] == "postgresql://plain@db/x"  # the spec's own, as before


def test_disruption_budget_allows_one_pod_down_at_a_time() -> None:
    budget = _by_kind(build_track(OWNER, spec_of(replicas_raw()), track_plan()))["PodDisruptionBudget"]["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget


@pytest.mark.parametrize("raw", [gateway_raw, ingress_raw, replicas_raw])
def test_pickle_deserialization_is_off_unless_the_spec_opts_in(raw: Any) -> None:
    assert _env(build_track(OWNER, spec_of(raw()), track_plan()))["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    opted_in = raw()
    opted_in["serving"]["allowPickleDeserialization"] = True
    assert _env(build_track(OWNER, spec_of(opted_in), track_plan()))["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "true"


def test_spec_env_cannot_turn_pickle_deserialization_on() -> None:
    raw = replicas_raw()
    raw["serving"]["env"] = [{"name": "MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "value": "true"}]
    env = _container(build_track(OWNER, spec_of(raw), track_plan()))["env"]
    assert [var for var in env if var["name"] == "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == [
        {"name": "MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "value": "false"}
    ]


def test_without_auth_no_secret_is_mounted_and_no_auth_setting_is_set() -> None:
    objects = build_track(OWNER, spec_of(replicas_raw()), track_plan())
    assert not any(name.startswith(("MODELPILOT_API_KEYS", "MODELPILOT_JWT")) for name in _env(objects))
    assert [volume["name"] for volume in _pod_spec(objects)["volumes"]] == ["tmp", "spool"]


def test_auth_mounts_each_secret_key_read_only_and_points_the_server_at_the_files() -> None:
    raw = replicas_raw()
    raw["serving"]["auth"] = {
        "apiKeys": {"name": "clients", "key": "api-keys"},
        "jwtSecret": {"name": "signing", "key": "hs256"},
        "jwtAudience": "fraud-api",
        "jwtIssuer": "https://id.example.com",
    }
    objects = build_track(OWNER, spec_of(raw), track_plan())
    env = _env(objects)
    assert env["MODELPILOT_API_KEYS_FILE"] == "/etc/modelpilot/auth/auth-api-keys/value"
    assert env["MODELPILOT_JWT_SECRET_FILE"] == "/etc/modelpilot/auth/auth-jwt-secret/value"
    assert env["MODELPILOT_JWT_AUDIENCE"] == "fraud-api"
    assert env["MODELPILOT_JWT_ISSUER"] == "https://id.example.com"
    assert env["MODELPILOT_JWT_ALLOW_NO_EXP"] == "false"
    volumes = {volume["name"]: volume for volume in _pod_spec(objects)["volumes"]}
    assert volumes["auth-api-keys"]["secret"] == {
        "secretName": "clients",
        "items": [{"key": "api-keys", "path": "value"}],
        "defaultMode": 0o440,
    }
    assert volumes["auth-jwt-secret"]["secret"]["secretName"] == "signing"
    mounts = {mount["name"]: mount for mount in _container(objects)["volumeMounts"]}
    assert mounts["auth-api-keys"] == {
        "name": "auth-api-keys",
        "mountPath": "/etc/modelpilot/auth/auth-api-keys",
        "readOnly": True,
    }
    assert mounts["auth-jwt-secret"]["readOnly"] is True
    # No key or secret itself reaches the pod spec.
    assert not any(name in {"MODELPILOT_API_KEYS", "MODELPILOT_JWT_SECRET"} for name in env)


def test_auth_with_api_keys_only_sets_no_jwt_settings() -> None:
    objects = build_track(OWNER, spec_of(gateway_raw()), track_plan())
    env = _env(objects)
    assert env["MODELPILOT_API_KEYS_FILE"] == "/etc/modelpilot/auth/auth-api-keys/value"
    assert not any(name.startswith("MODELPILOT_JWT") for name in env)
    assert "auth-jwt-secret" not in {volume["name"] for volume in _pod_spec(objects)["volumes"]}


def test_spec_env_cannot_point_the_server_at_another_key_file() -> None:
    raw = gateway_raw()
    raw["serving"]["env"] = [{"name": "MODELPILOT_API_KEYS_FILE", "value": "/tmp/keys"}]
    assert _env(build_track(OWNER, spec_of(raw), track_plan()))["MODELPILOT_API_KEYS_FILE"] == (
        "/etc/modelpilot/auth/auth-api-keys/value"
    )


ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
INFERENCE_ROLE = "arn:aws:iam::111122223333:role/modelpilot-inference"


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_service_account_annotations_reach_each_tracks_account_and_its_pods_use_it(track: Any) -> None:
    raw = gateway_raw()
    raw["serving"]["serviceAccount"] = {"annotations": {ROLE_ANNOTATION: INFERENCE_ROLE}}
    objects = build_track(OWNER, spec_of(raw), track_plan(track))
    account = _by_kind(objects)["ServiceAccount"]
    assert account["metadata"]["name"] == f"fraud-{track}"
    assert account["metadata"]["annotations"] == {ROLE_ANNOTATION: INFERENCE_ROLE}
    assert _pod_spec(objects)["serviceAccountName"] == f"fraud-{track}"
    # The role's token is projected by EKS; the Kubernetes API token is still never mounted.
    assert account["automountServiceAccountToken"] is False
    assert _pod_spec(objects)["automountServiceAccountToken"] is False


def test_service_account_without_annotations_has_none() -> None:
    account = _by_kind(build_track(OWNER, spec_of(gateway_raw()), track_plan()))["ServiceAccount"]
    assert "annotations" not in account["metadata"]
