"""The API server itself accepts the examples and rejects invalid ModelDeployments with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.support.cluster import Cluster
from tests.support.crd_cases import INVALID_CASES, InvalidCase, valid_spec

EXAMPLES = sorted((Path(__file__).parents[3] / "k8s" / "examples").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("modelpilot_crd")


@pytest.fixture(autouse=True)
def this_crd(cluster: Cluster) -> None:
    """This tree's CRD, applied again before each test: the API server is shared by checkouts whose CRDs
    differ, and another one may have applied its own since the session's `modelpilot_crd`."""
    from tests.support.cluster import install_this_crd

    install_this_crd(cluster.api_client)


def _create(api_client: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec}
    created = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
    )
    assert isinstance(created, dict)
    return created


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_accepted(cluster: Cluster, namespace: str, path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "ModelDeployment"]
    assert documents, f"{path} holds no ModelDeployment"
    for document in documents:
        created = _create(cluster.api_client, namespace, document["metadata"]["name"], document["spec"])
        assert created["spec"]["model"]["name"] == document["spec"]["model"]["name"]


def test_defaults_are_filled_in_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    spec = valid_spec()
    del spec["registry"]["pollInterval"]
    created = _create(cluster.api_client, namespace, "defaults", spec)
    assert created["spec"]["registry"]["pollInterval"] == "30s"


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.name)
def test_invalid_resource_is_rejected_by_the_api_server(cluster: Cluster, namespace: str, case: InvalidCase) -> None:
    with pytest.raises(client.ApiException) as raised:
        _create(cluster.api_client, namespace, "invalid", case.spec())
    assert raised.value.status == 422
    assert case.message.lower() in str(raised.value.body).lower()


def test_a_grpc_route_on_a_listener_of_its_own_is_accepted_and_kept(cluster: Cluster, namespace: str) -> None:
    spec = valid_spec()
    grpc = {"parentRefs": [{"name": "public", "sectionName": "grpc"}], "hostnames": ["grpc.m.example.com"]}
    spec["traffic"]["gateway"]["grpc"] = grpc
    created = _create(cluster.api_client, namespace, "grpc", spec)
    # Kept, not pruned: the CRD knows the field.
    assert created["spec"]["traffic"]["gateway"]["grpc"] == grpc


def test_kubectl_shows_the_printer_columns(cluster: Cluster, namespace: str) -> None:
    manifest = yaml.safe_dump(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": "cols"},
            "spec": valid_spec(),
        }
    )
    cluster.run_kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest)
    header = cluster.run_kubectl("get", "mdep", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    explained = cluster.run_kubectl("explain", "modeldeployment.spec.rollout.steps").stdout
    assert "ascending" in explained


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("9lives", "DNS-1035 label"),
        ("fraud.v2", "DNS-1035 label"),
        ("a" * 57, "at most 56 characters"),
        ("fraud-stable", "must not end in -stable or -canary"),
        ("fraud-canary", "must not end in -stable or -canary"),
    ],
)
def test_names_whose_services_cannot_exist_or_would_collide_are_rejected(
    cluster: Cluster, namespace: str, name: str, message: str
) -> None:
    with pytest.raises(client.ApiException) as raised:
        _create(cluster.api_client, namespace, name, valid_spec())
    assert raised.value.status == 422
    assert message in str(raised.value.body)


def test_the_longest_name_is_accepted(cluster: Cluster, namespace: str) -> None:
    created = _create(cluster.api_client, namespace, "m" * 56, valid_spec())
    assert created["metadata"]["name"] == "m" * 56
