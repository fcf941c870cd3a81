"""The canary header's value comes from its Secret; a Secret that is missing, lacks the key or holds a
guessable value means no header rule, a CanaryHeaderReady condition that says why and one Event."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.handlers.canary_header import header_value, read_canary_header
from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.kubeapi import KubeError
from modelpilot.operator.spec import ModelDeploymentSpec
from tests.unit.operator.builders.examples import OWNER, gateway_raw, spec_of

SECRET_NAME = "fraud-canary-header"
VALUE = "3f9c2a7d81b04e6a"


def _secret(data: dict[str, bytes]) -> dict[str, Any]:
    return {"kind": "Secret", "data": {key: base64.b64encode(value).decode() for key, value in data.items()}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.written: list[dict[str, Any]] = []

    def emit(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    async def write(self, body: dict[str, Any]) -> None:
        self.written.append(body)


def _journal(recorder: Recorder, status: dict[str, Any] | None = None) -> Journal:
    return Journal(status, 3, recorder.emit, recorder.write)


def _reader(secrets: dict[str, dict[str, Any]]) -> Any:
    async def read(name: str) -> dict[str, Any] | None:
        return secrets.get(name)

    return read


def _condition(journal: Journal) -> dict[str, Any] | None:
    found = [c for c in journal.status.dump().get("conditions", []) if c["type"] == "CanaryHeaderReady"]
    return found[0] if found else None


def _spec() -> ModelDeploymentSpec:
    return spec_of(gateway_raw())


async def test_the_value_is_read_from_the_secret_key_and_the_condition_is_true() -> None:
    recorder = Recorder()
    journal = _journal(recorder)
    read = _reader({SECRET_NAME: _secret({"value": f"  {VALUE}\n".encode()})})
    assert await read_canary_header(_spec(), read, journal) == VALUE
    condition = _condition(journal)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "SecretRead")
    assert recorder.events == []


@pytest.mark.parametrize(
    ("secrets", "reason", "words"),
    [
        ({}, "HeaderSecretMissing", "Secret fraud-canary-header named in spec.traffic.header.valueFrom does not exist"),
        ({SECRET_NAME: _secret({"other": VALUE.encode()})}, "HeaderSecretKeyMissing", "has no key value"),
        ({SECRET_NAME: _secret({"value": b"canary"})}, "HeaderValueTooShort", "holds 6 characters"),
        ({SECRET_NAME: _secret({"value": b"\xff" * 20})}, "HeaderValueInvalid", "is not ASCII text"),
        ({SECRET_NAME: _secret({"value": b"line-one-long-enough\r\nX-Other: 1"})}, "HeaderValueInvalid", "printable"),
        ({SECRET_NAME: _secret({"value": b"a" * 4097})}, "HeaderValueInvalid", "at most 4096"),
    ],
)
async def test_an_unusable_secret_means_no_header_a_false_condition_and_one_event(
    secrets: dict[str, dict[str, Any]], reason: str, words: str
) -> None:
    recorder = Recorder()
    journal = _journal(recorder)
    assert await read_canary_header(_spec(), _reader(secrets), journal) is None
    condition = _condition(journal)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert words in condition["message"]
    assert "no request is routed to the canary" in condition["message"]
    assert [(kind, why) for kind, why, _ in recorder.events] == [("Warning", reason)]
    # Never the value itself, whatever it was.
    assert "canary\n" not in condition["message"]
    assert "aaaa" not in condition["message"]

    # The next reconciliation starts from the status written: the same problem posts no second Event.
    again = Recorder()
    next_journal = _journal(again, journal.status.dump())
    assert await read_canary_header(_spec(), _reader(secrets), next_journal) is None
    assert again.events == []


async def test_a_secret_the_operator_may_not_read_is_a_condition_not_an_error() -> None:
    async def forbidden(name: str) -> dict[str, Any] | None:
        raise KubeError(403, "secrets is forbidden")

    recorder = Recorder()
    journal = _journal(recorder)
    assert await read_canary_header(_spec(), forbidden, journal) is None
    condition = _condition(journal)
    assert condition is not None
    assert condition["reason"] == "HeaderSecretForbidden"
    assert len(recorder.events) == 1


async def test_other_api_errors_are_left_to_the_reconcile_loop() -> None:
    async def failing(name: str) -> dict[str, Any] | None:
        raise KubeError(500, "etcd timeout")

    with pytest.raises(KubeError):
        await read_canary_header(_spec(), failing, _journal(Recorder()))


async def test_without_a_header_no_secret_is_read_and_the_condition_goes() -> None:
    raw = gateway_raw()
    del raw["traffic"]["header"]

    async def never(name: str) -> dict[str, Any] | None:
        raise AssertionError("no Secret should be read")

    recorder = Recorder()
    status = {"conditions": [{"type": "CanaryHeaderReady", "status": "False", "reason": "HeaderSecretMissing"}]}
    journal = _journal(recorder, status)
    assert await read_canary_header(spec_of(raw), never, journal) is None
    assert _condition(journal) is None
    assert recorder.events == []


def test_a_fixed_default_value_is_never_produced() -> None:
    assert header_value(None, SECRET_NAME, "value") != "canary"
    assert not isinstance(header_value(_secret({"value": b"canary"}), SECRET_NAME, "value"), str)


@pytest.mark.parametrize("value", [None, VALUE])
def test_the_plan_routes_by_header_only_with_the_value_read(value: str | None) -> None:
    plan = plan_traffic(OWNER, _spec(), stable="7", canary="8", weight=10, canary_header_value=value)
    route = next(obj for obj in plan.apply if obj["kind"] == "HTTPRoute")
    header_rules = [rule for rule in route["spec"]["rules"] if "headers" in rule["matches"][0]]
    if value is None:
        assert header_rules == []
    else:
        assert header_rules[0]["matches"][0]["headers"] == [{"type": "Exact", "name": "x-model-track", "value": VALUE}]
