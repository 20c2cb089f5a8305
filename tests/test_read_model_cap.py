"""The suspension cap's breaches kept per unit (projections/read_model_cap.py) count under the unit the SQL names, on
exactly the days it does: for random suspensions of a few pupils at two units (and none), received in any order of
their effective days, every day on which the answer could change; and, through the projector, as reports arrive late,
are corrected, retracted and erased, at school, LA and national level against the fold."""

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
from projections.orgs import Directory
from projections.read_model import RM_EVENTS
from projections.read_model_cap import CAP_BREACHES, RM_CAP_UNITS, UNIT_SUMS, UnitChanges, unit_crossings
from projections.read_model_queries import PER_UNIT, QUERIES, ReadModelContext, aggregated, positional
from projections.runner import Projector, Reader, forget_pupil

from .conftest import upn
from .test_projections import SCHOOLS, fresh_settings, small_world
from .test_read_model import assert_england_kept, both
from .test_read_model_england import DAY, _checked_days, suspend

UNITS = ("urn:0", "urn:1", None)  # None: a suspension without a school (its breaches count for England only)


@settings(max_examples=80, deadline=None)
@given(
    suspensions=st.lists(
        st.tuples(st.integers(0, 2), DAY, st.sampled_from(UNITS), st.sampled_from([1, 2, 30, 60, 89, 90, 91])), max_size=12
    )
)
def test_the_units_kept_cap_breaches_are_the_sqls_at_every_day(suspensions: list[tuple[int, str, str | None, int]]) -> None:
    """In ledger order (the list's), effective days drawn at random: a later report of an earlier day can make another
    suspension the crossing, under another unit, from that day on."""
    db = sqlite3.connect(":memory:")
    for ddl in (*RM_EVENTS.ddl(), *RM_CAP_UNITS.ddl()):
        db.execute(ddl)
    columns = ("seq", "event_id", "type", "subject", "occurred_on", "received_at", "unit", "submitter", "kind", "label", "sessions")
    by_pupil: dict[int, list[tuple[int, str, str | None, int]]] = defaultdict(list)
    for seq, (pupil, day, unit, sessions) in enumerate(suspensions):
        row = (seq, f"e{seq}", "pupil.excluded", f"s{pupil}", day, "2026-01-01T00:00:00Z", unit, "urn:1", "SUSP", "R", sessions)
        db.execute(f"INSERT INTO rm_events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", row)
        by_pupil[pupil].append((seq, day, unit, sessions))
    kept = UnitChanges()
    for rows in by_pupil.values():
        kept.add(unit_crossings(rows))
    db.executemany("INSERT INTO rm_cap_units (unit, day, n) VALUES (?, ?, ?)", [(u, day, n) for (u, day), n in kept.sums.items()])
    for when in _checked_days({d for _, d, _, _ in suspensions}):
        params = ReadModelContext.params(Context(Moment(when), ViewSettings(), Directory({}), []))  # type: ignore[arg-type]
        scanned = db.execute(*positional(aggregated(QUERIES[CAP_BREACHES], "count", PER_UNIT), params)).fetchall()
        read = db.execute(*positional(UNIT_SUMS, params)).fetchall()
        assert sorted(read, key=str) == sorted(scanned, key=str), when


