"""The embedded default: train → register → serve → canary → promote, all on this machine.

Pods are simulated by kwok, so the lab (tests/support/lab) runs the real inference servers on
loopback for the stable and canary tracks, splits real traffic by the HTTPRoute weights the operator
writes, and lets a real Prometheus scrape them. Everything it starts stops when it ends; the control
plane keeps running for the next run (`hack/cluster down` stops it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlflow import MlflowClient  # noqa: E402

from modelpilot.operator.crd import build_crd  # noqa: E402
from modelpilot.operator.spec import GROUP, VERSION  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    SIMULATED_NODES_ANNOTATIONS,
    apply_manifest,
    delete_namespace,
    get_object,
    start_cluster,
    wait_for_condition,
    wait_until,
)
from tests.support.lab import LabSettings, install_gateway_api_crds, running_lab  # noqa: E402
from tests.support.mlflow_server import mlflow_server  # noqa: E402
from tests.support.operator_process import operator_process  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

MODEL = "fraud-detector"
NAME = "fraud-detector"
NAMESPACE = "modelpilot-demo"
STATE = Path(os.environ.get("MODELPILOT_CACHE", Path.home() / ".cache" / "modelpilot")) / "demo"


def say(message: str) -> None:
    """One line of progress."""
    print(f"\033[1m[demo {time.strftime('%H:%M:%S')}]\033[0m {message}", flush=True)


def train(tracking_uri: str, epochs: int, seed: int) -> dict[str, Any]:
    """Run the training entrypoint (CPU, generated data) and return its JSON report."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "modelpilot-train"),
            "--model-name",
            MODEL,
            "--epochs",
            str(epochs),
            "--seed",
            str(seed),
            "--champion-alias",
            "champion",
            "--candidate-alias",
            "challenger",
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    for line in result.stderr.splitlines()[-6:]:
        print(f"    {line}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def model_deployment(tracking_uri: str, prometheus_url: str) -> dict[str, Any]:
    """The demo's ModelDeployment: gateway router, a three-step canary analysed every few seconds."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": tracking_uri, "pollInterval": "2s"},
            "serving": {
                "image": "ghcr.io/modelpilot/inference:0.1.0",
                "replicas": 2,
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
            },
            "traffic": {
                "router": "gateway",
                "gateway": {"parentRefs": [{"name": "public"}], "hostnames": ["fraud.example.com"]},
            },
            "rollout": {
                "steps": [20, 50, 100],
                "interval": "5s",
                "analysis": {
                    "prometheus": prometheus_url,
                    "window": "10s",
                    "minRequests": 10,
                    "maxErrorRate": 0.02,
                    "maxP99Latency": "500ms",
                    "failureLimit": 2,
                },
            },
        },
    }


def status_of(api_client: Any) -> dict[str, Any]:
    """The ModelDeployment's status."""
    found = get_object(api_client, f"{GROUP}/{VERSION}", "ModelDeployment", NAME, NAMESPACE) or {}
    status: dict[str, Any] = found.get("status") or {}
    return status


def wait_status(api_client: Any, check: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> dict[str, Any]:
    """Wait for the status to satisfy `check`, printing phase changes on the way."""
    seen: list[str] = []

    def reached() -> dict[str, Any] | None:
        status = status_of(api_client)
        canary = status.get("canary") or {}
        line = f"phase={status.get('phase')} stable={(status.get('stable') or {}).get('version')} " + (
            f"canary={canary.get('version')} state={canary.get('state')} weight={canary.get('weight')}"
        )
        if not seen or seen[-1] != line:
            seen.append(line)
            say(f"  {line}")
        return status if check(status) else None

    return wait_until(reached, timeout=timeout, description=what, interval=0.5)


def main() -> None:
    """Run the whole story once."""
    STATE.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        say("control plane (hack/cluster up)")
        cluster = start_cluster()
        api = cluster.api_client
        crd = build_crd()
        apply_manifest(api, crd)
        wait_for_condition(
            api, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"], condition="Established"
        )
        install_gateway_api_crds(api)
        delete_namespace(api, NAMESPACE)
        wait_until(
            lambda: get_object(api, "v1", "Namespace", NAMESPACE) is None, timeout=120, description="old demo gone"
        )
        apply_manifest(
            api,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "annotations": SIMULATED_NODES_ANNOTATIONS},
            },
        )

        say("MLflow tracking server on loopback")
        server = stack.enter_context(mlflow_server(STATE / f"mlflow-{int(time.time())}", free_port()))
        registry = MlflowClient(tracking_uri=server.url, registry_uri=server.url)

        say("training version 1 (CPU, generated flow data)")
        first = train(server.url, epochs=8, seed=1)
        say(f"  registered version {first['version']}, gate {first['gate']}")

        lab = stack.enter_context(
            running_lab(
                LabSettings(
                    kubeconfig=cluster.kubeconfig,
                    namespace=NAMESPACE,
                    resource=NAME,
                    mlflow_url=server.url,
                    root=STATE / "lab",
                )
            )
        )
        lab.start_prometheus()
        say(f"lab: traffic splitter {lab.url}, Prometheus {lab.prometheus_url}")
        stack.enter_context(operator_process(cluster.kubeconfig, NAMESPACE, STATE / "operator.log"))
        say("operator running; applying the ModelDeployment")
        apply_manifest(api, model_deployment(server.url, lab.prometheus_url), namespace=NAMESPACE)
        wait_status(
            api, lambda s: s.get("phase") == "Ready" and (s.get("stable") or {}).get("version") == first["version"],
            "version 1 serving", timeout=300,
        )  # fmt: skip
        lab.wait_serving("stable", first["version"])
        load = lab.start_load(rate=40, seconds=600)

        say("training version 2 (more epochs); the gate compares it with the champion")
        second = train(server.url, epochs=20, seed=2)
        say(f"  registered version {second['version']}, gate {second['gate']}")
        if second["gate"] != "passed":
            raise SystemExit("version 2 did not pass the quality gate; nothing to roll out")
        final = wait_status(
            api,
            lambda s: (
                (s.get("stable") or {}).get("version") == second["version"]
                and (s.get("canary") or {}).get("state") == "Succeeded"
                and s.get("phase") == "Ready"
            ),
            "version 2 promoted",
            timeout=600,
        )
        report = load.stop()
        champion = registry.get_registered_model(MODEL).aliases.get("champion")
        say(f"done: MLflow champion → version {champion}; stable track serves {final['stable']['version']}")
        say(f"  requests sent through the splitter: {sum(report.backends.values())}, by backend {report.backends}")
        for entry in final.get("history", [])[-12:]:
            say(f"  {entry['time']} {entry['event']}: {entry.get('message', '')}")
        print(cluster.run_kubectl("get", "mdep", "-n", NAMESPACE).stdout)


if __name__ == "__main__":
    main()
