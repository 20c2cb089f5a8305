"""One pupil's accepted records as the rows of a research extract, at the finest detail. Pure.

Rows are episodes (a registration spell, a placement, an exclusion...) or events, as the project's unit says.
Each row carries the pupil's year group, SEN status and looked-after flag on the row's date, taken from the
latest registration begun on or before it (the year group advanced one per academic year since), and where the
row happened: the school or setting, or the LA when no school is involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ledger.core.rules import Record, effective
from ledger.core.schooltime import academic_year_start_of

from .variables import (
    NOT_APPLICABLE,
    NOT_KNOWN,
    OPEN,
    YEAR_GROUPS,
    age_of_year_group,
    attendance_band,
    duration_band,
    hours_band,
    sessions_band,
)

EPISODE_STARTS = {
    "pupil.ap_placement_started": "placement",
    "pupil.managed_move_started": "managed_move",
    "pupil.part_time_timetable_started": "part_time_timetable",
    "pupil.missing_education_recorded": "missing_education",
}
EPISODE_ENDS = {
    "pupil.ap_placement_ended": "placement_event_id",
    "pupil.managed_move_ended": "managed_move_event_id",
    "pupil.part_time_timetable_ended": "timetable_event_id",
    "pupil.missing_education_resolved": "cme_event_id",
}
SINGLE_EPISODES = {
    "pupil.excluded": "exclusion",
    "pupil.home_education_notified": "home_education",
    "pupil.post16_destination_recorded": "post16_destination",
    "pupil.attendance_summary_recorded": "attendance_summary",
}


@dataclass
class Row:
    """A row at the finest detail: ``values`` holds every variable but the dates and the pupil's attributes."""

    kind: str
    start: date
    end: date | None  # None: an episode still open at the checkpoint
    where: str  # the school or setting id, or an LA id
    values: dict[str, str] = field(default_factory=dict)
    point: bool = False  # an event, or an episode of one day (an exclusion, a notification): no end, no duration


@dataclass
class _Spell:
    school: str
    start: date
    year_group: str
    sen_status: str
    looked_after: bool
    status: str
    end: date | None = None
    ground: str = NOT_APPLICABLE
    destination: str = NOT_APPLICABLE


def _attributes(spells: Sequence[_Spell], day: date) -> dict[str, str]:
    """Year group, age, SEN status and looked-after flag on ``day``, from the latest spell begun by then (else the first)."""
    begun = [s for s in spells if s.start <= day]
    spell = begun[-1] if begun else (spells[0] if spells else None)
    if spell is None:
        return {"year_group": NOT_KNOWN, "age": NOT_KNOWN, "sen_status": NOT_KNOWN, "looked_after": NOT_KNOWN}
    years_on = max(0, academic_year_start_of(day) - academic_year_start_of(spell.start))
    index = min(YEAR_GROUPS.index(spell.year_group) + years_on, len(YEAR_GROUPS) - 1)
    year_group = YEAR_GROUPS[index]
    return {
        "year_group": year_group,
        "age": age_of_year_group(year_group),
        "sen_status": spell.sen_status,
        "looked_after": "true" if spell.looked_after else "false",
    }


def _school_on(spells: Sequence[_Spell], day: date) -> str | None:
    """The school the pupil was on roll at on ``day`` (a main or single registration first)."""
    open_then = [s for s in spells if s.start <= day and (s.end is None or day < s.end)]
    main = [s for s in open_then if s.status in ("C", "M")]
    chosen = main or open_then
    return chosen[-1].school if chosen else None


def _event_values(r: Record) -> dict[str, str]:
    """The variables an event carries itself (also the values of the episode it starts or is)."""
    d: Mapping[str, Any] = r.data
    t = r.type
    if t == "pupil.registered":
        return {"enrolment_status": d["enrolment_status"]}
    if t == "pupil.deregistered":
        return {"reason": d["ground"], "outcome": d["destination"]}
    if t == "pupil.excluded":
        values = {"exclusion_kind": d["kind"], "reason": d["reasons"][0] if d["reasons"] else NOT_KNOWN}
        if d["kind"] == "SUSP" and "sessions" in d:
            values["sessions"] = sessions_band(int(d["sessions"]))
        return values
    if t == "pupil.exclusion_reviewed":
        return {"outcome": d["outcome"]}
    if t == "pupil.ap_placement_started":
        return {
            "setting_type": d["setting_type"],
            "tier": str(d["tier"]),
            "reason": d["reason"],
            "hours": hours_band(float(d["hours_per_week"])),
        }
    if t == "pupil.ap_placement_reviewed":
        return {"outcome": d["outcome"], **({"hours": hours_band(float(d["hours_per_week"]))} if "hours_per_week" in d else {})}
    if t in ("pupil.ap_placement_ended", "pupil.managed_move_ended"):
        return {"outcome": d["outcome"]}
    if t == "pupil.missing_education_resolved":
        return {"outcome": d["resolution"]}
    if t == "pupil.part_time_timetable_started":
        return {"hours": hours_band(float(d["hours_per_week"]))}
    if t == "pupil.part_time_timetable_ended":
        return {"hours": hours_band(float(d["hours_per_week_after"]))} if "hours_per_week_after" in d else {}
    if t == "pupil.post16_destination_recorded":
        return {"outcome": d["destination"], "sustained": "true" if d["sustained"] else "false"}
    if t == "pupil.attendance_summary_recorded":
        return {"attendance": attendance_band(int(d["attended_sessions"]), int(d["possible_sessions"]))}
    return {}


