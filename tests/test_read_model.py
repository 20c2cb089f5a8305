"""The read model (projections/read_model*.py) gives the fold's answers: for the hand-computed area, and for
random histories (corrections, retractions, late reports, trust moves, erasures, unregistered provision,
post-16 destinations) at every level and many (as_of, known_at), on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import re
import weakref
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ledger import own_events
from ledger.core.catalogue import parse_timestamp
from ledger.core.errors import LedgerError
from ledger.tools import admin
from projections import read_model_ahead, read_model_queries
from projections.config import ViewSettings
from projections.context import context
from projections.facts import Moment
from projections.metrics import METRICS_BY_NAME, figure_of, figures, report
from projections.orgs import Directory, Org
from projections.queries import metrics_report
from projections.read_model import RM_EXITS, RM_PLACEMENTS
from projections.read_model_ahead import REPORT, YEAR_BEFORE
from projections.read_model_cap import SUSPENSIONS_KNOWN_NOW, UnitChanges, crossings, unit_crossings
from projections.read_model_england import (
    ENGLAND_SUMS,
    RM_ENGLAND_REPORTS,
    RM_ENGLAND_STATE,
    EnglandChanges,
    exit_changes,
    length_changes,
    placement_changes,
    pupil_runs,
    registration_changes,
)
from projections.read_model_la import directory_of
from projections.read_model_la_roll import scoped_runs
from projections.read_model_la_state import LA_STATE_SUMS, RM_LA_STATE, placement_unit
from projections.read_model_months import COUNTED, ENGLAND_REPORTS, REPORTS
from projections.read_model_queries import (
    ALONE_COUNTS,
    QUERIES,
    REGISTRATION_COUNTS,
    ROLL_COUNTS,
    SHARED_REGISTRATIONS,
    ReadModelContext,
    Registrations,
    _as_registration_counts,
    aggregated,
    own_scope,
    read_model_context,
    state_level,
)
from projections.read_model_roll import REGISTRATION_COLUMNS, Changes
from projections.read_model_series import compare, values_of
from projections.runner import Projector, Reader, forget_pupil

from .conftest import World, upn
from .test_projections import (
    OPS,
    SCHOOLS,
    SETTING,
    assert_la_roll_sums,
    assert_months_of,
    fresh_settings,
    mapped_runs,
    months_to_august,
    play,
    scope_mapper,
    small_world,
    stored_runs,
)
from .test_projections_scenario import AS_OF, LA, LA2, TRUST, A, Area, area, d  # noqa: F401 - area is a fixture

__all__ = ["area"]


def both(db: Any, moment: Moment, level: str, scope: str, settings: ViewSettings | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The read model's accountabilityMetrics body and the fold's, for one scope and moment. At national level, the
    state made for national figures only (England's sums) must give the same body as the state of every unit."""
    s = settings or ViewSettings()
    every_unit = ReadModelContext(db, moment, s)
    model = metrics_report(every_unit, db, level, scope)
    if level == "national":
        assert metrics_report(ReadModelContext(db, moment, s, "national"), db, level, scope) == model, moment
    if level in ("la", "national"):  # a state made for LA figures gives the same LA and England figures and comparisons
        la_state = ReadModelContext(db, moment, s, "la")
        assert metrics_report(la_state, db, level, scope) == model, moment
        if level == "la":
            assert compared(la_state, scope) == compared(every_unit, scope), moment
    only = own_scope(level, scope)
    if only is not None:  # a state of the school's, trust's or LA's items alone gives its figures (the year before's)
        own = ReadModelContext(db, moment, s, state_level(only[0]), only=only)
        assert own_figures(own, *only) == own_figures(every_unit, *only), moment
    return model, metrics_report(context(db, moment, s), db, level, scope)


def own_figures(state: Any, level: str, scope: str) -> dict[str, dict[str, Any]]:
    """Every metric's figure of one scope in ``state``: numerator and denominator as well as the value."""
    return {name: figure_of(m, state.contributions(m), level, state.directory, scope).as_dict() for name, m in METRICS_BY_NAME.items()}


def compared(state: Any, la: str) -> dict[str, Any]:
    """An LA's figures with the region's value, quartile and change (against the same state's values, for the test)."""
    found = report(state, "la", la)
    region = compare(state, values_of(state, "la", la, found), "la", la, found)
    return {"region": region, **found}


def scopes(db: Any, moment: Moment) -> list[tuple[str, str]]:
    orgs = context(db, moment, ViewSettings()).directory
    out = [("national", "england")]
    for org in orgs.orgs.values():
        if org.kind in ("school", "ap_setting", "unregistered_provider"):
            out.append(("school", org.org))
        if org.la:
            out.append(("la", org.la))
        if org.trust:
            out.append(("trust", org.trust))
    return sorted(set(out))


def test_the_area_is_answered_by_the_read_model_without_folding_a_pupil(area: Area) -> None:
    reader = Reader(area.ledger.store)
    ctx = read_model_context(reader, Moment(AS_OF), ViewSettings())
    assert isinstance(ctx, ReadModelContext)
    for level, scope in scopes(reader, Moment(AS_OF)):
        metrics_report(ctx, reader, level, scope)
    assert ctx._fold is None  # noqa: SLF001 - every metric, the register and the watch came from SQL


def test_every_metric_of_docs_metrics_is_in_the_read_model() -> None:
    from projections import ap_performance, exclusions, placements, roll, unregistered
    from projections.metrics import METRICS_BY_NAME
    from projections.read_model_queries import COMPUTED

    documented = {m.name for module in (placements, unregistered, roll, exclusions, ap_performance) for m in module.METRICS}
    assert documented - set(QUERIES) - set(COMPUTED) == set()
    assert set(QUERIES) | set(COMPUTED) <= set(METRICS_BY_NAME)


def test_a_read_at_now_asks_for_the_rows_known_now_as_the_partial_indexes_say_it(area: Area) -> None:
    """At the ledger's now every interval row's known part becomes ``known_to IS NULL`` (``at_now``), in every
    statement a state sends, so that the indexes of the rows known now serve it; a read at a ledger time keeps T."""
    from projections.read_model_queries import SCANS, at_now

    statements = [q.sql for q in QUERIES.values() if q.sql] + list(SCANS.values()) + [SHARED_REGISTRATIONS, ROLL_COUNTS]
    in_force = re.compile(r"known_to IS NULL OR \w+\.known_to > [:?]")  # ST's (ROLL_COUNTS' corrections find none at now)
    assert all(not in_force.search(at_now(sql)) for sql in statements)
    assert at_now("p.known_from <= :t AND (p.known_to IS NULL OR p.known_to > :t)") == "p.known_to IS NULL"
    store = area.ledger.store
    sent: list[str] = []
    query, select_in = store.query, store.select_in
    try:  # (the statements by a list of ids too: the provider watch's vulnerable pupils)
        store.query = lambda sql, params=(): sent.append(sql) or query(sql, params)  # type: ignore[method-assign]
        store.select_in = lambda cur, sql, *rest: sent.append(sql) or select_in(cur, sql, *rest)  # type: ignore[method-assign]
        reader = Reader(store)
        metrics_report(ReadModelContext(reader, Moment(AS_OF), ViewSettings()), reader, "la", "la:801")
        assert sent and not any(in_force.search(sql) for sql in sent)
        assert any("FROM rm_registrations r WHERE {where}" in sql for sql in sent)
        sent.clear()
        metrics_report(ReadModelContext(reader, Moment(AS_OF, area.ledger.clock()), ViewSettings()), reader, "la", "la:801")
        assert any(in_force.search(sql) for sql in sent if "{where}" in sql)
    finally:
        store.query, store.select_in = query, select_in  # type: ignore[method-assign]


