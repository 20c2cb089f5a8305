"""Each unit's LA known now (projections/read_model_la.py) is the directory's ``la_of``, so that a state made for LA
figures at the ledger's now, whose sums the database adds up per LA, gives the same figures as one of every unit."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.core.catalogue import parse_timestamp
from ledger.core.rules import Record
from ledger.tools import admin
from projections.config import ViewSettings
from projections.context import TRAILING_DAYS
from projections.facts import LogEvent, Moment
from projections.metrics import METRICS_BY_NAME
from projections.orgs import directory
from projections.queries import metrics_report
from projections.read_model import END_OF_TIME, STATE_TABLES, KnownNow, _load_tails, views
from projections.read_model_la import UNIT_LA_JOIN, record_las, unit_la
from projections.read_model_la_roll import SPANNING_RUNS
from projections.read_model_la_state import LA_STATE_SUMS
from projections.read_model_months import REPORTS, RM_LA_MONTHS, _adding
from projections.read_model_queries import PER_LA_NOW, PER_UNIT, QUERIES, ReadModelContext
from projections.read_model_roll import YearToDate, previous_month
from projections.read_model_roll import months_to_august as roll_months_to_august
from projections.runner import Projector, Reader, forget_pupil

from .conftest import upn
from .test_projections import fresh_settings, small_world
from .test_projections_scenario import AS_OF, Area, area  # noqa: F401 - area is a fixture
from .test_read_model import assert_england_kept, assert_months_kept, both, months_to_august

__all__ = ["area"]

KEPT_NUMBERS = [t for t in views(ViewSettings())[1].tables if t not in STATE_TABLES]

UNREGISTERED = ("la:999", "uprov:802-7", "urn:100099", "ukprn:19999999", "trust:TR99999")


SCHOOL, SETTING = "urn:100005", "ukprn:10000048"


def placing_world(w: Any, setting_la: str, pupils: range) -> dict[str, Any]:
    """``w`` with an AP setting in ``setting_la`` (registered, with a key), the clock on 10 December 2026, ``pupils`` on
    SCHOOL's roll from 2 September; returns the body of a placement by SCHOOL at the setting."""
    admin.add_org(w.ledger, SETTING, "ap_setting", SETTING, setting_la)
    w.keys[SETTING] = Ed25519PrivateKey.generate()
    admin.add_key(w.ledger, SETTING, w.keys[SETTING].public_key())
    w.clock.now = datetime(2026, 12, 10, 9, tzinfo=UTC)
    registered = {"school": SCHOOL, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
    for pupil in pupils:
        w.post("pupil.registered", SCHOOL, registered, upn=upn(pupil), occurred_on=date(2026, 9, 2))
    return {
        "commissioner": SCHOOL,
        "setting": SETTING,
        "setting_type": "UKPRN",
        "tier": 1,
        "reason": "BEHAVIOUR",
        "hours_per_week": 10,
        "dual_registered": False,
    }


def scope_in_sql(store: Any, unit: str) -> str:
    return str(store.query(f"SELECT {unit_la('c.unit')} FROM (SELECT ? AS unit) c {UNIT_LA_JOIN}", [unit])[0][0])


def assert_scopes(store: Any) -> None:
    """Every organisation of the directory at now, and ids no registration names (an LA's own, an unregistered
    provider's: the LA code in its id, a school's: none, the unit itself)."""
    orgs = directory(Reader(store), Moment(AS_OF))
    units = sorted({*orgs.orgs, *UNREGISTERED})
    assert len(units) > 8
    assert {u: scope_in_sql(store, u) for u in units} == {u: orgs.la_of(u) or u for u in units}


def test_the_units_la_in_sql_is_the_directorys_before_and_after_a_registration(area: Area) -> None:
    """A school registered in another LA once the model has its other rows: its LA known now is the new one, and the LA
    reads at the ledger's now (summed per LA by the database) still equal the fold, with a pupil of LA 202 moved there
    (at schools of two LAs in the year: an item under each, once for England)."""
    store = area.ledger.store
    assert_scopes(store)
    assert scope_in_sql(store, "urn:100099") == "urn:100099"
    area.at(date(2026, 9, 23))
    admin.add_org(area.ledger, "urn:100099", "school", "Late School", "la:802")
    area.keys["urn:100099"] = Ed25519PrivateKey.generate()
    admin.add_key(area.ledger, "urn:100099", area.keys["urn:100099"].public_key())
    area.leave(10, "urn:100007", date(2026, 9, 15), "registered_elsewhere", "school", destination_school="urn:100099")
    area.at(date(2026, 9, 23))
    area.admit(upn(10), "urn:100099", occurred_on=date(2026, 9, 16))  # P10 moves from C (LA 202): at two LAs' schools this year
    Projector(store).catch_up()
    assert scope_in_sql(store, "urn:100099") == "la:802"
    assert_scopes(store)
    reader = Reader(store)
    for level, la in (("la", "la:202"), ("la", "la:801"), ("la", "la:802"), ("national", "england")):
        model, fold = both(reader, Moment(AS_OF), level, la)
        assert model == fold, la
    shared = ReadModelContext(reader, Moment(AS_OF), ViewSettings(), "la").registrations()["year"]
    assert shared.at_several == [("la:202", "s:la:202,la:802", 1), ("la:802", "s:la:202,la:802", 1)]  # (its rows come under their LAs)


def test_an_la_state_at_now_is_summed_per_la_by_the_database(area: Area) -> None:
    """At the ledger's now the database gives one sum per LA and label (no school's sums come back); at an earlier
    ledger time the units' sums come back and are added up in Python; both give a state of every unit's figures."""
    reader = Reader(area.ledger.store)
    every_unit = metrics_report(ReadModelContext(reader, Moment(AS_OF), ViewSettings()), reader, "la", "la:801")
    now = ReadModelContext(reader, Moment(AS_OF), ViewSettings(), "la")
    assert now.grouping is PER_LA_NOW
    name = "open_ap_placements_by_setting_type"
    rows = now.query(now._items_sql(METRICS_BY_NAME[name], QUERIES[name]))  # noqa: SLF001 - the SQL's own rows
    assert rows and {unit for unit, *_ in rows} == {"la:801"}
    assert metrics_report(now, reader, "la", "la:801") == every_unit
    earlier = ReadModelContext(reader, Moment(AS_OF, datetime(2026, 9, 22, 11, tzinfo=UTC)), ViewSettings(), "la")
    assert earlier.grouping is PER_UNIT


def test_a_units_sums_kept_before_its_registration_are_read_under_its_la(area: Area) -> None:
    """A Kafka worker may apply a school's reports before its registration (another partition): they are summed under
    the school's own id, and read under its LA once the registration is applied. Here the model is set back to that
    order (the school's LA unknown, the sums per LA rebuilt without it), then given the registration's batch."""
    store = area.ledger.store
    school = "urn:100005"
    (seq, event_id, received), *_ = store.query(
        "SELECT seq, event_id, received_at FROM pv_org_facts WHERE subject = ? AND type = 'org.registered'", [school]
    )
    settings = ViewSettings()
    with store.cursor(commit=True) as cur:
        cur.execute(store.sql("DELETE FROM rm_unit_la WHERE unit = ?"), [school])
        cur.execute("DELETE FROM rm_la_months")
        sums = " UNION ALL ".join(count.la_sums(metric) for metric, count in REPORTS.items())
        adding = _adding(RM_LA_MONTHS, sums, 1).replace(":late", str(settings.late_school_days))
        cur.execute(store.sql(f"WITH b AS (SELECT e.* FROM rm_events e WHERE e.superseded_at IS NULL) {adding}"))
    kept_under_the_school = store.query("SELECT COUNT(*) FROM rm_la_months WHERE scope = ?", [school])[0][0]
    assert kept_under_the_school > 0
    registration = Record(event_id, "org.registered", "dfe:admin", school, AS_OF, parse_timestamp(received), {"la": "la:801"})
    with store.cursor(commit=True) as cur:
        record_las(cur, store, [LogEvent(int(seq), school, registration, ())])
    assert store.query("SELECT COUNT(*) FROM rm_la_months WHERE scope = ?", [school])[0][0] == kept_under_the_school  # not moved
    assert_months_kept(store)
    model, fold = both(Reader(store), Moment(AS_OF), "la", "la:801")
    assert model == fold
    assert model["metrics"]["suspensions_by_reason"]["value"]  # (the school's suspensions among them)


def test_the_numbers_per_la_kept_before_a_schools_registration_are_read_under_its_la(area: Area) -> None:
    """The state's numbers per LA in a Kafka worker's order: A's registration applied after its pupils' rows. The model's
    kept numbers are written again from the rows known now with A's LA unknown: A's placements and removals count under
    A's own id, and P4 (who moves from B to A, both in LA 801, within the year) has runs under A's id and under la:801 (two
    scopes: an item under each). Once A's LA is known all read as la:801, where the roll-up counts P4 once by key."""
    store = area.ledger.store
    school = "urn:100005"
    (seq, event_id, received), *_ = store.query(
        "SELECT seq, event_id, received_at FROM pv_org_facts WHERE subject = ? AND type = 'org.registered'", [school]
    )
    shared = {s for (s,) in store.query("SELECT DISTINCT subject FROM rm_registrations WHERE known_to IS NULL AND year_regs > 1")}
    assert len(shared) == 1  # P4
    with store.cursor(commit=True) as cur:
        cur.execute(store.sql("DELETE FROM rm_unit_la WHERE unit = ?"), [school])
        for table in KEPT_NUMBERS:  # (every table of numbers the state keeps over its rows, as the view lists them)
            cur.execute(f"DELETE FROM {table.name}")
        subjects = sorted({s for t in STATE_TABLES for (s,) in store.query(f"SELECT DISTINCT subject FROM {t.name}")})
        kept = KnownNow()
        for subject, stored in _load_tails(cur, store, subjects, END_OF_TIME).items():
            kept.pupil(subject, [])
            for _, _, _, known_to, row in stored:
                if known_to is None:
                    kept.change(row, 1)
        kept.write(cur, store)
    assert sorted((scope, int(spans)) for scope, spans in store.query("SELECT DISTINCT scope, spans FROM rm_shared_runs")) == [
        ("la:801", 1),
        (school, 1),
    ]
    assert store.query("SELECT COUNT(*) FROM rm_la_state WHERE scope = ?", [school])[0][0] > 0
    registration = Record(event_id, "org.registered", "dfe:admin", school, AS_OF, parse_timestamp(received), {"la": "la:801"})
    with store.cursor(commit=True) as cur:
        record_las(cur, store, [LogEvent(int(seq), school, registration, ())])
    assert_england_kept(store)  # (and the runs and numbers per LA, each scope read as its LA now)
    reader = Reader(store)
    for as_of in (date(2026, 9, 8), date(2026, 9, 10), AS_OF):
        model, fold = both(reader, Moment(as_of), "la", "la:801")
        assert model == fold, as_of
    state = ReadModelContext(reader, Moment(AS_OF), ViewSettings(), "la")  # P4 left B on 09-07: in B's year, on A's roll
    (pupil,) = shared
    assert {metric for metric, scope, *_ in state.query(LA_STATE_SUMS) if scope == school} == set()  # (read as la:801)
    assert sorted(state.query(SPANNING_RUNS)) == [
        ("la:801", "year", pupil),
        (school, "roll", pupil),
        (school, "year", pupil),
    ]
    # then P4 is erased: its runs come off as they were stored, under A's id and la:801, though A's LA is known now
    forget_pupil(store, uuid.UUID(pupil))
    assert store.query("SELECT COUNT(*) FROM rm_shared_runs")[0][0] == 0
    assert_england_kept(store)
    for as_of in (date(2026, 9, 10), AS_OF):
        model, fold = both(reader, Moment(as_of), "la", "la:801")
        assert model == fold, as_of


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_reintegration_rate_counts_under_the_settings_la_not_the_commissioners(backend: str) -> None:
    """A school in la:801 places pupils at an AP setting in la:202; one placement ends in mainstream. The reintegration
    rate counts it under the setting (la:202), the open placements under the commissioner (la:801): the LA state's kept
    numbers per LA must say so as the rows do (a rate kept under the commissioner's LA passed every other test, whose
    settings share their commissioners' LA)."""
    school = SCHOOL
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            admin.add_org(w.ledger, "la:202", "la", "la:202", None)
            placed = placing_world(w, "la:202", range(1, 4))
            started = w.post("pupil.ap_placement_started", school, placed, upn=upn(1), occurred_on=date(2026, 9, 8))
            w.post("pupil.ap_placement_started", school, placed, upn=upn(2), occurred_on=date(2026, 9, 8))
            # and a time-limited placement planned to end as late as the write side takes (five years on; 9999-12-31 is
            # refused, date_out_of_range): the day it becomes overdue is kept in the month 2031-12, which no earlier read sums
            forever = {**placed, "tier": 2, "planned_end": "2031-12-01"}
            w.post("pupil.ap_placement_started", school, forever, upn=upn(3), occurred_on=date(2026, 9, 8))
            ended = {"placement_event_id": started.event_id, "outcome": "mainstream"}
            w.post("pupil.ap_placement_ended", school, ended, upn=upn(1), occurred_on=date(2026, 9, 30))
            Projector(w.ledger.store).catch_up()
            reader = Reader(w.ledger.store)
            assert_england_kept(w.ledger.store)
            (deadline,) = {d for (d,) in w.ledger.store.query("SELECT deadline FROM rm_placements WHERE deadline IS NOT NULL")}
            for day in (date(2026, 9, 10), date.fromisoformat(deadline), date.fromisoformat(deadline).replace(day=1) + timedelta(days=40)):
                for la in ("la:801", "la:202"):
                    model, fold = both(reader, Moment(day), "la", la)
                    assert model == fold, (day, la)
            model, _ = both(reader, Moment(date.fromisoformat(deadline)), "la", "la:202")
            rate = model["metrics"]["ap_reintegration_rate"]
            assert (rate["numerator"], rate["denominator"]) == (1, 3)  # the setting's LA: one of three back in mainstream
            model, _ = both(reader, Moment(date(2026, 9, 10)), "la", "la:801")
            assert model["metrics"]["open_ap_placements"]["value"] == 3  # the commissioner's LA
            assert model["metrics"]["overdue_time_limited_placements"]["value"] == 0
            assert w.ledger.store.query("SELECT COUNT(*) FROM rm_la_state_months WHERE month = '2031-12'")[0][0] > 0
            model, fold = both(reader, Moment(date(2031, 12, 10)), "la", "la:801")  # D in the month it became overdue
            assert model == fold
            assert model["metrics"]["overdue_time_limited_placements"]["value"] == 1
        finally:
            w.ledger.store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_register_counts_a_placement_ended_on_the_first_day_of_the_trailing_year(backend: str) -> None:
    """A state reads only the placements open at D or ended from its trailing year's first day on (older ended ones
    count only in SQL): one ended on that very day is in the register's ended placements, and is gone a day later, as
    in the fold."""
    school = SCHOOL
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            placed = placing_world(w, "la:801", range(1, 2))
            started = w.post("pupil.ap_placement_started", school, placed, upn=upn(1), occurred_on=date(2026, 9, 8))
            ended_on = date(2026, 9, 30)
            w.post(
                "pupil.ap_placement_ended",
                school,
                {"placement_event_id": started.event_id, "outcome": "mainstream"},
                upn=upn(1),
                occurred_on=ended_on,
            )
            Projector(w.ledger.store).catch_up()
            reader = Reader(w.ledger.store)
            last = ended_on + timedelta(days=TRAILING_DAYS - 1)  # the last D whose trailing year starts on the end
            for day, counted in ((ended_on, 1), (last, 1), (last + timedelta(days=1), 0)):
                for level, scope in (("la", "la:801"), ("school", school), ("national", "england")):
                    model, fold = both(reader, Moment(day), level, scope)
                    assert model == fold, (day, level)
                    assert model["placements"]["ended_placement_days"]["count"] == counted, (day, level)
        finally:
            w.ledger.store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_register_counts_a_time_limited_placement_overdue_from_the_day_after_its_planned_end(backend: str) -> None:
    """The register's groups (``PlacementTally``, grouped by the database for England, an LA at now and a school) say a
    tier 2 placement is overdue once D is past its planned end, not on it, as the fold does; its days so far are
    counted from its start to D."""
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            placed = {**placing_world(w, "la:801", range(1, 3)), "tier": 2, "planned_end": "2026-10-20"}
            for pupil, start in ((1, date(2026, 9, 8)), (2, date(2026, 9, 9))):
                w.post("pupil.ap_placement_started", SCHOOL, placed, upn=upn(pupil), occurred_on=start)
            Projector(w.ledger.store).catch_up()
            reader = Reader(w.ledger.store)
            for day, overdue in ((date(2026, 10, 19), 0), (date(2026, 10, 20), 0), (date(2026, 10, 21), 2)):
                for level, scope in (("la", "la:801"), ("school", SCHOOL), ("national", "england"), ("la", "la:802")):
                    model, fold = both(reader, Moment(day), level, scope)
                    assert model == fold, (day, level)
                    register = model["placements"]
                    mine = scope != "la:802"
                    assert register["overdue_time_limited_placements"] == (overdue if mine else 0), (day, level)
                    so_far = (day - date(2026, 9, 8)).days
                    assert register["open_placement_days_so_far"] == (
                        {"count": 2, "mean": so_far - 0.5, "median": so_far - 0.5} if mine else {"count": 0, "mean": None, "median": None}
                    ), (day, level)
        finally:
            w.ledger.store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_directory_at_now_is_read_again_once_an_organisations_event_is_projected(backend: str) -> None:
    """The org facts known now are kept between reads (``orgs._known_now``) while the table holds the same facts: a
    new organisation, and a trust joined (no new organisation), are in the next read once projected, and a read at a
    past ledger time does not see what was learnt after it."""
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            store = w.ledger.store
            Projector(store).catch_up()
            day = Moment(date(2026, 8, 20))
            before = directory(Reader(store), day)
            assert "urn:100099" not in before.orgs and directory(Reader(store), day) == before
            learnt = w.ledger.clock()
            w.clock.now += timedelta(minutes=1)
            admin.add_org(w.ledger, "urn:100099", "school", "Late School", "la:802")
            assert directory(Reader(store), day) == before  # not projected yet
            Projector(store).catch_up()
            assert directory(Reader(store), day).la_of("urn:100099") == "la:802"
            w.ledger.submit(own_events.admin_event(w.ledger, "org.joined_trust", "urn:100099", {"trust": "trust:TR00009"}))
            Projector(store).catch_up()
            assert directory(Reader(store), day).trust_of("urn:100099") == "trust:TR00009"
            assert directory(Reader(store), Moment(day.as_of, learnt)) == before
        finally:
            w.ledger.store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_las_register_at_now_counts_its_own_and_its_schools_placements_and_no_others(backend: str) -> None:
    """An LA's register at the ledger's now is grouped by the database from the placements of the commissioners whose
    LA it is (``LA_COMMISSIONED``): the LA's own placement and its school's count, another LA's school's does not, as in
    the fold."""
    other_school = "urn:100777"
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            placed = placing_world(w, "la:801", range(1, 3))
            admin.add_org(w.ledger, other_school, "school", other_school, "la:802")
            w.keys[other_school] = Ed25519PrivateKey.generate()
            admin.add_key(w.ledger, other_school, w.keys[other_school].public_key())
            registered = {"school": other_school, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
            w.post("pupil.registered", other_school, registered, upn=upn(3), occurred_on=date(2026, 9, 2))
            w.post("pupil.ap_placement_started", SCHOOL, placed, upn=upn(1), occurred_on=date(2026, 9, 8))
            by_la = {**placed, "commissioner": "la:801"}
            w.post("pupil.ap_placement_started", "la:801", by_la, upn=upn(2), occurred_on=date(2026, 9, 9))
            by_other = {**placed, "commissioner": other_school}
            w.post("pupil.ap_placement_started", other_school, by_other, upn=upn(3), occurred_on=date(2026, 9, 10))
            Projector(w.ledger.store).catch_up()
            reader = Reader(w.ledger.store)
            day = date(2026, 10, 1)
            for scope, count in (("la:801", 2), ("la:802", 1), ("england", 3)):
                level = "national" if scope == "england" else "la"
                model, fold = both(reader, Moment(day), level, scope)
                assert model == fold, scope
                assert model["placements"]["open_placement_days_so_far"]["count"] == count, scope
                state = ReadModelContext(reader, Moment(day), ViewSettings(), "la")
                assert sum(state.placement_tally(level, scope).open.values()) == count, scope
        finally:
            w.ledger.store.close()


EDGE_DAYS = ("0001-01-15", "0999-12-01", "2025-08-31", "2025-09-01", "2025-12-31", "2026-01-01", "2026-07-10", "9999-09-30", "9999-12-31")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_reports_month_is_summed_under_each_later_month_of_its_academic_year(backend: str) -> None:
    """rm_la_months' row of a month holds the academic year's sums to that month's end (``YearToDate``): a report is
    added under its own month and each later one to the August ending its academic year, by the database's arithmetic on
    months, here at the edges of the months a date holds (year 1, a three-digit year, December 9999), across a new year,
    and in a year's first and last months; and the row a read at D takes for the whole months before D's is the month
    before D's."""
    table = YearToDate("rm_test_to_date", RM_LA_MONTHS.columns, key=RM_LA_MONTHS.key, counting="n <> 0")
    sums = " UNION ALL ".join(
        f"SELECT 'm' AS metric, SUBSTR(?, 1, 7) AS month, 'la:801' AS scope, '' AS label, {i} AS num, 1 AS den"
        for i, _ in enumerate(EDGE_DAYS)
    )  # (bound as the upkeep's statement is: psycopg reads a % in it as a placeholder)
    with fresh_settings(backend) as settings:
        store = admin.initialise(settings).ledger.store
        with store.cursor(commit=True) as cur:
            for statement in table.ddl():
                cur.execute(statement)
            cur.execute(store.sql(_adding(table, sums, 1)), EDGE_DAYS)
        stored = {month: (int(num), int(n)) for month, num, n in store.query(f"SELECT month, num, n FROM {table.name}")}
        store.close()
    expected: dict[str, tuple[int, int]] = {}
    for i, day in enumerate(EDGE_DAYS):
        for month in months_to_august(date.fromisoformat(day)):
            num, n = expected.get(month, (0, 0))
            expected[month] = (num + i, n + 1)
    assert stored == expected
    for day in EDGE_DAYS:  # the Python upkeep's months (``DailyChanges.add``) are the SQL's
        assert list(roll_months_to_august(day[:7])) == months_to_august(date.fromisoformat(day)), day
    assert stored["2025-12"] == (3 + 4, 2) and stored["2026-08"] == (3 + 4 + 5 + 6, 4)  # September's and December's
    assert stored["2025-08"] == (2, 1) and "9999-12" in stored and not any(m > "9999-12" for m in stored)
    assert [previous_month(date.fromisoformat(day)) for day in EDGE_DAYS] == [
        "0000-12", "0999-11", "2025-07", "2025-08", "2025-11", "2025-12", "2026-06", "9999-08", "9999-11"
    ]  # fmt: skip
