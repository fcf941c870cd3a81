"""Timestamps in the rollout status: RFC 3339 in UTC with millisecond precision (no fraction on a whole
second). Hold starts are rounded up, so a hold is never shortened by the rounding; the time an analysis
was taken is rounded down, so it never looks later than it was. Both read back with `parse_stamp`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_MILLISECOND = 1000


def stamp(moment: datetime) -> str:
    """`moment` rounded up to the millisecond."""
    moment = moment.astimezone(UTC)
    extra = moment.microsecond % _MILLISECOND
    if extra:
        moment += timedelta(microseconds=_MILLISECOND - extra)
    return _format(moment)


def stamp_down(moment: datetime) -> str:
    """`moment` rounded down to the millisecond."""
    moment = moment.astimezone(UTC)
    return _format(moment.replace(microsecond=moment.microsecond - moment.microsecond % _MILLISECOND))


def _format(moment: datetime) -> str:
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_stamp(text: str | None) -> datetime | None:
    """A timestamp of the status as a timezone-aware datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
