"""National-scale read model (issue 20): the tables the metrics are answered from by SQL, and their upkeep.

Over 400 lines as one concept: the tables and the rules that keep them are one design (below), versioned together
by ``MODEL_VERSION``, and a change to either is a change to both; the SQL that reads them is
``projections/read_model_queries.py``.

Design
------
Today's answer folds every pupil in Python at read time (``projections.context``). The read model keeps,
maintained by the projection runner in the same transaction as the fact views, what those folds produce:

* ``rm_events`` (view ``read_model_events``): one typed row per pupil fact (the fields the metrics read, out of
  the JSON: unit, destination, kind, first reason, sessions, setting type, tier, outcome, attendance, the
  school days from effective date to receipt...), bitemporal like every fact table
  (``occurred_on``, ``received_at``, ``superseded_at``). Metrics about reports (removals, exclusions, starts,
  late reports, attendance, post-16) are SQL over these rows.
* ``rm_registrations`` and ``rm_placements`` (view ``read_model_state``): **bitemporal interval tables** of the
  state the fold gives: one row per registration / AP placement *as the fold sees it* over an interval of
  effective dates (``valid_from`` <= D < ``valid_to``) and ledger times (``known_from`` <= T < ``known_to``;
  NULL: open). A pupil's facts in force change only at their effective dates (D) and at their receipt and
  supersession times (T), so the fold is computed at those breakpoints (``ledger.core.rules.fold_pupil``, the write
  side's own fold: the model cannot disagree with it) and consecutive equal rows are coalesced. The rows are
  a function of the pupil's facts alone (canonical): a batch recomputes only the versions known from its
  earliest receipt on, so incremental upkeep and a rebuild give the same rows.

* ``rm_exits`` (view ``read_model_state``): a third interval table, one row per removal from roll in the fold's state,
  with what the removals' metrics ask of that state: the SEN status of the registration it ended, and whether a
  registration or placement opens by the gap check's day. Those metrics read one row per removal, not a removal
  and, for each, the pupil's registrations and placements (three lookups per removal, a third of a national read's SQL).
* ``rm_roll`` (view ``read_model_state``): the registrations known now, as changes per school and effective day of
  the two numbers the roll metrics count (``projections/read_model_roll.py``), kept with the rows by ``maintain``.
* ``rm_months`` (view ``read_model_events``): the reports known now of four metrics that count the year's reports,
  summed per unit, label and month (``projections/read_model_months.py``), kept by the view's ``after``.
* ``rm_england_reports`` and ``rm_england_state``: England's numbers per effective day and month (``read_model_england.py``);
  ``rm_cap_units``: the suspension cap's breaches per unit and day (``read_model_cap.py``); ``rm_unit_la``: each
  organisation's LA (``read_model_la.py``); ``rm_la_months``: the eight report metrics per LA, their academic year to each month's end. Kept by
  the same upkeep.

A row of either interval table is **in force at (D, T)** by the four comparisons above; every metric query is "rows in
force at (D, T) that match the metric" grouped by unit, then rolled up to school/trust/LA/England by the same
Python roll-up as the fold (``projections.metrics.figures``): per-unit sums for items whose key occurs once,
explicit rows for keys that occur more than once (a pupil on two rolls), so the result equals the fold's
(``projections/read_model_queries.py``; the property test ``tests/test_read_model.py`` asserts it).

Columns that depend on settings (the term calendar, the gap and reintegration settings) are computed at
write time; the views' ``version`` carries a fingerprint of those settings, so changing them rebuilds the
model from the log, and a reader with other settings falls back to the fold. Erasure removes a pupil's rows
(``projections.runner.forget_pupil`` deletes by ``subject`` from every view's tables).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import orjson

from ledger.core.catalogue import parse_timestamp
from ledger.core.rules import Record
from ledger.core.schooltime import academic_year_start_of, school_days_between

from .calendar import TermCalendar
from .config import ViewSettings
from .context import placements_of
from .facts import END_OF_TIME, LogEvent, Table, View
from .pupils import PUPIL_FACTS, Pupil
from .pupils import VIEW as PUPILS_VIEW
from .read_model_cap import RM_CAP_UNITS
from .read_model_england import (
    RM_ENGLAND_REPORTS,
    RM_ENGLAND_STATE,
    EnglandChanges,
    exit_changes,
    length_changes,
    placement_changes,
    pupil_runs,
    registration_changes,
)
from .read_model_la import RM_UNIT_LA, las_of
from .read_model_la_roll import RM_LA_ROLL, RM_SHARED_RUNS, SharedRolls
from .read_model_la_state import RM_LA_STATE, LaChanges, placement_unit
from .read_model_months import RM_LA_MONTHS, RM_MONTHS, after_facts, forget_reports
from .read_model_roll import RM_ROLL, Changes
from .unregistered import UNREGISTERED_SETTING_TYPES

MODEL_VERSION = 26  # bump when the tables or their rules change: the runner rebuilds the model from the log

RM_EVENTS = Table(
    "rm_events",
    (
        ("unit", "TEXT"),
        ("setting", "TEXT"),
        ("submitter", "TEXT NOT NULL"),
        ("destination", "TEXT"),
        ("kind", "TEXT"),
        ("label", "TEXT"),
        ("sessions", "INTEGER"),
        ("setting_type", "TEXT"),
        ("tier", "TEXT"),
        ("outcome", "TEXT"),
        ("placement_id", "TEXT"),
        ("backdated", "INTEGER"),
        ("late_days", "INTEGER"),
        ("academic_year", "TEXT"),
        ("attended", "BIGINT"),
        ("possible", "BIGINT"),
        ("sustained", "INTEGER"),
    ),
    # by unit: a state of one school's items (the year before of a school's read: read_model_queries' ``_own``) reads the
    # school's reports alone; by the scans of the year's reports, 11-24 ms a statement at 1 M pupils, 2-5 ms by it.
    # By receipt: the rows known now that an earlier ledger time did not know yet, which a read at that time corrects the
    # numbers kept over the rows known now by (read_model_queries' ``LEARNT_SINCE``), a few where the time is recent. Of
    # every row, not only those known now (``superseded_at IS NULL``, as until ``MODEL_VERSION`` 24): a planner without
    # statistics (a table just rebuilt, autovacuum off or not yet round) took that partial index for a small one that
    # answers any statement of rows known now, and found a batch's 4,000 new rows by reading all of it and the table's
    # every page (200 ms a batch at 1.34 M events, against 3 ms by their sequence). The superseded are a few percent
    indexes=("type, occurred_on", "subject", "unit", "received_at"),
    # by sequence: the upkeep finds a batch's new rows again by it (``read_model_months.after_facts``), the newest entries
    # of this index, where their ids are scattered over the primary key (11.6 against 2.8 ms for 4,000 rows at 1.34 M
    # events). Unique (an event has one row): a planner without statistics then expects a row per value asked, where it
    # took a list of values of a column not known unique for most of the table, and scanned it
    unique_indexes=("seq",),
    # the AP attendance rate reads one academic year's summaries (read_model_queries.QUERIES): by type and date, an
    # England read at 1 M pupils fetched 10,221 of every year to keep 408 (18 ms); the share of one year shrinks yearly.
    # One setting's of them, for a state of its items alone (24 ms by the year's, 1.7 ms by the setting's)
    partial_indexes=(
        ("attendance", "academic_year", "type = 'pupil.attendance_summary_recorded'"),
        ("attendance_setting", "setting, academic_year", "type = 'pupil.attendance_summary_recorded'"),
        # the rows a read at an earlier ledger time knew that have been superseded since (``RETIRED_SINCE``): as few as
        # the corrections
        ("superseded", "superseded_at", "superseded_at IS NOT NULL"),
    ),
)

INTERVAL = (
    ("subject", "TEXT NOT NULL"),
    ("row_key", "TEXT NOT NULL"),
    ("valid_from", "TEXT NOT NULL"),
    ("valid_to", "TEXT"),
    ("known_from", "TEXT NOT NULL"),
    ("known_to", "TEXT"),
)


@dataclass(frozen=True)
class IntervalTable(Table):
    """A bitemporal interval table: its own columns after ``INTERVAL`` (no event id: a row is a state, not a fact)."""

    @property
    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return INTERVAL + self.columns

    def ddl(self) -> list[str]:
        cols = ", ".join(f"{n} {t}" for n, t in self.all_columns)
        return [f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})", *self.index_ddl("subject")]

    @property
    def state_columns(self) -> list[str]:
        return [n for n, _ in self.columns]

    def __hash__(self) -> int:
        """By name (equal tables have equal names): the upkeep keys sets and dicts by rows that hold their table, and
        the generated hash, over every column's name and type, was 3% of a rebuild."""
        return hash(self.name)


