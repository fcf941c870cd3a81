"""The whole path on real pods: the operator (a pod from its image, installed by the chart) trains a model in
a training Job pod, serves it from inference pods that turn Ready once the model is loaded, answers through
the Service, rolls a second version out with the `replicas` router while the acting operator pod is killed,
and reports serving pods that cannot start.

The tests of this module build on each other in file order (one model, one ModelDeployment).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from modelpilot.operator.spec import GROUP, VERSION
from tests.e2e.deployments import (
    MLFLOW,
    PROMETHEUS,
    SMALL_RESOURCES,
    condition_of,
    infer_body,
    is_served,
    registry,
    status_of,
    training,
)
from tests.e2e.pods import (
    INFERENCE_IMAGE,
    RELEASE_NAMESPACE,
    TRAIN_IMAGE,
    LoadPod,
    Toolbox,
    kill_acting_operator,
    operator_pods,
)
from tests.support.cluster import Cluster, get_object, list_objects
from tests.support.namespace_objects import Resources

NAME = "fraud"
MODEL = f"e2e-fraud-{secrets.token_hex(3)}"


def model_deployment(name: str = NAME, *, image: str = INFERENCE_IMAGE, env: list[Any] | None = None) -> dict[str, Any]:
    """Train when the model has no version; serve two replicas; roll candidates out 50 → 100 by replica ratio."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": MLFLOW, "pollInterval": "5s"},
            "serving": {"image": image, "replicas": 2, "resources": SMALL_RESOURCES, "env": env or []},
            "traffic": {"router": "replicas"},
            "rollout": {
                "steps": [50, 100],
                "interval": "30s",
                "canaryReadyTimeout": "5m",
                "analysis": {"prometheus": PROMETHEUS, "minRequests": 5, "window": "1m", "maxP99Latency": "2s"},
            },
            "training": training(),
        },
    }


@pytest.fixture(scope="module")
def served(objects: Resources) -> dict[str, Any]:
    """The ModelDeployment applied and Ready with the version its own training Job registered."""
    objects.apply(model_deployment())
    return objects.wait_mdep(
        NAME,
        is_served,
        "first version trained, registered and served",
        timeout=900,
        interval=2,
    )


def _real_node(cluster: Cluster, pod: dict[str, Any]) -> bool:
    node = get_object(cluster.api_client, "v1", "Node", pod["spec"]["nodeName"])
    assert node is not None
    return bool(node["metadata"].get("labels", {}).get("type") != "kwok")


def _infer_body(toolbox: Toolbox, service: str) -> dict[str, Any]:
    """An OIP v2 request of two rows shaped after the served model's own metadata."""
    status, metadata = toolbox.get(f"{service}/v2/models/{MODEL}")
    assert status == 200, metadata
    return infer_body(metadata)


def test_the_operator_runs_from_its_image_in_a_restricted_namespace(e2e_cluster: Cluster) -> None:
    namespace = get_object(e2e_cluster.api_client, "v1", "Namespace", RELEASE_NAMESPACE)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = list_objects(e2e_cluster.api_client, "v1", "Pod", RELEASE_NAMESPACE, "app.kubernetes.io/component=operator")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["containers"][0]["image"].startswith("modelpilot-operator:")
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        assert _real_node(e2e_cluster, pod)


def test_the_first_version_is_trained_in_a_real_training_pod(
    e2e_cluster: Cluster, objects: Resources, served: dict[str, Any]
) -> None:
    run = status_of(served)["training"]
    assert run["result"] == "Succeeded", run
    jobs = objects.list_of("batch/v1", "Job", f"modelpilot.io/deployment={NAME}")
    assert [job["metadata"]["name"] for job in jobs] == [run["job"]]
    assert jobs[0]["status"].get("succeeded") == 1
    pods = objects.list_of("v1", "Pod", f"job-name={run['job']}")
    assert pods, "the training pod is kept for its logs"
    assert all(_real_node(e2e_cluster, pod) for pod in pods)
    assert pods[0]["spec"]["containers"][0]["image"] == TRAIN_IMAGE


