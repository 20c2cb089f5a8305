"""accountabilityMetricSeries (GET /views/metrics/series) and the comparisons beside every figure: national and
regional values, rank, quartile band, change since the same date last year. Over real HTTP, both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from projections.config import ViewSettings
from projections.facts import Moment
from projections.metrics import report
from projections.read_model_queries import Known, ReadModelContext, read_model_context
from projections.read_model_series import a_year_before, compare, quartile, series, step_dates, values_of
from projections.runner import Projector, Reader

from .test_projections_scenario import AS_OF, LA, TRUST, A, Area, C, area, d  # noqa: F401 - area is a fixture

__all__ = ["area"]
SOUTH_WEST, LONDON = "region:E12000009", "region:E12000007"  # la:801 Bristol, la:202 Camden


def get(client: TestClient, area: Area, path: str, **params: Any) -> Any:
    return client.get(path, params=params, headers={"authorization": f"Bearer {area.admin_token}"})


def test_a_series_gives_each_month_end_then_the_last_day_with_the_figures_of_accountability_metrics(area: Area) -> None:
    with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:
        got = get(client, area, "/views/metrics/series", level="la", org=LA, **{"from": "2026-07-15"}, to="2026-10-05")
        assert got.status_code == 200, got.text
        body = got.json()
        assert [p["as_of"] for p in body["points"]] == ["2026-07-31", "2026-08-31", "2026-09-30", "2026-10-05"]
        assert (body["from"], body["to"], body["step"], body["region"]) == ("2026-07-15", "2026-10-05", "month", SOUTH_WEST)
        last = body["points"][-1]["metrics"]
        single = get(client, area, "/views/metrics", level="la", org=LA, as_of="2026-10-05").json()
        assert single["region"] == SOUTH_WEST
        assert last == single["metrics"]  # the same figures and comparisons, one date or a series
        assert set(last) == set(single["metrics"]) and len(last) >= 27
        september = body["points"][2]["metrics"]
        assert september["pupils_on_roll"]["value"] == 8 and last["pupils_on_roll"]["value"] == 8


def test_comparisons_region_quartile_and_change_since_last_year(area: Area) -> None:
    with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:
        school = get(client, area, "/views/metrics", level="school", org=A, as_of="2026-10-05").json()
        roll = school["metrics"]["pupils_on_roll"]
        # A's roll: P1, P2, P4, P8 (P5 removed 09-16, P3 09-04, P9 09-09; P11 and P12 still registered) -> see the scenario test
        la = get(client, area, "/views/metrics", level="la", org=LA, as_of="2026-10-05").json()["metrics"]["pupils_on_roll"]
        assert school["region"] == SOUTH_WEST and roll["region_value"] == la["value"]  # the only LA of its region here
        last_year = get(client, area, "/views/metrics", level="school", org=A, as_of="2025-10-05").json()["metrics"]["pupils_on_roll"]
        assert last_year["value"] == 2  # P11 and P12 from 2025-09-03
        assert roll["last_year_value"] == 2 and roll["change_since_last_year"] == roll["value"] - 2
        assert roll["quartile"] == quartile(roll["rank"], roll["peers"]) and roll["quartile"] in (1, 2, 3, 4)
        camden = get(client, area, "/views/metrics", level="school", org=C, as_of="2026-10-05").json()
        assert camden["region"] == LONDON
        assert camden["metrics"]["suspension_rate"]["region_value"] == camden["metrics"]["suspension_rate"]["value"]
        national = get(client, area, "/views/metrics", as_of="2026-10-05").json()
        assert national["region"] is None and national["metrics"]["pupils_on_roll"]["region_value"] is None
        assert national["metrics"]["suspensions_by_reason"]["change_since_last_year"] is None  # a breakdown


def test_quartile_bands_by_rank() -> None:
    assert [quartile(r, 8) for r in range(1, 9)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert quartile(1, 1) == 1 and quartile(None, 5) is None and quartile(3, 3) == 3


def test_termly_steps_and_named_metrics(area: Area) -> None:
    assert step_dates(d(1, 1), d(10, 5), "term", ViewSettings())[-1] == d(10, 5)
    with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:
        got = get(
            client,
            area,
            "/views/metrics/series",
            level="school",
            org=A,
            **{"from": "2026-01-01"},
            to="2026-10-05",
            step="term",
            metric=["pupils_on_roll", "suspension_rate"],
        )
        assert got.status_code == 200, got.text
        points = got.json()["points"]
        terms = [t.end.isoformat() for t in ViewSettings().calendar.terms if d(1, 1) <= t.end <= d(10, 5)]
        assert [p["as_of"] for p in points] == [*terms, "2026-10-05"] and len(terms) >= 2
        assert all(set(p["metrics"]) == {"pupils_on_roll", "suspension_rate"} for p in points)
        ops = {op["operationId"]: route for route, path in client.get("/openapi.json").json()["paths"].items() for op in path.values()}
        assert ops["accountabilityMetricSeries"] == "/views/metrics/series"


def test_careless_series_requests_get_a_clear_422_naming_the_parameter(area: Area) -> None:
    before = area.ledger.store.max_sequence()
    with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:

        def error(**params: Any) -> tuple[int, str]:
            got = get(client, area, "/views/metrics/series", **params)
            return got.status_code, got.json()["errors"][0]["path"] if got.status_code != 200 else ""

        assert error(to="2026-10-05") == (422, "query:from")  # missing
        assert error(**{"from": "2026-11-01"}, to="2026-10-05") == (422, "query:from")  # after to
        assert error(**{"from": "0001-01-01"}, to="2026-10-05") == (422, "query:from")
        assert error(**{"from": "1990-01-01"}, to="2026-10-05") == (422, "query:from")  # more than 120 points
        assert error(**{"from": "2026-09-01"}, metric=["pupils_on_roll", "no_such_metric"]) == (422, "query:metric")
        assert error(**{"from": "2026-09-01"}, step="week")[0] == 422
        assert error(**{"from": "2026-09-01"}, level="la", org=A) == (422, "query:org")
        assert error(**{"from": "2026-09-01"}, known_at="2026-10-01T00:00:00") == (422, "query:known_at")
        assert client.get("/views/metrics/series", params={"from": "2026-09-01"}).status_code == 401
        other = area.ledger.issue_token("urn:100006", "school")
        assert (
            client.get(
                "/views/metrics/series",
                params={"from": "2026-09-01", "level": "school", "org": A},
                headers={"authorization": f"Bearer {other}"},
            ).status_code
            == 403
        )
    assert area.ledger.store.max_sequence() == before


def test_a_long_series_equals_each_of_its_dates_asked_alone(area: Area, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifteen months: the states prepared ahead by the series' threads, those kept to serve as a later point's year
    before, and those of the scope's items alone made for a year before that is no point (13 of the 29 dates), give the
    figures each date gets alone (report and comparisons from fresh states of every unit, one at a time)."""
    import projections.read_model_series as module

    made: list[tuple[Any, Any]] = []
    real = module.states_at

    def counted(*args: Any, **kwargs: Any) -> Any:
        maker = real(*args, **kwargs)

        def state(day: Any, only: Any = None) -> Any:
            made.append((day, only))
            return maker(day, only)

        return state

    monkeypatch.setattr(module, "states_at", counted)
    reader = Reader(area.ledger.store)
    settings = ViewSettings()
    names = ["pupils_on_roll", "suspension_rate", "open_ap_placements"]
    for level, scope, asked in (("national", "england", None), ("school", A, names), ("trust", TRUST, names), ("la", LA, None)):
        made.clear()
        got = series(reader, settings, level, scope, d(7, 15).replace(year=2025), d(10, 5), "month", asked)
        assert len(got["points"]) == 16
        year_before_only = {day for day, _ in made} - {point["as_of"] for point in got["points"]}
        assert len(made) == 29 and len(year_before_only) == 13
        own = {(day, only) for day, only in made if only is not None}
        assert own == (set() if level == "national" else {(day, (level, scope)) for day in year_before_only}), level
        for point in got["points"]:
            ctx = read_model_context(reader, Moment(point["as_of"]), settings)
            alone = report(ctx, level, scope, only=asked)
            last_year = read_model_context(reader, Moment(a_year_before(point["as_of"])), settings)
            compare(ctx, values_of(last_year, level, scope, alone), level, scope, alone)
            assert point["metrics"] == alone, point["as_of"]


