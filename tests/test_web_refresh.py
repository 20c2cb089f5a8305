"""The pages under a flow of events: dashboards show a pinned ledger time (the API's ``known_at`` gives the same
figures) and move to a newer one only once it is prepared in the background; public reports keep serving a
checkpoint's publication while the next one is prepared; a failed refresh keeps what was shown; a later event
received earlier than the views' position never slips into a pin. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.web import catalogue
from api.web import data as web_data
from api.web.background import OneAtATime
from api.web.data import WebData
from ledger.core.catalogue import parse_timestamp
from ledger.tools import admin
from projections.facts import Moment
from projections.read_model_queries import ReadModelContext
from projections.runner import Projector
from projections.state_cache import ITEMS, Allowance

from .conftest import LA, SCHOOL_A, upn
from .test_web import AS_OF, Scene, api_metrics, parse, scene, shown

__all__ = ["scene"]  # the fixture, shared with test_web

KNOWN_AT = re.compile(
    r'id="known-at">Figures as known at <code>([^<]+)</code>: every event the ledger had received by then \(its first (\d+) events\)'
)


def grow(scene: Scene) -> None:
    """One more pupil on school A's roll before AS_OF, sealed and projected, a second later."""
    scene.world.clock.advance(seconds=1)
    scene.world.admit(upn(800 + len(scene.pupils)), SCHOOL_A, occurred_on=date(2026, 10, 1))
    scene.pupils.append("x")
    admin.sealer(scene.ledger).seal_all()
    Projector(scene.ledger.store).catch_up()


def app_client(scene: Scene, **settings: Any) -> TestClient:
    scene.world.ledger.settings = replace(scene.ledger.settings, **settings)
    return TestClient(create_app(scene.ledger), base_url="https://testserver")


def summary(c: TestClient, scene: Scene) -> tuple[str, int, dict[str, list[str]]]:
    """The LA dashboard summary: its pinned ledger time, the events it holds, and its summary rows by metric."""
    page = c.get(f"/dashboards/la/{LA}", params={"as_of": AS_OF.isoformat()}, headers={"authorization": f"Bearer {scene.tokens['la']}"})
    assert page.status_code == 200, page.text[:300]
    found = KNOWN_AT.search(page.text)
    assert found, "the page states the ledger time it shows"
    titles = {e.title: e.name for e in catalogue.catalogue()}
    rows = {titles[row[0]]: row for name, table in parse(page.text).tables.items() if name.startswith("summary-") for row in table[1:]}
    return found.group(1), int(found.group(2)), rows


def pages_of(c: TestClient) -> WebData:
    found = c.app.state.pages  # type: ignore[attr-defined]
    assert isinstance(found, WebData)
    return found


