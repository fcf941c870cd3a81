"""A spec, observations and a simulated executor for driving the rollout state machine in tests."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from modelpilot.operator.rollout import (
    Decision,
    EnsureCanary,
    Observation,
    PromoteInRegistry,
    RejectInRegistry,
    RemoveCanary,
    RollStable,
    RunAnalysis,
    SetWeight,
    decide,
)
from modelpilot.operator.rollout.clock import stamp_down
from modelpilot.operator.spec import ModelDeploymentSpec, parse_spec
from modelpilot.operator.status import AnalysisResult, CanaryStatus

Verdict = Literal["Passed", "Failed", "Inconclusive"]
VERDICTS: list[Verdict] = ["Passed", "Passed", "Passed", "Passed", "Failed", "Inconclusive", "Inconclusive"]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
STEPS = [10, 50, 100]
INTERVAL = 30.0
READY_TIMEOUT = 120.0


def make_spec(**rollout: Any) -> ModelDeploymentSpec:
    """A spec with three steps, a 30 s interval, failureLimit 2 and inconclusiveLimit 3."""
    analysis = {
        "prometheus": "http://prometheus:9090",
        "maxErrorRate": 0.01,
        "maxP99Latency": "250ms",
        "failureLimit": 2,
        "inconclusiveLimit": 3,
        **rollout.pop("analysis", {}),
    }
    return parse_spec(
        {
            "model": {"name": "fraud", "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": "http://mlflow:5000"},
            "serving": {"image": "serve:1"},
            "rollout": {"steps": STEPS, "interval": "30s", "canaryReadyTimeout": "2m", "analysis": analysis, **rollout},
        }
    )


SPEC = make_spec()


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def observe(seconds: float = 0.0, **facts: Any) -> Observation:
    """Stable 1, candidate 2, everything Ready, at T0 + `seconds`; `facts` override."""
    base = Observation(
        now=at(seconds),
        stable_version="1",
        candidate_version="2",
        stable_ready=True,
        canary_version_deployed="2",
        canary_ready=True,
    )
    return replace(base, **facts)


def analysis(
    seconds: float,
    step: int,
    weight: int,
    verdict: Literal["Passed", "Failed", "Inconclusive"] = "Passed",
    **values: float,
) -> AnalysisResult:
    """An analysis result taken at T0 + `seconds`."""
    stamp = at(seconds).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return AnalysisResult(
        time=stamp, step=step, weight=weight, verdict=verdict, reason=f"{verdict.lower()} for test", values=values
    )


def holding(step: int, weight: int, since: float = 0.0, **fields: Any) -> CanaryStatus:
    """A Progressing status holding `step` at `weight` since T0 + `since`."""
    stamp = at(since).isoformat().replace("+00:00", "Z")
    return CanaryStatus(
        version="2",
        state=fields.pop("state", "Progressing"),
        step=step,
        weight=weight,
        started_at=at(0).isoformat().replace("+00:00", "Z"),
        step_started_at=stamp,
        **fields,
    )


@dataclass
class World:
    """The registry and the cluster as a simulated executor changes them."""

    stable: str | None = "1"
    candidate: str | None = "2"
    stable_track: str = "1"
    stable_track_ready: bool = True
    canary_deployed: str | None = None
    canary_pods_ready: bool = False
    router_weight: int = 0
    abort: bool = False
    pending_analysis: AnalysisResult | None = None
    writes: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    def observation(self, now: datetime) -> Observation:
        """What the executor would observe."""
        return Observation(
            now=now,
            stable_version=self.stable,
            candidate_version=self.candidate,
            stable_ready=self.stable_track_ready and self.stable_track == self.stable,
            canary_version_deployed=self.canary_deployed,
            canary_ready=self.canary_deployed is not None and self.canary_pods_ready,
            abort_requested=self.abort,
            analysis=self.pending_analysis,
        )

    def execute(self, decision: Decision, rollout_key: str | None, now: datetime, verdict: Verdict) -> None:
        """Carry out the actions the way the operator's executor does, against this simulated world."""
        for action in decision.actions:
            if isinstance(action, EnsureCanary):
                if self.canary_deployed != action.version:
                    self.canary_deployed, self.canary_pods_ready = action.version, False
                self.router_weight = action.weight
            elif isinstance(action, SetWeight):
                self.router_weight = action.weight
            elif isinstance(action, RemoveCanary):
                self.router_weight, self.canary_deployed, self.canary_pods_ready = 0, None, False
            elif isinstance(action, RollStable):
                if self.stable_track != action.version:
                    self.stable_track, self.stable_track_ready = action.version, False
            elif isinstance(action, RunAnalysis):
                self.pending_analysis = AnalysisResult(
                    time=stamp_down(now),
                    step=action.step,
                    weight=action.weight,
                    verdict=verdict,
                    reason="simulated",
                    values={"error_rate": 0.5} if verdict == "Failed" else {},
                )
            elif isinstance(action, PromoteInRegistry):
                self.writes[(action.candidate, rollout_key)] += 1
                self.stable = action.candidate
                if self.candidate == action.candidate:
                    self.candidate = None
            elif isinstance(action, RejectInRegistry):
                self.writes[(action.version, rollout_key)] += 1
                if self.candidate == action.version:
                    self.candidate = None


def run_to_rest(
    world: World, spec: ModelDeploymentSpec = SPEC, verdict: Verdict = "Passed", limit: int = 200
) -> tuple[CanaryStatus | None, list[Decision]]:
    """Drive the machine with an executor that never crashes until the rollout is at rest."""
    status: CanaryStatus | None = None
    now = T0
    decisions: list[Decision] = []
    rng = random.Random(0)
    for _ in range(limit):
        decision = decide(spec, status, world.observation(now))
        decisions.append(decision)
        world.pending_analysis = None
        status = decision.canary
        world.execute(decision, status.started_at, now, verdict)
        world.canary_pods_ready = world.canary_deployed is not None
        world.stable_track_ready = True
        if decision.requeue_after is None:
            return status, decisions
        now += timedelta(seconds=decision.requeue_after + rng.random() * 0.5)
    raise AssertionError(f"no rest after {limit} decisions; last status {status}")
