"""The ledger's clock and its one text form of a moment (``timestamp``: sorts as time, as the tables store it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """``%Y-%m-%dT%H:%M:%S.%fZ`` in UTC, as ``isoformat`` writes it (two and a half times faster than ``strftime``;
    the projectors format every event's receipt time). Before the year 1000 ``strftime`` does not pad the year
    (glibc), and that form is kept."""
    utc = moment.astimezone(UTC)
    if utc.year < 1000:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
