"""The canary header's value (spec.traffic.header), read from its Secret each reconciliation.

The header steers a request to the canary, so its value is a secret: it comes from a Secret in the
ModelDeployment's namespace, and a value that is missing, unreadable or too short to be secret means
no header rule at all (the router carries weights only) — never a default. The condition
`CanaryHeaderReady` says which, with one Warning Event each time the problem changes; the rollout goes on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.kubeapi import KubeError
from modelpilot.operator.spec import ModelDeploymentSpec
from modelpilot.operator.spec.traffic import HEADER_VALUE_MAX_LENGTH, HEADER_VALUE_MIN_LENGTH
from modelpilot.operator.status import ConditionType

CONDITION: ConditionType = "CanaryHeaderReady"
# Visible ASCII with inner spaces: what an HTTP header value, an HTTPRoute match and an annotation all take.
_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")

# Name of a Secret → the Secret object (None when it does not exist).
ReadSecret = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class HeaderProblem:
    """Why the header's value cannot be used: a condition reason and a message without the value."""

    reason: str
    message: str


def header_value(secret: dict[str, Any] | None, secret_name: str, key: str) -> str | HeaderProblem:
    """The header's value in a Secret object, or why there is none to use."""
    where = f"Secret {secret_name} named in spec.traffic.header.valueFrom"
    if secret is None:
        return HeaderProblem("HeaderSecretMissing", f"{where} does not exist")
    encoded = (secret.get("data") or {}).get(key)
    if encoded is None:
        return HeaderProblem("HeaderSecretKeyMissing", f"{where} has no key {key}")
    try:
        value = base64.b64decode(encoded, validate=True).decode("ascii").strip()
    except (binascii.Error, ValueError):
        return HeaderProblem("HeaderValueInvalid", f"key {key} of {where} is not ASCII text")
    if not _VALUE.fullmatch(value) or len(value) > HEADER_VALUE_MAX_LENGTH:
        return HeaderProblem(
            "HeaderValueInvalid",
            f"key {key} of {where} must be printable ASCII of at most {HEADER_VALUE_MAX_LENGTH} characters",
        )
    if len(value) < HEADER_VALUE_MIN_LENGTH:
        return HeaderProblem(
            "HeaderValueTooShort",
            f"key {key} of {where} holds {len(value)} characters; a value clients cannot guess has at least "
            f"{HEADER_VALUE_MIN_LENGTH} (e.g. openssl rand -hex 16)",
        )
    return value


async def read_canary_header(spec: ModelDeploymentSpec, read_secret: ReadSecret, journal: Journal) -> str | None:
    """The header's value for the router, None when there is no header rule; sets the condition."""
    header = spec.traffic.header
    if header is None:
        journal.drop_condition(CONDITION)
        return None
    ref = header.value_from.secret_key_ref
    try:
        found = header_value(await read_secret(ref.name), ref.name, ref.key)
    except KubeError as error:
        if error.status != 403:
            raise
        found = HeaderProblem(
            "HeaderSecretForbidden",
            f"the operator may not read Secret {ref.name}: grant it (chart value rbac.secretNamespaces)",
        )
    if isinstance(found, str):
        journal.condition(CONDITION, True, "SecretRead", f"header {header.name} routes to the canary")
        return found
    _, was_reason, was_message = journal.was(CONDITION)
    message = f"{found.message}: no request is routed to the canary by header {header.name}"
    journal.condition(CONDITION, False, found.reason, message)
    if (was_reason, was_message) != (found.reason, message):
        journal.emit("Warning", found.reason, message)
    return None
