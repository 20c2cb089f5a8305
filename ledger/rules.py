"""Domain rules per subject. Pure: state is folded from the subject's accepted records.

A rule either rejects (the event cannot be true given what the ledger knows) or flags
(lawful but concerning, or late), see README "Rules". Corrections: a record named by a later
record's ``corrects`` is superseded and drops out of the state; history still shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .errors import Category, Problem
from .identifiers import org_scheme
from .schooltime import academic_year, school_days_between

LATE_AFTER_SCHOOL_DAYS = 5
SUSPENSION_CAP_DAYS = 45
MAIN_STATUSES = ("C", "M")


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
            body["event_id"], body["type"], body["submitter"],
            body["subject"].get("upn") or body["subject"].get("pupil") or body["subject"]["org"], date.fromisoformat(body["occurred_on"]),
            received_at, body["data"], body.get("corrects"),
        )


@dataclass
class Registration:
    school: str
    status: str
    start: date
    end: date | None
    sen_status: str
    looked_after: bool

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


def effective(records: Sequence[Record]) -> list[Record]:
    """Records not superseded by a later correction or retraction."""
    superseded = {r.corrects for r in records if r.corrects}
    return [r for r in records if r.event_id not in superseded and r.type != "pupil.record_retracted"]


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
            reg.end = r.occurred_on
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


def _reject(code: str, path: str, message: str, category: Category = Category.INVALID) -> Problem:
    return Problem(code, f"$.payload.data.{path}" if path else "$.payload", message, category)


def check_correction(records: Sequence[Record], new: Record) -> list[Problem]:
    if new.corrects is None:
        return []
    target = next((r for r in records if r.event_id == new.corrects), None)
    path = "$.payload.corrects"
    if target is None:
        return [Problem("correction_target_unknown", path, f"no event {new.corrects} is recorded for this subject")]
    if target.submitter != new.submitter:
        return [Problem("correction_not_own", path, f"event {new.corrects} was posted by {target.submitter}; only its submitter may correct it", Category.FORBIDDEN)]
    later = next((r for r in records if r.corrects == new.corrects), None)
    if later is not None:
        return [Problem("already_corrected", path, f"event {new.corrects} is already superseded by {later.event_id}; correct that one instead")]
    if new.type not in (target.type, "pupil.record_retracted"):
        return [Problem("correction_type", path, f"a correction of a {target.type} must have the same type (or be pupil.record_retracted)")]
    return []


def check_pupil(records: Sequence[Record], new: Record) -> tuple[list[Problem], list[dict[str, str]]]:
    """Problems that reject ``new`` and flags to record with it, given the subject's records."""
    problems = check_correction(records, new)
    if problems:
        return problems, []
    prior = [r for r in records if r.event_id != new.corrects]
    state = fold_pupil(prior)
    flags: list[dict[str, str]] = []
    d = new.data
    who = new.submitter
    is_school = who.startswith("urn:")

    def own(field_name: str) -> None:
        if d.get(field_name) != who:
            problems.append(_reject("not_submitter", field_name, f"{field_name} must be the submitter ({who})", Category.FORBIDDEN))

    def off_roll(path: str, when: str) -> None:
        if state.ever_at(who):
            problems.append(_reject("not_on_roll", path, f"the pupil was not on {who}'s roll {when}"))
        else:
            problems.append(_reject("unknown_pupil", path, f"{who} has never had this pupil on roll"))

    def on_roll_required() -> None:
        if state.registration_on(who, new.occurred_on) is None:
            off_roll("", f"on {new.occurred_on}")

    t = new.type
    if t == "pupil.registered":
        own("school")
        if state.registration_at(who) is not None:
            problems.append(_reject("already_registered", "school", f"the pupil is already on {who}'s roll"))
        elif d["enrolment_status"] in MAIN_STATUSES:
            other = next((r for r in state.open_registrations() if r.status in MAIN_STATUSES and r.start <= new.occurred_on), None)
            if other is not None:
                problems.append(_reject(
                    "second_main_registration", "enrolment_status",
                    f"the pupil already has an open main registration at {other.school} since {other.start}; "
                    "that school must post pupil.deregistered first, or register this one as S (subsidiary)",
                ))
        elif d["enrolment_status"] == "S" and not any(r.status == "M" for r in state.open_registrations()):
            flags.append({"code": "subsidiary_without_main", "message": "dual (subsidiary) registration but no open main registration is recorded"})
    elif t == "pupil.deregistered":
        own("school")
        reg = state.registration_at(who)
        if reg is None:
            off_roll("school", "now, so cannot be removed from it")
        elif new.occurred_on < reg.start:
            problems.append(_reject("removal_before_admission", "", f"removal on {new.occurred_on} is before admission on {reg.start}"))
        else:
            latest = state.latest_by_submitter.get(who)
            if latest is not None and new.occurred_on < latest:
                flags.append({"code": "backdated_removal", "message": f"removal dated {new.occurred_on}, before {who}'s earlier report dated {latest}"})
            if d["destination"] == "unknown":
                flags.append({"code": "unknown_destination", "message": "removed from roll with no known destination"})
            if reg.sen_status != "N":
                flags.append({"code": "sen_exit", "message": f"a pupil with SEN status {reg.sen_status} left the roll"})
    elif t == "pupil.excluded":
        own("school")
        on_roll_required()
        if d["kind"] == "SUSP" and not problems:
            year = academic_year(new.occurred_on)
            total = state.suspension_sessions.get(year, 0) + d["sessions"]
            if total > 2 * SUSPENSION_CAP_DAYS:
                flags.append({"code": "suspension_cap_exceeded", "message": f"{total / 2:g} suspension days in {year}, over the {SUSPENSION_CAP_DAYS}-day cap"})
    elif t == "pupil.exclusion_reviewed":
        exclusion = state.exclusions.get(d["exclusion_event_id"])
        if exclusion is None:
            problems.append(_reject("exclusion_unknown", "exclusion_event_id", "no exclusion with that event_id is recorded for this pupil"))
        elif exclusion.data["school"] != d["school"]:
            problems.append(_reject("exclusion_school", "school", f"that exclusion was from {exclusion.data['school']}"))
        elif is_school and who != d["school"]:
            problems.append(_reject("not_submitter", "school", f"school must be the submitter ({who})", Category.FORBIDDEN))
    elif t in EPISODE_STARTS:
        kind = EPISODE_STARTS[t]
        if t == "pupil.ap_placement_started":
            own("commissioner")
            if is_school:
                on_roll_required()
            if any(e.kind == kind and e.end is None and e.details.get("setting") == d["setting"] for e in state.episodes.values()):
                problems.append(_reject("placement_already_open", "setting", f"the pupil already has an open placement at {d['setting']}"))
            expected = {"urn": ("URN",), "ukprn": ("UKPRN",), "uprov": ("NFE", "OOT", "OTH", "WBP")}[org_scheme(d["setting"]) or ""]
            if d["setting_type"] not in expected:
                problems.append(_reject("setting_type_mismatch", "setting_type", f"a setting {d['setting']} has setting_type {' or '.join(expected)}"))
        elif t in ("pupil.managed_move_started", "pupil.part_time_timetable_started"):
            own("school")
            on_roll_required()
        else:
            own("la")
    elif t in EPISODE_ENDS or t == "pupil.ap_placement_reviewed":
        kind, ref = EPISODE_ENDS.get(t, ("placement", "placement_event_id"))
        episode = state.episodes.get(d[ref])
        if episode is None or episode.kind != kind or episode.end is not None:
            problems.append(_reject(f"{kind}_not_open", ref, f"no open {kind.replace('_', ' ')} started by event {d[ref]}"))
        elif new.occurred_on < episode.start:
            problems.append(_reject("end_before_start", "", f"{new.occurred_on} is before the start on {episode.start}"))
        elif episode.owner != who and not (t == "pupil.ap_placement_ended" and episode.details.get("setting") == who):
            problems.append(_reject("not_owner", ref, f"only {episode.owner} (or the setting) may update this {kind.replace('_', ' ')}", Category.FORBIDDEN))
    elif t == "pupil.home_education_notified":
        own("la")
    elif t == "pupil.attendance_summary_recorded":
        if d["attended_sessions"] > d["possible_sessions"]:
            problems.append(_reject("attended_over_possible", "attended_sessions", "attended_sessions exceeds possible_sessions"))
        if is_school and not state.ever_at(who):
            off_roll("", "")
    elif t == "pupil.post16_destination_recorded" and is_school and not state.ever_at(who):
        off_roll("", "")

    if not problems:
        late = school_days_between(new.occurred_on, new.received_at.date())
        if late > LATE_AFTER_SCHOOL_DAYS:
            flags.append({"code": "late_report", "message": f"received {late} school days after occurred_on (limit {LATE_AFTER_SCHOOL_DAYS})"})
    return problems, flags
