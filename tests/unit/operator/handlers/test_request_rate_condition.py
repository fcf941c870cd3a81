"""RequestRateScaling says whether serving.autoscaling.requestRate is in force: True under KEDA, False with one
Event when the operator's autoscaler is plain HPAs, absent when the spec asks for no request-rate scaling."""

from __future__ import annotations

from typing import Any

from modelpilot.operator.handlers.autoscaling import report_request_rate_scaling
from modelpilot.operator.handlers.journal import Journal
from tests.unit.operator.builders.examples import gateway_raw, spec_of


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def emit(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    async def write(self, body: dict[str, Any]) -> None:
        return None


def _spec(request_rate: bool) -> Any:
    raw = gateway_raw()
    if request_rate:
        del raw["serving"]["autoscaling"]["metric"]
        raw["serving"]["autoscaling"]["requestRate"] = {"targetPerReplica": 50}
    return spec_of(raw)


def _condition(journal: Journal) -> dict[str, Any] | None:
    found = [c for c in journal.status.dump().get("conditions", []) if c["type"] == "RequestRateScaling"]
    return found[0] if found else None


def test_under_keda_the_condition_is_true_and_quiet() -> None:
    recorder = Recorder()
    journal = Journal(None, 1, recorder.emit, recorder.write)
    report_request_rate_scaling(_spec(True), "keda", journal)
    condition = _condition(journal)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "ScaledObject")
    assert recorder.events == []


def test_without_keda_the_condition_says_so_with_one_event_across_runs() -> None:
    recorder = Recorder()
    journal = Journal(None, 1, recorder.emit, recorder.write)
    report_request_rate_scaling(_spec(True), "hpa", journal)
    condition = _condition(journal)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "KedaNotInstalled")
    assert "CPU only" in condition["message"]
    assert [(kind, reason) for kind, reason, _ in recorder.events] == [("Warning", "KedaNotInstalled")]
    # The next run reads the written status: no second Event.
    again = Journal(journal.status.dump(), 1, recorder.emit, recorder.write)
    report_request_rate_scaling(_spec(True), "hpa", again)
    assert len(recorder.events) == 1


def test_without_request_rate_the_condition_goes() -> None:
    recorder = Recorder()
    journal = Journal(None, 1, recorder.emit, recorder.write)
    report_request_rate_scaling(_spec(True), "hpa", journal)
    later = Journal(journal.status.dump(), 2, recorder.emit, recorder.write)
    report_request_rate_scaling(_spec(False), "keda", later)
    assert _condition(later) is None
