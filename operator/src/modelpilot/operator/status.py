"""The ModelDeployment status: models for the CRD schema and helpers that keep conditions honest.

Everything a rollout needs to resume after a crash lives here, so the status is the operator's memory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

HISTORY_LIMIT = 30

ConditionType = Literal[
    "Ready",
    "Progressing",
    "Degraded",
    "RegistryReachable",
    "TrainingSucceeded",
    "CanaryHeaderReady",
    "Drifted",
    "RequestRateScaling",
]


def now_iso() -> str:
    """The current time as an RFC 3339 timestamp with second precision, as Kubernetes writes them."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class StatusModel(BaseModel):
    """Base for status sections: camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def dump(self) -> dict[str, Any]:
        """The section as it is written to the API (camelCase, no unset optional fields)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(StatusModel):
    """A Kubernetes-style condition."""

    type: str = Field(
        description=(
            "Condition type: Ready, Progressing, Degraded, RegistryReachable, TrainingSucceeded, "
            "CanaryHeaderReady (with spec.traffic.header), RequestRateScaling (with serving.autoscaling.requestRate)."
        )
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="What a person should know about it.")
    last_transition_time: str = Field(default_factory=now_iso, description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation the condition was computed for.")


class AnalysisResult(StatusModel):
    """The outcome of one analysis of a canary step."""

    time: str = Field(default_factory=now_iso, description="When the analysis ran.")
    step: int = Field(description="Index of the step analysed.")
    weight: int = Field(description="Canary weight during the step.")
    verdict: Literal["Passed", "Failed", "Inconclusive"] = Field(description="Passed, Failed or Inconclusive.")
    reason: str = Field(default="", description="Why, in one line.")
    values: dict[str, float] = Field(default_factory=dict, description="Measured values by metric name.")


class ShadowStatus(StatusModel):
    """The shadow phase of a rollout: the canary answers a mirror of live traffic, compared with stable's answers."""

    state: Literal["Mirroring", "Passed", "Failed", "Inconclusive"] = Field(
        default="Mirroring",
        description=(
            "Mirroring (live traffic is mirrored to the canary), Passed (the live steps follow), Failed (rolled "
            "back), or Inconclusive (too few comparisons by maxDuration: the rollout pauses, mirroring goes on)."
        ),
    )
    started_at: str | None = Field(default=None, description="When the phase began; comparisons count from then.")
    mirrored: bool = Field(
        default=False, description="The router mirrors live traffic to the canary now (not while it is not Ready)."
    )
    checked_at: str | None = Field(default=None, description="When the comparisons were last counted.")
    comparisons: int = Field(default=0, description="Candidate answers compared with stable's during the phase.")
    agreed: int = Field(default=0, description="Of those, how many agreed.")
    agreement: float | None = Field(default=None, description="agreed / comparisons; none before a comparison.")
    reason: str = Field(default="", description="The phase's verdict or what it waits for, in one line.")


class TrackStatus(StatusModel):
    """What a serving track runs."""

    version: str | None = Field(default=None, description="Model version the track serves.")
    ready_replicas: int = Field(default=0, description="Ready pods running that version.")
    replicas: int = Field(default=0, description="Desired pods.")


class CanaryStatus(TrackStatus):
    """The canary track and the rollout that drives it."""

    state: str = Field(
        default="Idle",
        description="Rollout state: Idle, Progressing, Paused, Promoting, Succeeded, RollingBack, RolledBack, Aborted.",
    )
    weight: int = Field(default=0, description="Share of traffic the current step asks for the canary, in percent.")
    effective_weight: int = Field(
        default=0,
        description=(
            "Share of traffic the canary gets now, in percent: the router's weight, or with router replicas "
            "its share of the Ready pods behind the shared Service."
        ),
    )
    weight_message: str | None = Field(
        default=None, description="Why effectiveWeight is further from weight than traffic.replicas.tolerance."
    )
    step: int = Field(default=0, description="Index of the current step in rollout.steps.")
    step_started_at: str | None = Field(default=None, description="When the current step's weight took effect.")
    started_at: str | None = Field(default=None, description="When the rollout started.")
    failures: int = Field(default=0, description="Failed analyses so far.")
    inconclusive: int = Field(default=0, description="Inconclusive analyses in a row.")
    registry_written: bool = Field(default=False, description="The outcome has been written to the registry.")
    outcome_at: str | None = Field(
        default=None, description="When promotion or rollback was decided; the registry tags carry this time."
    )
    replaces: str | None = Field(default=None, description="The stable version a promotion replaces.")
    reason: str | None = Field(default=None, description="Why the rollout is in its state.")
    held_by: str | None = Field(
        default=None,
        description=(
            "Who paused or aborted the rollout by request (kubectl modelpilot pause/abort); a held rollout "
            "waits for a resume request."
        ),
    )
    shadow: ShadowStatus | None = Field(
        default=None, description="The shadow phase (rollout.shadow), once the canary is Ready for it."
    )
    last_analysis: AnalysisResult | None = Field(default=None, description="The latest analysis.")
    analyses: list[AnalysisResult] = Field(default_factory=list, description="Analyses of this rollout.")


class TrainingStatus(StatusModel):
    """The latest training Job."""

    job: str | None = Field(default=None, description="Name of the Job.")
    trigger: str | None = Field(default=None, description="What started it: initial, request, schedule or drift.")
    run_id: str | None = Field(default=None, description="MLflow run id the Job logged to.")
    version: str | None = Field(default=None, description="Model version the Job registered.")
    result: str | None = Field(default=None, description="Running, Succeeded or Failed.")
    message: str | None = Field(default=None, description="Why it ended as it did.")
    started_at: str | None = Field(default=None, description="When the Job was created.")
    finished_at: str | None = Field(default=None, description="When the Job ended.")
    request: str | None = Field(default=None, description="Value of the last handled retrain annotation.")


class DriftStatus(StatusModel):
    """The latest drift evaluation of the stable track's served inputs against the training reference."""

    state: Literal["Drifted", "NotDrifted", "Unknown"] = Field(
        default="Unknown", description="Drifted, NotDrifted or Unknown (too few inputs, no reference, no data)."
    )
    method: str = Field(default="psi", description="psi or ks.")
    version: str | None = Field(default=None, description="The stable version evaluated.")
    score: float | None = Field(default=None, description="The largest feature score.")
    threshold: float | None = Field(default=None, description="The threshold it was compared with.")
    features: list[str] = Field(default_factory=list, description="Features over the threshold, worst first (≤ 10).")
    scores: dict[str, float] = Field(
        default_factory=dict,
        description="Score of each scored feature, by name (a feature with too few served values has none).",
    )
    inputs: int = Field(default=0, description="Fewest served values of a scored feature in the window.")
    reason: str = Field(default="", description="Why the state is what it is, in one line.")
    since: str | None = Field(default=None, description="When the current state began (the drift episode).")
    evaluated_at: str | None = Field(default=None, description="When it was last evaluated.")
    retrained_for: str | None = Field(
        default=None, description="`since` of the drift episode a retraining was last started for."
    )
    retrained_at: str | None = Field(default=None, description="When a retraining on drift was last started.")


class HistoryEntry(StatusModel):
    """One transition, newest last."""

    time: str = Field(default_factory=now_iso, description="When it happened.")
    event: str = Field(description="CamelCase name of the transition, e.g. RolloutStarted.")
    version: str | None = Field(default=None, description="Model version concerned.")
    message: str = Field(default="", description="Details.")
    requested_by: str | None = Field(
        default=None, description="The Kubernetes user who asked for it, when a person's request caused it."
    )
    request_reason: str | None = Field(default=None, description="Why, as the person who asked for it said.")


class RequestStatus(StatusModel):
    """The last request made with the modelpilot.io/request annotations, and how it was answered."""

    id: str = Field(description="The request's id (modelpilot.io/request-id).")
    action: str = Field(description="promote, abort, pause, resume or retrain.")
    requested_by: str | None = Field(default=None, description="The Kubernetes user who asked.")
    reason: str = Field(default="", description="Why, as the user said.")
    time: str = Field(default_factory=now_iso, description="When the operator answered it.")
    outcome: Literal["Applied", "Refused"] = Field(description="Applied, or Refused (it did not apply).")
    message: str = Field(default="", description="What was done, or why it did not apply.")
    version: str | None = Field(default=None, description="The model version it concerned.")
    recorded: bool = Field(
        default=False, description="The request is in the registry's tags of `version` (or there is nothing to tag)."
    )


class ModelDeploymentStatus(StatusModel):
    """Observed state, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation of the spec last acted on.")
    phase: str | None = Field(
        default=None,
        description="Pending, Training, Ready, Progressing, Paused, Promoting, RollingBack, Degraded or Invalid.",
    )
    model_name: str | None = Field(default=None, description="Registered model served.")
    stable: TrackStatus | None = Field(default=None, description="The stable track.")
    canary: CanaryStatus | None = Field(default=None, description="The canary track and its rollout.")
    training: TrainingStatus | None = Field(default=None, description="The latest training Job.")
    drift: DriftStatus | None = Field(default=None, description="Drift of the served inputs (monitoring.drift).")
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions.")
    history: list[HistoryEntry] = Field(default_factory=list, description="Recent transitions, newest last.")
    last_request: RequestStatus | None = Field(
        default=None, description="The last request (kubectl modelpilot promote, abort, …) and its answer."
    )


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: bool | None,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> list[Condition]:
    """A new conditions list with `type_` set; lastTransitionTime moves only when the status flips."""
    wanted = "Unknown" if status is None else ("True" if status else "False")
    result: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.type != type_:
            result.append(condition)
            continue
        found = True
        since = condition.last_transition_time if condition.status == wanted else now_iso()
        result.append(
            Condition(
                type=type_,
                status=wanted,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    if not found:
        result.append(
            Condition(type=type_, status=wanted, reason=reason, message=message, observed_generation=generation)
        )
    return result


def append_history(history: list[HistoryEntry], entry: HistoryEntry) -> list[HistoryEntry]:
    """History with `entry` appended, trimmed to the newest HISTORY_LIMIT entries."""
    return [*history, entry][-HISTORY_LIMIT:]
