"""A local lab for progressive delivery: real inference servers, a traffic splitter, load and Prometheus
beside a kwok cluster, driven by what the operator writes (Deployments and the HTTPRoute).

- `lab.running_lab(LabSettings(...))`: the whole lab for one ModelDeployment (see `lab.py`);
- `model.log_classifier` / `model.register_versions`: a real torch model in MLflow, as versions;
- `model.train_flow_classifier` / `log_flow_classifier` / `labelled_flows`: versions that differ in quality,
  and traffic with its ground truth (`load.LabelledTraffic` sends it and posts the labels later);
- `install_gateway_api_crds` (from `tests/support/gateway_api.py`): the HTTPRoute CRD the gateway router needs;
- `pool.WarmServerPool`: pre-imported server processes, shared between labs to save start-up time.

Usable outside pytest (e.g. by a demo script): nothing here depends on fixtures.
"""

from tests.support.gateway_api import install_gateway_api_crds
from tests.support.lab.lab import Lab, LabSettings, LoadRun, running_lab
from tests.support.lab.load import LabelledTraffic
from tests.support.lab.model import (
    LabelledFlows,
    LoggedClassifier,
    invocation_body,
    labelled_flows,
    log_classifier,
    log_flow_classifier,
    register_versions,
    train_flow_classifier,
)
from tests.support.lab.pool import WarmServerPool
from tests.support.lab.splitter import SplitObservation

__all__ = [
    "Lab",
    "LabSettings",
    "LabelledFlows",
    "LabelledTraffic",
    "LoadRun",
    "LoggedClassifier",
    "SplitObservation",
    "WarmServerPool",
    "install_gateway_api_crds",
    "invocation_body",
    "labelled_flows",
    "log_classifier",
    "log_flow_classifier",
    "register_versions",
    "running_lab",
    "train_flow_classifier",
]
