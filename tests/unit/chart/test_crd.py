"""The chart ships the CRDs: the ModelDeployment one exactly as generated, and Kopf's peering ones."""

from __future__ import annotations

import yaml

from modelpilot.operator.crd import render_crd
from tests.unit.chart.conftest import CHART

CRDS = CHART / "crds"


def test_modeldeployment_crd_equals_the_generated_one() -> None:
    shipped = (CRDS / "modeldeployments.modelpilot.io.yaml").read_text()
    assert shipped == render_crd(), "the chart's CRD is stale: run hack/generate-crd"


def test_kopf_peering_crds_have_both_scopes() -> None:
    documents = list(yaml.safe_load_all((CRDS / "kopf-peerings.yaml").read_text()))
    scopes = {doc["spec"]["names"]["kind"]: (doc["metadata"]["name"], doc["spec"]["scope"]) for doc in documents}
    assert scopes == {
        "ClusterKopfPeering": ("clusterkopfpeerings.kopf.dev", "Cluster"),
        "KopfPeering": ("kopfpeerings.kopf.dev", "Namespaced"),
    }
    for doc in documents:
        [version] = doc["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        # Kopf writes each replica's priority and lifetime under status.
        assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_only_crds_live_in_the_crds_folder() -> None:
    for path in CRDS.iterdir():
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "CustomResourceDefinition", path