def test_a_series_reads_once_what_its_dates_share(area: Area) -> None:
    """Whether the model is usable, the organisation facts and the plans and funding facts (the same at every D of one
    ledger time) are asked once for a series of 16 dates and their years before, not once per date: a national series
    at 1 M pupils asked them 51 times. A state given the facts of another ledger time is refused."""
    store = area.ledger.store
    sent: list[str] = []
    query = store.query
    reader = Reader(store)
    try:
        store.query = lambda sql, params=(): sent.append(sql) or query(sql, params)  # type: ignore[method-assign]
        got = series(reader, ViewSettings(), "national", "england", d(7, 15).replace(year=2025), d(10, 5), "month")
    finally:
        store.query = query  # type: ignore[method-assign]
    states = {day for point in got["points"] for day in (point["as_of"], a_year_before(point["as_of"]))}
    assert len(got["points"]) == 16 and sum("FROM rm_england_reports" in sql for sql in sent) == len(states) == 29
    assert [sum(f"FROM {table}" in sql for sql in sent) for table in ("pv_positions", "pv_plan_facts")] == [1, 1]
    # (at the ledger's now the organisations' facts are asked whether they changed, and read if they did: at most twice)
    assert (
        sum("FROM pv_org_facts" in sql for sql in sent)
        == 1 + sum(sql.startswith("SELECT subject") and "pv_org_facts" in sql for sql in sent)
        <= 2
    )
    at_now = Known.at(reader, Moment(AS_OF))
    with pytest.raises(ValueError, match="facts known at now are not those of a state known at"):
        ReadModelContext(reader, Moment(AS_OF, area.ledger.clock()), ViewSettings(), "national", at_now)


