"""England's kept numbers per day (projections/read_model_england.py) count on exactly the days the metrics' SQL does.

The random-history tests compare England's figures with the fold at a few moments; here, for random state rows (dates
clustered around the first of September, gap checks, deadlines and planned ends), every day on which either side could
change is checked: the kept changes summed up to D against the metric's own SQL over the same rows at D (SQLite in
memory: the SQL the model reads, with its parameters as a state sets them)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.config import ViewSettings
from projections.context import Context
from projections.facts import Moment
from projections.metrics import METRICS_BY_NAME
from projections.orgs import Directory
from projections.read_model import RM_EVENTS, RM_EXITS, RM_PLACEMENTS, RM_REGISTRATIONS
from projections.read_model_cap import CAP_BREACHES, crossings
from projections.read_model_england import (
    LENGTHS,
    ROLL,
    STATE_METRICS,
    YEAR,
    EnglandChanges,
    exit_changes,
    length_changes,
    placement_changes,
    pupil_runs,
    registration_changes,
    use_shard,
)
from projections.read_model_queries import (
    AS_ENGLAND,
    IN_YEAR_AT_SCHOOL,
    ON_ROLL,
    QUERIES,
    UNREGISTERED_AT_SEVERAL,
    ReadModelContext,
    aggregated,
    positional,
)
from projections.read_model_roll import next_year_start
from projections.runner import Projector, Reader, forget_pupil

from .conftest import upn
from .test_projections import SCHOOLS, fresh_settings, small_world
from .test_read_model import assert_england_kept, both

BASE = date(2026, 8, 25)
DAY = st.integers(0, 380).map(lambda n: (BASE + timedelta(days=n)).isoformat())
OPEN_DAY = st.none() | DAY


def _interval(draw: Any) -> tuple[str, str | None]:
    first = draw(DAY)
    end = draw(OPEN_DAY)
    return first, (None if end is None or end <= first else end)


@st.composite
def placement(draw: Any) -> tuple[Any, ...]:
    valid_from, valid_to = _interval(draw)
    start = draw(DAY)
    end = draw(OPEN_DAY)
    values = (
        "p",
        "la:801",
        "setting",
        draw(st.sampled_from(["AP", "OTH", "NFE", "HOS"])),
        draw(st.sampled_from([2, 2, 1, 3])),  # tier 2 with a planned end: the overdue placements
        start,
        draw(st.one_of(DAY, DAY, st.none())),
        10.0,
        end,
        draw(st.sampled_from(["mainstream", "special"])) if end else None,  # an end event always gives an outcome
        (date.fromisoformat(end) - date.fromisoformat(start)).days if end else None,  # the length, as the model's rows
        draw(OPEN_DAY),
        draw(st.integers(1, 2)),
    )
    return valid_from, valid_to, values


@st.composite
def removal(draw: Any) -> tuple[Any, ...]:
    valid_from, valid_to = _interval(draw)
    occurred = draw(DAY)
    check = (date.fromisoformat(occurred) + timedelta(days=draw(st.integers(1, 20)))).isoformat()
    destination = draw(st.sampled_from(["unknown", "cme", "school", "ehe", "died", "moved_away"]))
    values = ("x", "urn:1", occurred, check, destination, draw(st.sampled_from([None, "N", "K", "E"])), draw(st.integers(0, 1)))
    return valid_from, valid_to, values


@st.composite
def registration(draw: Any) -> tuple[Any, ...]:
    valid_from, valid_to = _interval(draw)
    start = draw(DAY)
    end = draw(OPEN_DAY)
    return draw(st.sampled_from(["C", "M", "S"])), start, (None if end is None or end < start else end), valid_from, valid_to


def _db(placements: list[tuple[Any, ...]], removals: list[tuple[Any, ...]], registrations: dict[int, list[tuple[Any, ...]]]) -> Any:
    db = sqlite3.connect(":memory:")
    for table in (RM_PLACEMENTS, RM_EXITS, RM_REGISTRATIONS, RM_EVENTS):
        for ddl in table.ddl():
            db.execute(ddl)
    known = ("2026-01-01T00:00:00Z", None)
    ended = ("seq", "event_id", "type", "subject", "occurred_on", "received_at", "submitter", "placement_id", "outcome")
    for i, (vf, vt, values) in enumerate(placements):
        # each row its own placement, with the one end event its end and outcome come from (the write side takes one)
        values = (f"p{i}", *values[1:])
        db.execute(f"INSERT INTO rm_placements VALUES ({', '.join('?' * 19)})", (f"s{i // 2}", f"k{i}", vf, vt, *known, *values))
        if values[8] is not None:
            end = (i, f"e{i}", "pupil.ap_placement_ended", f"s{i // 2}", values[8], known[0], "la:801", f"p{i}", values[9])
            db.execute(f"INSERT INTO rm_events ({', '.join(ended)}) VALUES ({', '.join('?' * len(ended))})", end)
    for i, (vf, vt, values) in enumerate(removals):
        db.execute(f"INSERT INTO rm_exits VALUES ({', '.join('?' * 13)})", (f"s{i}", f"k{i}", vf, vt, *known, *values))
    for pupil, rows in registrations.items():
        for i, (status, start, end, vf, vt) in enumerate(rows):
            # (the others' first start and last end are not read by England's numbers nor by the count they are held to)
            values = (i, f"urn:{i}", status, start, end, "N", 0, 1 if len(rows) == 1 else 2, None, None)
            db.execute(f"INSERT INTO rm_registrations VALUES ({', '.join('?' * 16)})", (f"r{pupil}", f"k{i}", vf, vt, *known, *values))
    return db


def _checked_days(dates: set[str]) -> list[date]:
    """Every day on which a predicate over these dates can change (each date and the days a window from it ends), and the
    day before each."""
    out: set[date] = set()
    for text in dates:
        day = date.fromisoformat(text)
        for d in (
            day,
            day + timedelta(days=1),
            day + timedelta(days=364),
            day + timedelta(days=365),
            date.fromisoformat(next_year_start(text)),
        ):
            out.update((d, d - timedelta(days=1)))
    for year in (2025, 2026, 2027, 2028):
        out.update((date(year, 9, 1), date(year, 8, 31)))
    return sorted(out)


@settings(max_examples=100, deadline=None)
@given(
    placements=st.lists(placement(), max_size=6),
    removals=st.lists(removal(), max_size=5),
    registrations=st.dictionaries(st.integers(0, 3), st.lists(registration(), min_size=1, max_size=3), max_size=4),
)
def test_englands_kept_numbers_count_on_the_days_the_sql_does(
    placements: list[tuple[Any, ...]], removals: list[tuple[Any, ...]], registrations: dict[int, list[tuple[Any, ...]]]
) -> None:
    kept = EnglandChanges()
    for vf, vt, values in placements:
        kept.add(placement_changes(values, vf, vt))
        kept.add(length_changes(values, vf, vt))
    for vf, vt, values in removals:
        kept.add(exit_changes(values, vf, vt))
    for rows in registrations.values():
        regs = [(f"urn:{i}", status, start, end, 1 if len(rows) == 1 else 2, vf, vt) for i, (status, start, end, vf, vt) in enumerate(rows)]
        kept.add(registration_changes(regs[0]) if len(regs) == 1 else pupil_runs(regs))
    db = _db(placements, removals, registrations)
    dates = {
        v for rows in (placements, removals) for vf, vt, values in rows for v in (vf, vt, *values) if isinstance(v, str) and v[:2] == "20"
    }
    dates |= {v for rows in registrations.values() for row in rows for v in row[1:] if v}

    for day in _checked_days(dates):
        ctx = Context(Moment(day), ViewSettings(), Directory({}), [])
        params = ReadModelContext.params(ctx)  # type: ignore[arg-type]  # (the parameters a state at D binds)

        def query(sql: str, params: dict[str, Any] = params) -> list[tuple[Any, ...]]:
            return db.execute(*positional(sql, params)).fetchall()

        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for (metric, changed, label), (num, den, n) in kept.sums.items():
            if changed <= day.isoformat():
                total = sums[metric, label]
                total[0], total[1], total[2] = total[0] + num, total[1] + den, total[2] + n
        for metric in sorted(STATE_METRICS):
            found = {label: (num, den, n) for label, num, den, n in ((lb, *t) for (m, lb), t in sums.items() if m == metric) if n}
            rows = query(aggregated(QUERIES[metric], METRICS_BY_NAME[metric].kind, AS_ENGLAND))
            if metric == "pupils_in_unregistered_provision":  # the pupils at several placements come one by one, counted once
                several = {item for *_, item in query(UNREGISTERED_AT_SEVERAL)}
                expected = sum(int(r[2]) for r in rows if r[5] is None) + len({r[5] for r in rows if r[5] is not None})
                assert sum(v[0] for v in found.values()) + len(several) == expected, (day, metric)
                continue
            assert found == {label: (int(num), int(den), int(n)) for _, label, num, den, n, _ in rows}, (day, metric)
        # the ended placements' lengths, as the median's rows give them: each length once, with its placements' count
        lengths = {int(label): (num, den, n) for (m, label), (num, den, n) in sums.items() if m == LENGTHS and n}
        rows = query(aggregated(QUERIES[LENGTHS], "median", AS_ENGLAND))
        assert lengths == {int(num) // int(den): (int(num), int(den), int(n)) for _, _, num, den, n, _ in rows}, (day, LENGTHS)
        ((on_roll, in_year),) = query(
            f"SELECT COUNT(DISTINCT CASE WHEN {ON_ROLL} = 1 THEN r.subject END), COUNT(DISTINCT r.subject) FROM rm_registrations r "
            f"WHERE {IN_YEAR_AT_SCHOOL}"
        )
        assert (sums[ROLL, ""][0], sums[YEAR, ""][0]) == (on_roll, in_year), day


@settings(max_examples=60, deadline=None)
@given(suspensions=st.lists(st.tuples(st.integers(0, 2), DAY, st.sampled_from([1, 2, 30, 60, 89, 90, 91])), max_size=10))
def test_englands_kept_cap_breaches_count_on_the_days_the_scan_does(suspensions: list[tuple[int, str, int]]) -> None:
    """A pupil breaches the suspension cap in England from the day its sessions of the academic year pass it: the
    crossings kept per day, summed from the first of September to D, equal the cap's SQL (in ledger order) at every day."""
    db = sqlite3.connect(":memory:")
    for ddl in RM_EVENTS.ddl():
        db.execute(ddl)
    columns = ("seq", "event_id", "type", "subject", "occurred_on", "received_at", "unit", "submitter", "kind", "label", "sessions")
    by_pupil: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for seq, (pupil, day, sessions) in enumerate(suspensions):
        row = (seq, f"e{seq}", "pupil.excluded", f"s{pupil}", day, "2026-01-01T00:00:00Z", f"urn:{seq % 2}", "urn:1", "SUSP", "R", sessions)
        db.execute(f"INSERT INTO rm_events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", row)
        by_pupil[pupil].append((day, sessions))
    kept = EnglandChanges()
    for rows in by_pupil.values():
        kept.add(crossings(rows))
    for when in _checked_days({d for _, d, _ in suspensions}):
        ctx = Context(Moment(when), ViewSettings(), Directory({}), [])
        params = ReadModelContext.params(ctx)  # type: ignore[arg-type]
        rows = db.execute(*positional(aggregated(QUERIES[CAP_BREACHES], "count", AS_ENGLAND), params)).fetchall()
        counted = sum(n for (_, changed, _), (n, _, _) in kept.sums.items() if params["ys"] <= changed <= when.isoformat())
        assert counted == sum(int(r[2]) for r in rows), when


