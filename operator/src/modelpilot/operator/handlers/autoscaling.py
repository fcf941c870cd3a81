"""Whether the request-rate autoscaling a spec asks for is in force: the RequestRateScaling condition.

`serving.autoscaling.requestRate` needs KEDA; under the operator's `hpa` backend the tracks scale on CPU
alone, and the condition (with one Event when it turns False) says so instead of leaving the field unread.
"""

from __future__ import annotations

from modelpilot.operator.builders.autoscaling import Autoscaler, uses_keda
from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.spec import ModelDeploymentSpec
from modelpilot.operator.status import ConditionType

CONDITION: ConditionType = "RequestRateScaling"
KEDA_MISSING_MESSAGE = (
    "serving.autoscaling.requestRate needs KEDA, and the operator's autoscaler is hpa: the tracks scale on CPU "
    "only. Install KEDA and run helm upgrade (operator.autoscaler auto or keda)."
)


def report_request_rate_scaling(spec: ModelDeploymentSpec, autoscaler: Autoscaler, journal: Journal) -> None:
    """Set or drop the RequestRateScaling condition for this spec and backend."""
    autoscaling = spec.serving.autoscaling
    if autoscaling is None or autoscaling.request_rate is None:
        journal.drop_condition(CONDITION)
        return
    if uses_keda(spec, autoscaler):
        journal.condition(CONDITION, True, "ScaledObject", "KEDA scales each track on its request rate and CPU")
        return
    status, reason, _ = journal.was(CONDITION)
    if (status, reason) != ("False", "KedaNotInstalled"):
        journal.emit("Warning", "KedaNotInstalled", KEDA_MISSING_MESSAGE)
    journal.condition(CONDITION, False, "KedaNotInstalled", KEDA_MISSING_MESSAGE)