def _where(r: Record, spells: Sequence[_Spell]) -> str:
    """Where an event happened: its school or setting, else the school the pupil was on roll at, else its LA."""
    d = r.data
    for key in ("school", "setting" if r.type == "pupil.attendance_summary_recorded" else "", "la"):
        if key and isinstance(d.get(key), str):
            return str(d[key])
    on_roll = _school_on(spells, r.occurred_on)
    if on_roll:
        return on_roll
    commissioner = d.get("commissioner")
    return commissioner if isinstance(commissioner, str) else r.submitter


def pupil_rows(records: Sequence[Record], unit: str) -> list[Row]:
    """The pupil's rows (``unit`` episode or event), from the records not superseded by a correction or retraction."""
    in_force = [r for r in effective(records) if r.type.startswith("pupil.")]
    spells: list[_Spell] = []
    rows: list[Row] = []
    started: dict[str, Row] = {}  # start event id -> its episode (or, for events, the start event's row)
    for r in in_force:
        d = r.data
        if r.type == "pupil.registered":
            spells.append(
                _Spell(d["school"], r.occurred_on, d["year_group"], d["sen_status"], bool(d["looked_after"]), d["enrolment_status"])
            )
        elif r.type == "pupil.deregistered":
            for spell in reversed(spells):
                if spell.school == d["school"] and spell.end is None:
                    spell.end, spell.ground, spell.destination = r.occurred_on, d["ground"], d["destination"]
                    break
        where = _where(r, spells)
        values = _event_values(r)
        if unit == "event":
            start_id = d.get(EPISODE_ENDS.get(r.type, ""))
            if isinstance(start_id, str) and start_id in started:
                where = started[start_id].where  # an end or review happens where its episode did
            row = Row(r.type, r.occurred_on, None, where, values, point=True)
            rows.append(row)
            started[r.event_id] = row
        elif r.type in EPISODE_STARTS:
            row = Row(EPISODE_STARTS[r.type], r.occurred_on, None, where, values)
            rows.append(row)
            started[r.event_id] = row
        elif r.type in EPISODE_ENDS:
            episode = started.get(d[EPISODE_ENDS[r.type]])
            if episode is not None and episode.end is None:
                episode.end = r.occurred_on
                episode.values.update({k: v for k, v in values.items() if k == "outcome" or k not in episode.values})
        elif r.type == "pupil.ap_placement_reviewed":
            episode = started.get(d["placement_event_id"])
            if episode is not None and "hours" in values:
                episode.values["hours"] = values["hours"]
        elif r.type in SINGLE_EPISODES:
            rows.append(Row(SINGLE_EPISODES[r.type], r.occurred_on, None, where, values, point=True))
    if unit == "episode":
        for spell in spells:
            rows.append(
                Row(
                    "registration",
                    spell.start,
                    spell.end,
                    spell.school,
                    {"enrolment_status": spell.status, "reason": spell.ground, "outcome": spell.destination},
                )
            )
    for row in rows:
        row.values.update(_attributes(spells, row.start))
        if row.point:
            row.values["duration"] = NOT_APPLICABLE
        else:
            row.values["duration"] = OPEN if row.end is None else duration_band((row.end - row.start).days)
    return rows


def in_period(row: Row, first: date, last: date) -> bool:
    """Events (and one-day episodes) dated within the period; other episodes open on some day of it."""
    if row.point:
        return first <= row.start <= last
    return row.start <= last and (row.end is None or row.end >= first)


def month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def end_value(row: Row) -> str:
    if row.point:
        return NOT_APPLICABLE
    return OPEN if row.end is None else month(row.end)
