"""The MLflow registry webhook receiver: HMAC verification, payload parsing and an aiohttp handler.

MLflow (3.3+) signs each delivery with the webhook's secret:
`X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{raw_body}")>`, with
`X-MLflow-Delivery-Id` and `X-MLflow-Timestamp` (Unix seconds) alongside. The body is
`{"entity", "action", "timestamp", "data": {"name", "alias", "version", …}}`.

Usage:

    async def wake(model_name: str, event: str) -> None: ...   # e.g. "model_version_alias.created"
    app = webhook_app(settings.webhook_secret, wake)           # POST /webhooks/mlflow

`verify_signature` and `parse_event` are pure; the handler answers 401 for a missing, wrong or stale
signature, 400 for a body it cannot read, and 200 once `wake` has returned (200 without calling
`wake` for events that do not name a registered model). The signature is checked before the body is
parsed, so an unsigned sender learns nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-MLflow-Signature"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_VERSION = "v1"
DEFAULT_PATH = "/webhooks/mlflow"
DEFAULT_TOLERANCE_SECONDS = 300.0
MAX_BODY_BYTES = 1024 * 1024
# Registry entities whose payload `name` is a registered model (prompts have their own names).
MODEL_ENTITIES = frozenset({"registered_model", "model_version", "model_version_tag", "model_version_alias"})

Wake = Callable[[str, str], Awaitable[None]]


class WebhookRejectedError(Exception):
    """The delivery is refused; `status` is the HTTP status to answer with."""

    status = 400


class SignatureError(WebhookRejectedError):
    """Missing, malformed, wrong or stale signature."""

    status = 401


@dataclass(frozen=True)
class RegistryEvent:
    """One webhook delivery, as far as the operator cares."""

    entity: str
    action: str
    timestamp: str
    model_name: str | None
    alias: str | None
    version: str | None

    @property
    def event(self) -> str:
        """The MLflow event name, e.g. `model_version_alias.created`."""
        return f"{self.entity}.{self.action}"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The `X-MLflow-Signature` value MLflow sends for this delivery."""
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise SignatureError unless `body` is signed with `secret` within `tolerance_seconds` of `now`."""
    delivery_id = headers.get(DELIVERY_ID_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    signature_header = headers.get(SIGNATURE_HEADER)
    if not delivery_id or not timestamp or not signature_header:
        raise SignatureError(f"missing {SIGNATURE_HEADER}, {DELIVERY_ID_HEADER} or {TIMESTAMP_HEADER}")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds: {timestamp[:40]!r}") from None
    # Replays are refused in both directions: a delivery from the future is as suspect as an old one.
    if abs(now - sent_at) > tolerance_seconds:
        raise SignatureError(f"timestamp {sent_at} is more than {tolerance_seconds:g}s away from now")
    expected = sign(secret, delivery_id, timestamp, body).encode()
    # Several space-separated signatures may be sent while a secret is rotated; one must match.
    offered = [item.encode() for item in signature_header.split() if item.startswith(f"{SIGNATURE_VERSION},")]
    matches = [hmac.compare_digest(expected, candidate) for candidate in offered]
    if not any(matches):
        raise SignatureError("signature does not match")


def parse_event(body: bytes) -> RegistryEvent:
    """The event in a webhook body; WebhookRejectedError when it is not one."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRejectedError(f"body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise WebhookRejectedError("body is not a JSON object")
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not isinstance(data, dict):
        raise WebhookRejectedError("body needs entity and action strings and a data object")

    def text(key: str) -> str | None:
        value = data.get(key)
        return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None

    return RegistryEvent(
        entity=entity,
        action=action,
        timestamp=str(payload.get("timestamp", "")),
        model_name=text("name") if entity in MODEL_ENTITIES else None,
        alias=text("alias"),
        version=text("version"),
    )


def make_webhook_handler(
    secret: str,
    wake: Wake,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler that verifies each delivery and calls `wake(model_name, event)`."""
    if not secret:
        raise ValueError("the webhook receiver needs a secret: unsigned deliveries would wake anything")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(secret, request.headers, body, now=clock(), tolerance_seconds=tolerance_seconds)
            event = parse_event(body)
        except WebhookRejectedError as error:
            logger.warning("webhook delivery refused: %s", error)
            return web.json_response({"error": str(error)}, status=error.status)
        if event.model_name is None:
            return web.json_response({"ignored": event.event})
        await wake(event.model_name, event.event)
        return web.json_response({"woke": event.model_name, "event": event.event})

    return handle


def webhook_app(
    secret: str,
    wake: Wake,
    *,
    path: str = DEFAULT_PATH,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> web.Application:
    """An aiohttp application serving the receiver at POST `path`."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(path, make_webhook_handler(secret, wake, tolerance_seconds=tolerance_seconds))
    return app