def test_inference_pods_are_real_and_ready_only_through_the_model_readiness_probe(
    e2e_cluster: Cluster, objects: Resources, served: dict[str, Any], toolbox: Toolbox
) -> None:
    version = status_of(served)["stable"]["version"]
    pods = objects.list_of("v1", "Pod", f"modelpilot.io/deployment={NAME},modelpilot.io/track=stable")
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])]
    assert len(ready) == 2
    for pod in ready:
        assert _real_node(e2e_cluster, pod)
        container = pod["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["metadata"]["labels"]["modelpilot.io/version"] == version
        status, body = toolbox.get(f"http://{pod['status']['podIP']}:8080/v1/models/{MODEL}")
        assert status == 200
        assert (body["version"], body["state"]) == (version, "ready")


def test_a_request_through_the_service_is_answered_by_the_served_version(
    served: dict[str, Any], toolbox: Toolbox
) -> None:
    service = f"http://{NAME}-stable:8080"
    status, answer = toolbox.post(f"{service}/v2/models/{MODEL}/infer", _infer_body(toolbox, service))
    assert status == 200, answer
    assert answer["model_version"] == status_of(served)["stable"]["version"]
    output = answer["outputs"][0]
    assert output["shape"][0] == 2
    assert len(output["data"]) == output["shape"][0] * (output["shape"][1] if len(output["shape"]) > 1 else 1)


def test_a_second_version_rolls_out_by_replica_ratio_and_survives_the_operator_pod_being_killed(
    e2e_cluster: Cluster, objects: Resources, served: dict[str, Any], toolbox: Toolbox
) -> None:
    first = status_of(served)["stable"]["version"]
    service = f"http://{NAME}:8080"
    load = LoadPod(e2e_cluster, objects.namespace, "load")
    load.start(f"{service}/v2/models/{MODEL}/infer", _infer_body(toolbox, service), rate=5, seconds=600)
    # The second version: registered from the first one's files and named challenger, as a pipeline does
    # (the cluster tests cover the retrain annotation; the first version here came from a training pod).
    models = registry(toolbox, MODEL)
    second = models.register_copy(first)
    models.set_alias("challenger", second)

    objects.wait_mdep(
        NAME,
        lambda m: (
            (status_of(m).get("canary") or {}).get("weight") == 50
            and (status_of(m).get("canary") or {}).get("version") == second
        ),
        "second version at the 50 % step",
        timeout=600,
        interval=2,
    )
    tracks = {
        track: objects.list_of("v1", "Pod", f"modelpilot.io/deployment={NAME},modelpilot.io/track={track}")
        for track in ("stable", "canary")
    }
    assert all(_real_node(e2e_cluster, pod) for pods in tracks.values() for pod in pods)

    killed = kill_acting_operator(e2e_cluster)
    final = objects.wait_mdep(
        NAME,
        lambda m: status_of(m).get("stable", {}).get("version") == second and condition_of(m, "Ready") == "True",
        "second version promoted after the operator pod was killed",
        timeout=600,
        interval=2,
    )
    counts = load.stop()
    assert killed not in {p["metadata"]["uid"] for p in operator_pods(e2e_cluster)}
    assert (final["status"].get("canary") or {}).get("state") in (None, "Succeeded")
    status, alias = toolbox.get(f"{MLFLOW}/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion")
    assert status == 200
    assert alias["model_version"]["version"] == second
    assert int(counts.get("200", 0)) > 0, counts
    assert not [code for code in counts if code.startswith("5") or code == "0"], counts


@pytest.mark.parametrize(
    ("name", "image", "env", "reasons"),
    [
        ("missing-image", "modelpilot-inference:no-such-tag", [], {"ErrImagePull", "ImagePullBackOff"}),
        (
            "crashing",
            INFERENCE_IMAGE,
            [{"name": "MODELPILOT_MAX_BATCH_SIZE", "value": "not-a-number"}],
            {"CrashLoopBackOff", "RunContainerError", "Crashed"},
        ),
    ],
)
def test_serving_pods_that_cannot_start_show_as_degraded_with_one_event(
    objects: Resources, served: dict[str, Any], name: str, image: str, env: list[Any], reasons: set[str]
) -> None:
    manifest = model_deployment(name, image=image, env=env)
    del manifest["spec"]["training"], manifest["spec"]["rollout"]
    manifest["spec"]["model"] = {"name": MODEL, "alias": "champion"}
    objects.apply(manifest)
    degraded = objects.wait_mdep(
        name, lambda m: condition_of(m, "Degraded") == "True", "Degraded from the pods", timeout=180, interval=2
    )
    condition = next(c for c in degraded["status"]["conditions"] if c["type"] == "Degraded")
    assert condition["reason"] == "PodsFailing"
    assert any(reason in condition["message"] for reason in reasons), condition["message"]
    deployment = objects.deployment(f"{name}-stable")
    assert deployment is not None
    available = next(c for c in deployment["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "False"
    # The kubelet keeps retrying (and changing its reason within one meaning); the Event is not repeated.
    time.sleep(20)
    events = [e for e in objects.events(name) if e.get("reason") == "PodsFailing"]
    assert len(events) == 1, events
    objects.delete_mdep(name)


def test_the_chart_operator_may_not_read_secrets_it_was_not_granted(objects: Resources) -> None:
    """Serving the whole cluster, the chart grants Secret reads only in `rbac.secretNamespaces` (none here):
    a ModelDeployment naming Secrets for the operator shows the refusal, and the operator keeps going."""
    token = {"MLFLOW_TRACKING_TOKEN": "x" * 32}
    objects.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlflow-auth"}, "stringData": token})
    manifest = model_deployment("no-secrets")
    del manifest["spec"]["training"], manifest["spec"]["rollout"]
    manifest["spec"]["registry"]["credentialsSecret"] = "mlflow-auth"
    objects.apply(manifest)
    refused = objects.wait_mdep(
        "no-secrets",
        lambda m: any(c.get("reason") == "CredentialsSecretForbidden" for c in status_of(m).get("conditions", [])),
        "the registry credentials refused",
        timeout=60,
        interval=1,
    )
    message = next(c["message"] for c in refused["status"]["conditions"] if c["type"] == "RegistryReachable")
    assert "rbac.secretNamespaces" in message
    assert objects.deployment("no-secrets-stable") is None
    objects.delete_mdep("no-secrets")
