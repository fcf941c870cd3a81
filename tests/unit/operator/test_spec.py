"""The pydantic spec re-validates what the CRD's schema and CEL rules check, with the same messages."""

from __future__ import annotations

import pytest

from modelpilot.operator.spec import InvalidSpecError, parse_duration, parse_spec
from tests.support.crd_cases import INVALID_CASES, InvalidCase, valid_spec


def test_valid_spec_parses_with_defaults() -> None:
    spec = parse_spec(valid_spec())
    assert spec.model.has_candidate
    assert spec.rollout is not None
    assert spec.rollout.interval_seconds == 60
    assert spec.traffic.header is not None
    assert spec.traffic.header.name == "x-model-track"
    assert spec.traffic.header.value_from.secret_key_ref.name == "canary-header"
    assert spec.serving.port == 8080


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.name)
def test_invalid_spec_is_rejected_with_a_readable_message(case: InvalidCase) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        parse_spec(case.spec())
    assert case.message.lower() in str(raised.value).lower()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("1.5s", 1.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "1d", "-1s", "s"])
def test_parse_duration_rejects_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
