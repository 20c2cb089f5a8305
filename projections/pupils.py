"""Pupil facts view: every accepted ``pupil.*`` event as a bitemporal fact, keyed by the pupil's
pseudonym (never the UPN). Pupil state as of a moment is folded with ``ledger.core.rules.fold_pupil``, the
same fold the write side's rules use, so a view can never disagree with the rules about who was on
roll or which placement was open.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ledger.core.catalogue import parse_timestamp
from ledger.core.rules import PupilState, Record, fold_pupil

from .facts import LogEvent, Moment, Table, View

PUPIL_FACTS = Table(
    "pv_pupil_facts",
    (
        ("submitter", "TEXT NOT NULL"),
        ("school", "TEXT"),
        ("setting", "TEXT"),
        ("data", "TEXT NOT NULL"),
        ("flags", "TEXT NOT NULL"),
    ),
    indexes=("subject, seq", "type"),
)


def rows(ev: LogEvent) -> Iterable[tuple[Table, dict[str, Any]]]:
    r = ev.record
    if not r.type.startswith("pupil.") or r.type == "pupil.record_retracted":
        return
    yield (
        PUPIL_FACTS,
        {
            "submitter": r.submitter,
            "school": r.data.get("school") or r.data.get("commissioner"),
            "setting": r.data.get("setting"),
            "data": json.dumps(r.data, sort_keys=True),
            "flags": ",".join(ev.flags),
        },
    )


VIEW = View("pupils", 1, (PUPIL_FACTS,), rows)


@dataclass
class Pupil:
    """One pupil's facts in force at a moment, in ledger order, and the state folded from them."""

    key: str  # pseudonym
    records: list[Record] = field(default_factory=list)
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # event_id -> flags set at receipt
    _state: PupilState | None = None

    @property
    def state(self) -> PupilState:
        if self._state is None:
            self._state = fold_pupil(self.records)
        return self._state

    def of_type(self, *types: str) -> Iterator[Record]:
        return (r for r in self.records if r.type in types)

    def has_setting_between(self, after: date, until: date) -> bool:
        """Whether any registration or AP placement was open on some day in (after, until]."""
        for reg in self.state.registrations:
            if reg.start <= until and (reg.end is None or reg.end > after):
                return True
        for ep in self.state.episodes.values():
            if ep.kind == "placement" and ep.start <= until and (ep.end is None or ep.end > after):
                return True
        return False

    def sen_or_looked_after_on(self, day: date) -> bool:
        return any(r.open_on(day) and (r.sen_status != "N" or r.looked_after) for r in self.state.registrations)


def pupils(db: Any, moment: Moment) -> list[Pupil]:
    """Every pupil's facts in force at ``moment`` (effective date cut at ``moment.as_of``)."""
    out: dict[str, Pupil] = {}
    for subject, event_id, etype, submitter, occurred_on, received_at, data, flags in db.facts(
        PUPIL_FACTS.name,
        moment,
        columns="subject, event_id, type, submitter, occurred_on, received_at, data, flags",
        order="subject, seq",
    ):
        pupil = out.get(subject)
        if pupil is None:
            pupil = out[subject] = Pupil(subject)
        when = parse_timestamp(received_at)
        assert when is not None
        pupil.records.append(Record(event_id, etype, submitter, subject, date.fromisoformat(occurred_on), when, json.loads(data)))
        if flags:
            pupil.flags[event_id] = tuple(flags.split(","))
    return list(out.values())
