"""A pupil's state as the rules weigh it, folded from the pupil's records in force: registrations, open-ended
episodes (placements, managed moves, part-time timetables, CME), exclusions and suspension totals, and who has
written about the pupil when. Pure; the views fold with the same ``fold_pupil`` so they never disagree with the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ledger.core.records import Record, effective
from ledger.core.schooltime import academic_year

MAIN_STATUSES = ("C", "M")  # a main (single or main dual) registration; S is subsidiary


@dataclass
class Registration:
    school: str
    status: str
    start: date
    end: date | None
    sen_status: str
    looked_after: bool
    destination: str | None = None  # where the pupil went, once removed

    def open_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)


@dataclass
class Episode:
    """An open-ended thing started by one event and ended by another (placement, move, CME...)."""

    kind: str
    start_event_id: str
    owner: str
    start: date
    end: date | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PupilState:
    registrations: list[Registration] = field(default_factory=list)
    episodes: dict[str, Episode] = field(default_factory=dict)
    exclusions: dict[str, Record] = field(default_factory=dict)
    suspension_sessions: dict[str, int] = field(default_factory=dict)  # academic year -> sessions
    latest_by_submitter: dict[str, date] = field(default_factory=dict)
    submitters_seen: set[str] = field(default_factory=set)

    def open_registrations(self) -> list[Registration]:
        return [r for r in self.registrations if r.end is None]

    def registration_at(self, school: str) -> Registration | None:
        matches = [r for r in self.registrations if r.school == school and r.end is None]
        return matches[-1] if matches else None

    def registration_on(self, school: str, day: date) -> Registration | None:
        matches = [r for r in self.registrations if r.school == school and r.start <= day and (r.end is None or day <= r.end)]
        return matches[-1] if matches else None

    def ever_at(self, school: str) -> bool:
        return any(r.school == school for r in self.registrations)


EPISODE_STARTS = {
    "pupil.ap_placement_started": "placement",
    "pupil.managed_move_started": "managed_move",
    "pupil.part_time_timetable_started": "part_time_timetable",
    "pupil.missing_education_recorded": "missing_education",
}
EPISODE_ENDS = {
    "pupil.ap_placement_ended": ("placement", "placement_event_id"),
    "pupil.managed_move_ended": ("managed_move", "managed_move_event_id"),
    "pupil.part_time_timetable_ended": ("part_time_timetable", "timetable_event_id"),
    "pupil.missing_education_resolved": ("missing_education", "cme_event_id"),
}


def fold_pupil(records: Sequence[Record]) -> PupilState:
    state = PupilState()
    for record in effective(records):
        apply_pupil(state, record)
    return state


def apply_pupil(state: PupilState, r: Record) -> None:
    d = r.data
    state.submitters_seen.add(r.submitter)
    previous = state.latest_by_submitter.get(r.submitter)
    if previous is None or r.occurred_on > previous:
        state.latest_by_submitter[r.submitter] = r.occurred_on
    if r.type == "pupil.registered":
        state.registrations.append(
            Registration(d["school"], d["enrolment_status"], r.occurred_on, None, d["sen_status"], d["looked_after"])
        )
    elif r.type == "pupil.deregistered":
        reg = state.registration_at(d["school"])
        if reg is not None:
            reg.end, reg.destination = r.occurred_on, d["destination"]
    elif r.type == "pupil.excluded":
        state.exclusions[r.event_id] = r
        if d["kind"] == "SUSP":
            year = academic_year(r.occurred_on)
            state.suspension_sessions[year] = state.suspension_sessions.get(year, 0) + d["sessions"]
    elif r.type in EPISODE_STARTS:
        state.episodes[r.event_id] = Episode(EPISODE_STARTS[r.type], r.event_id, r.submitter, r.occurred_on, details=dict(d))
    elif r.type in EPISODE_ENDS:
        episode = state.episodes.get(d[EPISODE_ENDS[r.type][1]])
        if episode is not None:
            episode.end = r.occurred_on
    elif r.type == "pupil.ap_placement_reviewed":
        episode = state.episodes.get(d["placement_event_id"])
        if episode is not None and "new_planned_end" in d:
            episode.details["planned_end"] = d["new_planned_end"]
