"""Progressive delivery of a candidate model version: the state machine and its Prometheus analysis.

The executor's loop, once per reconciliation of a resource with `spec.rollout`:

1. Gather an `Observation` (registry pointers read fresh, track readiness, abort annotation, and the
   `AnalysisResult` of the analysis the previous decision asked for, if any).
2. `decision = decide(spec, status.canary, observation)`.
3. Write `decision.canary` to `status.canary` and append `decision.history()` to `status.history`,
   before anything else; if that write fails, do nothing more.
4. Execute `decision.actions` in order, stopping at the first failure: `Emit` posts an Event;
   `RunAnalysis` runs `modelpilot.operator.analysis.analyse()` and keeps the result for the next observation.
5. Call again after `decision.requeue_after` seconds (0: at once; None: the registry poll period).

`machine` holds the states and transitions, `shadow` the shadow phase before the first step, `actions`
the vocabulary, `queries` the PromQL and bounds and `quality` the PromQL of labelled predictions and shadow
comparisons. The package is pure (no I/O): the Prometheus client is `modelpilot.operator.analysis`.
"""

from modelpilot.operator.rollout.actions import (
    ABORT_ANNOTATION,
    Action,
    Decision,
    Emit,
    EnsureCanary,
    Observation,
    PromoteInRegistry,
    RejectInRegistry,
    RemoveCanary,
    RollStable,
    RunAnalysis,
    RunShadowCheck,
    SetWeight,
    ShadowCount,
)
from modelpilot.operator.rollout.machine import ACTIVE_STATES, decide, is_active

__all__ = [
    "ABORT_ANNOTATION",
    "ACTIVE_STATES",
    "Action",
    "Decision",
    "Emit",
    "EnsureCanary",
    "Observation",
    "PromoteInRegistry",
    "RejectInRegistry",
    "RemoveCanary",
    "RollStable",
    "RunAnalysis",
    "RunShadowCheck",
    "SetWeight",
    "ShadowCount",
    "decide",
    "is_active",
]
