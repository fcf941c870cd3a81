"""Timestamps in the rollout status: written rounded up (a hold is never shortened), read leniently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def stamp(moment: datetime) -> str:
    """RFC 3339 with second precision, rounded up so that a hold is never shortened by the rounding."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.isoformat().replace("+00:00", "Z")


def parse_stamp(text: str | None) -> datetime | None:
    """A timestamp of the status as a timezone-aware datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
