"""The main job on the embedded default, on real pods: train → gate → serve → canary → promote, then a bad
version rolled back — every part as a user runs it.

`hack/demo` has brought up the local cluster with its real node, built and loaded the three images and
installed the chart (operator and bundled MLflow), Prometheus and Traefik (`hack/e2e images`, `hack/e2e
install`). This script tells the story in a namespace enforcing the restricted Pod Security Standard:

1. a ModelDeployment whose model has no version: the operator's training Job (a pod of the train image)
   trains version 1, the quality gate passes it, inference pods serve it behind the Gateway;
2. load runs through the Gateway's listener on 127.0.0.1:18000; a retrain with more epochs registers
   version 2, the gate names it challenger, and the operator moves the HTTPRoute weights 20 → 50 → 100 %
   while Prometheus (pod discovery) scrapes the pods and each step is analysed; MLflow's champion moves;
3. a drill: version 3 is registered and the serving environment makes only that version fail 30 % of its
   requests (MODELPILOT_FAULT_VERSIONS); the analysis fails, the operator rolls it back and tags it
   rejected, and the champion stays;
4. the world changes: the load sends flows from the data generator's drifted setting; the operator scores
   the served inputs against the training reference (monitoring.drift), starts one retraining Job on the
   drifted data (training.retrainOnDrift), and the retrained version is gated, rolled out and promoted.

Then `kubectl get mdep`. The demo's namespace and the chart are removed at the end (`--keep` leaves them
for a look around); the cluster keeps running (`hack/cluster down` stops it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from modelpilot.operator.spec import GROUP, VERSION  # noqa: E402
from modelpilot.training.data import FEATURES, generate_flows  # noqa: E402
from tests.e2e.deployments import MLFLOW, PROMETHEUS, rolled_out_with_env  # noqa: E402
from tests.e2e.gateway_load import GatewayLoad  # noqa: E402
from tests.e2e.pods import INFERENCE_IMAGE, TRAIN_IMAGE  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    Cluster,
    apply_manifest,
    delete_namespace,
    get_object,
    start_cluster,
    wait_until,
)
from tests.support.processes import free_port  # noqa: E402

MODEL = NAME = "fraud-detector"
NAMESPACE = "modelpilot-demo"
HOST = "fraud.demo.modelpilot.test"
LISTENER = "http://127.0.0.1:18000"  # the Gateway of hack/e2e.d/traefik.yaml
GATEWAY = {"name": "traefik", "namespace": "traefik", "sectionName": "web"}
STEPS = [20, 50, 100]
INTERVAL = 15
RATE = 20  # requests per second through the Gateway
DRILL = {"MODELPILOT_FAULT_ERROR_RATE": "0.3"}
DRIFT_WINDOW = "1m"
DRIFTED = 1.5  # the data generator's drift setting of the changed world
ROWS_PER_REQUEST = 256  # enough distinct rows that the served mix matches its distribution (PSI noise ~0.03)


def say(message: str) -> None:
    """One line of the account."""
    print(f"\033[1m[demo {time.strftime('%H:%M:%S')}]\033[0m {message}", flush=True)


def model_deployment(
    *, epochs: int, retrain: str = "", env: dict[str, str] | None = None, data_drift: float = 0.0
) -> dict[str, Any]:
    """Train when the model has no version; serve behind the Gateway; roll candidates out 20 → 50 → 100 %;
    watch the served inputs for drift and retrain on it (training on the generator's `data_drift` setting)."""
    metadata: dict[str, Any] = {"name": NAME}
    if retrain:
        metadata["annotations"] = {"modelpilot.io/retrain": retrain}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": metadata,
        "spec": {
            "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": MLFLOW, "pollInterval": "5s"},
            "serving": {
                "image": INFERENCE_IMAGE,
                "replicas": 1,
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1536Mi"}},
                "env": [{"name": key, "value": value} for key, value in (env or {}).items()],
            },
            "traffic": {"router": "gateway", "gateway": {"parentRefs": [GATEWAY], "hostnames": [HOST]}},
            "rollout": {
                "steps": STEPS,
                "interval": f"{INTERVAL}s",
                "canaryReadyTimeout": "5m",
                "analysis": {
                    "prometheus": PROMETHEUS,
                    "window": "30s",
                    "minRequests": 20,
                    "maxErrorRate": 0.02,
                    "maxP99Latency": "1s",
                    "failureLimit": 2,
                },
            },
            "training": {
                "image": TRAIN_IMAGE,
                "args": [
                    *("--rows", "6000", "--epochs", str(epochs), "--stability-seeds", "0"),
                    *("--drift", str(data_drift)),
                ],
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "3Gi"}},
                "activeDeadlineSeconds": 900,
                "retrainOnDrift": True,
            },
            "monitoring": {
                "drift": {"method": "psi", "threshold": 0.2, "window": DRIFT_WINDOW, "minInputs": 500, "cooldown": "1h"}
            },
        },
    }