def suspend(w: Any, pupil: int, school: str, day: date, sessions: int, corrects: str | None = None) -> str:
    """A suspension of ``pupil`` at ``school`` on ``day`` (a correction of ``corrects``), received a minute after the last."""
    data = {"school": school, "kind": "SUSP", "reasons": ["PP"], "sessions": sessions}
    w.clock.now += timedelta(minutes=1)
    return str(w.post("pupil.excluded", school, data, upn=upn(pupil), occurred_on=day, corrects=corrects).event_id)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_corrected_retracted_or_erased_suspension_moves_englands_cap_breaches_as_the_fold_does(backend: str) -> None:
    """A pupil over the cap, then under it by a correction, over it again, a retraction, a second pupil, an erasure:
    projected an event at a time, England's kept breaches equal their recomputation and the fold's figure each time."""
    school = SCHOOLS[0]
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            projector = Projector(w.ledger.store, batch_size=1)
            w.clock.now = datetime(2026, 11, 20, 9, tzinfo=UTC)
            for pupil in (1, 2):
                w.admit(upn(pupil), school, occurred_on=date(2026, 9, 2))

            def breaches() -> int:
                projector.catch_up()
                assert_england_kept(w.ledger.store)
                reader = Reader(w.ledger.store)
                model, fold = both(reader, Moment(date(2026, 11, 1)), "national", "england")
                assert model == fold
                return int(model["metrics"]["suspension_cap_breaches"]["value"])

            first = suspend(w, 1, school, date(2026, 9, 10), 60)
            second = suspend(w, 1, school, date(2026, 10, 5), 40)
            assert breaches() == 1
            use_shard(5)  # from here on another writer's share (a second Kafka worker): the sums are read across shares
            second = suspend(w, 1, school, date(2026, 10, 5), 20, corrects=second)  # 80 sessions: under the cap
            assert breaches() == 0
            suspend(w, 1, school, date(2026, 10, 12), 30)  # 110
            suspend(w, 2, school, date(2026, 9, 20), 91)
            assert breaches() == 2
            w.clock.now += timedelta(minutes=1)
            w.post(
                "pupil.record_retracted", school, {"reason": "entered_in_error"}, upn=upn(1), occurred_on=date(2026, 9, 10), corrects=first
            )
            assert breaches() == 1  # 50 sessions left
            w.ledger.erase(upn(2), "erasure_request")
            forget_pupil(w.ledger.store, w.ledger.secrets.pupil_id(upn(2)))
            assert breaches() == 0
            assert {int(n) for (n,) in w.ledger.store.query("SELECT DISTINCT shard FROM rm_england_reports")} == {
                0,
                5,
            }  # (conftest: 0 first)
        finally:
            use_shard(0)
            w.ledger.store.close()