RM_REGISTRATIONS = IntervalTable(
    "rm_registrations",
    (
        ("ordinal", "INTEGER NOT NULL"),
        ("school", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL"),
        ("start_on", "TEXT NOT NULL"),
        ("end_on", "TEXT"),
        ("sen_status", "TEXT NOT NULL"),
        ("looked_after", "INTEGER NOT NULL"),
        # the pupil's registrations in this state that share an academic year with this one, itself included (``year_regs``):
        # 1 says no other registration of the pupil is ever counted beside it (read_model_queries.IN_YEAR_AT_SCHOOL)
        ("year_regs", "INTEGER NOT NULL"),
        # of those others (year_regs > 1; else NULL): the first start, and the last end (NULL: one is open), so that a read at
        # D knows the row is the pupil's only one counted at D when none has started by D or all ended before D's academic
        # year (read_model_queries.ALONE_AT_D): such rows are counted per school, not read one by one
        ("others_from", "TEXT"),
        ("others_to", "TEXT"),
    ),
    partial_indexes=(
        # the rows of pupils with two registrations in one academic year (a few percent), which the roll reads one by one
        # (SHARED_REGISTRATIONS)
        ("shared", "subject", "year_regs > 1"),
        # the same rows known now, with every column SHARED_REGISTRATIONS reads of them at the ledger's now: a school read
        # took them from the table's pages (12,727 pages for 47,776 rows at 1 M pupils, 161 ms, the largest statement of
        # the read); from this index alone once the table is vacuumed, as autovacuum does (54 ms)
        (
            "shared_now",
            "end_on, start_on, school, status, subject, valid_from, valid_to, others_from, others_to",
            "year_regs > 1 AND known_to IS NULL",
        ),
        # the rows a read at a past ledger time corrects rm_roll's numbers by (read_model_queries.ROLL_COUNTS)
        ("known_now", "known_from", "known_to IS NULL"),
        ("known_before", "known_to", "known_to IS NOT NULL"),
    ),
)
UNREGISTERED_IN = "(" + ", ".join(f"'{t}'" for t in UNREGISTERED_SETTING_TYPES) + ")"  # as SQL: a partial index's predicate
RM_PLACEMENTS = IntervalTable(
    "rm_placements",
    (
        ("placement_id", "TEXT NOT NULL"),
        ("commissioner", "TEXT NOT NULL"),
        ("setting", "TEXT NOT NULL"),
        ("setting_type", "TEXT NOT NULL"),
        ("tier", "INTEGER NOT NULL"),
        ("start_on", "TEXT NOT NULL"),
        ("planned_end", "TEXT"),
        ("hours", "DOUBLE PRECISION NOT NULL"),
        ("end_on", "TEXT"),
        ("outcome", "TEXT"),
        ("length_days", "INTEGER"),
        ("deadline", "TEXT"),
        ("places", "INTEGER NOT NULL"),  # the pupil's placements in this state (1: the pupil's only row in force)
    ),
    # a school's or AP setting's placements alone, for a state of its items (read_model_queries' ``_own``): the year
    # before of a school's read scanned every placement in force for each of its placement metrics
    indexes=("commissioner", "setting"),
    partial_indexes=(
        # the rows of pupils with more than one placement in a state (a few), which an England read takes one by one
        # (read_model_queries.UNREGISTERED_AT_SEVERAL)
        ("several", "subject", "places > 1"),
        # the open placements' rows known now by the end of their validity (OPEN_PLACEMENT at the ledger's now:
        # ``read_model_queries.at_now``; valid_to null or after D): six statements of a school read scanned every row
        # for them (10-13 ms each at 1 M pupils, 2-4 ms by the index), and every placement that ends leaves such a row
        # valid until its end. Known now only: every placement that ends also leaves an open row valid for ever that
        # is no longer known (22,822 such rows at 2 M pupils, for 471 placements open). With the start of their
        # validity, so that a read at an earlier D (a series' months) skips the rows valid only after it in the index:
        # every open row known now was read for D 500 days back (33 ms for none at 2 M pupils; 0.9 ms so)
        ("open_now", "valid_to, valid_from", "end_on IS NULL AND known_to IS NULL"),
        # the same rows at unregistered providers alone, all that the provider watch reads (a third of the open placements
        # at 1 M pupils): a national series asked every open placement of each of its 51 dates for the watch
        ("open_unregistered_now", "valid_to, valid_from", f"end_on IS NULL AND known_to IS NULL AND setting_type IN {UNREGISTERED_IN}"),
        # the ended placements' rows known now by their end, with every column the lengths' statement reads of them
        # (read_model_queries.ENDED_LENGTHS: ended in the trailing year): an LA read's median read them by a scan of every
        # row (23.5 ms at 1 M pupils, the LA read's largest statement; 9.6 ms by this index alone)
        ("ended_now", "end_on, setting, length_days, valid_from, valid_to", "end_on IS NOT NULL AND known_to IS NULL"),
    ),
)
RM_EXITS = IntervalTable(
    "rm_exits",
    (
        # a removal from roll in the fold's state, with what the removals' metrics ask of that state
        ("event_id", "TEXT NOT NULL"),
        ("school", "TEXT NOT NULL"),
        ("occurred_on", "TEXT NOT NULL"),
        ("check_day", "TEXT NOT NULL"),  # the gap check's day: gap_school_days school days after leaving
        ("destination", "TEXT NOT NULL"),
        ("sen_status", "TEXT"),  # the SEN status of the registration it ended (the last, if several), None if none
        ("with_setting", "INTEGER NOT NULL"),  # 1: a registration or AP placement is open on some day after leaving, by the check day
    ),
    # by school: a state of one school's items (read_model_queries' ``_own``) reads its removals alone (three statements,
    # 15-25 ms each at 1 M pupils by the removals in force, 1-3 ms by the school's)
    indexes=("occurred_on", "check_day", "school"),
)
STATE_TABLES = (RM_REGISTRATIONS, RM_PLACEMENTS, RM_EXITS)


def settings_fingerprint(settings: ViewSettings) -> int:
    """The settings the stored columns depend on (calendar, gap days, reintegration terms, late days), as a number < 10^6."""
    try:
        calendar = settings.calendar_path.read_bytes()
    except OSError:
        calendar = b""  # no calendar: projecting says so (as the fold does when it counts school days), not importing
    kept = f"|{settings.gap_school_days}|{settings.reintegration_terms}|{settings.late_school_days}"  # late: rm_months' numerators
    return zlib.crc32(calendar + kept.encode()) % 1_000_000


def model_version(settings: ViewSettings) -> int:
    return MODEL_VERSION * 1_000_000 + settings_fingerprint(settings)


# -- rm_events: one typed row per pupil fact -----------------------------------------------------------------


@cache
def _weekday_holidays(calendar: TermCalendar) -> list[date]:
    return sorted(h for h in calendar.holidays if h.weekday() < 5)


def school_days(calendar: TermCalendar, start: date, end: date) -> int:
    """``calendar.school_days_between``, with the holidays counted by bisection (it is asked once per report)."""
    if end <= start:
        return 0
    holidays = _weekday_holidays(calendar)
    return school_days_between(start, end) - (bisect_right(holidays, end) - bisect_right(holidays, start))


class Days:
    """The calendar's answers the upkeep asks for each event and placement, kept by their dates: reports share a few
    hundred effective and receipt dates, and the calendar is fixed for the settings (``load_calendar`` keeps it), so
    each answer is worked out once (hashing the calendar for ``school_days``' cache cost more than most answers).
    The calendar is loaded when first needed, as before (no calendar: projecting says so, not importing)."""

    LIMIT = 100_000  # answers kept, per kind (then forgotten and worked out again)

    def __init__(self, settings: ViewSettings):
        self.settings = settings
        self._late: dict[tuple[date, date], int] = {}
        self._check: dict[date, str] = {}
        self._deadline: dict[date, str | None] = {}

    @staticmethod
    def _kept(memo: dict[Any, Any]) -> dict[Any, Any]:
        if len(memo) >= Days.LIMIT:
            memo.clear()
        return memo

    def late(self, occurred: date, received: date) -> int:
        """School days from the effective date to the receipt (``school_days``)."""
        answer = self._late.get((occurred, received))
        if answer is None:
            answer = self._kept(self._late)[occurred, received] = school_days(self.settings.calendar, occurred, received)
        return answer

    def check_day(self, removed: date) -> str:
        """The gap check's day: ``gap_school_days`` school days after a removal."""
        answer = self._check.get(removed)
        if answer is None:
            answer = self._kept(self._check)[removed] = self.settings.calendar.add_school_days(
                removed, self.settings.gap_school_days
            ).isoformat()
        return answer

    def deadline(self, start: date) -> str | None:
        """The reintegration deadline of a placement started on ``start``."""
        if start in self._deadline:
            return self._deadline[start]
        answer = self._kept(self._deadline)[start] = _iso(
            self.settings.calendar.end_of_term_after(start, self.settings.reintegration_terms)
        )
        return answer


def event_rows(settings: ViewSettings) -> Callable[[LogEvent], Iterable[tuple[Table, dict[str, Any]]]]:
    days = Days(settings)  # the calendar is loaded once (cached), when first needed

    def rows(ev: LogEvent) -> Iterable[tuple[Table, dict[str, Any]]]:
        r = ev.record
        if not r.type.startswith("pupil.") or r.type == "pupil.record_retracted":
            return
        d = r.data
        values: dict[str, Any] = {
            "unit": d.get("school") or d.get("commissioner"),
            "setting": d.get("setting"),
            "submitter": r.submitter,
            "late_days": days.late(r.occurred_on, r.received_at.date()),
        }
        if r.type == "pupil.deregistered":
            values.update(
                destination=d["destination"],
                backdated=int("backdated_removal" in ev.flags),
            )
        elif r.type == "pupil.excluded":
            values.update(kind=d["kind"], label=d["reasons"][0], sessions=d.get("sessions"))
        elif r.type == "pupil.ap_placement_started":
            values.update(setting_type=d["setting_type"], tier=str(d["tier"]), label=str(d["reason"]))
        elif r.type == "pupil.ap_placement_ended":
            values.update(outcome=d["outcome"], placement_id=d["placement_event_id"])
        elif r.type == "pupil.attendance_summary_recorded":
            values.update(academic_year=d["academic_year"], attended=d["attended_sessions"], possible=d["possible_sessions"])
        elif r.type == "pupil.post16_destination_recorded":
            values.update(sustained=int(bool(d["sustained"])))
        yield RM_EVENTS, values

    return rows


# -- rm_registrations, rm_placements: the fold's state over bitemporal intervals --------------------------------


@dataclass(frozen=True)
class Fact:
    seq: int
    record: Record
    received_at: str
    superseded_at: str | None

    def in_force_at(self, known: str) -> bool:
        return self.received_at <= known and (self.superseded_at is None or self.superseded_at > known)


StateRow = tuple[IntervalTable, tuple[Any, ...]]  # a table and its state columns' values


def _year(day: date | None) -> int:
    """The academic year of ``day`` by its first calendar year; None (open): after every year."""
    return 1_000_000 if day is None else academic_year_start_of(day)


Sharing = tuple[int, str | None, str | None]  # year_regs, others_from, others_to (``RM_REGISTRATIONS``)
ALONE: Sharing = (1, None, None)


def year_regs(spans: Sequence[tuple[date, date | None]]) -> list[Sharing]:
    """For each of a pupil's registrations (``spans``: start and end), how many of them share an academic year with it,
    itself included, and of the others the first start and the last end (None: one is open). The roll's metrics count a
    registration at D only in D's academic year, between its start and end (``read_model_queries.IN_YEAR_AT_SCHOOL``),
    so two registrations that share no academic year are never counted together: each can be counted in its school's
    number (``rm_roll``), and only the others are read one by one, so that a pupil on two rolls counts once above the
    school; of those, a row whose others all ended before D's academic year is still counted in its school's number
    (``read_model_queries.ALONE_AT_D``). Counting every registration of the pupil instead (as until ``MODEL_VERSION`` 5)
    read one by one every pupil who had ever changed school. (The years are worked out once per registration: the upkeep
    asks at every breakpoint of every pupil's fold.)"""
    if len(spans) == 1:
        return [ALONE]
    years = [(_year(start), _year(end)) for start, end in spans]
    out: list[Sharing] = []
    for i, (first, last) in enumerate(years):
        others = [spans[j] for j, (a, b) in enumerate(years) if j != i and a <= last and first <= b]
        if not others:
            out.append(ALONE)
            continue
        ends = [end for _, end in others]
        last_end = None if None in ends else max(e for e in ends if e is not None).isoformat()
        out.append((1 + len(others), min(start for start, _ in others).isoformat(), last_end))
    return out


def state_of(key: str, records: list[Record], settings: ViewSettings, days: Days | None = None) -> set[StateRow]:
    """The registrations and placements the fold gives for these records (the facts in force, in ledger order)."""
    days = days or Days(settings)
    pupil = Pupil(key, records)
    out: set[StateRow] = set()
    regs = pupil.state.registrations
    sharing = year_regs([(g.start, g.end) for g in regs]) if regs else []
    for i, g in enumerate(regs):
        out.add(
            (
                RM_REGISTRATIONS,
                (i, g.school, g.status, g.start.isoformat(), _iso(g.end), g.sen_status, int(bool(g.looked_after)), *sharing[i]),
            )
        )
    # placements_of reads the records again for reviews and ends: asked only of a pupil with a placement
    placements = placements_of(pupil) if any(ep.kind == "placement" for ep in pupil.state.episodes.values()) else []
    for p in placements:
        deadline = days.deadline(p.start)
        out.add(
            (
                RM_PLACEMENTS,
                (
                    p.event_id,
                    p.commissioner,
                    p.setting,
                    p.setting_type,
                    p.tier,
                    p.start.isoformat(),
                    _iso(p.planned_end),
                    p.hours,
                    _iso(p.end),
                    p.outcome,
                    (p.end - p.start).days if p.end else None,
                    deadline,
                    len(placements),
                ),
            )
        )
    for r in pupil.of_type("pupil.deregistered"):
        school, check_day = r.data["school"], days.check_day(r.occurred_on)
        ended = [g for g in regs if g.school == school and g.end == r.occurred_on]
        with_setting = pupil.has_setting_between(r.occurred_on, date.fromisoformat(check_day))
        out.add(
            (
                RM_EXITS,
                (
                    r.event_id,
                    school,
                    r.occurred_on.isoformat(),
                    check_day,
                    r.data["destination"],
                    ended[-1].sen_status if ended else None,
                    int(with_setting),
                ),
            )
        )
    return out


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


ValidRow = tuple[IntervalTable, tuple[Any, ...], str, str | None]  # table, values, valid_from, valid_to


States = dict[tuple[str, ...], set[StateRow]]  # state_of's answers for one pupil, by the event ids folded


def valid_intervals(
    key: str, facts: Sequence[Fact], settings: ViewSettings, states: States | None = None, days: Days | None = None
) -> set[ValidRow]:
    """The state of the pupil over effective dates: the fold of the facts cut at each of their effective dates,
    equal consecutive rows coalesced into [valid_from, valid_to).

    ``states`` keeps the folds already made for this pupil (``knowledge_runs`` asks for the same sets of records at
    several ledger times): ``state_of`` is a function of the records alone, so a set folded once is not folded again."""
    states = {} if states is None else states
    days = days or Days(settings)
    effective_days = sorted({f.record.occurred_on for f in facts})
    runs: dict[StateRow, str] = {}
    out: set[ValidRow] = set()
    for day in effective_days:
        records = [f.record for f in facts if f.record.occurred_on <= day]
        folded = tuple(r.event_id for r in records)
        now = states.get(folded)
        if now is None:
            now = states[folded] = state_of(key, records, settings, days)
        cut = day.isoformat()
        for row in [r for r in runs if r not in now]:
            out.add((*row, runs.pop(row), cut))
        for row in now:
            runs.setdefault(row, cut)
    out.update((*row, start, None) for row, start in runs.items())
    return out


def row_key(row: ValidRow) -> str:
    """The row's name among its pupil's rows known from the same time: a digest of its content, by which the upkeep
    finds a stored row to end it (``UPDATE ... WHERE row_key``). A key is read back, never worked out again to find its
    row, and rows known from the same time are written together, so how the content is serialised may change from one
    version of the code to the next without a rebuild. orjson's: 1.1 µs a row against json's 7.0 (89,670 rows in a
    rebuild from 100 k events); json's for what orjson declines (an integer beyond 64 bits)."""
    table, values, valid_from, valid_to = row
    content = [table.name, list(values), valid_from, valid_to]
    try:
        text = orjson.dumps(content)
    except TypeError:
        text = json.dumps(content).encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()


Run = tuple[ValidRow, str, str | None]  # row, known_from, known_to


def knowledge_runs(key: str, facts: Sequence[Fact], since: str, settings: ViewSettings, days: Days | None = None) -> list[Run]:
    """The pupil's valid-time rows over ledger times from ``since`` on: computed at every time its facts in force
    change (``since``, each receipt and supersession after it), equal consecutive rows coalesced."""
    times = sorted({since, *(t for f in facts for t in (f.received_at, f.superseded_at) if t is not None and t > since)})
    days = days or Days(settings)
    states: States = {}
    runs: dict[ValidRow, str] = {}
    out: list[Run] = []
    previous: tuple[int, ...] | None = None
    for known in times:
        in_force = [f for f in facts if f.in_force_at(known)]
        seqs = tuple(f.seq for f in in_force)
        if seqs == previous:
            continue  # the same facts in force: the same rows, which go on
        previous = seqs
        now = valid_intervals(key, in_force, settings, states, days)
        for row in [r for r in runs if r not in now]:
            out.append((row, runs.pop(row), known))
        for row in now:
            runs.setdefault(row, known)
    out.extend((row, start, None) for row, start in runs.items())
    return out


def maintain_state(settings: ViewSettings) -> Callable[[Any, Any, Sequence[LogEvent]], None]:
    """The upkeep of the interval tables for a batch of events (in the runner's transaction, after the
    ``pupils`` view has written the batch's facts, which it reads)."""
    days = Days(settings)

    def maintain(cur: Any, store: Any, events: Sequence[LogEvent]) -> None:
        since: dict[str, str] = {}
        batch: dict[str, Record] = {}  # the batch's records, in memory already: their facts are not parsed again
        for ev in events:
            if ev.record.type.startswith("pupil."):
                t = ev.received
                earliest = since.get(ev.subject)
                if earliest is None or t < earliest:
                    since[ev.subject] = t
                batch[ev.record.event_id] = ev.record
        if not since:
            return
        subjects = sorted(since)
        facts = _load_facts(cur, store, subjects, batch, max(ev.seq for ev in events))
        tails = _load_tails(cur, store, subjects, min(since.values()))
        inserts: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        ends: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        deletes: list[tuple[str, str]] = []
        no_tails: list[tuple[IntervalTable, str, str, str | None, ValidRow]] = []
        kept = KnownNow()  # the rows that become, or stop being, known now: rm_roll's and rm_england_state's numbers
        for subject in subjects:
            t0 = since[subject]
            stored = tails.get(subject, no_tails)
            if any(known_from >= t0 for _, _, known_from, _, _ in stored):
                deletes.append((subject, t0))  # rows known from t0 on are recomputed (a report received out of order)
            fresh = {(row, start): end for row, start, end in knowledge_runs(subject, facts.get(subject, []), t0, settings, days)}
            kept.pupil(subject, [row for _, _, _, known_to, row in stored if known_to is None])
            for table, rk, known_from, known_to, row in stored:
                if known_from >= t0 or (known_to is not None and known_to < t0):
                    if known_from >= t0 and known_to is None:
                        kept.change(row, -1)  # deleted below (and recomputed above)
                    continue  # deleted below and recomputed above, or ended before this batch's news
                continued = (row, t0)
                if continued in fresh:  # the same row goes on from t0: the stored one is extended
                    end = fresh.pop(continued)
                    if end != known_to:
                        ends[table.name].append((end, subject, rk, known_from))
                        if (end is None) != (known_to is None):
                            kept.change(row, 1 if end is None else -1)
                elif known_to is None or known_to > t0:
                    ends[table.name].append((t0, subject, rk, known_from))
                    if known_to is None:
                        kept.change(row, -1)
            for (row, start), end in fresh.items():
                table, values, valid_from, valid_to = row
                inserts[table.name].append((subject, row_key(row), valid_from, valid_to, start, end, *values))
                if end is None:
                    kept.change(row, 1)
        for table in STATE_TABLES:
            # one statement per row, by executemany: a single UPDATE or DELETE joined to the batch's rows (unnest) was
            # planned as a hash join over a whole table with no statistics (a rebuilt table, autovacuum off or behind)
            if deletes:
                cur.executemany(store.sql(f"DELETE FROM {table.name} WHERE subject = ? AND known_from >= ?"), deletes)
            if ends[table.name]:
                cur.executemany(
                    store.sql(f"UPDATE {table.name} SET known_to = ? WHERE subject = ? AND row_key = ? AND known_from = ?"),
                    ends[table.name],
                )
            rows = inserts[table.name]
            if not rows:
                continue
            if store.is_postgres:
                with cur.copy(table.copy_sql()) as copy:
                    for values in rows:
                        copy.write_row(values)
            else:
                cur.executemany(table.insert_sql(), rows)
        kept.write(cur, store)

    return maintain


class KnownNow:
    """The changes of a batch to the numbers kept over the state rows known now: ``rm_roll`` (per school),
    ``rm_england_state`` (England's, ``projections/read_model_england.py``), ``rm_la_state`` (per LA,
    ``projections/read_model_la_state.py``) and ``rm_shared_runs`` and ``rm_la_roll`` (per LA,
    ``projections/read_model_la_roll.py``). A registration sharing an academic year with another of the pupil's
    is counted in England (and in an LA) once per pupil, as the union of those rows' runs: so each pupil's rows known now
    before the batch are given first (``pupil``), and the union is taken off and added again at the end."""

    def __init__(self) -> None:
        self.roll = Changes()
        self.england = EnglandChanges()
        self.la_roll = SharedRolls()  # those rows' runs per LA (``read_model_la_roll``)
        self.la_state = LaChanges()  # the placements' and removals' changes per LA (``read_model_la_state``)
        self.shared: dict[str, Counter[tuple[Any, ...]]] = {}  # a pupil's shared registrations known now (1 each)
        self.before: dict[str, list[tuple[Any, ...]]] = {}
        self.subject = ""

    def pupil(self, subject: str, known_now: Iterable[ValidRow]) -> None:
        """The pupil whose rows the next changes are, with its rows known now before them."""
        self.subject = subject
        rows = [registration(row) for row in known_now if row[0] is RM_REGISTRATIONS and row[1][7] > 1]
        self.before[subject] = rows
        self.shared[subject] = Counter(rows)

    def change(self, row: ValidRow, sign: int) -> None:
        """``row`` becomes known now (``sign`` 1) or stops being (-1)."""
        table, values, valid_from, valid_to = row
        if table is RM_REGISTRATIONS:
            reg = registration(row)
            self.roll.add(reg, sign)
            if values[7] == 1:
                self.england.add(registration_changes(reg), sign)
            else:
                self.shared[self.subject][reg] += sign
        elif table is RM_PLACEMENTS:
            changes = list(placement_changes(values, valid_from, valid_to))
            self.england.add(changes, sign)
            self.england.add(length_changes(values, valid_from, valid_to), sign)  # (England's alone)
            self.la_state.add(changes, lambda metric: placement_unit(metric, values), sign)
        else:
            changes = list(exit_changes(values, valid_from, valid_to))
            self.england.add(changes, sign)
            self.la_state.add(changes, lambda _: values[1], sign)  # the school left

    def write(self, cur: Any, store: Any) -> None:
        for subject, now in self.shared.items():
            before = self.before[subject]
            if Counter(before) != +now:  # (as multisets: rows differ by None against a date, which do not sort)
                self.england.add(pupil_runs(before), -1)
                self.england.add(pupil_runs((+now).elements()), 1)
                self.la_roll.update(subject, (+now).elements())
        schools = dict(self.roll.sums)  # rm_roll's changes, per school and day: rm_la_roll's too, per school's LA
        self.roll.write(cur, store)
        self.england.write(cur, store)
        las = las_of(cur, store, sorted(self.la_roll.schools() | {school for school, _ in schools} | self.la_state.units()))
        self.la_roll.write(cur, store, las, schools)
        self.la_state.write(cur, store, las)


def forget_state(cur: Any, store: Any, subject: str) -> None:
    """``View.forget`` of ``read_model_state``: an erased pupil's rows known now off ``rm_roll``'s and England's numbers
    (before its rows are deleted, in the same transaction)."""
    rows = [row for _, _, _, known_to, row in _load_tails(cur, store, [subject], END_OF_TIME).get(subject, []) if known_to is None]
    kept = KnownNow()
    kept.pupil(subject, rows)
    for row in rows:
        kept.change(row, -1)
    kept.write(cur, store)


def registration(row: ValidRow) -> tuple[Any, ...]:
    """A registration row's columns in ``read_model_roll.REGISTRATION_COLUMNS`` order."""
    _, values, valid_from, valid_to = row
    return values[1], values[2], values[3], values[4], values[7], valid_from, valid_to


def _load_facts(
    cur: Any, store: Any, subjects: list[str], batch: dict[str, Record] | None = None, last: int | None = None
) -> dict[str, list[Fact]]:
    """The subjects' pupil facts, in ledger order, up to sequence ``last`` (the batch's last event).

    Facts after the batch are the pupils view's when it is ahead of the model (the model alone rebuilt): they come
    to the upkeep in later batches, as every fact does (a pupil's events come in sequence order, from the log or
    its Kafka partition), and the rows are a function of the facts, so leaving them to their own batch gives the
    same rows at the end, and rows that say what the log said up to the model's position meanwhile, as when the
    views are caught up together. Read with them, they were folded, written, then deleted and folded again when
    their batch came, for each such pupil.

    A fact of a record in ``batch`` (the runner's batch, decoded already) is made from that record: its JSON is not
    parsed again (the record is the one the row was written from; ``subject`` and ``corrects`` as a row reads back)."""
    batch = batch or {}
    upto, after = (" AND seq <= ?", [last]) if last is not None else ("", [])
    rows = store.select_in(
        cur,
        f"SELECT subject, seq, event_id, type, submitter, occurred_on, received_at, superseded_at, data FROM {PUPIL_FACTS.name} "
        f"WHERE {{where}}{upto} ORDER BY subject, seq",
        "subject",
        subjects,
        *after,
    )
    out: dict[str, list[Fact]] = defaultdict(list)
    for subject, seq, event_id, etype, submitter, occurred_on, received_at, superseded_at, data in rows:
        known = batch.get(event_id)
        if known is not None:
            record = Record(event_id, etype, submitter, subject, known.occurred_on, known.received_at, known.data)
        else:
            when = parse_timestamp(received_at)
            assert when is not None
            record = Record(event_id, etype, submitter, subject, date.fromisoformat(occurred_on), when, json.loads(data))
        out[subject].append(Fact(int(seq), record, received_at, superseded_at))
    return out


def _load_tails(
    cur: Any, store: Any, subjects: list[str], since: str
) -> dict[str, list[tuple[IntervalTable, str, str, str | None, ValidRow]]]:
    """The stored rows still known at or after ``since`` (those a batch may end, extend or replace)."""
    out: dict[str, list[tuple[IntervalTable, str, str, str | None, ValidRow]]] = defaultdict(list)
    for table in STATE_TABLES:
        rows = store.select_in(
            cur,
            f"SELECT subject, row_key, known_from, known_to, valid_from, valid_to, {', '.join(table.state_columns)} FROM {table.name} "
            "WHERE {where} AND (known_to IS NULL OR known_to >= ?)",
            "subject",
            subjects,
            since,
        )
        for subject, rk, known_from, known_to, valid_from, valid_to, *values in rows:
            out[subject].append((table, rk, known_from, known_to, (table, _typed(table, values), valid_from, valid_to)))
    return out


def _typed(table: IntervalTable, values: list[Any]) -> tuple[Any, ...]:
    """Stored values as ``state_of`` makes them (so a stored row and a recomputed one compare equal)."""
    if table is RM_PLACEMENTS:
        values[4], values[7], values[12] = int(values[4]), float(values[7]), int(values[12])
        values[10] = None if values[10] is None else int(values[10])
    elif table is RM_EXITS:
        values[6] = int(values[6])
    else:
        values[0], values[6], values[7] = int(values[0]), int(values[6]), int(values[7])
    return tuple(values)


VIEW_PREFIX = "read_model_"  # the names of the model's views: their rows are derived from the other views' facts


def views(settings: ViewSettings) -> tuple[View, View]:
    """The read model's two views, after ``pupils`` in the runner's order (the state reads the pupils' facts)."""
    version = model_version(settings)
    return (
        View(
            "read_model_events",
            version,
            (
                RM_EVENTS,
                RM_MONTHS,
                RM_ENGLAND_REPORTS,
                RM_ENGLAND_REPORTS.months,
                RM_ENGLAND_REPORTS.years,
                RM_CAP_UNITS,
                RM_UNIT_LA,
                RM_LA_MONTHS,
            ),
            event_rows(settings),
            after=after_facts(settings),
            forget=forget_reports(settings),
        ),
        View(
            "read_model_state",
            version,
            (
                *STATE_TABLES,
                RM_ROLL,
                RM_ENGLAND_STATE,
                RM_ENGLAND_STATE.months,
                RM_ENGLAND_STATE.years,
                RM_SHARED_RUNS,
                RM_LA_ROLL,
                RM_LA_ROLL.months,
                RM_LA_ROLL.years,
                RM_LA_STATE,
                RM_LA_STATE.months,
                RM_LA_STATE.years,
            ),
            lambda ev: (),
            maintain=maintain_state(settings),
            forget=forget_state,
            # the state is folded from the pupils' facts (``_load_facts``) and kept per LA by the units' LAs the events
            # view records (``las_of``). It would take those LAs in either order (``read_model_la``), but not a table
            # that does not exist yet: ``project rebuild read_model_state`` on a new ledger failed on ``rm_unit_la``.
            reads=(PUPILS_VIEW.name, "read_model_events"),
        ),
    )