def test_a_state_reads_the_open_placements_its_readers_count(area: Area) -> None:
    """The provider watch reads the open placements at unregistered providers alone (their own partial index), and the
    funding its banded placements by id: a national state (a series' date) reads not every open placement, yet watches
    what the fold watches. An England read's register reads them all, and the watch then takes its own from those."""
    store = area.ledger.store
    sent: list[str] = []
    query = store.query
    every_open = re.compile(r"p\.end_on IS NULL ORDER BY")  # ``open_placements``' statement, of no setting type
    at_unregistered = "p.end_on IS NULL AND p.setting_type IN ('NFE', 'OOT', 'OTH', 'WBP') ORDER BY"
    reader = Reader(store)
    try:
        store.query = lambda sql, params=(): sent.append(sql) or query(sql, params)  # type: ignore[method-assign]
        for day in (AS_OF, AS_OF - timedelta(days=40)):
            state = ReadModelContext(reader, Moment(day), ViewSettings(), "national")
            figures = report(state, "national", "england")
            assert not any(every_open.search(sql) for sql in sent), day
            assert sum(at_unregistered in sql for sql in sent) == 1, day
            fold = context(reader, Moment(day), ViewSettings())
            assert figures == report(fold, "national", "england"), day
            assert state.provider_watch() == fold.derived("provider_watch", lambda ctx: None), day
            assert bool(state.open_unregistered) == (day == AS_OF), day  # (none 40 days before)
            sent.clear()
        england = ReadModelContext(reader, Moment(AS_OF), ViewSettings(), "national")
        metrics_report(england, reader, "national", "england")
        assert sum(bool(every_open.search(sql)) for sql in sent) == 1 and sum(at_unregistered in sql for sql in sent) == 1
        assert england.open_unregistered == [p for p in england.open_placements if p.setting_type in ("NFE", "OOT", "OTH", "WBP")]
    finally:
        store.query = query  # type: ignore[method-assign]


def test_a_metric_not_in_the_read_model_is_answered_by_the_fold(area: Area) -> None:
    from projections.context import Contribution, Metric

    reader = Reader(area.ledger.store)
    newcomer = Metric(
        "pupils_with_an_ehcp",
        "ehcp",
        "count",
        lambda ctx: (Contribution(g.school, p.key, 1) for p in ctx.pupils for g in p.state.registrations if g.sen_status == "E"),
    )
    ctx = ReadModelContext(reader, Moment(AS_OF), ViewSettings())
    assert ctx.contributions(newcomer) == context(reader, Moment(AS_OF), ViewSettings()).contributions(newcomer)
    assert [c.unit for c in ctx.contributions(newcomer)] == [A]  # P3 (EHCP) at A


def test_the_area_equals_the_fold_at_every_level_and_moment(area: Area) -> None:
    reader = Reader(area.ledger.store)
    for as_of in (d(9, 4), d(9, 9), d(9, 22), AS_OF, d(3, 20), d(12, 31)):
        for known_at in (None, datetime(2026, 9, 21, 23, tzinfo=UTC), datetime(2026, 9, 22, 11, tzinfo=UTC)):
            moment = Moment(as_of, known_at)
            for level, scope in scopes(reader, moment):
                model, fold = both(reader, moment, level, scope)
                assert model == fold, (as_of, known_at, level, scope)


