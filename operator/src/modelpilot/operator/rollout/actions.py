"""What the rollout state machine sees (`Observation`) and what it asks for (`Decision`, actions).

Actions are small frozen dataclasses. All but the two registry writes are idempotent statements of
desired state, restated on every call while they matter, so executing one twice is harmless and
skipping one (a crash) is repaired by the next call. The executor performs `Decision.actions` in
order and stops at the first that fails; the order is part of the decision (weight 0 before the
canary goes, the canary gone before the registry is told).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from modelpilot.operator.rollout.requests import Answer, Request
from modelpilot.operator.status import AnalysisResult, CanaryStatus, HistoryEntry

ABORT_ANNOTATION = "modelpilot.io/abort"


@dataclass(frozen=True)
class ShadowCount:
    """What Prometheus counted of a shadow phase so far (`RunShadowCheck`): the candidate's answers compared
    with stable's and how many agreed, or why they could not be counted (`error`)."""

    time: str  # when the count was taken (RFC 3339, rounded down)
    comparisons: float = 0.0
    agreed: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Observation:
    """The facts one decision is taken on, gathered by the executor just before calling `decide`.

    - now: timezone-aware current time.
    - stable_version / candidate_version: what the registry's stable and candidate pointers (alias or
      stage) name right now; read fresh on every call, they confirm the registry writes.
    - stable_ready: the stable track's pods are all Ready and serve `stable_version`.
    - canary_version_deployed: the version of the canary Deployment, None when there is none.
    - canary_ready: the canary's Ready pods serve the rollout's version (at least one) and none serves
      another; pods added for a larger step may still be starting.
    - abort_requested: the resource carries the `modelpilot.io/abort` annotation.
    - analysis: the result of the analysis the previous decision asked for (`RunAnalysis`), if any.
    - router_weight: the canary weight the router (HTTPRoute or canary Ingress) carries right now;
      None when it cannot be read (replica router). A hold only counts while the router carries it.
    - stable_sized: the stable track has every pod it was last sized for Ready. Only the replica router
      grows the stable track for a step (its pods set the ratio), so for the others this is always true.
    - share_settled: the replica router's Ready pods give the canary the share its weight was planned to,
      within `traffic.replicas.tolerance` (pods added for a step may still be starting). A hold only counts
      once they do; always true for the other routers (`router_weight` tells for them).
    - request: a person's rollout request (promote, abort, pause, resume) not answered yet; the decision
      answers it (`Decision.answer`), and the executor passes it to one decision only.
    - shadow: the count the previous decision asked for (`RunShadowCheck`), if any.
    - mirror_refusal: why the router cannot mirror requests, when the cluster says so (a Gateway's class
      lists its features without RequestMirror); None when it can or cannot tell. Observed in the shadow phase.
    """

    now: datetime
    stable_version: str | None
    candidate_version: str | None
    stable_ready: bool = False
    canary_version_deployed: str | None = None
    canary_ready: bool = False
    abort_requested: bool = False
    analysis: AnalysisResult | None = None
    router_weight: int | None = None
    stable_sized: bool = True
    share_settled: bool = True
    request: Request | None = None
    shadow: ShadowCount | None = None
    mirror_refusal: str | None = None


@dataclass(frozen=True)
class EnsureCanary:
    """Apply the canary track at `version` (its HPA minimum scaled with `weight`), then route `weight`% to it;
    with `mirror`, the router also sends the canary a copy of every request whose answer comes from stable."""

    version: str
    weight: int
    mirror: bool = False


@dataclass(frozen=True)
class SetWeight:
    """Route `weight`% of traffic to the canary and the rest to stable; touch nothing else."""

    weight: int


@dataclass(frozen=True)
class RemoveCanary:
    """Take the canary out of the router (weight 0) and delete the canary track's objects."""


@dataclass(frozen=True)
class RollStable:
    """Apply the stable track at `version`."""

    version: str


@dataclass(frozen=True)
class RunAnalysis:
    """Analyse the canary step (`modelpilot.operator.analysis.analyse`) and pass the result as `Observation.analysis`
    on the next call, which should come at once."""

    version: str
    step: int
    weight: int