@contextmanager
def port_forward(cluster: Cluster, namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward` of `target`'s `port` to a free port on 127.0.0.1; its URL."""
    local = free_port()
    process = subprocess.Popen(
        [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "port-forward", target,
         f"{local}:{port}", "--address", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{local}"
    try:
        wait_until(lambda: _answers(f"{url}/health"), timeout=60, description=f"port-forward to {target}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Story:
    """The demo's cluster, registry and load, and the account it prints."""

    def __init__(self, cluster: Cluster, registry: MlflowClient) -> None:
        self.cluster = cluster
        self.api = cluster.api_client
        self.registry = registry
        self.gateway = httpx.Client(base_url=LISTENER, headers={"host": HOST}, timeout=10)
        self.load: GatewayLoad | None = None
        self.metadata: dict[str, Any] = {}
        self.drill: dict[str, str] = {}
        self._printed: set[str] = set()

    # -- reading the ModelDeployment ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        found = get_object(self.api, f"{GROUP}/{VERSION}", "ModelDeployment", NAME, NAMESPACE) or {}
        return dict(found.get("status") or {})

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> dict[str, Any]:
        """Wait for the status to satisfy `check`, printing new history entries and analyses on the way."""

        def reached() -> dict[str, Any] | None:
            status = self.status()
            self._account(status)
            return status if check(status) else None

        return wait_until(reached, timeout=timeout, description=what, interval=0.5)

    def _account(self, status: dict[str, Any]) -> None:
        canary = status.get("canary") or {}
        if self.load is not None:
            state = canary.get("state")
            self.load.set_weight(int(canary.get("weight") or 0) if state in ("Progressing", "Paused") else 0)
        for analysis in canary.get("analyses") or []:
            key = f"analysis {canary.get('version')} {analysis['time']}"
            if key not in self._printed:
                self._printed.add(key)
                values = ", ".join(f"{k} {v:.4g}" for k, v in sorted(analysis.get("values", {}).items()))
                say(f"    analysis at {analysis['weight']} %: {analysis['verdict']} ({values}) {analysis['reason']}")
        for entry in status.get("history") or []:
            key = f"history {entry['time']} {entry['event']}"
            if key not in self._printed:
                self._printed.add(key)
                say(f"  {entry['event']}: {entry.get('message', '')}")

    def stable(self) -> dict[str, Any] | None:
        """The stable track's Deployment."""
        return get_object(self.api, "apps/v1", "Deployment", f"{NAME}-stable", NAMESPACE)

    # -- the registry ----------------------------------------------------------------------------

    def champion(self) -> str:
        return str(self.registry.get_model_version_by_alias(MODEL, "champion").version)

    def describe_version(self, version: str) -> str:
        """`version N (test AUC …; gate passed: <reason>)` from the tags the training run put on it."""
        tags = self.registry.get_model_version(MODEL, version).tags
        auc = tags.get("modelpilot.io/test-auc")
        gate = tags.get("modelpilot.io/gate")
        reason = tags.get("modelpilot.io/gate-reason", "")
        parts = (f"test AUC {auc}" if auc else "", f"gate {gate}: {reason}" if gate else "")
        details = "; ".join(part for part in parts if part)
        return f"version {version} ({details})" if details else f"version {version}"

    # -- the steps -------------------------------------------------------------------------------

    def first_version(self) -> str:
        say("1. ModelDeployment applied; the model has no version, so the operator starts a training Job")
        apply_manifest(self.api, model_deployment(epochs=4), namespace=NAMESPACE)
        status = self.wait(
            lambda s: s.get("phase") == "Ready" and bool((s.get("stable") or {}).get("version")),
            "version 1 trained, gated and served",
            timeout=900,
        )
        version = str(status["stable"]["version"])
        training = status.get("training") or {}
        say(f"  training Job {training.get('job')}: {training.get('result')} — {training.get('message', '')}")
        say(f"  serving {self.describe_version(version)} behind the Gateway ({LISTENER}, host {HOST})")
        return version

    def start_load(self) -> None:
        metadata = self.gateway.get(f"/v2/models/{MODEL}")
        metadata.raise_for_status()
        self.metadata = metadata.json()
        body = flows_body(self.metadata, drift=0.0, seed=1)
        self.load = GatewayLoad(self.gateway, f"/v2/models/{MODEL}/infer", body, RATE, 1200)
        self.load.start()
        say(
            f"load: {RATE} requests/s of {ROWS_PER_REQUEST} flows each from the training distribution, through "
            "the Gateway's listener (stops by itself after 20 minutes)"
        )

    def better_version(self, champion: str) -> str:
        say("2. retrain with more epochs (annotation modelpilot.io/retrain); the gate compares with the champion")
        apply_manifest(self.api, model_deployment(epochs=16, retrain=str(int(time.time()))), namespace=NAMESPACE)
        status = self.wait(
            lambda s: (
                (s.get("training") or {}).get("result") in ("Succeeded", "Failed")
                and (s.get("training") or {}).get("trigger") == "request"
            ),
            "the retraining Job done",
            timeout=900,
        )
        training = status["training"]
        say(f"  training Job {training.get('job')}: {training.get('result')} — {training.get('message', '')}")
        candidate = str(training.get("version") or "")
        gate = self.registry.get_model_version(MODEL, candidate).tags.get("modelpilot.io/gate") if candidate else None
        if not candidate or candidate == champion or gate != "passed":
            found = self.describe_version(candidate) if candidate else "no version"
            raise SystemExit(f"the retrained model did not pass the gate ({found}): nothing to roll out")
        say(f"  {self.describe_version(candidate)} is the challenger; the canary starts")
        started = time.monotonic()
        final = self.wait(
            lambda s: (
                (s.get("stable") or {}).get("version") == candidate
                and (s.get("canary") or {}).get("state") == "Succeeded"
                and s.get("phase") == "Ready"
            ),
            f"version {candidate} promoted",
            timeout=900,
        )
        self.report_split(candidate, started)
        self.report_step_overhead(final, candidate)
        say(f"  MLflow champion → version {self.champion()}; stable track serves {final['stable']['version']}")
        return candidate

    def report_split(self, candidate: str, since: float) -> None:
        """The share of requests the canary answered at each step, measured at the Gateway."""
        assert self.load is not None
        for weight in STEPS[:-1]:
            answers = [a for a in self.load.answers if a.weight == weight and a.at >= since]
            if answers:
                share = 100 * sum(a.version == candidate for a in answers) / len(answers)
                say(f"    at {weight} %: {len(answers)} requests, {share:.1f} % answered by version {candidate}")

    def report_step_overhead(self, status: dict[str, Any], candidate: str) -> None:
        """How much longer than `interval` each step was held: readiness waits, analysis, reconcile latency."""
        marks = [
            (entry["event"], datetime.fromisoformat(entry["time"].replace("Z", "+00:00")))
            for entry in status.get("history") or []
            if entry.get("version") == candidate and entry["event"] in ("StepStarted", "PromotionStarted")
        ]
        held = [(later - earlier).total_seconds() for (_, earlier), (_, later) in pairwise(marks)]
        if held:
            overhead = ", ".join(f"{seconds - INTERVAL:.1f} s" for seconds in held)
            say(f"    time each step was held beyond its {INTERVAL} s interval: {overhead}")

    def bad_version(self, champion: str) -> None:
        source = self.registry.get_model_version(MODEL, champion)
        model_id = getattr(source, "model_id", None) or None
        if model_id is None and str(source.source).startswith("models:/m-"):
            model_id = str(source.source).removeprefix("models:/")  # a logged model (MLflow 3): the copy names it
        copy = self.registry.create_model_version(MODEL, str(source.source), run_id=source.run_id, model_id=model_id)
        bad = str(copy.version)
        faults = self.drill = {**DRILL, "MODELPILOT_FAULT_VERSIONS": bad}
        say(f"3. a drill: version {bad} registered, and pods serving it fail 30 % of requests ({faults})")
        apply_manifest(self.api, model_deployment(epochs=16, env=faults), namespace=NAMESPACE)
        self.wait(
            lambda _: rolled_out_with_env(self.stable(), faults), "stable pods running the drill's environment", 300
        )
        self.registry.set_registered_model_alias(MODEL, "challenger", bad)
        say(f"  version {bad} named challenger")
        since = time.monotonic()
        final = self.wait(
            lambda s: (
                (s.get("canary") or {}).get("version") == bad and (s.get("canary") or {}).get("state") == "RolledBack"
            ),
            f"version {bad} rolled back",
            timeout=600,
        )
        assert self.load is not None
        errors = sum(a.status >= 500 for a in self.load.answers if a.at >= since)
        tags = self.registry.get_model_version(MODEL, bad).tags
        say(f"  {errors} requests failed at the Gateway while version {bad} had its share of traffic")
        say(f"  version {bad} tagged modelpilot.io/rejected: {tags.get('modelpilot.io/rejected', '(missing)')}")
        say(f"  MLflow champion is still version {self.champion()}; stable serves {final['stable']['version']}")

    def changed_world(self, champion: str) -> None:
        """The second loop: drifted traffic, drift detected, one retraining on the drifted data, its rollout."""
        assert self.load is not None
        say(f"4. the world changes: the traffic now comes from the generator's drifted setting ({DRIFTED})")
        # The retraining the drift starts trains on data like what is now served.
        apply_manifest(self.api, model_deployment(epochs=16, data_drift=DRIFTED, env=self.drill), namespace=NAMESPACE)
        self.load.body = flows_body(self.metadata, drift=DRIFTED, seed=2)
        changed = time.monotonic()
        drifted = self.wait(lambda s: (s.get("drift") or {}).get("state") == "Drifted", "drift detected", timeout=300)[
            "drift"
        ]
        say(
            f"  drift detected {time.monotonic() - changed:.0f} s after the change: {drifted['method']} "
            f"{drifted['score']:.2f} > {drifted['threshold']}, features {', '.join(drifted['features'])}"
        )
        status = self.wait(
            lambda s: (
                (s.get("training") or {}).get("trigger") == "drift"
                and (s.get("training") or {}).get("result") in ("Succeeded", "Failed")
            ),
            "the retraining on drift done",
            timeout=900,
        )
        retrained = str(status["training"].get("version") or "")
        say(f"  training Job {status['training']['job']} (trigger drift): {status['training']['result']}")
        gate = self.registry.get_model_version(MODEL, retrained).tags.get("modelpilot.io/gate") if retrained else None
        if gate != "passed":
            say(f"  {self.describe_version(retrained) if retrained else 'no version'}: not rolled out")
            return
        say(f"  {self.describe_version(retrained)} is the challenger")
        final = self.wait(
            lambda s: (
                (s.get("stable") or {}).get("version") == retrained
                and (s.get("canary") or {}).get("state") == "Succeeded"
            ),
            f"version {retrained} promoted",
            timeout=900,
        )
        say(f"  MLflow champion → version {self.champion()}; stable track serves {final['stable']['version']}")
        after = self.wait(
            lambda s: (
                (s.get("drift") or {}).get("version") == retrained
                and (s.get("drift") or {}).get("state") == "NotDrifted"
            ),
            "the new version's inputs scored",
            timeout=300,
        )["drift"]
        say(f"  version {retrained} learned the new world: {after['reason']}")

    def summary(self, started: float) -> None:
        assert self.load is not None
        self.load.stop()
        codes = Counter(a.status for a in self.load.answers)
        seconds = max(self.load.answers[-1].at - self.load.answers[0].at, 1.0) if self.load.answers else 1.0
        say(f"requests through the Gateway: {len(self.load.answers)} ({len(self.load.answers) / seconds:.1f}/s), "
            f"by status {dict(sorted(codes.items()))}")  # fmt: skip
        say(f"the story took {time.monotonic() - started:.0f} s")
        print(self.cluster.run_kubectl("get", "mdep", "-n", NAMESPACE).stdout, flush=True)


def flows_body(metadata: dict[str, Any], *, drift: float, seed: int) -> dict[str, Any]:
    """An OIP v2 request of flows from the training data generator (`drift` 0: the training distribution)."""
    tensor = metadata["inputs"][0]
    rows = generate_flows(ROWS_PER_REQUEST, seed=seed, drift=drift)[FEATURES].to_numpy(dtype="float32")
    shape = [ROWS_PER_REQUEST, rows.shape[1]]
    return {"inputs": [{"name": tensor["name"], "shape": shape, "datatype": tensor["datatype"], "data": rows.tolist()}]}


def fresh_namespace(cluster: Cluster) -> None:
    """The demo's namespace, new: its pods run on the real node under the restricted Pod Security Standard."""
    delete_namespace(cluster.api_client, NAMESPACE)
    wait_until(
        lambda: get_object(cluster.api_client, "v1", "Namespace", NAMESPACE) is None,
        timeout=180,
        description="the previous demo's namespace gone",
    )
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}
    apply_manifest(cluster.api_client, namespace)


def fresh_model(registry: MlflowClient) -> None:
    """No versions of the demo's model: the operator trains the first one."""
    with suppress(MlflowException):
        registry.delete_registered_model(MODEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the chart and the demo's namespace installed")
    keep = parser.parse_args().keep
    started = time.monotonic()
    cluster = start_cluster()
    with ExitStack() as stack:
        mlflow_url = stack.enter_context(port_forward(cluster, "modelpilot", "svc/modelpilot-mlflow", 5000))
        registry = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        fresh_namespace(cluster)
        fresh_model(registry)
        story = Story(cluster, registry)
        try:
            first = story.first_version()
            story.start_load()
            second = story.better_version(first)
            story.bad_version(second)
            story.changed_world(second)
            story.summary(started)
        finally:
            if story.load is not None:
                story.load.stop()
            if not keep:
                say("removing the demo's namespace and the chart (--keep leaves them)")
                # The ModelDeployment first, while the operator runs to release its finalizer.
                cluster.run_kubectl(
                    "delete", "mdep", NAME, "-n", NAMESPACE, "--ignore-not-found", "--timeout=100s", check=False
                )
                delete_namespace(cluster.api_client, NAMESPACE)
                subprocess.run([str(REPO / "hack" / "e2e"), "uninstall"], check=False, env=os.environ)


if __name__ == "__main__":
    main()