def test_a_late_report_of_an_earlier_day_moves_the_breach_from_that_day_on() -> None:
    """60 sessions at A on 10 September, 40 at B on 1 October, then, received last, 40 more at A on 20 September: from 20
    September the pupil is past the cap at A's late report; from 1 October B's report, earlier in the ledger, is."""
    rows = [(1, "2026-09-10", "A", 60), (2, "2026-10-01", "B", 40), (3, "2026-09-20", "A", 40)]
    assert list(unit_crossings(rows)) == [("A", "2026-09-20", 1), ("A", "2026-10-01", -1), ("B", "2026-10-01", 1)]
    # the same suspensions, A's second received before B's: A's crosses first whatever the day
    rows = [(1, "2026-09-10", "A", 60), (2, "2026-09-20", "A", 40), (3, "2026-10-01", "B", 40)]
    assert list(unit_crossings(rows)) == [("A", "2026-09-20", 1)]
    # sessions far past any real count (the schema bounds them; the arithmetic must not care), on one day at two schools
    assert list(unit_crossings([(2, "2026-09-10", "B", 2**62), (1, "2026-09-10", "A", 1)])) == [("B", "2026-09-10", 1)]
    # a year's breach does not carry into the next
    assert list(unit_crossings([(1, "2026-07-20", "A", 91), (2, "2026-09-02", "B", 91)])) == [
        ("A", "2026-07-20", 1),
        ("B", "2026-09-02", 1),
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_late_corrected_retracted_and_erased_suspensions_move_the_units_breaches_as_the_fold_does(backend: str) -> None:
    """A pupil on both schools' rolls passes the cap at one, a late report of an earlier day makes the other's suspension
    the crossing on the days before, a correction moves it, a retraction and an erasure take breaches off, projected an
    event at a time: the kept numbers equal their recomputation, and each school's, the LA's and England's figures at
    the ledger's now (read from them) equal the fold's."""
    a, b = SCHOOLS
    with fresh_settings(backend) as s:
        w = small_world(s)
        try:
            projector = Projector(w.ledger.store, batch_size=1)
            w.clock.now = datetime(2026, 11, 20, 9, tzinfo=UTC)
            for pupil in (1, 2):
                w.admit(upn(pupil), a, occurred_on=date(2026, 9, 2))
            w.admit(upn(1), b, status="S", occurred_on=date(2026, 9, 3))  # dual registered: on both rolls
            reader = Reader(w.ledger.store)

            def breaches(day: date = date(2026, 11, 1)) -> dict[str, Any]:
                projector.catch_up()
                assert_england_kept(w.ledger.store)  # (and rm_cap_units)
                out = {}
                for level, scope in (("school", a), ("school", b), ("la", "la:801"), ("national", "england")):
                    model, fold = both(reader, Moment(day), level, scope)
                    assert model == fold, (day, level, scope)
                    out[scope] = model["metrics"]["suspension_cap_breaches"]["value"]
                return out

            first = suspend(w, 1, a, date(2026, 9, 10), 60)
            at_b = suspend(w, 1, b, date(2026, 10, 5), 40)
            assert breaches() == {a: 0, b: 1, "la:801": 1, "england": 1}
            assert breaches(date(2026, 10, 1))["england"] == 0  # not yet past the cap on 1 October
            suspend(w, 1, a, date(2026, 9, 15), 40)  # received last, of an earlier day
            assert breaches(date(2026, 9, 20)) == {a: 1, b: 0, "la:801": 1, "england": 1}  # past the cap at A's from 15 September
            assert breaches() == {a: 0, b: 1, "la:801": 1, "england": 1}  # B's, earlier in the ledger, once in force
            suspend(w, 1, b, date(2026, 10, 5), 20, corrects=at_b)  # the correction is later in the ledger than A's
            assert breaches() == {a: 1, b: 0, "la:801": 1, "england": 1}
            suspend(w, 2, a, date(2026, 9, 20), 91)
            assert breaches() == {a: 2, b: 0, "la:801": 2, "england": 2}
            w.clock.now += timedelta(minutes=1)
            w.post("pupil.record_retracted", a, {"reason": "entered_in_error"}, upn=upn(1), occurred_on=date(2026, 9, 10), corrects=first)
            assert breaches() == {a: 1, b: 0, "la:801": 1, "england": 1}  # 60 sessions left to pupil 1
            w.ledger.erase(upn(2), "erasure_request")
            forget_pupil(w.ledger.store, w.ledger.secrets.pupil_id(upn(2)))
            assert breaches() == {a: 0, b: 0, "la:801": 0, "england": 0}
        finally:
            w.ledger.store.close()
