"""Webhook signature verification and payload parsing, with a signature computed by hand (openssl)."""

from __future__ import annotations

import json

import pytest

from modelpilot.operator.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    WebhookRejectedError,
    parse_event,
    sign,
    verify_signature,
    webhook_app,
)

SECRET = "s3cret"
DELIVERY_ID = "d-1"
SENT_AT = 1767225600  # 2026-01-01T00:00:00Z
BODY = (
    b'{"entity": "model_version_alias", "action": "created", "timestamp": "2026-01-01T00:00:00+00:00", '
    b'"data": {"name": "fraud", "alias": "challenger", "version": "3"}}'
)
# printf '%s' "d-1.1767225600.$BODY" | openssl dgst -sha256 -hmac s3cret -binary | base64
SIGNATURE = "v1,ZUgcZVhPgGW71nMjSwpNc+FUjsOJeDYp2j/NK6FR+a4="


def headers(signature: str = SIGNATURE, timestamp: int = SENT_AT, delivery_id: str = DELIVERY_ID) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: str(timestamp), DELIVERY_ID_HEADER: delivery_id}


def test_sign_matches_the_hand_computed_signature() -> None:
    assert sign(SECRET, DELIVERY_ID, str(SENT_AT), BODY) == SIGNATURE


def test_a_correct_signature_within_the_tolerance_is_accepted() -> None:
    verify_signature(SECRET, headers(), BODY, now=SENT_AT + 299)
    verify_signature(SECRET, headers(), BODY, now=SENT_AT - 299)


@pytest.mark.parametrize(
    ("secret", "sent", "body", "problem"),
    [
        ("wrong", headers(), BODY, "does not match"),
        (SECRET, headers(), BODY.replace(b'"3"', b'"4"'), "does not match"),
        (SECRET, headers(delivery_id="d-2"), BODY, "does not match"),
        (SECRET, headers(timestamp=SENT_AT + 1), BODY, "does not match"),
        (SECRET, headers(signature="v2," + SIGNATURE[3:]), BODY, "does not match"),
        (SECRET, {TIMESTAMP_HEADER: str(SENT_AT), DELIVERY_ID_HEADER: DELIVERY_ID}, BODY, "missing"),
        (SECRET, headers() | {TIMESTAMP_HEADER: "yesterday"}, BODY, "Unix seconds"),
    ],
    ids=["wrong-secret", "body-changed", "delivery-id-changed", "timestamp-changed", "version", "unsigned", "bad-ts"],
)
def test_tampered_or_unsigned_deliveries_are_refused(
    secret: str, sent: dict[str, str], body: bytes, problem: str
) -> None:
    with pytest.raises(SignatureError, match=problem):
        verify_signature(secret, sent, body, now=SENT_AT)


def test_stale_and_future_timestamps_are_refused() -> None:
    with pytest.raises(SignatureError, match="away from now"):
        verify_signature(SECRET, headers(), BODY, now=SENT_AT + 301)
    with pytest.raises(SignatureError, match="away from now"):
        verify_signature(SECRET, headers(), BODY, now=SENT_AT - 31, tolerance_seconds=30)


def test_one_matching_signature_among_several_is_enough_for_secret_rotation() -> None:
    verify_signature(SECRET, headers(signature=f"v1,AAAA {SIGNATURE}"), BODY, now=SENT_AT)


def test_the_alias_event_names_the_model() -> None:
    event = parse_event(BODY)
    assert (event.model_name, event.alias, event.version, event.event) == (
        "fraud",
        "challenger",
        "3",
        "model_version_alias.created",
    )


def test_prompt_events_name_no_model() -> None:
    body = json.dumps({"entity": "prompt_alias", "action": "created", "data": {"name": "greeting"}}).encode()
    assert parse_event(body).model_name is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"entity": "model_version", "data": {}}'])
def test_bodies_that_are_not_events_are_refused(body: bytes) -> None:
    with pytest.raises(WebhookRejectedError):
        parse_event(body)


def test_a_receiver_without_a_secret_cannot_be_built() -> None:
    async def wake(model_name: str, event: str) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="secret"):
        webhook_app("", wake)
