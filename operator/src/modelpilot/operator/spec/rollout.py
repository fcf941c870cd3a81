"""The progressive delivery of a candidate version and the analysis of each step."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from modelpilot.operator.spec.base import Duration, SpecModel, cel_rules, parse_duration

# Names of the values every analysis measures (`AnalysisResult.values` keys); a custom metric may not take one.
REQUEST_COUNT = "request_count"
ERROR_RATE = "error_rate"
P99_LATENCY = "p99_latency_seconds"
STABLE_ERROR_RATE = "stable_error_rate"
ERROR_RATE_ABOVE_STABLE = "error_rate_above_stable"
# Model quality, from the labelled predictions of the canary (ground truth that arrived in the window).
LABELLED_PREDICTIONS = "labelled_predictions"
ACCURACY = "accuracy"
PRECISION = "precision"
RECALL = "recall"
QUALITY_METRICS = (ACCURACY, PRECISION, RECALL)
BUILTIN_METRICS = (
    REQUEST_COUNT,
    ERROR_RATE,
    P99_LATENCY,
    STABLE_ERROR_RATE,
    ERROR_RATE_ABOVE_STABLE,
    LABELLED_PREDICTIONS,
    *QUALITY_METRICS,
)
# The rollback evidence of a shadow phase that disagreed (a registry tag, not an analysis value).
SHADOW_AGREEMENT = "shadow_agreement"
_BUILTIN_LIST = ", ".join(BUILTIN_METRICS)
_BUILTIN_CEL = "[" + ", ".join(f"'{name}'" for name in BUILTIN_METRICS) + "]"
RESERVED_METRIC_MESSAGE = f"a custom metric may not take the name of a built-in one ({_BUILTIN_LIST})"
DUPLICATE_METRIC_MESSAGE = "custom metric names must be unique"


class CustomMetric(SpecModel):
    """A PromQL query whose single value must stay within bounds during analysis."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.min) || has(self.max)", "a custom metric needs min, max or both"),
            (
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "a custom metric's min exceeds its max",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", description="Metric name.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one sample; {{track}}, {{model}}, {{version}}, {{namespace}} and {{window}} "
            "are replaced before it runs."
        ),
    )
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")

    @model_validator(mode="after")
    def _has_bounds(self) -> CustomMetric:
        if self.min is None and self.max is None:
            raise ValueError("a custom metric needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("a custom metric's min exceeds its max")
        return self


class Analysis(SpecModel):
    """What a canary step must show in Prometheus before the rollout moves on."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (f"!has(self.metrics) || self.metrics.all(m, !(m.name in {_BUILTIN_CEL}))", RESERVED_METRIC_MESSAGE),
            (
                "!has(self.metrics) || self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))",
                DUPLICATE_METRIC_MESSAGE,
            ),
        )
    )

    prometheus: str = Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="Prometheus base URL, e.g. http://prometheus:9090.",
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest acceptable share of 5xx responses on the canary."
    )
    max_p99_latency: Duration = Field(default="250ms", description="Highest acceptable p99 latency of the canary.")
    min_requests: int = Field(
        default=50,
        ge=0,
        description="Fewest canary requests in the window for a verdict; fewer is inconclusive.",
    )
    failure_limit: int = Field(default=2, ge=1, le=100, description="Failed analyses that trigger a rollback.")
    inconclusive_limit: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Inconclusive analyses in a row (no traffic, Prometheus down) after which the rollout pauses.",
    )
    window: Duration = Field(default="1m", description="Range of the rate() windows in the built-in queries.")
    compare_with_stable: bool = Field(
        default=False,
        description="Also fail when the canary's error rate exceeds the stable track's by over maxErrorRateIncrease.",
    )
    max_error_rate_increase: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="With compareWithStable: how far the canary's error rate may exceed the stable track's.",
    )
    metrics: list[CustomMetric] = Field(
        default_factory=list, max_length=16, description="Extra PromQL checks with bounds."
    )
    min_accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Lowest acceptable share of correct canary predictions among those labelled in the window "
            "(modelpilot_labelled_predictions_total); unset: accuracy is not checked."
        ),
    )
    min_precision: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Lowest acceptable precision of the canary for positiveClass, from the labelled predictions.",
    )
    min_recall: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Lowest acceptable recall of the canary for positiveClass, from the labelled predictions.",
    )
    positive_class: str = Field(
        default="1",
        min_length=1,
        max_length=63,
        description="The class (the predicted and actual label values) minPrecision and minRecall are about.",
    )
    min_labels: int = Field(
        default=50,
        ge=1,
        description=(
            "Fewest labelled canary predictions in the window for the quality checks (minAccuracy, minPrecision, "
            "minRecall) to count; fewer makes the analysis inconclusive."
        ),
    )

    @property
    def checks_quality(self) -> bool:
        """Whether any quality bound (minAccuracy, minPrecision, minRecall) is set."""
        return any(bound is not None for bound in (self.min_accuracy, self.min_precision, self.min_recall))

    @model_validator(mode="after")
    def _metric_names_are_free(self) -> Analysis:
        names = [metric.name for metric in self.metrics]
        if any(name in BUILTIN_METRICS for name in names):
            raise ValueError(RESERVED_METRIC_MESSAGE)
        if len(set(names)) != len(names):
            raise ValueError(DUPLICATE_METRIC_MESSAGE)
        return self


class Shadow(SpecModel):
    """A shadow phase before the first live step: the candidate answers a mirror of live traffic, and its answers
    are compared with the stable track's; no client ever gets one of them.

    The serving pods count the comparisons (`modelpilot_shadow_comparisons_total{agreed}`); the verdict is the
    share that agreed over the whole phase. It needs a router that can mirror requests (gateway or ingress).
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("duration(self.maxDuration) > duration('0s')", "rollout.shadow.maxDuration must be a positive duration"),
        )
    )

    enabled: bool = Field(default=True, description="Run the shadow phase; false keeps the settings but skips it.")
    min_comparisons: int = Field(
        default=200,
        ge=1,
        description="Fewest compared answers for a verdict; fewer by maxDuration makes the phase inconclusive.",
    )
    min_agreement: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="Lowest share of the candidate's answers that must agree with stable's; lower rolls back.",
    )
    max_duration: Duration = Field(
        default="30m",
        description="How long the phase may last before too few comparisons make it inconclusive (the rollout pauses).",
    )

    @model_validator(mode="after")
    def _positive_duration(self) -> Shadow:
        if parse_duration(self.max_duration) <= 0:
            raise ValueError("rollout.shadow.maxDuration must be a positive duration")
        return self

    @property
    def max_duration_seconds(self) -> float:
        """maxDuration in seconds."""
        return parse_duration(self.max_duration)