@dataclass(frozen=True)
class RunShadowCheck:
    """Count the shadow phase's comparisons since `since` (`modelpilot.operator.analysis.count_shadow_comparisons`)
    and pass the count as `Observation.shadow` on the next call, which should come at once."""

    version: str
    since: str


@dataclass(frozen=True)
class PromoteInRegistry:
    """Make `candidate` the stable version in the registry: tag `candidate` `modelpilot.io/promoted` and
    `previous` `modelpilot.io/superseded` first (both with `at`, when the promotion was decided), then
    move the stable alias (or stage, archiving the old) — the pointer move is the commit the machine
    observes — and finally remove the candidate alias if it still names `candidate`. Asked again until
    the registry shows all of it; each write is made only if the registry does not show it yet."""

    candidate: str
    previous: str | None
    at: str = ""


@dataclass(frozen=True)
class RejectInRegistry:
    """Tag `version` `modelpilot.io/rejected` with the reason (and failing metric, value and `at`, when
    the rollback was decided), then remove the candidate alias if it still names `version` (or move it
    out of the candidate stage); the stable pointer is not touched. Each write is made only if the
    registry does not show it yet."""

    version: str
    reason: str
    metric: str
    value: float | None
    at: str = ""


@dataclass(frozen=True)
class Emit:
    """Post a Kubernetes Event on the resource; `Decision.history()` holds the same as status entries."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    version: str | None = None
    requested_by: str | None = None  # a person's request caused it: who asked, and why
    request_reason: str | None = None


Action = (
    EnsureCanary
    | SetWeight
    | RemoveCanary
    | RollStable
    | RunAnalysis
    | RunShadowCheck
    | PromoteInRegistry
    | RejectInRegistry
    | Emit
)

# Emit reasons that change the operator's rollout counter, and the counter's outcome label.
OUTCOMES = {
    "RolloutStarted": "started",
    "RolloutSuperseded": "superseded",
    "RolloutCancelled": "cancelled",
    "RolloutAborted": "aborted",
    "Promoted": "promoted",
    "RolledBack": "rolled_back",
}


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`.

    - canary: the new `status.canary`. Write it to the status BEFORE executing any action: a registry
      write is only ever asked for when its intent is already in the status the machine was given.
    - actions: to execute in order; stop at the first failure (the next call repeats what is needed).
    - requeue_after: seconds until the next call is due; 0 means at once (after acting), None means
      nothing is pending and the usual registry poll applies.
    - time: when the decision was taken (RFC 3339), for the history entries.
    - duration_seconds: how long the rollout ran, when this decision ends one.
    - due: when `requeue_after` is a hold, the moment it ends (an analysis falls due); an executor may
      start its next call a little earlier, gather its observations, and decide again at `due`.
    - answer: how `Observation.request` was answered; record it (`status.lastRequest`) with the status.
    """

    canary: CanaryStatus
    actions: tuple[Action, ...]
    requeue_after: float | None
    time: str
    duration_seconds: float | None = field(default=None)
    due: datetime | None = field(default=None)
    answer: Answer | None = field(default=None)

    def events(self) -> tuple[Emit, ...]:
        """The Events to post, in order."""
        return tuple(action for action in self.actions if isinstance(action, Emit))

    def history(self) -> list[HistoryEntry]:
        """One status history entry per Event (append each with `status.append_history`)."""
        return [
            HistoryEntry(
                time=self.time,
                event=emit.reason,
                version=emit.version,
                message=emit.message,
                requested_by=emit.requested_by,
                request_reason=emit.request_reason,
            )
            for emit in self.events()
        ]

    def outcomes(self) -> tuple[str, ...]:
        """Outcome labels of the operator's rollout counter for this decision (started, promoted, …)."""
        return tuple(OUTCOMES[emit.reason] for emit in self.events() if emit.reason in OUTCOMES)

    def registry_writes(self) -> tuple[PromoteInRegistry | RejectInRegistry, ...]:
        """The registry writes among the actions (at most one)."""
        return tuple(action for action in self.actions if isinstance(action, PromoteInRegistry | RejectInRegistry))