def test_a_shard_is_one_of_the_shares() -> None:
    with pytest.raises(ValueError, match="0 to 7"):
        use_shard(8)
    with pytest.raises(ValueError, match="0 to 7"):
        use_shard(-1)


def test_a_planned_end_or_deadline_on_the_last_day_a_date_holds_counts_as_the_sql_does() -> None:
    """A planned end of 9999-12-31 passes the schema (not before the start, no upper bound): the placement is never
    overdue and its reintegration window never closes, where a day after it would overflow and stop the upkeep."""
    values = ("p", "la:801", "setting", "AP", 2, "2026-09-01", "9999-12-31", 10.0, None, None, None, "9999-12-31", 1)
    changes = list(placement_changes(values, "2026-09-01", None))
    assert not [c for c in changes if c[0] == "overdue_time_limited_placements"]
    assert [c for c in changes if c[0] == "ap_reintegration_rate"] == [("ap_reintegration_rate", "9999-12-31", "", 0, 1, 1)]
    db = _db([("2026-09-01", None, values)], [], {})
    for day in (date(2026, 9, 2), date(9999, 12, 31)):
        params = ReadModelContext.params(Context(Moment(day), ViewSettings(), Directory({}), []))  # type: ignore[arg-type]
        overdue = db.execute(*positional(aggregated(QUERIES["overdue_time_limited_placements"], "count", AS_ENGLAND), params)).fetchall()
        assert overdue == []


