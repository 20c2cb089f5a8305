"""Accepted events as the rules and the views see them, and corrections: which records are in force.

A record named by a later record's ``corrects`` is superseded and drops out of every fold; history still shows it.
A retraction (``pupil.record_retracted``) supersedes its target and is itself no fact. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ledger.core.errors import Category, Problem


@dataclass(frozen=True)
class Record:
    """One accepted event as the rules see it."""

    event_id: str
    type: str
    submitter: str
    subject: str  # the UPN, organisation id, or (access.* events) audit pseudonym the event is about
    occurred_on: date
    received_at: datetime
    data: dict[str, Any]
    corrects: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any], received_at: datetime) -> Record:
        return cls(
            body["event_id"],
            body["type"],
            body["submitter"],
            body["subject"].get("upn") or body["subject"].get("pupil") or body["subject"]["org"],
            date.fromisoformat(body["occurred_on"]),
            received_at,
            body["data"],
            body.get("corrects"),
        )


def effective(records: Sequence[Record]) -> list[Record]:
    """Records not superseded by a later correction or retraction."""
    superseded = {r.corrects for r in records if r.corrects}
    return [r for r in records if r.event_id not in superseded and r.type != "pupil.record_retracted"]


def corrected_chain(records: Sequence[Record], event_id: str) -> set[str]:
    """``event_id`` and every event it corrects, link by link: for E1 <- E2 <- E3, E3's chain is all three."""
    by_id = {r.event_id: r for r in records}
    chain: set[str] = set()
    current: str | None = event_id
    while current is not None and current not in chain:
        chain.add(current)
        record = by_id.get(current)
        current = record.corrects if record else None
    return chain


def without_corrected(records: Sequence[Record], new: Record) -> list[Record]:
    """The subject's records as ``new`` is judged against them: if it corrects an earlier record, as if the whole
    chain it supersedes, back to the first, had never been posted."""
    chain = corrected_chain(records, new.corrects) if new.corrects else set()
    return [r for r in records if r.event_id not in chain]


def check_correction(records: Sequence[Record], new: Record) -> list[Problem]:
    """Whether ``new`` may correct (or retract) the record it names: one of the subject's, its submitter's own, not
    superseded already, of the same type (or a retraction), and not itself a retraction."""
    path = "$.payload.corrects"
    if new.corrects is None:
        if new.type == "pupil.record_retracted":
            return [Problem("corrects_required", path, "a retraction names the event it retracts (corrects)")]
        return []
    target = next((r for r in records if r.event_id == new.corrects), None)
    if target is None:
        return [Problem("correction_target_unknown", path, f"no event {new.corrects} is recorded for this subject")]
    if target.submitter != new.submitter:
        return [
            Problem(
                "correction_not_own",
                path,
                f"event {new.corrects} was posted by another organisation; only its submitter may correct it",
                Category.FORBIDDEN,
            )
        ]
    later = next((r for r in records if r.corrects == new.corrects), None)
    if later is not None:
        return [
            Problem("already_corrected", path, f"event {new.corrects} is already superseded by {later.event_id}; correct that one instead")
        ]
    if target.type == "pupil.record_retracted":
        return [Problem("correction_type", path, "a retraction is final: post the event again, with a new event_id")]
    if new.type not in (target.type, "pupil.record_retracted"):
        return [Problem("correction_type", path, f"a correction of a {target.type} must have the same type (or be pupil.record_retracted)")]
    return []