def test_dashboards_show_a_pinned_time_and_move_on_once_the_next_is_prepared(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = web_data.read_model_context
    monkeypatch.setattr(web_data, "read_model_context", lambda *a, **k: made.append(a[1]) or real(*a, **k))
    with app_client(scene, dashboard_refresh_seconds=0.2) as c:
        pages = pages_of(c)
        headers = {"authorization": f"Bearer {scene.tokens['la']}"}
        known, size, rows = summary(c, scene)
        assert size == scene.ledger.store.max_sequence()
        api = api_metrics(c, scene.tokens["la"], "la", LA, as_of=AS_OF.isoformat(), known_at=known)["metrics"]
        for metric, row in rows.items():
            assert row[1] == shown(api[metric]["value"]) and row[2] == shown(api[metric]["national_value"]), (metric, row)
        on_roll = api["pupils_on_roll"]["value"]
        trend = c.get(f"/dashboards/la/{LA}/trends", params={"as_of": AS_OF.isoformat()}, headers=headers)
        assert trend.status_code == 200 and known in trend.text

        grow(scene)
        time.sleep(0.3)
        again, again_size, _ = summary(c, scene)  # past the interval: still the prepared figures, the next made meanwhile
        assert (again, again_size) == (known, size)
        pages.dashboard_refresher.wait(60)
        made.clear()
        newer, newer_size, rows = summary(c, scene)
        trend = c.get(f"/dashboards/la/{LA}/trends", params={"as_of": AS_OF.isoformat()}, headers=headers)
        assert made == [], "the summary and the trend were prepared before the pages moved to the newer time"
        assert newer_size == scene.ledger.store.max_sequence() > size
        assert parse_timestamp(newer) > parse_timestamp(known)  # type: ignore[operator]
        assert newer in trend.text and known not in trend.text
        api = api_metrics(c, scene.tokens["la"], "la", LA, as_of=AS_OF.isoformat(), known_at=newer)["metrics"]
        assert api["pupils_on_roll"]["value"] == on_roll + 1
        for metric, row in rows.items():
            assert row[1] == shown(api[metric]["value"]), (metric, row)
        assert rows["pupils_on_roll"][1] == shown(on_roll + 1)


def test_with_no_interval_every_dashboard_request_shows_the_newest_events(scene: Scene) -> None:
    with app_client(scene, dashboard_refresh_seconds=0.0) as c:
        _, size, rows = summary(c, scene)
        grow(scene)
        _, newer_size, newer_rows = summary(c, scene)
        assert newer_size > size
        assert newer_rows["pupils_on_roll"][1] != rows["pupils_on_roll"][1]


def test_a_failed_refresh_keeps_the_shown_figures_and_is_tried_again(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    with app_client(scene, dashboard_refresh_seconds=1.0) as c:
        pages = pages_of(c)
        known, size, rows = summary(c, scene)
        grow(scene)
        real = web_data.read_model_context

        def away(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the database is away")

        monkeypatch.setattr(web_data, "read_model_context", away)
        time.sleep(1.1)
        assert summary(c, scene) == (known, size, rows)  # starts the refresh, which fails
        pages.dashboard_refresher.wait(60)
        assert summary(c, scene) == (known, size, rows)  # kept, and not retried before the interval
        assert not pages.dashboard_refresher.running
        monkeypatch.setattr(web_data, "read_model_context", real)
        time.sleep(1.1)
        summary(c, scene)
        pages.dashboard_refresher.wait(60)
        newer, newer_size, _ = summary(c, scene)
        assert newer_size > size and newer != known


def test_public_reports_are_served_from_the_kept_checkpoint_while_the_next_is_prepared(scene: Scene) -> None:
    q = {"as_of": AS_OF.isoformat()}
    with app_client(scene, web_refresh_seconds=0.2) as c:
        pages = pages_of(c)
        first = c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"]
        grow(scene)
        time.sleep(0.3)
        assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] == first  # no request waits
        pages.report_refresher.wait(60)
        assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] > first


def test_a_pin_never_holds_an_event_received_after_one_the_views_have_not_reached(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits out of order: the event after the views' position was received before the newest they reached."""
    pages = WebData(scene.ledger)
    scene.world.clock.advance(seconds=10)
    scene.world.admit(upn(989), SCHOOL_A, occurred_on=date(2026, 10, 1))
    reached = scene.ledger.store.max_sequence()
    newest = parse_timestamp(scene.ledger.store.newest_received_at(0, reached))
    assert newest is not None
    monkeypatch.setattr(pages, "positions", lambda: {name: reached for name in Projector(scene.ledger.store).positions()})
    assert pages._take_pin(None).known_at == newest  # in order: the newest event the views reached
    scene.world.clock.now = newest - timedelta(seconds=5)  # the next event is stamped earlier
    scene.world.admit(upn(990), SCHOOL_A, occurred_on=date(2026, 10, 1))
    pin = pages._take_pin(None)
    assert pin.sequence == reached
    assert pin.known_at == newest - timedelta(seconds=5, microseconds=1)


def test_one_job_at_a_time_a_failure_is_logged_and_close_waits() -> None:
    runner = OneAtATime("test-refresh")
    release, ran = threading.Event(), []
    assert runner.start(lambda: (release.wait(10), ran.append(1)))
    assert not runner.start(lambda: ran.append(2))  # one at a time: dropped
    release.set()
    runner.wait(10)
    assert ran == [1] and not runner.running
    assert runner.start(lambda: 1 / 0)  # logged, not raised; the runner goes on
    runner.wait(10)
    assert runner.start(lambda: ran.append(3))
    runner.close()
    assert ran == [1, 3]
    assert not runner.start(lambda: ran.append(4))  # closed: nothing more starts
    assert ran == [1, 3]


def test_pins_only_move_forward() -> None:
    earlier, later = datetime(2026, 10, 5, 9), datetime(2026, 10, 5, 10)
    pages = WebData.__new__(WebData)
    pages._pin, pages._generations, pages._series = None, {}, {}  # type: ignore[assignment]
    pages.allowance = Allowance(ITEMS)
    pages._adopt(web_data.Pin(later, 10, 0.0))
    pages._adopt(web_data.Pin(earlier, 5, 1.0))
    assert pages._pin == web_data.Pin(later, 10, 1.0)  # the later time kept, and when it was last looked at


def test_a_request_that_took_the_replaced_pin_still_finds_its_figures(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages move on while a request is between taking the pin and reading: it must not make the old time's
    trend again (twelve states); the replaced time's figures go after the grace period."""
    made = []
    real = web_data.read_model_context
    monkeypatch.setattr(web_data, "read_model_context", lambda *a, **k: made.append(a[1]) or real(*a, **k))
    scene.world.ledger.settings = replace(scene.ledger.settings, dashboard_refresh_seconds=60.0)
    pages = WebData(scene.ledger)
    old = pages.pin()
    names = ["pupils_on_roll"]
    before = pages.series("la", LA, names, AS_OF, known_at=old.known_at)
    pages.metrics("la", LA, Moment(AS_OF, old.known_at))
    grow(scene)
    pages.refresh_pin(old)
    assert pages.pin().known_at > old.known_at
    made.clear()
    assert pages.series("la", LA, names, AS_OF, known_at=old.known_at) == before  # the request that took the old pin
    pages.metrics("la", LA, Moment(AS_OF, old.known_at))
    assert made == []
    monkeypatch.setattr(web_data, "GRACE_SECONDS", 0.0)
    grow(scene)
    pages.refresh_pin(pages.pin())
    pages.pin()  # past the grace period: only the shown time's figures are kept
    assert set(pages._generations) == {pages.pin().known_at}
    assert {key[-1] for key in pages._series} <= {pages.pin().known_at}


def test_the_pin_being_prepared_keeps_its_states_when_an_older_one_retires(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request arriving while the next pin is prepared retires the pins past their grace period: never the one
    being prepared (the pages would move to it and make its states again, 1.6 s at 1M pupils)."""
    monkeypatch.setattr(web_data, "GRACE_SECONDS", 0.0)
    scene.world.ledger.settings = replace(scene.ledger.settings, dashboard_refresh_seconds=60.0)
    pages = WebData(scene.ledger)
    first = pages.pin()
    pages.metrics("la", LA, Moment(AS_OF, first.known_at))
    grow(scene)
    pages.refresh_pin(first)
    second = pages.pin()
    grow(scene)
    made = []
    real = web_data.read_model_context

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        pages.pin()  # a dashboard request while the state is made
        made.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(web_data, "read_model_context", meanwhile)
    pages.refresh_pin(second)
    third = pages.pin()
    assert third.known_at > second.known_at and len(made) == 1
    pages.metrics("la", LA, Moment(AS_OF, third.known_at))
    assert len(made) == 1, "prepared, and still there when the pages moved to it"


def test_a_failed_public_refresh_keeps_the_kept_reports_and_waits_the_interval(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    q = {"as_of": AS_OF.isoformat()}
    with app_client(scene, web_refresh_seconds=1.0) as c:
        pages = pages_of(c)
        first = c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"]
        grow(scene)
        tries = []

        def away() -> None:
            tries.append(1)
            raise ConnectionError("the database is away")

        monkeypatch.setattr(pages, "checkpoint", away)
        time.sleep(1.1)
        assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] == first
        pages.report_refresher.wait(60)
        for _ in range(3):  # within the interval after the failure: served, and not tried again
            assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] == first
        pages.report_refresher.wait(60)
        assert tries == [1]
        monkeypatch.undo()
        time.sleep(1.1)
        c.get("/reports/england.json", params=q)
        pages.report_refresher.wait(60)
        assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] > first


def test_a_servers_start_prepares_todays_reports_and_dashboards(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` builds its app with ``warm_pages``: the first visitors find today's figures made."""
    made = []
    real = web_data.read_model_context
    monkeypatch.setattr(web_data, "read_model_context", lambda *a, **k: made.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(web_data.WebData, "today", lambda self: AS_OF)
    with TestClient(create_app(scene.ledger, warm_pages=True), base_url="https://testserver") as c:
        pages_of(c).report_refresher.wait(60)
        warmed = len(made)
        assert warmed == 2  # the public reports' checkpoint and the dashboards' pin
        assert c.get("/reports/england.json").status_code == 200
        assert c.get("/reports/la/801").status_code == 200
        known, _, rows = summary(c, scene)
        assert rows and len(made) == warmed, "nothing made again for the first visitors"
    with TestClient(create_app(scene.ledger), base_url="https://testserver") as c:
        assert not pages_of(c).report_refresher.running and len(made) == warmed  # a test's app prepares nothing


def test_the_start_waits_for_the_views_before_it_pins_the_pages(scene: Scene) -> None:
    """At a start the followers may still be projecting a backlog: the warm-up pins the pages once the views reach
    what was stored, not before (a dashboard would show the backlog missing until the next refresh), and a server
    stopping meanwhile does not wait for it."""
    scene.world.admit(upn(991), SCHOOL_A, occurred_on=date(2026, 10, 1))  # stored, not yet projected
    pages = WebData(scene.ledger)
    assert pages.warm(catch_up_seconds=60)
    time.sleep(0.5)
    assert pages._pin is None and pages.report_refresher.running
    Projector(scene.ledger.store).catch_up()
    pages.report_refresher.wait(60)
    assert pages._pin is not None and pages._pin.sequence == scene.ledger.store.max_sequence()

    scene.world.admit(upn(992), SCHOOL_A, occurred_on=date(2026, 10, 1))
    waiting = WebData(scene.ledger)
    assert waiting.warm(catch_up_seconds=60)
    started = time.monotonic()
    waiting.close()
    assert time.monotonic() - started < 5 and not waiting.report_refresher.running and waiting._pin is None


def test_a_refresh_prepares_no_more_dates_than_a_pin_keeps(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed-in user asking many dates must not make every refresh prepare all of them: the states of more dates
    than a pin keeps would only evict one another, so the most recent dates are prepared and the rest wait."""
    scene.world.ledger.settings = replace(scene.ledger.settings, dashboard_refresh_seconds=60.0)
    pages = WebData(scene.ledger)
    shown = pages.pin()
    days = [AS_OF - timedelta(days=n) for n in range(web_data.PINNED_CONTEXTS + 3)]
    for day in days:
        pages.metrics("la", LA, Moment(day, shown.known_at))
    grow(scene)
    made = []
    real = web_data.read_model_context
    monkeypatch.setattr(web_data, "read_model_context", lambda *a, **k: made.append(a[1].as_of) or real(*a, **k))
    pages.refresh_pin(shown)
    assert sorted(made) == sorted(days[-web_data.PINNED_CONTEXTS :])  # the most recently asked, each once


def test_the_api_and_the_pages_keep_their_states_within_one_allowance(scene: Scene) -> None:
    """One process keeps states for the API's views, for the pages and for each pinned ledger time: they share one
    allowance of items (projections/state_cache.py), so the pages cannot keep another allowance's worth beside the
    API's, and a new state made for either makes room in both."""
    c = app_client(scene, dashboard_refresh_seconds=60.0)
    pages = pages_of(c)
    process = pages.allowance
    assert process.held() == (0, 0)
    api_metrics(c, scene.tokens["la"], "la", LA, as_of=AS_OF.isoformat())
    api_states, api_items = process.held()
    assert api_states == 1 and api_items > 0  # the API's state of the LAs, counted in the pages' allowance
    summary(c, scene)  # the LA dashboard: a state at the pinned ledger time
    pinned = pages.pin().known_at
    assert pages._generations[pinned].kept() == [AS_OF]
    states, items = process.held()
    assert states == api_states + 1 and items > api_items
    process.items = 0  # (no room for any other state: each new state's room drops every state kept, of either)
    api_metrics(c, scene.tokens["la"], "la", LA, as_of=(AS_OF - timedelta(days=1)).isoformat())
    assert pages._generations[pinned].kept() == []  # the API's new state made room in the pages' too
    assert process.held()[0] == 1
    summary(c, scene)
    assert pages._generations[pinned].kept() == [AS_OF] and process.held()[0] == 1  # and the pages' in the API's


def test_a_refresh_prepares_no_more_dates_than_the_allowance_holds_most_recent_first(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new pin's states count against the process's allowance of items: where a state of every unit holds most of
    it (1 M pupils in the summer), preparing every recent date would make each drop the one before, the most recently
    asked first. The refresh stops once the new pin's states hold the allowance, and the most recently asked is kept."""
    scene.world.ledger.settings = replace(scene.ledger.settings, dashboard_refresh_seconds=60.0)
    pages = WebData(scene.ledger)
    shown = pages.pin()
    days = [AS_OF - timedelta(days=n) for n in range(3)]
    for day in days:
        pages.metrics("la", LA, Moment(day, shown.known_at))
    weight = max(pages.context(Moment(day, shown.known_at)).weight() for day in days)
    assert weight > 0
    pages.allowance.items = weight + 1  # (room for one state, not two)
    grow(scene)
    made: list[date] = []
    real = web_data.read_model_context
    monkeypatch.setattr(web_data, "read_model_context", lambda *a, **k: made.append(a[1].as_of) or real(*a, **k))
    pages.refresh_pin(shown)
    assert made == [days[-1], days[-2]]  # the most recently asked first, until the new pin's states hold the allowance
    assert pages.pin().known_at != shown.known_at
    assert days[-1] in pages._generations[pages.pin().known_at].kept()


def test_the_pages_states_ask_their_statements_ahead_on_postgresql(scene: Scene) -> None:
    """A page's state asks the statements the previous page's state asked on other connections while its own thread
    works (projections/read_model_ahead.py), as the API's do: at 1 M pupils an LA's summary at a new moment took 1.0 s
    against 1.6 s when each statement waited for the one before. SQLite runs them in its thread."""
    pages = WebData(scene.ledger)
    shown = pages.pin()
    first, second = (Moment(AS_OF - timedelta(days=n), shown.known_at) for n in (1, 2))
    assert pages.metrics("la", LA, first)["metrics"]
    pages.metrics("la", LA, second)
    state = pages.context(second)
    assert isinstance(state, ReadModelContext)
    if scene.ledger.store.is_postgres:
        assert state._ahead.taken >= len(set(state._ahead.asked)) // 2 > 0, (state._ahead.taken, len(state._ahead.asked))
    else:
        assert state._ahead.taken == 0