class Rollout(SpecModel):
    """The progressive delivery of a candidate version: weight steps, held and analysed one by one."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("self.steps.isSorted()", "rollout.steps must be in ascending order"),
            (
                "self.steps.all(s, self.steps.exists_one(t, t == s))",
                "rollout.steps must not repeat a weight",
            ),
            ("self.steps[size(self.steps) - 1] == 100", "rollout.steps must end at 100"),
            ("duration(self.interval) > duration('0s')", "rollout.interval must be a positive duration"),
        )
    )

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary weights in percent, ascending, ending at 100.",
    )
    interval: Duration = Field(default="60s", description="How long each step is held before it is analysed.")
    canary_ready_timeout: Duration = Field(
        default="10m",
        description="How long the canary may take to become Ready before the rollout rolls back.",
    )
    analysis: Analysis = Field(description="Prometheus analysis of each step.")
    shadow: Shadow | None = Field(
        default=None,
        description=(
            "A shadow phase before the first step: the candidate gets a mirror of live traffic and none of the "
            "answers clients see, and must agree with stable (router gateway or ingress); unset: no shadow phase."
        ),
    )

    @property
    def shadow_enabled(self) -> bool:
        """Whether the rollout starts with a shadow phase."""
        return self.shadow is not None and self.shadow.enabled

    @model_validator(mode="after")
    def _steps_are_a_ramp(self) -> Rollout:
        if list(self.steps) != sorted(self.steps):
            raise ValueError("rollout.steps must be in ascending order")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError("rollout.steps must not repeat a weight")
        if self.steps[-1] != 100:
            raise ValueError("rollout.steps must end at 100")
        if parse_duration(self.interval) <= 0:
            raise ValueError("rollout.interval must be a positive duration")
        return self

    @property
    def interval_seconds(self) -> float:
        """The step hold time in seconds."""
        return parse_duration(self.interval)