def test_a_placement_ended_at_either_end_of_the_dates_keeps_its_length_as_the_sql_does() -> None:
    """The kept lengths at the extremes a date holds: a placement from the first day a date holds (a length of
    3,652,058 days) ended on the last, whose trailing year would end past it (its run never closes), and an ordinary
    one, are counted on the days the median's SQL counts them, without an overflow stopping the upkeep."""
    longest = ("p", "la:801", "setting", "AP", 1, "0001-01-01", None, 10.0, "9999-12-31", "mainstream", 3_652_058, None, 1)
    month = ("p", "la:801", "setting", "AP", 1, "2026-09-01", None, 10.0, "2026-10-01", "mainstream", 30, None, 1)
    rows = [("9999-12-31", None, longest), ("2026-10-01", None, month)]
    kept = EnglandChanges()
    for vf, vt, values in rows:
        kept.add(length_changes(values, vf, vt))
    assert kept.sums == {
        (LENGTHS, "9999-12-31", "3652058"): [3_652_058, 1, 1],  # (no change 365 days after: there is no such day)
        (LENGTHS, "2026-10-01", "30"): [30, 1, 1],
        (LENGTHS, "2027-10-01", "30"): [-30, -1, -1],
    }
    db = _db(rows, [], {})
    for day in (date(2026, 10, 1), date(2027, 9, 30), date(2027, 10, 1), date(9999, 12, 31)):
        params = ReadModelContext.params(Context(Moment(day), ViewSettings(), Directory({}), []))  # type: ignore[arg-type]
        found = db.execute(*positional(aggregated(QUERIES[LENGTHS], "median", AS_ENGLAND), params)).fetchall()
        totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for (_, changed, label), sums in kept.sums.items():
            if changed <= day.isoformat():
                totals[int(label)] = [a + b for a, b in zip(totals[int(label)], sums, strict=True)]
        expected = {int(num) // int(den): [int(num), int(den), int(n)] for _, _, num, den, n, _ in found}
        assert {length: sums for length, sums in totals.items() if sums[2]} == expected, day


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_dual_registration_ended_at_one_school_moves_englands_roll_as_the_fold_does(backend: str) -> None:
    """A pupil on two rolls, then removed from one, an event per batch: the pupil's rows known now then hold the same
    registration open and ended (None against a date), which the upkeep compares without sorting them."""
    a, b = SCHOOLS
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            w.clock.now = datetime(2026, 11, 20, 9, tzinfo=UTC)
            w.admit(upn(1), a, occurred_on=date(2026, 9, 2))
            w.clock.now += timedelta(minutes=1)
            w.admit(upn(1), b, status="S", occurred_on=date(2026, 9, 9))
            w.clock.now += timedelta(minutes=1)
            w.post(
                "pupil.deregistered",
                b,
                {"school": b, "ground": "moved_away", "destination": "moved_away"},
                upn=upn(1),
                occurred_on=date(2026, 10, 1),
            )
            Projector(w.ledger.store, batch_size=1).catch_up()
            assert_england_kept(w.ledger.store)
            for day in (date(2026, 9, 20), date(2026, 10, 20)):
                model, fold = both(Reader(w.ledger.store), Moment(day), "national", "england")
                assert model == fold and model["metrics"]["pupils_on_roll"]["value"] == 1, day
        finally:
            w.ledger.store.close()