def test_states_are_made_in_order_a_few_ahead_and_a_failure_reaches_the_caller() -> None:
    import threading

    from projections.read_model_series import in_order

    days = [d(1, 1) + timedelta(days=i) for i in range(10)]
    started: list[Any] = []
    lock = threading.Lock()

    def make(day: Any) -> Any:
        with lock:
            started.append(day)
        if day == days[7]:
            raise RuntimeError("the database went away")
        return day

    got = []
    made = in_order(make, days, workers=2)
    for day in made:
        got.append(day)
        assert len(started) <= len(got) + 2  # never more than two days ahead of the caller
        if len(got) == 7:
            break
    assert got == days[:7]
    made.close()
    with pytest.raises(RuntimeError, match="went away"):
        list(in_order(make, days, workers=2))


def test_a_sweep_of_schools_or_las_at_one_date_makes_each_state_once_and_states_of_one_scopes_items_for_its_first_two_reads(
    area: Area, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read's year before is a state of its scope's items, made for that read and not kept (a sweep of schools at one
    date kept them and cleared the states of every unit). The third scope read at the same date, as in a sweep, makes and
    keeps the year before's state of every unit (or of the LAs) instead, which the sweep's later reads reuse with the
    date's own: seven school reads make four states, and three LA reads at another date four more."""
    import api.routes.views as views

    made: list[tuple[str | None, Any]] = []
    real = views.read_model_context

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append((args[1].as_of.isoformat(), args[5] if len(args) > 5 else kwargs.get("only")))
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "read_model_context", counted)
    schools = [A, C, "urn:100006", "urn:100007", "urn:100008", A, C]
    with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:
        for i, school in enumerate(schools):
            got = get(client, area, "/views/metrics", level="school", org=school, as_of="2026-10-05")
            assert got.status_code == 200, got.text
            if i == 0:
                assert sorted(made, key=str) == [("2025-10-05", ("school", A)), ("2026-10-05", None)]
        year_before = [("2025-10-05", ("school", A)), ("2025-10-05", ("school", C)), ("2025-10-05", None)]
        assert sorted(made, key=str) == sorted([*year_before, ("2026-10-05", None)], key=str)
        made.clear()
        for la in ("la:801", "la:202", "la:801", "la:202"):
            got = get(client, area, "/views/metrics", level="la", org=la, as_of="2026-10-06")
            assert got.status_code == 200, got.text
        year_before = [("2025-10-06", ("la", "la:801")), ("2025-10-06", ("la", "la:202")), ("2025-10-06", None)]
        assert sorted(made, key=str) == sorted([*year_before, ("2026-10-06", None)], key=str)


def test_a_body_whose_year_before_is_of_the_scopes_items_alone_is_the_body_from_a_state_of_every_unit(
    area: Area, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP, every figure's last_year_value and change_since_last_year (and the rest of the body) are the same
    whether the year before is a state of the scope's items (the first reads at a moment) or of every unit (or of the
    LAs): for scopes with items, for scopes the ledger never heard of (an LA, a school, a trust), and for an id that is
    no organisation's (refused alike)."""
    import api.routes.views as views

    asked = [
        ("la", LA),
        ("la", "la:202"),
        ("la", "la:999"),
        ("school", A),
        ("school", "urn:999999"),
        ("trust", TRUST),
        ("trust", "trust:TR99999"),
        ("la", "la:81'0"),
    ]

    def bodies(own_states_first: int) -> list[tuple[int, Any]]:
        monkeypatch.setattr(views, "OWN_STATES_FIRST", own_states_first)
        with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:
            return [
                (got.status_code, got.json())
                for day in ("2027-10-05", "2026-10-05")  # (the first's year before is the area's autumn, full of items)
                for got in (get(client, area, "/views/metrics", level=level, org=org, as_of=day) for level, org in asked)
            ]

    own, every = bodies(2 * len(asked)), bodies(0)
    assert [status for status, _ in own] == ([200] * 7 + [422]) * 2
    assert own == every
    last_year = [m["last_year_value"] for _, body in own[:2] for m in body["metrics"].values()]
    assert any(isinstance(v, int) and v > 0 for v in last_year)  # (the LAs' year before has items: not two empty states)