def test_a_kept_count_reads_d_s_month_from_the_side_with_fewer_reports(area: Area) -> None:
    """A kept count of the year's reports at the ledger's now reads D's month from the side with fewer of the metric's
    reports: the month's rows up to D, or the month's kept sums less its rows after D (a read at the end of September
    read every registration of the year's first days one by one, and one in the middle of September still did, where
    they came in a spike); with none in the month, from the end D is nearer. The bodies are the fold's at every level
    either way. On 9 September the area has more reports before D than after it, though D is nearer the month's start,
    and on 5 October the month's only reports are before D: the nearer end by days would read them."""
    store = area.ledger.store
    reader = Reader(store)

    def reports(where: str) -> int:
        return int(
            store.query(f"SELECT COUNT(*) FROM rm_events WHERE SUBSTR(type, 1, 6) = 'pupil.' AND superseded_at IS NULL AND {where}")[0][0]
        )

    # the late-report rate counts every report: from the month's end on these days, from its start on the others
    from_the_end = {d(9, 4): False, d(9, 9): True, d(9, 22): True, AS_OF: True, d(3, 14): False, d(3, 20): True, d(12, 31): True}
    sent: list[str] = []
    query = store.query
    try:
        store.query = lambda sql, params=(): sent.append(sql) or query(sql, params)  # type: ignore[method-assign]
        for day, late in from_the_end.items():
            month, next_month = day.replace(day=1).isoformat(), date(day.year + day.month // 12, day.month % 12 + 1, 1).isoformat()
            up_to = reports(f"occurred_on >= '{month}' AND occurred_on <= '{day}'")
            after = reports(f"occurred_on > '{day}' AND occurred_on < '{next_month}'")
            assert late == (after < up_to if up_to != after else day.day > 16), (day, up_to, after)  # (the table is the area's)
            moment = Moment(day)
            for level, scope in scopes(reader, moment):
                sent.clear()
                model, fold = both(reader, moment, level, scope)
                assert model == fold, (day, level, scope)
                kept = [sql for sql in sent if "FROM rm_months WHERE metric = 'late_report_rate'" in sql]
                if level != "national":  # (England's reports are kept per day: ``read_model_england``)
                    assert kept and all(("e.occurred_on > ?" in sql) == late for sql in kept), (day, level)
        # each metric its own side: on 4 September the one removal to an unknown destination is before D, the month's
        # other reports mostly after it
        ctx = ReadModelContext(reader, Moment(d(9, 4)), ViewSettings())
        assert not ctx._from_the_months_end("late_report_rate") and ctx._from_the_months_end("removals_unknown_destination")
    finally:
        store.query = query  # type: ignore[method-assign]


def test_a_read_at_an_earlier_ledger_time_corrects_the_kept_counts_by_the_reports_since(
    area: Area, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At an earlier ledger time T a state of every unit takes the counts ``rm_months`` keeps over the reports known now,
    less those T did not know yet and plus those T knew that have been superseded since, rather than the year's reports;
    past ``CORRECTIONS_LIMIT`` such reports it reads the reports. The bodies are the fold's at every level either way, at
    a T halfway through the area's reports. (The area corrects no report: the random histories' property test, whose
    corrections and retractions supersede reports, holds the reports superseded since T.)"""
    store = area.ledger.store
    reader = Reader(store)

    times = sorted({str(t) for (t,) in store.query("SELECT received_at FROM rm_events")})
    t = times[len(times) // 2]
    learnt = "SELECT COUNT(*) FROM rm_events WHERE superseded_at IS NULL AND received_at > ?"
    assert int(store.query(learnt, [t])[0][0]) > 10
    moment = Moment(AS_OF, parse_timestamp(t))
    sent: list[str] = []
    query = store.query
    try:
        store.query = lambda sql, params=(): sent.append(sql) or query(sql, params)  # type: ignore[method-assign]
        for limit, kept in ((read_model_queries.CORRECTIONS_LIMIT, True), (0, False)):
            monkeypatch.setattr(read_model_queries, "CORRECTIONS_LIMIT", limit)
            for level, scope in scopes(reader, moment):
                sent.clear()
                model, fold = both(reader, moment, level, scope)
                assert model == fold, (limit, level, scope)
                months = [sql for sql in sent if "FROM rm_months WHERE metric = 'late_report_rate'" in sql]
                assert bool(months) == kept, (limit, level)
                assert all("e.superseded_at > ?" in sql and "e.received_at > ?" in sql for sql in months), level
    finally:
        store.query = query  # type: ignore[method-assign]


def test_the_roll_is_asked_once_for_every_metric_that_counts_it(area: Area) -> None:
    """pupils_on_roll, the suspension and exclusion rates and the unexplained-exit rate count registrations: one query
    of them serves all four (each used to scan the registrations itself), with the same figures as the fold."""
    reader = Reader(area.ledger.store)
    ctx = ReadModelContext(reader, Moment(AS_OF), ViewSettings())
    asked: list[str] = []
    query = ctx.query

    def recorded(sql: str, **extra: Any) -> list[tuple[Any, ...]]:
        asked.append(sql)
        return query(sql, **extra)

    ctx.query = recorded  # type: ignore[method-assign]
    model = metrics_report(ctx, reader, "la", "la:801")
    # (sen_exits looks up one pupil's row)
    assert [sql for sql in asked if "r.year_regs" in sql] == [ROLL_COUNTS, ALONE_COUNTS, SHARED_REGISTRATIONS]
    assert model == metrics_report(context(reader, Moment(AS_OF), ViewSettings()), reader, "la", "la:801")


def test_a_scan_for_several_metrics_gives_each_the_rows_of_its_own_query(area: Area) -> None:
    """Both suspension metrics are read by one scan (SCANS): each gets the aggregated rows its own query gives."""
    reader = Reader(area.ledger.store)
    scanned = {name: q for name, q in QUERIES.items() if q.scan is not None}
    assert set(scanned) == {"suspensions_by_reason", "suspension_cap_breaches"}
    for moment in (Moment(AS_OF), Moment(d(12, 31)), Moment(AS_OF, datetime(2026, 9, 21, 23, tzinfo=UTC))):
        for level in (None, "national"):  # summed per unit, or as England's (the state only national figures are read from)
            ctx = ReadModelContext(reader, moment, ViewSettings(), level)
            for name, query in scanned.items():
                assert query.scan is not None
                own = ctx.query(aggregated(query, METRICS_BY_NAME[name].kind, ctx.grouping))
                assert sorted(map(tuple, own)) == sorted(ctx.scanned(query.scan).get(name, [])), (name, moment, level)
            assert ctx.scanned("suspensions").get("suspension_cap_breaches") or moment.known_at is not None  # P2's breach


def test_a_national_state_holds_englands_sums_and_refuses_other_levels(area: Area) -> None:
    """A state made for national figures has a few sums per metric, not one per unit, gives the fold's national body,
    and refuses to roll up its sums to a school, trust or LA, where they would be wrong rather than slow."""
    reader = Reader(area.ledger.store)
    moment = Moment(AS_OF)
    national = ReadModelContext(reader, moment, ViewSettings(), "national")
    every_unit = ReadModelContext(reader, moment, ViewSettings())
    for name, query in QUERIES.items():
        metric = METRICS_BY_NAME[name]
        if (query.sql or query.registrations) and query.unique and metric.kind != "median":  # (a median's values come one by one)
            assert {c.unit for c in national.contributions(metric)} <= {"england"}, name
    sums = sum(len(national.contributions(m)) for m in METRICS_BY_NAME.values())
    assert sums < sum(len(every_unit.contributions(m)) for m in METRICS_BY_NAME.values())
    assert metrics_report(national, reader, "national", "england") == metrics_report(
        context(reader, moment, ViewSettings()), reader, "national", "england"
    )
    for level, scope in (("la", "la:801"), ("trust", TRUST), ("school", A)):
        with pytest.raises(ValueError, match="national figures only"):
            metrics_report(national, reader, level, scope)
        with pytest.raises(ValueError, match="national figures only"):
            values_of(national, level, scope, ["pupils_on_roll"])
    with pytest.raises(ValueError, match="not 'trust'"):
        ReadModelContext(reader, moment, ViewSettings(), "trust")


def test_a_school_or_la_read_at_now_takes_englands_figures_from_englands_kept_numbers(area: Area) -> None:
    """A state of every unit (a school's or a trust's read) or made for LA figures, at the ledger's now, takes England's
    figure of each metric from a state made for national figures (England's kept numbers), not from its own items of
    every unit; at an earlier ledger time (nothing kept) from its own. Either way the body is the fold's."""
    reader = Reader(area.ledger.store)
    earlier = datetime(2026, 9, 22, 11, tzinfo=UTC)
    for level, made_for, scope in (("school", None, A), ("trust", None, TRUST), ("la", "la", "la:801")):
        for known_at in (None, earlier):
            moment = Moment(AS_OF, known_at)
            state = ReadModelContext(reader, moment, ViewSettings(), made_for)
            model = metrics_report(state, reader, level, scope)
            for name in ("open_ap_placements_by_setting_type", "pupils_on_roll", "suspension_rate", "ap_placement_length_mean_days"):
                metric = METRICS_BY_NAME[name]
                units = {c.unit for c in state.national_contributions(metric)}
                if known_at is None:
                    assert units <= {"england"}, (name, level)
                else:
                    assert state.national_contributions(metric) is state.contributions(metric), (name, level)
            # a metric finished in Python is England's from the state's own items: the national state would compute it again
            for name in ("unregistered_providers_needing_registration", "ehcp_plans_within_20_weeks_rate"):
                assert state.national_contributions(METRICS_BY_NAME[name]) is state.contributions(METRICS_BY_NAME[name]), name
            assert (state._national is not None) == (known_at is None)  # noqa: SLF001 - England's state, made at now only
            assert model == metrics_report(context(reader, moment, ViewSettings()), reader, level, scope), (level, known_at)


def rows_read(state: ReadModelContext) -> int:
    """How many rows the statements of ``state``'s every metric give (its ``query``, recorded as it answers them)."""
    counts: list[int] = []
    asking = state.query

    def query(sql: str, **extra: Any) -> list[tuple[Any, ...]]:
        rows = asking(sql, **extra)
        counts.append(len(rows))
        return rows

    state.query = query  # type: ignore[method-assign]
    for m in METRICS_BY_NAME.values():
        state.contributions(m)
    return sum(counts)


def test_a_state_of_one_school_trust_or_las_items_reads_its_rows_alone_and_serves_its_own_figures_only(area: Area) -> None:
    """The year before's values of a school's, trust's or LA's body need no other scope's figure (no rank): a state of
    its items alone (a trust's: its schools as of D; an LA's: its sums, a state made for LA figures) reads fewer rows than
    the state it would otherwise be (of every unit; the LA state), with the same figures (``both`` requires them at every
    moment, here and in random histories), and refuses what needs other scopes: ranks, another scope's figures, another
    level's, and being made for England or at another level than its own."""
    reader = Reader(area.ledger.store)
    moment = Moment(d(10, 5))
    every = ReadModelContext(reader, moment, ViewSettings())
    la_state = ReadModelContext(reader, moment, ViewSettings(), "la")
    whole_rows = {"every unit": rows_read(every), "la": rows_read(la_state)}
    for level, scope, whole, made in (
        ("school", A, every, "every unit"),
        ("trust", TRUST, every, "every unit"),
        ("la", LA, la_state, "la"),
    ):
        own = ReadModelContext(reader, moment, ViewSettings(), state_level(level), only=(level, scope))
        assert 0 < rows_read(own) < whole_rows[made], (level, scope)
        assert own_figures(own, level, scope) == own_figures(whole, level, scope) == own_figures(every, level, scope)
        assert values_of(own, level, scope, ["pupils_on_roll"]) == values_of(every, level, scope, ["pupils_on_roll"])
        with pytest.raises(ValueError, match=f"the items of {scope} only"):
            report(own, level, scope)  # a rank needs every peer's figure
        with pytest.raises(ValueError):
            values_of(own, "la", LA2, ["pupils_on_roll"])
        with pytest.raises(ValueError):
            values_of(own, "national", "england", ["pupils_on_roll"])
    own_school = ReadModelContext(reader, moment, ViewSettings(), only=("school", A))
    with pytest.raises(ValueError, match="urn:100006"):
        values_of(own_school, "school", "urn:100006", ["pupils_on_roll"])
    assert len(ReadModelContext(reader, moment, ViewSettings(), only=("trust", TRUST)).units or ()) >= 2  # the trust's schools
    # at a ledger time past, an LA state is summed per unit and regrouped in Python: its own state reads every LA's rows
    # (none is left out) and still serves the LA's figures alone, the same as the state of every unit's
    past = Moment(d(10, 5), datetime(2026, 10, 1, 9, tzinfo=UTC))
    own_past = ReadModelContext(reader, past, ViewSettings(), "la", only=("la", LA))
    assert own_figures(own_past, "la", LA) == own_figures(ReadModelContext(reader, past, ViewSettings()), "la", LA)
    with pytest.raises(ValueError, match=f"the items of {LA} only"):
        values_of(own_past, "la", LA2, ["pupils_on_roll"])
    for only, level in (
        (("school", "la:801"), None),
        (("la", "la:801"), None),
        (("la", "la:801"), "national"),
        (("la", A), "la"),
        (("national", "england"), "national"),
        (("school", TRUST), None),
        (("school", A), "la"),
        (("trust", TRUST), "national"),
        (("trust", TRUST), "la"),
    ):
        with pytest.raises(ValueError, match="a state of one scope's items"):
            ReadModelContext(reader, moment, ViewSettings(), level, only=only)
    asked = (("school", A), ("la", LA), ("trust", TRUST), ("school", LA), ("trust", A), ("la", TRUST), ("national", "england"))
    assert [own_scope(level, scope) for level, scope in asked] == [("school", A), ("la", LA), ("trust", TRUST), None, None, None, None]


def with_values_of_their_own(state: ReadModelContext) -> list[str]:
    """The statements ``state`` will ask with values of their own (``query``'s ``extra``), as it asks them."""
    scoped: list[str] = []
    asking = state.query

    def query(sql: str, **extra: Any) -> list[tuple[Any, ...]]:
        if extra:
            scoped.append(sql)
        return asking(sql, **extra)

    state.query = query  # type: ignore[method-assign]
    return scoped


def test_a_state_takes_the_rows_of_the_statements_its_kinds_last_state_asked_from_those_asked_ahead(area: Area) -> None:
    """On PostgreSQL a state sends the statements the previous state of its kind asked to other connections when it is
    made, and takes their rows when it asks them: bound to its own moment, so its body is that of a state that asked
    nothing ahead, and the fold's (the previous state's moment has other figures). SQLite asks nothing ahead."""
    reader = Reader(area.ledger.store)
    postgres = area.ledger.store.is_postgres
    before, moment = Moment(d(7, 20)), Moment(AS_OF)
    for level, made_for, scope in (("school", None, A), ("la", "la", "la:801"), ("national", "national", "england")):
        read_model_ahead.forget()
        alone = ReadModelContext(reader, moment, ViewSettings(), made_for, ahead=REPORT)  # (the first of its kind: nothing ahead)
        expected = metrics_report(alone, reader, level, scope)
        assert alone._ahead.taken == alone._ahead.taken_back == 0  # noqa: SLF001
        earlier = ReadModelContext(reader, before, ViewSettings(), made_for, ahead=REPORT)
        assert metrics_report(earlier, reader, level, scope) != expected, level  # (a plan bound to its moment would show)
        state = ReadModelContext(reader, moment, ViewSettings(), made_for, ahead=REPORT)
        scoped = with_values_of_their_own(state)
        assert (
            metrics_report(state, reader, level, scope)
            == expected
            == metrics_report(context(reader, moment, ViewSettings()), reader, level, scope)
        )
        asked = state._ahead  # noqa: SLF001
        planned = set(earlier._ahead.asked)  # noqa: SLF001
        if postgres:
            assert asked.taken + asked.taken_back == len(planned & set(asked.asked)) >= 5, (level, asked.taken, asked.taken_back)
            assert asked.taken >= 1, level
        else:
            assert asked.taken == asked.taken_back == 0
        # a statement with values of its own (a school's or an LA's register, by its id) is run by the state and never
        # becomes a plan: the next state would bind it without those values (England's register has none)
        assert (bool(scoped) or level == "national") and not any(sql in asked.asked for sql in scoped), level
        # a state read for another purpose (a series' date: fewer statements) follows a plan of its own, or none
        other = ReadModelContext(reader, moment, ViewSettings(), made_for, ahead=YEAR_BEFORE)
        unplanned = ReadModelContext(reader, moment, ViewSettings(), made_for)
        for made in (other, unplanned):
            assert metrics_report(made, reader, level, scope) == expected
            assert made._ahead.taken == made._ahead.taken_back == 0  # noqa: SLF001


def test_a_state_read_and_dropped_is_freed_at_once_not_by_the_cyclic_collector(area: Area) -> None:
    """A state holds every unit's items; the API drops one from its cache read after read. Held in a reference cycle
    (the state, the statements it asks ahead, a method of the state), each waited for the cyclic collector: 426 MB of
    peak RSS over 16 school reads at 1 M pupils against 230 MB."""
    reader = Reader(area.ledger.store)
    read_model_ahead.forget()
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(2):  # (the second state of its kind asks the first's statements ahead)
            state = ReadModelContext(reader, Moment(AS_OF), ViewSettings(), None, ahead=REPORT)
            metrics_report(state, reader, "school", A)
            freed = weakref.ref(state)
            del state
            assert freed() is None
    finally:
        if collecting:
            gc.enable()


def read_meanwhile(store: Any, state: ReadModelContext, kept: str, statement: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What another request reads of ``state``'s ``kept`` sums while ``state`` asks ``statement`` for them (a copy, as it
    was then), and what ``state`` keeps once its rows are in."""
    meanwhile: list[dict[str, Any]] = []
    query = store.query

    def asked(sql: str, params: Any = ()) -> Any:
        rows = query(sql, params)
        if sql.startswith(statement[:30]) and not meanwhile:  # (its opening, before any value is bound; once)
            meanwhile.append({})
            meanwhile[0] = dict(getattr(state, kept)())  # another request, while this one's rows are still coming
        return rows

    try:
        store.query = asked
        found = getattr(state, kept)()
    finally:
        store.query = query
    assert meanwhile, kept
    return meanwhile[0], found


def test_a_state_read_by_another_request_while_it_asks_its_sums_gives_that_request_every_sum(area: Area) -> None:
    """The API keeps a state for the next read at the same moment, so two requests at once (two LAs on one date) read
    one state. Its LA state sums and England's sums were kept as an empty dict before the statement was asked, and
    filled as its rows came: the other request, reading meanwhile, found no sums, and answered 0 open placements for
    its LA (seen over HTTP at 1 M pupils). Here the other request reads while the statement runs; it gets every sum."""
    reader = Reader(area.ledger.store)
    for made_for, kept, statement in (("la", "la_state", LA_STATE_SUMS), ("national", "england", ENGLAND_SUMS)):
        state = ReadModelContext(reader, Moment(AS_OF), ViewSettings(), made_for)
        meanwhile, found = read_meanwhile(area.ledger.store, state, kept, statement)
        assert found and meanwhile == found, made_for


def totals(contributions: list[Any]) -> tuple[int, int]:
    return int(sum(c.num for c in contributions)), int(sum(c.den for c in contributions))


def test_englands_attendance_rate_at_now_is_its_kept_sums_of_the_academic_year_of_d(area: Area) -> None:
    """A national state at the ledger's now reads the AP attendance rate from England's kept numbers (no statement reads
    the summaries), by the academic year of D: P11's spring summary of 2025/26 counts in July 2026 and not in the autumn,
    when the autumn summaries of 2026/27 count from the day they were recorded. The fold gives the same rates."""
    store = area.ledger.store
    reader = Reader(store)
    attendance = METRICS_BY_NAME["ap_attendance_rate"]
    sent: list[str] = []
    query = store.query
    rates = {}
    try:
        store.query = lambda sql, params=(): sent.append(sql) or query(sql, params)  # type: ignore[method-assign]
        for day in (date(2026, 3, 19), date(2026, 7, 1), date(2026, 10, 1), AS_OF):
            national = ReadModelContext(reader, Moment(day), ViewSettings(), "national")
            rates[day] = totals(national.contributions(attendance))
            assert rates[day] == totals(context(reader, Moment(day), ViewSettings()).contributions(attendance)), day
    finally:
        store.query = query  # type: ignore[method-assign]
    assert not any("attendance_summary_recorded" in sql for sql in sent)
    assert rates[date(2026, 3, 19)] == (0, 0) and rates[date(2026, 7, 1)] == (90, 100) and rates[AS_OF] == (33, 40)
    assert rates[date(2026, 10, 1)] == (0, 0)  # (the autumn summaries are recorded on 2 October)


def test_a_state_made_for_la_figures_sums_each_unit_under_its_la_and_refuses_schools_and_trusts(area: Area) -> None:
    """A state made for LA figures keeps a sum per LA and label where a state of every unit keeps one per unit, gives
    the fold's LA and national bodies, and refuses to roll its sums up to a school or a trust."""
    reader = Reader(area.ledger.store)
    moment = Moment(AS_OF)
    la_state = ReadModelContext(reader, moment, ViewSettings(), "la")
    every_unit = ReadModelContext(reader, moment, ViewSettings())
    directory = every_unit.directory
    for name, query in QUERIES.items():
        metric = METRICS_BY_NAME[name]
        if (query.sql or query.registrations) and metric.kind != "median":
            mine = la_state.contributions(metric)
            # every unit with an LA is summed under it; a sum's key names its scope, once per label
            assert all(directory.la_of(c.unit) in (None, c.unit) for c in mine), name
            sums = [c.key for c in mine if c.key.startswith(c.unit + "\x00") or c.key == c.unit + "\x01"]
            assert len(sums) == len(set(sums)), name
            assert {directory.la_of(c.unit) or c.unit for c in every_unit.contributions(metric)} == {c.unit for c in mine}, name
    # an LA no unit is in (an LA id claimed only to read: ranked among the LAs, with no figure of its own) and England
    for level, scope in (("la", "la:801"), ("la", "la:999"), ("national", "england")):
        assert metrics_report(la_state, reader, level, scope) == metrics_report(
            context(reader, moment, ViewSettings()), reader, level, scope
        )
    for level, scope in (("trust", TRUST), ("school", A)):
        with pytest.raises(ValueError, match="la and national figures only"):
            metrics_report(la_state, reader, level, scope)
        with pytest.raises(ValueError, match="la and national figures only"):
            values_of(la_state, level, scope, ["pupils_on_roll"])


def test_registrations_under_las_count_a_pupil_moving_within_an_la_once_and_keep_one_moving_across_las_as_items() -> None:
    las = {"urn:1": "la:801", "urn:2": "la:801", "urn:3": "la:802"}
    # one pupil at urn:1 and urn:2 (one LA), three at urn:1 and urn:3 (two LAs)
    found = Registrations.of(
        [("urn:1", 5), ("urn:2", 2), ("urn:3", 1)], [("urn:1", "p"), ("urn:2", "p")] + [(u, q) for q in "qrs" for u in ("urn:1", "urn:3")]
    )
    under = found.under(las.__getitem__)
    assert under.counts == {"la:801": 8, "la:802": 1}  # 5 + 2 + the pupil p, once
    assert sorted(under.at_several) == [("la:801", "s:urn:1,urn:3", 3), ("la:802", "s:urn:1,urn:3", 3)]
    contributions = under.contributions(numerator=True)
    orgs = Directory()
    assert figures(METRICS_BY_NAME["pupils_on_roll"], contributions, "national", orgs)["england"].value == 12
    assert figures(METRICS_BY_NAME["pupils_on_roll"], contributions, "la", orgs)["la:801"].value == 11
    assert figures(METRICS_BY_NAME["pupils_on_roll"], contributions, "la", orgs)["la:802"].value == 4


def test_a_read_far_in_the_past_scans_the_registrations_instead_of_correcting_the_kept_numbers(
    area: Area, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rm_roll's numbers are corrected row by row for what the ledger learnt after T; past a limit the scan is cheaper."""
    from projections import read_model_queries

    reader = Reader(area.ledger.store)
    for limit, kept in ((read_model_queries.CORRECTIONS_LIMIT, True), (1, False)):
        monkeypatch.setattr(read_model_queries, "CORRECTIONS_LIMIT", limit)
        known = parse_timestamp(area.ledger.store.query("SELECT MIN(received_at) FROM rm_events")[0][0])
        for moment in (Moment(AS_OF), Moment(AS_OF, known)):
            ctx = ReadModelContext(reader, moment, ViewSettings())
            asked: list[str] = []
            query = ctx.query

            def recorded(sql: str, query: Any = query, asked: list[str] = asked, **extra: Any) -> list[tuple[Any, ...]]:
                asked.append(sql)
                return query(sql, **extra)

            ctx.query = recorded  # type: ignore[method-assign]
            model = metrics_report(ctx, reader, "la", "la:801")
            assert model == metrics_report(context(reader, moment, ViewSettings()), reader, "la", "la:801")
            now = moment.known_at is None
            assert (ROLL_COUNTS in asked) == (kept or now) and (REGISTRATION_COUNTS in asked) == (not kept and not now), (limit, moment)


def test_a_pupil_at_two_schools_is_one_item_under_each_and_once_above_them() -> None:
    from projections.metrics import METRICS_BY_NAME, figures
    from projections.orgs import Directory
    from projections.read_model_queries import Registrations

    found = Registrations.of(
        [("urn:1", 3), ("urn:2", 2)], [("urn:1", "dual"), ("urn:2", "dual"), ("urn:2", "moved"), ("urn:2", "moved")]
    )  # "moved": two registrations at one school (left and came back)
    assert found.at_several == [("urn:1", "s:urn:1,urn:2", 1), ("urn:2", "s:urn:1,urn:2", 1)]  # the one at two schools at once
    roll = found.contributions(numerator=True)
    assert sorted((c.unit, c.num, c.den) for c in roll) == [("urn:1", 1, 0), ("urn:1", 3, 0), ("urn:2", 1, 0), ("urn:2", 3, 0)]
    orgs = Directory({u: Org(u, "school", "la:801") for u in ("urn:1", "urn:2")})
    metric = METRICS_BY_NAME["pupils_on_roll"]
    assert {s: f.value for s, f in figures(metric, roll, "school", orgs).items()} == {"urn:1": 4, "urn:2": 4}
    assert figures(metric, roll, "la", orgs)["la:801"].value == 7  # 3 + 2 + the pupil at both + the one who moved
    rate = found.contributions(numerator=False)
    assert sum(c.den for c in rate) == 8 and all(c.num == 0 for c in rate)
    # three schools, rows repeated and in any order: each school once, in order
    three = Registrations.of([], [("urn:3", "p"), ("urn:1", "p"), ("urn:3", "p"), ("urn:2", "p"), ("urn:1", "p"), ("urn:4", "q")])
    assert three.at_several == [
        ("urn:1", "s:urn:1,urn:2,urn:3", 1),
        ("urn:2", "s:urn:1,urn:2,urn:3", 1),
        ("urn:3", "s:urn:1,urn:2,urn:3", 1),
    ]
    assert three.counts == {"urn:4": 1}
    # pupils at the same schools share one item under each, holding how many they are; another set has its own
    grouped = Registrations.of([], [(u, p) for p in ("a", "b", "c") for u in ("urn:2", "urn:1")] + [("urn:1", "d"), ("urn:3", "d")])
    assert sorted(grouped.at_several) == [
        ("urn:1", "s:urn:1,urn:2", 3),
        ("urn:1", "s:urn:1,urn:3", 1),
        ("urn:2", "s:urn:1,urn:2", 3),
        ("urn:3", "s:urn:1,urn:3", 1),
    ]
    orgs3 = Directory({u: Org(u, "school", "la:801") for u in ("urn:1", "urn:2", "urn:3")})
    year = grouped.contributions(numerator=False)
    assert {s: f.denominator for s, f in figures(METRICS_BY_NAME["suspension_rate"], year, "school", orgs3).items()} == {
        "urn:1": 4,
        "urn:2": 3,
        "urn:3": 1,
    }
    assert figures(METRICS_BY_NAME["suspension_rate"], year, "la", orgs3)["la:801"].denominator == 4


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_registrations_in_different_academic_years_are_counted_per_school_and_those_sharing_one_pupil_by_pupil(backend: str) -> None:
    """A pupil's registrations that share no academic year are never counted together, so each is in its school's
    number (``year_regs`` 1); those that share one (a move in December, a dual registration) are read one by one,
    so the pupil counts once above the school. Either way the figures are the fold's, across the years."""
    a, b = SCHOOLS
    histories: dict[int, list[tuple[Any, ...]]] = {
        1: [
            ("pupil.registered", a, date(2025, 9, 3)),
            ("pupil.deregistered", a, date(2026, 7, 20)),
            ("pupil.registered", b, date(2026, 9, 2)),
        ],
        2: [
            ("pupil.registered", a, date(2026, 9, 2)),
            ("pupil.deregistered", a, date(2026, 12, 18)),
            ("pupil.registered", b, date(2027, 1, 6)),
        ],
        3: [("pupil.registered", a, date(2026, 9, 2)), ("pupil.registered", b, date(2026, 9, 9), "S")],  # dual: subsidiary at b
        4: [
            ("pupil.registered", a, date(2025, 9, 3)),
            ("pupil.deregistered", a, date(2026, 8, 31)),
            ("pupil.registered", b, date(2026, 9, 1)),
        ],
        5: [  # a move in March: both rows share 2025/26; from September b's is the only one counted (ALONE_COUNTS)
            ("pupil.registered", a, date(2025, 9, 3)),
            ("pupil.deregistered", a, date(2026, 3, 31)),
            ("pupil.registered", b, date(2026, 4, 20)),
        ],
        6: [  # a dual registration whose main one ends on the first day of 2026/27: both still in its year to date
            ("pupil.registered", a, date(2025, 9, 3)),
            ("pupil.registered", b, date(2026, 6, 1), "S"),
            ("pupil.deregistered", a, date(2026, 9, 1)),
        ],
    }
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            w.clock.now = datetime(2027, 1, 20, 9, tzinfo=UTC)
            for pupil, events in histories.items():
                for etype, school, day, *status in events:
                    data: dict[str, Any] = (
                        {
                            "school": school,
                            "enrolment_status": status[0] if status else "C",
                            "year_group": "9",
                            "sen_status": "N",
                            "looked_after": False,
                        }
                        if etype == "pupil.registered"
                        else {"school": school, "ground": "moved_away", "destination": "moved_away"}
                    )
                    w.post(etype, school, data, upn=upn(pupil), occurred_on=day)
                    w.clock.now += timedelta(minutes=1)
            Projector(w.ledger.store, batch_size=1).catch_up()  # a batch per event: the shared rows change batch by batch
            rows = w.ledger.store.query(
                "SELECT subject, school, start_on, year_regs, others_from, others_to FROM rm_registrations "
                "WHERE known_to IS NULL AND valid_to IS NULL"
            )
            pupil_of = {str(w.ledger.secrets.pupil_id(upn(n))): n for n in histories}
            # (and, of a row sharing a year, the others' first start and last end: pupil 2's move, pupil 3's open dual)
            assert sorted((pupil_of[s], school, start, int(n), f, t) for s, school, start, n, f, t in rows) == [
                (1, a, "2025-09-03", 1, None, None),
                (1, b, "2026-09-02", 1, None, None),
                (2, a, "2026-09-02", 2, "2027-01-06", None),
                (2, b, "2027-01-06", 2, "2026-09-02", "2026-12-18"),
                (3, a, "2026-09-02", 2, "2026-09-09", None),
                (3, b, "2026-09-09", 2, "2026-09-02", None),
                (4, a, "2025-09-03", 1, None, None),
                (4, b, "2026-09-01", 1, None, None),
                (5, a, "2025-09-03", 2, "2026-04-20", None),
                (5, b, "2026-04-20", 2, "2025-09-03", "2026-03-31"),
                (6, a, "2025-09-03", 2, "2026-06-01", None),
                (6, b, "2026-06-01", 2, "2025-09-03", "2026-09-01"),
            ]
            reader = Reader(w.ledger.store)
            # (at D a pupil's state holds the registrations begun by D.) Pupil 5 is read one by one while its two rows are
            # in the year to date, then b's row alone is counted in b's number; pupils 2, 3 and 6, one by one once they have
            # two (pupil 6's ended on the first day of the year, so it is in that year to date)
            for day, alone, one_by_one in (
                (date(2026, 5, 1), [], [(a, 0, 5), (b, 1, 5)]),
                (date(2026, 10, 1), [(b, 1, 1)], [(a, 0, 6), (a, 1, 3), (b, 0, 3), (b, 0, 6)]),
                (date(2027, 1, 10), [(b, 1, 1)], [(a, 0, 2), (a, 0, 6), (a, 1, 3), (b, 0, 3), (b, 0, 6), (b, 1, 2)]),
            ):
                state = ReadModelContext(reader, Moment(day), ViewSettings())
                assert sorted(state.query(ALONE_COUNTS)) == alone, day
                shared = sorted((school, on_roll, pupil_of[p]) for school, on_roll, p in state.query(SHARED_REGISTRATIONS))
                assert shared == one_by_one, day
            assert_roll_kept(w.ledger.store)
            assert_england_kept(w.ledger.store)
            for day in (date(2026, 7, 1), date(2026, 8, 31), date(2026, 9, 1), date(2026, 10, 1), date(2027, 1, 10), date(2027, 1, 19)):
                moment = Moment(day)
                assert_roll_read(reader, moment)
                for level, scope in scopes(reader, moment):
                    model, fold = both(reader, moment, level, scope)
                    assert model == fold, (day, level, scope)
            pupils = metrics_report(ReadModelContext(reader, Moment(date(2027, 1, 10)), ViewSettings()), reader, "la", "la:801")
            assert pupils["metrics"]["pupils_on_roll"]["value"] == 5  # pupil 3 on two rolls at once, counted once in the LA
            w.ledger.erase(upn(3), "erasure_request")  # the pupil on two rolls leaves England's numbers too
            forget_pupil(w.ledger.store, w.ledger.secrets.pupil_id(upn(3)))
            assert_england_kept(w.ledger.store)
            model, fold = both(reader, Moment(date(2027, 1, 10)), "national", "england")
            assert model == fold and model["metrics"]["pupils_on_roll"]["value"] == 4
        finally:
            w.ledger.store.close()


def test_a_reader_with_other_settings_gets_the_fold(area: Area) -> None:
    other = ViewSettings(gap_school_days=3)
    ctx = read_model_context(Reader(area.ledger.store), Moment(AS_OF), other)
    assert not isinstance(ctx, ReadModelContext)


@pytest.mark.parametrize("pupil", [2, 3])  # P3 was removed from roll (rm_exits holds the removal)
def test_an_erased_pupil_leaves_the_read_model(area: Area, pupil: int) -> None:
    store = area.ledger.store
    subject = str(area.ledger.secrets.pupil_id(upn(pupil)))
    tables = ("rm_events", "rm_registrations", "rm_placements", "rm_exits")
    held = {t: store.query(f"SELECT COUNT(*) FROM {t} WHERE subject = ?", [subject])[0][0] for t in tables}
    assert held["rm_registrations"] and bool(held["rm_exits"]) == (pupil == 3), held
    area.ledger.erase(upn(pupil), "erasure_request")
    forget_pupil(store, area.ledger.secrets.pupil_id(upn(pupil)))
    for table in tables:
        assert store.query(f"SELECT COUNT(*) FROM {table} WHERE subject = ?", [subject])[0][0] == 0
    assert_roll_kept(store)
    assert_months_kept(store)
    assert_england_kept(store)
    model, fold = both(Reader(store), Moment(AS_OF), "school", A)
    assert both(Reader(store), Moment(AS_OF), "national", "england")[0] == both(Reader(store), Moment(AS_OF), "national", "england")[1]
    assert model == fold


# -- random histories ---------------------------------------------------------------------------------------------

UPROV = "uprov:801-1"
EXTRA = st.lists(
    st.tuples(
        st.sampled_from(["trust_join", "trust_leave", "erase", "unregistered", "post16", "sen", "project"]),
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(0, 40),
        st.integers(1, 9),
    ),
    max_size=12,
)


def play_more(w: World, ops: list[tuple[str, int, int, int, int]], projector: Projector) -> None:
    start = date(2026, 9, 1)
    for op, pupil, school_i, offset, n in ops:
        school, day = SCHOOLS[school_i], start + timedelta(days=offset)
        w.clock.now = datetime(2026, 10, 20, 9, tzinfo=UTC) + timedelta(minutes=7 * offset + n)
        try:
            if op == "project":
                projector.batch_size = n
                projector.step()
            elif op in ("trust_join", "trust_leave"):
                etype = "org.joined_trust" if op == "trust_join" else "org.left_trust"
                body = own_events.event_body(etype, admin.ADMIN_ORG, {"org": school}, {"trust": "trust:TR00001"}, day, w.clock.now)
                w.ledger.submit(own_events.signed(body, w.ledger.secrets.signing_key))
            elif op == "erase":
                w.ledger.erase(upn(pupil + 1), "erasure_request")
                forget_pupil(w.ledger.store, w.ledger.secrets.pupil_id(upn(pupil + 1)))
            elif op == "unregistered":
                data = {
                    "commissioner": school if n % 2 else "la:801",
                    "setting": UPROV,
                    "setting_type": "OTH",
                    "tier": 1 + n % 3,
                    "reason": "BEHAVIOUR",
                    "hours_per_week": 4 * n,
                    "dual_registered": False,
                }
                w.post("pupil.ap_placement_started", data["commissioner"], data, upn=upn(pupil + 1), occurred_on=day)
            elif op == "post16":
                w.post(
                    "pupil.post16_destination_recorded",
                    SETTING,
                    {"destination": "education", "sustained": n % 2 == 0},
                    upn=upn(pupil + 1),
                    occurred_on=day,
                )
            elif op == "sen":
                data = {"school": school, "enrolment_status": "C", "year_group": "9", "sen_status": "E", "looked_after": n > 5}
                w.post("pupil.registered", school, data, upn=upn(pupil + 1), occurred_on=day)
        except LedgerError:
            continue


def random_world(settings: Any) -> World:
    w = small_world(settings)
    admin.add_org(w.ledger, "trust:TR00001", "trust", "Trust", None)
    body = own_events.event_body(
        "provider.unregistered_recorded",
        "la:801",
        {"org": UPROV},
        {"name": "Tuition", "postcode": "BS1 4DJ"},
        date(2026, 8, 20),
        w.clock.now,
    )
    w.ledger.submit(w.sign(body))
    return w


MOMENTS = [
    Moment(day, known)
    for day in (date(2026, 9, 1), date(2026, 9, 20), date(2026, 10, 15), date(2027, 3, 1))
    for known in (None, datetime(2026, 10, 15, 9, 30, tzinfo=UTC), datetime(2026, 10, 16, 0, tzinfo=UTC))
]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=OPS, extra=EXTRA)
@example(
    ops=[("place", 0, 0, 3, 1), ("review", 0, 0, 5, 2), ("correct", 0, 0, 4, 2), ("end", 0, 0, 9, 1), ("leave", 1, 1, 2, 1)],
    extra=[("unregistered", 2, 1, 3, 7), ("sen", 2, 1, 2, 9), ("trust_join", 0, 0, 10, 1), ("erase", 3, 0, 0, 1)],
)
def test_the_read_model_equals_the_fold_for_random_histories(
    backend: str, ops: list[tuple[str, int, int, int, int]], extra: list[tuple[str, int, int, int, int]]
) -> None:
    with fresh_settings(backend) as settings:
        w = random_world(settings)
        try:
            projector = Projector(w.ledger.store, batch_size=3)
            play(w, ops, projector)
            play_more(w, extra, projector)
            projector.catch_up()
            reader = Reader(w.ledger.store)
            received = sorted({r[0] for r in w.ledger.store.query("SELECT received_at FROM rm_events")})
            exact = [Moment(date(2026, 10, 15), parse_timestamp(t)) for t in received[-3:]]  # on a version's boundary
            assert_roll_kept(w.ledger.store)
            assert_months_kept(w.ledger.store)
            assert_england_kept(w.ledger.store)
            for moment in MOMENTS + exact:
                assert_roll_read(reader, moment)
                for level, scope in scopes(reader, moment):
                    model, fold = both(reader, moment, level, scope)
                    assert model == fold, (moment, level, scope)
        finally:
            w.ledger.store.close()


def assert_roll_kept(store: Any) -> None:
    """rm_roll holds the numbers of the registrations known now, however its upkeep was batched, corrected or erased."""
    recomputed = Changes()
    for r in store.query(f"SELECT {', '.join(REGISTRATION_COLUMNS)} FROM rm_registrations WHERE known_to IS NULL"):
        recomputed.add((*r[:4], int(r[4]), *r[5:]))
    kept = {(s, d): (int(r), int(y)) for s, d, r, y in store.query("SELECT school, day, roll, year FROM rm_roll") if r or y}
    assert kept == {key: (r, y) for key, (r, y) in recomputed.sums.items() if r or y}


# England's kept numbers, the writers' shares summed
ENGLAND_ROWS = "SELECT metric, day, label, SUM(num), SUM(den), SUM(n) FROM rm_england_{} GROUP BY metric, day, label"


def assert_england_kept(store: Any) -> None:
    """rm_england_reports and rm_england_state hold England's numbers over the rows known now, and rm_cap_units the units'
    cap breaches, however their upkeep was batched, corrected or erased: recomputed from the rows by the same runs (rows
    of zeros aside)."""
    late = ViewSettings().late_school_days
    reports: dict[tuple[str, ...], list[int]] = {}
    for metric, count in ENGLAND_REPORTS.items():  # (the attendance summaries' label: their academic year)
        sql = count.rows("e.superseded_at IS NULL", "e.occurred_on AS day").replace(":late", str(late))
        for _, _, num, den, label, day in store.query(sql):
            kept = reports.setdefault((metric, day, label or ""), [0, 0, 0])
            kept[0], kept[1], kept[2] = kept[0] + int(num), kept[1] + int(den), kept[2] + 1
    suspensions: dict[str, list[tuple[int, str, str | None, int]]] = {}
    for subject, seq, day, unit, sessions in store.query(
        f"SELECT e.subject, e.seq, e.occurred_on, e.unit, e.sessions FROM rm_events e WHERE {SUSPENSIONS_KNOWN_NOW}"
    ):
        suspensions.setdefault(subject, []).append((int(seq), day, unit, int(sessions)))
    units = UnitChanges()
    for rows in suspensions.values():
        for metric, day, label, num, den, n in crossings((day, sessions) for _, day, _, sessions in rows):
            kept = reports.setdefault((metric, day, label), [0, 0, 0])
            kept[0], kept[1], kept[2] = kept[0] + num, kept[1] + den, kept[2] + n
        units.add(unit_crossings(rows))
    # the units' cap breaches (rm_cap_units) too
    assert {(u, day): int(n) for u, day, n in store.query("SELECT unit, day, n FROM rm_cap_units") if int(n)} == {
        k: n for k, n in units.sums.items() if n
    }
    stored = {(m, day, label): [int(num), int(den), int(n)] for m, day, label, num, den, n in store.query(ENGLAND_ROWS.format("reports"))}
    assert {k: v for k, v in stored.items() if any(v)} == reports
    assert_months_of(store, RM_ENGLAND_REPORTS)
    state = EnglandChanges()
    mapped = scope_mapper(store)
    per_la: dict[tuple[str, ...], list[int]] = {}  # rm_la_state: the same changes under each unit's scope
    for table, changes in ((RM_PLACEMENTS, placement_changes), (RM_EXITS, exit_changes)):
        for r in store.query(f"SELECT valid_from, valid_to, {', '.join(table.state_columns)} FROM {table.name} WHERE known_to IS NULL"):
            values = tuple(r[2:])
            found = list(changes(values, r[0], r[1]))
            state.add(found)
            if table is RM_PLACEMENTS:
                state.add(length_changes(values, r[0], r[1]))  # (England's alone)
            for metric, day, label, num, den, n in found:
                unit = placement_unit(metric, values) if table is RM_PLACEMENTS else values[1]
                kept = per_la.setdefault((metric, day, mapped(unit), label), [0, 0, 0])
                kept[0], kept[1], kept[2] = kept[0] + num, kept[1] + den, kept[2] + n
    stored_la: dict[tuple[str, ...], list[int]] = {}
    for metric, day, scope, label, num, den, n in store.query("SELECT metric, day, scope, label, num, den, n FROM rm_la_state"):
        kept = stored_la.setdefault((metric, day, mapped(scope), label), [0, 0, 0])
        kept[0], kept[1], kept[2] = kept[0] + int(num), kept[1] + int(den), kept[2] + int(n)
    assert {k: v for k, v in stored_la.items() if any(v)} == {k: v for k, v in per_la.items() if any(v)}
    assert_months_of(store, RM_LA_STATE)
    assert_months_of(store, RM_ENGLAND_STATE)
    shared: dict[str, list[tuple[Any, ...]]] = {}
    for subject, *r in store.query(f"SELECT subject, {', '.join(REGISTRATION_COLUMNS)} FROM rm_registrations WHERE known_to IS NULL"):
        row = (*r[:4], int(r[4]), *r[5:])
        if row[4] == 1:
            state.add(registration_changes(row))
        else:
            shared.setdefault(subject, []).append(row)
    for rows in shared.values():
        state.add(pupil_runs(rows))
    stored = {(m, day, label): [int(num), int(den), int(n)] for m, day, label, num, den, n in store.query(ENGLAND_ROWS.format("state"))}
    assert {k: v for k, v in stored.items() if any(v)} == {k: v for k, v in state.sums.items() if any(v)}
    assert_la_roll_kept(store, shared)


def assert_la_roll_kept(store: Any, shared: dict[str, list[tuple[Any, ...]]]) -> None:
    """rm_shared_runs holds the runs per scope of each pupil's registrations sharing an academic year known now
    (``shared``), and rm_la_roll the changes of the runs of pupils under one scope: each scope as a read maps it (a school's
    own id, where its runs were stored before its LA was known, as its LA now)."""
    mapped = scope_mapper(store)
    stored = stored_runs(store)
    assert set(stored) == set(shared)
    for subject, rows in shared.items():
        if all(mapped(scope) == scope for scope, *_ in stored[subject]):
            assert stored[subject] == scoped_runs(rows, mapped), subject
    # (stored under a school's own id before its LA was known: the same days per scope once mapped)
    assert mapped_runs(store) == {(subject, *run[:4]) for subject, rows in shared.items() for run in scoped_runs(rows, mapped)}
    assert_la_roll_sums(store)


def assert_months_kept(store: Any) -> None:
    """rm_months holds each counted metric's sums over the reports known now, and rm_la_months the other report metrics'
    per scope, however their upkeep was batched, corrected or erased (rows of zeros aside: a unit whose reports were all
    superseded)."""
    late = ViewSettings().late_school_days
    recomputed: dict[tuple[str, ...], tuple[int, int, int]] = {}
    for metric, count in COUNTED.items():
        sql = count.rows("e.superseded_at IS NULL", "e.occurred_on AS day").replace(":late", str(late))
        for unit, _, num, den, label, day in store.query(sql):
            key = (metric, day[:7], unit or "", label or "")
            kept = recomputed.get(key, (0, 0, 0))
            recomputed[key] = (kept[0] + int(num), kept[1] + int(den), kept[2] + 1)
    stored = {
        (m, month, u, label): (int(num), int(den), int(n))
        for m, month, u, label, num, den, n in store.query("SELECT metric, month, unit, label, num, den, n FROM rm_months")
        if int(n)
    }
    assert stored == recomputed
    # rm_la_months: every report metric per scope (each unit's LA as rm_unit_la says, else the unit), the shares summed,
    # each month's row the academic year's sums to that month's end: a report under its month and each later one to August
    las = directory_of(store.query("SELECT unit, la FROM rm_unit_la"))
    per_scope: dict[tuple[str, ...], list[int]] = {}
    for metric, count in REPORTS.items():
        sql = count.rows("e.superseded_at IS NULL", "e.occurred_on AS day").replace(":late", str(late))
        for unit, _, num, den, label, day in store.query(sql):
            for month in months_to_august(date.fromisoformat(day)):
                key = (metric, month, (las.la_of(unit) or unit) if unit else "", label or "")
                kept = per_scope.setdefault(key, [0, 0, 0])
                kept[0], kept[1], kept[2] = kept[0] + int(num), kept[1] + int(den), kept[2] + 1
    stored_la: dict[tuple[str, ...], list[int]] = {}
    for m, month, scope, label, num, den, n in store.query("SELECT metric, month, scope, label, num, den, n FROM rm_la_months"):
        # (a unit's own id, if its reports were summed before its registration was applied, is read as its LA now)
        kept = stored_la.setdefault((m, month, (las.la_of(scope) or scope) if scope else "", label), [0, 0, 0])
        kept[0], kept[1], kept[2] = kept[0] + int(num), kept[1] + int(den), kept[2] + int(n)
    assert {k: v for k, v in stored_la.items() if v[2]} == per_scope


def assert_roll_read(reader: Reader, moment: Moment) -> None:
    """The numbers read from rm_roll at (D, T) are the scan of every registration in force (REGISTRATION_COUNTS)."""
    ctx = ReadModelContext(reader, moment, ViewSettings())
    assert sorted(ctx.roll_counts()) == sorted((s, int(f), int(n)) for s, f, n in ctx.query(REGISTRATION_COUNTS)), moment
    assert sorted(_as_registration_counts(ctx.query(ROLL_COUNTS))) == sorted(ctx.roll_counts()), moment  # the numbers whichever way


def test_other_settings_make_another_version_which_rebuilds_the_model_from_the_log(area: Area) -> None:
    from projections import read_model
    from projections.runner import VIEWS

    other = ViewSettings(gap_school_days=3, reintegration_terms=1)
    views = (*(v for v in VIEWS if v.maintain is None and v.name != "read_model_events"), *read_model.views(other))
    assert read_model.model_version(other) != read_model.model_version(ViewSettings())
    projector = Projector(area.ledger.store, views=views)
    assert sorted(projector.ensure()) == ["read_model_events", "read_model_state"]  # emptied: their version changed
    reader = Reader(area.ledger.store)
    assert not isinstance(read_model_context(reader, Moment(AS_OF), other), ReadModelContext)  # rebuilding: the fold answers
    projector.catch_up()
    assert isinstance(read_model_context(reader, Moment(AS_OF), other), ReadModelContext)
    assert not isinstance(read_model_context(reader, Moment(AS_OF), ViewSettings()), ReadModelContext)
    for level, scope in (("national", "england"), ("school", A)):
        model, fold = both(reader, Moment(AS_OF), level, scope, other)
        assert model == fold
