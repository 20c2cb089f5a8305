"""Views: as-of and known-at, corrections, incremental = rebuild (hypothesis), and the HTTP views."""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from api.app import create_app
from ledger import own_events
from ledger.config import Settings
from ledger.core.errors import Category, LedgerError
from ledger.tools import admin
from projections.config import ViewSettings
from projections.facts import Moment
from projections.read_model_la import directory_of, unit_la
from projections.read_model_la_roll import KINDS, RM_LA_ROLL, RM_SHARED_RUNS
from projections.read_model_roll import RM_ROLL, DailyChanges, SumTable, union
from projections.runner import VIEWS, Projector, Reader

from .conftest import PG_ADMIN_URL, Clock, World, upn
from .test_projections_scenario import AS_OF, A, Area, area, d, metrics_for, values  # noqa: F401 - area is a fixture

__all__ = ["area"]


def dump(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table, in a canonical order (the sums' rows that came to 0 aside: one order of upkeep
    leaves them, another not; they count nothing). Sums kept in writers' shares (England's numbers: a Kafka worker
    writes its own) are summed over the shares: which writer added a number is not part of the view; nor whether a
    unit's sums per LA were written under its id, before its registration was applied (a worker's order), or its LA."""
    out = {}
    for view in VIEWS:
        for table in view.tables:
            sql = f"SELECT * FROM {table.name}"
            if isinstance(table, SumTable):
                sql += f" WHERE {table.counting}"
                if "shard" in table.key:
                    keys = ", ".join(k for k in table.key if k != "shard")
                    sums = ", ".join(f"SUM({n})" for n, _ in table.columns if n not in table.key)
                    counted = " OR ".join(f"SUM({n}) <> 0" for n, _ in table.columns if n not in table.key)
                    source = table.name
                    if "scope" in table.key:  # a unit's own id, where a worker summed its reports before its registration: its LA now
                        scope = unit_la("NULLIF(c.scope, '')")
                        source = f"(SELECT c.*, COALESCE({scope}, '') AS la_scope FROM {table.name} c LEFT JOIN rm_unit_la m ON m.unit = c.scope) x"
                        keys = keys.replace("scope", "la_scope")
                    sql = f"SELECT {keys}, {sums} FROM {source} GROUP BY {keys} HAVING {counted}"
            out[table.name] = sorted(tuple(str(v) for v in row) for row in store.query(sql))
    # the LA roll: its numbers are its runs' (asserted), and the runs are compared as reads map them
    assert_la_roll_sums(store)
    for table in (RM_LA_ROLL, RM_LA_ROLL.months, RM_LA_ROLL.years):
        out[table.name] = []  # (a pupil stored under two scopes by a worker is in neither)
    out[RM_SHARED_RUNS.name] = sorted(tuple(str(v) for v in run) for run in mapped_runs(store))
    return out


def scope_mapper(store: Any) -> Any:
    """Each scope as a read maps it (``unit_la``, by ``rm_unit_la`` now): a school's own id, where a worker stored a pupil's
    runs before the school's registration was applied, as its LA."""
    las = directory_of(store.query("SELECT unit, la FROM rm_unit_la"))
    return lambda scope: las.la_of(scope) or scope


def stored_runs(store: Any) -> dict[str, set[tuple[Any, ...]]]:
    """``rm_shared_runs`` per pupil: (scope, kind, first, end, spans)."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for subject, scope, kind, first, end, spans in store.query(
        f"SELECT subject, scope, kind, first, end_on, spans FROM {RM_SHARED_RUNS.name}"
    ):
        out.setdefault(subject, set()).add((scope, kind, first, end, int(spans)))
    return out


def mapped_runs(store: Any) -> set[tuple[Any, ...]]:
    """The days each pupil of ``rm_shared_runs`` counts per scope as a read maps it: (subject, scope, kind, first, end)."""
    mapped = scope_mapper(store)
    runs: dict[tuple[str, str, str], list[tuple[str, str | None]]] = {}
    for subject, stored in stored_runs(store).items():
        for scope, kind, first, end, _ in stored:
            runs.setdefault((subject, mapped(scope), kind), []).append((first, end))
    return {(*key, *run) for key, found in runs.items() for run in union(found)}


def assert_months_of(store: Any, table: DailyChanges) -> None:
    """A table of changes per day and its companions agree: each month's row is the sum of the days' rows from the first
    of that month's academic year to the month's end, each academic year's row the sum of its days' rows."""
    names = [n for n, _ in table.columns]
    keys = [i for i, n in enumerate(names) if n in table.key]
    at = names.index("day")
    months: dict[tuple[Any, ...], list[int]] = {}
    years: dict[tuple[Any, ...], list[int]] = {}
    for row in store.query(f"SELECT {', '.join(names)} FROM {table.name}"):
        day = date.fromisoformat(row[at])
        start = day.year - (1 if day.month < 9 else 0)  # the year its academic year starts in
        for month in months_to_august(day):
            _add_to(months, [*row[:at], month, *row[at + 1 :]], keys)
        _add_to(years, [*row[:at], start, *row[at + 1 :]], keys)
    for companion, expected in ((table.months, months), (table.years, years)):
        stored = {
            tuple(row[i] for i in keys): [int(v) for i, v in enumerate(row) if i not in keys]
            for row in store.query(f"SELECT {', '.join(n for n, _ in companion.columns)} FROM {companion.name}")
        }
        summed = {key: [v for i, v in enumerate(sums) if i not in keys] for key, sums in expected.items()}
        assert {k: v for k, v in stored.items() if any(v)} == {k: v for k, v in summed.items() if any(v)}, companion.name


def months_to_august(day: date) -> list[str]:
    """``day``'s month and the later months of its academic year, to its August, as 'YYYY-MM' (none after 9999-12)."""
    months, first = [], day.replace(day=1)
    while True:
        months.append(first.isoformat()[:7])
        if first.month == 8 or (first.year, first.month) == (9999, 12):
            return months
        first = (first + timedelta(days=32)).replace(day=1)


def _add_to(sums: dict[tuple[Any, ...], list[int]], row: list[Any], keys: list[int]) -> None:
    kept = sums.setdefault(tuple(row[i] for i in keys), [0] * len(row))
    for i, value in enumerate(row):
        if i not in keys:
            kept[i] += int(value)


def assert_la_roll_sums(store: Any) -> None:
    """``rm_la_roll`` holds ``rm_roll``'s changes per school (the pupils with one registration in the year) under the
    school's scope, and the changes of the stored runs of pupils under one scope (the writers' shares summed), each
    scope as a read maps it."""
    mapped = scope_mapper(store)
    changes: dict[tuple[str, str], list[int]] = {}
    for school, day, roll, year in store.query(f"SELECT school, day, roll, year FROM {RM_ROLL.name}"):
        total = changes.setdefault((mapped(school), day), [0, 0])
        total[0], total[1] = total[0] + int(roll), total[1] + int(year)
    for runs in stored_runs(store).values():
        for scope, kind, first, end, spans in runs:
            if not spans:
                for day, step in ((first, 1), (end, -1)):
                    if day is not None:
                        changes.setdefault((mapped(scope), day), [0, 0])[KINDS.index(kind)] += step
    kept: dict[tuple[str, str], list[int]] = {}
    for scope, day, roll, year in store.query(f"SELECT scope, day, roll, year FROM {RM_LA_ROLL.name}"):
        total = kept.setdefault((mapped(scope), day), [0, 0])
        total[0], total[1] = total[0] + int(roll), total[1] + int(year)
    assert {k: v for k, v in kept.items() if any(v)} == {k: v for k, v in changes.items() if any(v)}
    assert_months_of(store, RM_LA_ROLL)


# -- as of, known at, corrections ----------------------------------------------------------------


def test_as_of_a_past_date_ignores_later_events(area: Area) -> None:
    early = values(metrics_for(area, "school", A, Moment(date(2026, 9, 12))))
    # On 09-12 A's roll is P1, P2, P4 (from 09-09), P5 (until 09-16), P8, P11, P12: P3 left 09-04 and P9's removal is dated 09-09.
    assert early["pupils_on_roll"] == 7
    assert early["suspension_rate"] == 28.57  # P1 and P9 (09-10) of 7; P2's come later
    assert early["permanent_exclusion_rate"] == 0.0
    assert early["children_without_setting_after_leaving"] == 0  # P3's 20 school days are not up until 10-02
    assert early["open_ap_placements"] == 2  # P8 and P12 (whose placement only ended on 09-30)
    assert (
        metrics_for(area, "school", A, Moment(date(2026, 9, 12)))["metrics"]["open_ap_placements"]["national_value"] == 4
    )  # P6, P7, P8, P12


def test_known_at_a_past_time_ignores_events_received_later(area: Area) -> None:
    before_late_removal = Moment(date(2026, 9, 12), datetime(2026, 9, 15, tzinfo=UTC))
    known = values(metrics_for(area, "school", A, before_late_removal))
    assert known["pupils_on_roll"] == 8  # P9's removal (dated 09-09) was only received on 09-22
    assert known["suspension_rate"] == 25.0  # 2 / 8
    now_but_then = values(metrics_for(area, "school", A, Moment(AS_OF, datetime(2026, 9, 15, tzinfo=UTC))))
    assert now_but_then["backdated_removals"] == 0 and now_but_then["late_report_rate"] == 0.0
    assert values(metrics_for(area, "school", A))["backdated_removals"] == 1
    cases_then = metrics_for(area, "national", "england", Moment(AS_OF, datetime(2026, 10, 2, 9, tzinfo=UTC)))["cases"]
    assert [(c["org"], c["status"]) for c in cases_then] == [("trust:TR00001", "open"), ("la:801", "open")]


def test_corrections_and_retractions_supersede_from_when_they_are_received(area: Area) -> None:
    area.at(AS_OF, 13)
    area.post("pupil.record_retracted", A, {"reason": "entered_in_error"}, upn=upn(3), occurred_on=AS_OF, corrects=area.marks["p3_removal"])
    area.post(
        "pupil.excluded",
        "urn:100007",
        {"school": "urn:100007", "kind": "SUSP", "sessions": 4, "reasons": ["PA"]},
        upn=upn(10),
        occurred_on=date(2026, 9, 11),
        corrects=area.marks["p10_suspension"],
    )
    Projector(area.ledger.store).catch_up()
    now = values(metrics_for(area, "national", "england"))
    assert now["removals_unknown_destination"] == 0 and now["sen_exits"] == 0 and now["children_without_setting_after_leaving"] == 0
    assert now["pupils_on_roll"] == 10  # P3 is back on A's roll: the removal never happened
    assert now["suspensions_by_reason"] == {"PA": 1, "PP": 3, "VP": 1}
    before = values(metrics_for(area, "national", "england", Moment(AS_OF, datetime(2026, 10, 5, 12, 30, tzinfo=UTC))))
    assert before["removals_unknown_destination"] == 1 and before["suspensions_by_reason"] == {"PP": 3, "VP": 2}


# -- incremental = rebuild ---------------------------------------------------------------------


@contextmanager
def fresh_settings(backend: str) -> Iterator[Settings]:
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            yield Settings(home=Path(tmp) / "home")
            return
        name = f"pl_prop_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield Settings(home=Path(tmp) / "home", database_url=f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SCHOOLS = ("urn:100005", "urn:100006")
SETTING = "ukprn:10000047"
OPS = st.lists(
    st.tuples(
        st.sampled_from(["admit", "leave", "suspend", "exclude", "place", "end", "review", "retract", "correct", "attend", "project"]),
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(0, 40),
        st.integers(1, 9),
    ),
    min_size=1,
    max_size=40,
)


def small_world(settings: Settings) -> World:
    clock = Clock(datetime(2026, 8, 20, 9, tzinfo=UTC))
    result = admin.initialise(settings, clock)
    w = World(result.ledger, clock, result.admin_token)
    for org, kind in (("la:801", "la"), (SCHOOLS[0], "school"), (SCHOOLS[1], "school"), (SETTING, "ap_setting")):
        admin.add_org(w.ledger, org, kind, org, "la:801" if kind != "la" else None)
        w.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(w.ledger, org, w.keys[org].public_key())
    return w


def play(w: World, ops: list[tuple[str, int, int, int, int]], projector: Projector) -> None:
    """Apply random operations; the rules reject the impossible ones, which then store nothing."""
    posted: dict[int, list[tuple[str, str, dict[str, Any], str]]] = {}
    start = date(2026, 9, 1)
    for pupil in range(4):  # every pupil starts on a roll, so most random operations are possible
        w.clock.now = datetime(2026, 9, 1, 9, tzinfo=UTC)
        data = {"school": SCHOOLS[pupil % 2], "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
        receipt = w.post("pupil.registered", SCHOOLS[pupil % 2], data, upn=upn(pupil + 1), occurred_on=start)
        posted[pupil] = [(receipt.event_id, "pupil.registered", data, SCHOOLS[pupil % 2])]
    for op, pupil, school_i, offset, n in ops:
        if op == "project":
            projector.batch_size = n
            projector.step()
            continue
        school, day = SCHOOLS[school_i], start + timedelta(days=offset)
        w.clock.now = datetime(2026, 10, 15, 9, tzinfo=UTC) + timedelta(minutes=len(posted.get(pupil, [])) + 10 * offset)
        mine = posted.setdefault(pupil, [])
        placements = [e for e in mine if e[1] == "pupil.ap_placement_started"]
        data: dict[str, Any]
        kw: dict[str, Any] = {}
        if op == "admit":
            etype, data = (
                "pupil.registered",
                {"school": school, "enrolment_status": "C", "year_group": "9", "sen_status": "NKE"[n % 3], "looked_after": n == 9},
            )
        elif op == "leave":
            etype, data = (
                "pupil.deregistered",
                {"school": school, "ground": "moved_away", "destination": ("unknown", "cme", "moved_away")[n % 3]},
            )
        elif op in ("suspend", "exclude"):
            etype, data = "pupil.excluded", {"school": school, "kind": "SUSP" if op == "suspend" else "PERM", "reasons": ["PP"]}
            if op == "suspend":
                data["sessions"] = n * 10
        elif op == "place":
            etype, data = (
                "pupil.ap_placement_started",
                {
                    "commissioner": school,
                    "setting": SETTING,
                    "setting_type": "UKPRN",
                    "tier": 1 + n % 3,
                    "reason": "BEHAVIOUR",
                    "hours_per_week": 5 * n,
                    "dual_registered": False,
                },
            )
            if n % 3 == 1:
                data["planned_end"] = (day + timedelta(days=n)).isoformat()
        elif op in ("end", "review") and placements:
            ref = placements[-1][0]
            etype = "pupil.ap_placement_ended" if op == "end" else "pupil.ap_placement_reviewed"
            data = {"placement_event_id": ref, "outcome": "mainstream" if op == "end" else "continue"}
            school = placements[-1][3]
        elif op == "attend":
            etype, data = (
                "pupil.attendance_summary_recorded",
                {"setting": SETTING, "academic_year": "2026/27", "term": "autumn", "possible_sessions": 20, "attended_sessions": n},
            )
            school = SETTING
        elif op in ("retract", "correct") and mine:
            target_id, target_type, target_data, target_school = mine[-1]
            kw["corrects"] = target_id
            if op == "retract":
                etype, data = "pupil.record_retracted", {"reason": "entered_in_error"}
            else:
                etype, data = target_type, dict(target_data)
            school = target_school
        else:
            continue
        try:
            receipt = w.post(etype, school, data, upn=upn(pupil + 1), occurred_on=day, **kw)
        except LedgerError:
            continue
        mine.append((receipt.event_id, etype, data, school))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=OPS)
# The log holds 14 events before the ops: two full batches of 7 end at its end, and the read ahead after the second
# finds nothing before the suspension is written (this stale "end of the log" once stopped catch_up short).
@example(ops=[("project", 0, 0, 0, 7), ("project", 0, 0, 0, 7), ("suspend", 0, 0, 5, 3)])
def test_incremental_projection_equals_a_rebuild_from_scratch(backend: str, ops: list[tuple[str, int, int, int, int]]) -> None:
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            incremental = Projector(w.ledger.store, batch_size=3)
            play(w, ops, incremental)
            incremental.catch_up()
            live = dump(w.ledger.store)
            figures = values(metrics_for(w, "national", "england", Moment(date(2026, 10, 15))))  # type: ignore[arg-type]
            Projector(w.ledger.store, batch_size=1000).rebuild()
            assert dump(w.ledger.store) == live
            assert values(metrics_for(w, "national", "england", Moment(date(2026, 10, 15)))) == figures  # type: ignore[arg-type]
        finally:
            w.ledger.store.close()


def test_a_changed_view_version_rebuilds_itself(area: Area) -> None:
    store = area.ledger.store
    before = dump(store)
    store.execute("UPDATE pv_positions SET version = version + 100 WHERE view = 'pupils'")
    store.execute("DELETE FROM pv_pupil_facts")
    projector = Projector(store)
    assert projector.ensure() == ["pupils"]
    assert projector.positions()["pupils"] == 0
    projector.catch_up()
    assert dump(store) == before


def test_an_index_declared_since_a_view_was_made_is_made_at_the_next_start_without_a_rebuild(area: Area) -> None:
    """A ledger whose read model was built before an index was declared (the open placements at unregistered providers',
    stop 45) gets the index when its projector next starts, and keeps its rows and positions: an index changes no row."""
    store = area.ledger.store
    index = "rm_placements_open_unregistered_now"
    listed = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        if store.is_postgres
        else "SELECT name FROM sqlite_master WHERE type = 'index'"
    )
    before, positions = dump(store), Projector(store).positions()
    store.execute(f"DROP INDEX {index}")
    assert index not in {name for (name,) in store.query(listed)}
    projector = Projector(store)
    assert projector.ensure() == []
    assert index in {name for (name,) in store.query(listed)}
    assert projector.positions() == positions and dump(store) == before
    assert Projector(store).ensure() == []  # (made once: "IF NOT EXISTS" the next time)


# -- HTTP -----------------------------------------------------------------------------------------


def test_views_over_http(area: Area) -> None:
    ledger = area.ledger
    school_token = ledger.issue_token(A, "school")
    other_token = ledger.issue_token("urn:100006", "school")
    inspector = {"authorization": f"Bearer {area.admin_token}"}
    with TestClient(create_app(ledger, [Projector(ledger.store)])) as client:
        got = client.get(
            "/views/metrics",
            params={"level": "school", "org": A, "as_of": "2026-10-05"},
            headers={"authorization": f"Bearer {school_token}"},
        )
        assert got.status_code == 200, got.text
        assert {k: v["value"] for k, v in got.json()["metrics"].items()}["suspension_rate"] == 66.67
        assert (
            client.get(
                "/views/metrics", params={"level": "school", "org": A}, headers={"authorization": f"Bearer {other_token}"}
            ).status_code
            == 403
        )

        # the access policy's aggregate rules (docs/access.md): an LA its schools, inspectors their scope, researchers exports only
        def status(token: str, **params: str) -> int:
            return client.get("/views/metrics", params=params, headers={"authorization": f"Bearer {token}"}).status_code

        la_token = ledger.issue_token("la:801", "la")
        assert status(la_token, level="school", org=A) == 200 and status(la_token, level="la", org="la:801") == 200
        admin.add_org(ledger, "ofsted", "inspectorate", "Ofsted")
        ofsted_token = ledger.issue_token("ofsted", "inspector")
        assert status(ofsted_token, level="school", org=A) == 403  # no inspection of the area yet (docs/access.md)
        ofsted_key = Ed25519PrivateKey.generate()
        admin.add_key(ledger, "ofsted", ofsted_key.public_key())
        today = ledger.clock().date()
        ledger.submit(
            own_events.signed(
                own_events.event_body(
                    "inspection.started",
                    "ofsted",
                    {"org": "la:801"},
                    {"kind": "full", "from": today.isoformat(), "to": (today + timedelta(days=30)).isoformat()},
                    today,
                    ledger.clock(),
                ),
                ofsted_key,
            )
        )
        assert status(ofsted_token, level="school", org=A) == 200
        assert status(ledger.issue_token("ofsted", "inspector", scope=["la:802"]), level="school", org=A) == 403
        researcher = ledger.issue_token("la:801", "researcher")
        assert status(researcher, level="national") == 200 and status(researcher, level="school", org=A) == 403
        assert client.get("/views/placements").status_code == 401
        bad = client.get("/views/placements", params={"level": "la", "org": A}, headers=inspector)
        assert (bad.status_code, bad.json()["errors"][0]["path"]) == (422, "query:org")
        early = client.get("/views/metrics", params={"as_of": "0001-01-01"}, headers=inspector)
        assert (early.status_code, early.json()["errors"][0]["path"]) == (422, "query:as_of")
        zone = client.get("/views/placements", params={"known_at": "2026-10-01T00:00:00"}, headers=inspector)
        assert (zone.status_code, zone.json()["errors"][0]["code"]) == (422, "known_at_zone")
        register = client.get("/views/placements", params={"level": "la", "org": "la:801", "as_of": "2026-10-05"}, headers=inspector).json()
        assert register["placements"]["open_placements"] == 4 and register["org"] == "la:801"
        providers = client.get("/views/unregistered-providers", params={"as_of": "2026-10-05"}, headers=inspector).json()
        assert [p["needs_registration"] for p in providers["watch"]["providers"]] == [True]
        assert "upn" not in json.dumps(providers).lower()
        # read-your-writes: a new event's receipt sequence is waited for, an impossible one answers 503
        area.at(AS_OF, 14)
        receipt = area.exclude(1, A, AS_OF, "SUSP", "PP", 2)
        fresh = client.get(
            "/views/metrics",
            params={"level": "school", "org": A, "as_of": "2026-10-05", "min_sequence": receipt.sequence},
            headers=inspector,
        )
        assert fresh.status_code == 200 and fresh.json()["metrics"]["suspension_rate"]["numerator"] == 5
        behind = client.get("/views/cases", params={"min_sequence": receipt.sequence + 10_000}, headers=inspector)
        assert (behind.status_code, behind.headers["retry-after"], behind.json()["errors"][0]["code"]) == (503, "1", "view_behind")
        ops = {op["operationId"] for path in client.get("/openapi.json").json()["paths"].values() for op in path.values()}
        assert {"placementsRegister", "unregisteredProviders", "accountabilityMetrics", "accountabilityCases"} <= ops


# Every field of /views/* that counts something (docs/metrics.md: "Counts are integers"), and the maps of counts.
COUNT_FIELDS = {
    "open_placements",
    "overdue_time_limited_placements",
    "count",
    "pupils",
    "full_time_pupils",
    "full_time_pupils_with_sen_or_looked_after",
    "flagged",
    "registration_pupils",
    "total",
    "rank",
    "peers",
    "numerator",
    "denominator",
    "tier",
}
COUNT_MAPS = {"by_setting_type", "by_tier", "positions"}


def non_integer_counts(node: Any, path: str = "$") -> list[tuple[str, Any]]:
    """(JSONPath, value) of every count in a view's JSON that is not a JSON integer (``4.0`` is not)."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            found += non_integer_counts(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        if node.get("kind") in ("count", "breakdown"):  # a metric's figure: its value is a count or a map of counts
            for key in ("value", "national_value"):
                values = node[key].values() if isinstance(node[key], dict) else [node[key]]
                found += [(f"{path}.{key}", v) for v in values if type(v) is not int]
        for key, value in node.items():
            if key in COUNT_FIELDS and isinstance(value, (int, float, str)) and type(value) is not int:  # not the metric named so
                found.append((f"{path}.{key}", value))
            if key in COUNT_MAPS and isinstance(value, dict):
                found += [(f"{path}.{key}.{k}", v) for k, v in value.items() if type(v) is not int]
            found += non_integer_counts(value, f"{path}.{key}")
    return found


def test_every_count_in_the_views_is_an_integer(area: Area) -> None:
    """Counts (and the numerators and denominators of rates and means: items, sessions, days) are JSON
    integers in every view, at every level; they were floats (``"numerator": 4.0``)."""
    inspector = {"authorization": f"Bearer {area.admin_token}"}
    with TestClient(create_app(area.ledger, [Projector(area.ledger.store)])) as client:
        for path in ("/views/metrics", "/views/placements", "/views/unregistered-providers", "/views/cases"):
            for scope in (
                {"level": "national"},
                {"level": "la", "org": "la:801"},
                {"level": "trust", "org": "trust:TR00001"},
                {"level": "school", "org": A},
                {"level": "school", "org": "ukprn:10000047"},
            ):
                got = client.get(path, params={**scope, "as_of": "2026-10-05"}, headers=inspector)
                assert got.status_code == 200, got.text
                body = json.loads(got.text)
                assert non_integer_counts(body) == [], (path, scope)
        metrics = client.get("/views/metrics", params={"level": "la", "org": "la:801", "as_of": "2026-10-05"}, headers=inspector).json()
        assert metrics["metrics"]["ap_attendance_rate"]["numerator"] == 33 and metrics["metrics"]["ap_attendance_rate"]["denominator"] == 40
        assert metrics["placements"]["open_placement_days_so_far"] == {
            "count": 4,
            "mean": 25.0,
            "median": 27.0,
        }  # day statistics stay numbers
    assert non_integer_counts({"numerator": 4.0, "by_tier": {"1": 1}, "x": [{"kind": "count", "value": 2.0, "national_value": 2}]}) == [
        ("$.numerator", 4.0),
        ("$.x[0].value", 2.0),
    ]


def test_an_erased_pupil_is_forgotten_by_every_view(area: Area) -> None:
    from projections.runner import forget_pupil

    assert forget_pupil(area.ledger.store, area.ledger.secrets.pupil_id(upn(2))) == 3  # P2's admission and two suspensions
    england = values(metrics_for(area, "national", "england"))
    assert england["pupils_on_roll"] == 8 and england["suspension_cap_breaches"] == 0
    assert england["suspensions_by_reason"] == {"PP": 2, "VP": 1}


def test_concerns_name_metrics_from_the_catalogue(area: Area) -> None:
    from ledger.core.codes import code_list
    from projections.metrics import METRICS_BY_NAME

    assert code_list("metric_names").all_codes() == set(METRICS_BY_NAME)
    area.at(AS_OF, 13)
    with pytest.raises(LedgerError) as exc:
        area.post(
            "accountability.concern_raised",
            "dfe:regions",
            {"category": "other", "metric": "happiness_index", "metric_value": 1, "metric_as_of": "2026-10-01"},
            org="la:801",
        )
    assert [(p.code, p.path) for p in exc.value.problems] == [("unknown_code", "$.payload.data.metric")]


def test_a_step_that_loses_the_race_to_another_projector_reads_again(world: World) -> None:
    """Another projector's batch commits between this one's read and its lock: the step reads again and returns
    what it projected, never 0, which ``catch_up`` (so ``rebuild``) would take for the end of the log."""
    for n in range(6):
        world.admit(upn(300 + n))
    store = world.ledger.store
    mine, other = Projector(store, batch_size=2), Projector(store, batch_size=2)
    mine.ensure()
    raced: list[int] = []
    decode = mine._decode

    def other_commits_first(row: Any, stream: Any, fetched: Any) -> Any:
        if not raced:
            raced.append(other.step())
        return decode(row, stream, fetched)

    mine._decode = other_commits_first  # type: ignore[method-assign, assignment]
    assert mine.step() == 2 and raced == [2]
    mine.catch_up()
    assert min(mine.positions().values()) == store.max_sequence()
    assert dump(store) == dump_rebuilt(world)


def test_the_next_batch_is_read_ahead_on_postgresql_and_used_only_where_the_views_stand(world: World) -> None:
    """On PostgreSQL a full batch starts the read of the next one on another thread; a batch read ahead from
    where the views no longer stand (another projector moved them) is left, and the log read again from there."""
    for n in range(9):
        world.admit(upn(400 + n))
    store = world.ledger.store
    mine, other = Projector(store, batch_size=2), Projector(store, batch_size=3)
    mine.ensure()
    reads: list[tuple[int, str]] = []
    read = mine._read

    def recorded(start: int, size: int | None = None) -> Any:
        reads.append((start, threading.current_thread().name))
        return read(start, size)

    mine._read = recorded  # type: ignore[method-assign]
    assert mine.step() == 2
    other.step()  # the views move on by 3 from where mine left them, past the batch mine is reading ahead
    mine.catch_up()
    ahead = [start for start, thread in reads if thread.startswith("projections-read-ahead")]
    assert bool(ahead) == store.is_postgres, reads
    if store.is_postgres:
        (first, _), (second, thread), (third, again) = reads[:3]  # the batch after mine's first was read ahead,
        assert first < second < third and thread.startswith("projections-read-ahead") and again == "MainThread", reads  # then left
    assert min(mine.positions().values()) == store.max_sequence()
    assert dump(store) == dump_rebuilt(world)


def test_a_projector_far_behind_doubles_its_batches_on_postgresql_and_one_given_a_size_keeps_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projector with no batch size of its own doubles its batch after each full one, up to CATCH_UP_BATCH, on
    PostgreSQL only, and goes back to DEFAULT_BATCH at the log's end; one given a size reads exactly that. The views
    are the same either way."""
    from projections import runner

    monkeypatch.setattr(runner, "DEFAULT_BATCH", 2)
    monkeypatch.setattr(runner, "CATCH_UP_BATCH", 8)
    for n in range(30):
        world.admit(upn(600 + n))
    store = world.ledger.store
    for projector, growing in ((Projector(store), store.is_postgres), (Projector(store, batch_size=2), False)):
        projector.reset()
        total = store.max_sequence()
        sizes: list[int] = []
        read = projector._read

        def recorded(start: int, size: int | None = None, read: Any = read, sizes: list[int] = sizes) -> Any:
            batch = read(start, size)
            sizes.append(batch.size)
            return batch

        projector._read = recorded  # type: ignore[method-assign]
        steps = []
        while done := projector.step():
            steps.append(done)
        assert sum(steps) == total
        if growing:
            assert steps[:3] == [2, 4, 8] and set(steps[2:-1]) == {8} and steps[-1] <= 8, steps
        else:
            assert set(steps[:-1]) == {2} and steps[-1] <= 2, steps
        world.admit(upn(700 + len(sizes)))  # after the log's end: back to the first size
        assert projector.step() == 1 and sizes[-1] == 2, sizes
        assert dump(store) == dump_rebuilt(world)


@pytest.mark.parametrize(
    ("before", "after", "passes"),
    [
        (0, 9, False),
        (0, 10, True),  # the first mark itself
        (9, 10, True),
        (10, 19, False),  # past the first mark already, short of the second
        (19, 20, True),
        (25, 39, False),
        (5, 100, True),  # several marks in one batch
        (40, 40, False),  # a view that did not move (held back by one it reads)
        (2**62 - 1, 2**62 + 1, False),  # 10 * 2**k never equals 2**62: between marks
        (10 * 2**58 - 1, 10 * 2**58, True),  # a mark far along the log
    ],
)
def test_a_position_passes_the_first_mark_and_each_doubling_of_it(before: int, after: int, passes: bool) -> None:
    from projections.runner import doubled

    assert doubled(before, after, 10) is passes


@pytest.mark.parametrize("first", [0, -1, -(2**63)])
def test_a_first_mark_at_or_before_the_logs_start_is_refused(first: int) -> None:
    """0 doubled is 0: the search for the next mark would never end."""
    from projections.runner import doubled

    with pytest.raises(ValueError, match="first mark"):
        doubled(0, 10, first)


def test_a_views_tables_are_analysed_on_postgresql_when_its_position_passes_a_doubling(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the batch that takes a view past ANALYZE_FROM, or a doubling of it, analyses every table of the view
    (a rebuilt table has no statistics until autovacuum, if it is on, gets round to it); SQLite keeps none, as before."""
    from projections import runner

    store = world.ledger.store
    mark = store.max_sequence() + 3  # (the organisations' events come first: the marks fall among the pupils')
    monkeypatch.setattr(runner, "ANALYZE_FROM", mark)
    for n in range(mark + 4):
        world.admit(upn(800 + n))
    projector = Projector(store, batch_size=2)
    if not store.is_postgres:
        projector.rebuild()
        assert not store.query("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
        return

    def statistics(table: str) -> tuple[float, int]:
        """The table's rows as its statistics say (-1: never analysed) and as they are."""
        counted = store.query(f"SELECT COUNT(*) FROM {table}")[0][0]
        return store.query("SELECT reltuples FROM pg_class WHERE relname = ?", [table])[0][0], counted

    projector.reset()  # every view's tables made anew: no statistics
    steps = []
    while (before := projector.positions()["read_model_events"]) < store.max_sequence():
        assert projector.step(), steps  # (every view in one projector: none is held back)
        after = projector.positions()["read_model_events"]
        steps.append((before, after, statistics("rm_events"), statistics("rm_registrations")))
    passed = [step for step in steps if runner.doubled(step[0], step[1], mark)]
    assert len(passed) >= 2, steps  # the mark and its double at least
    for before, after, *tables in steps:
        for counted_then, rows in tables:
            if runner.doubled(before, after, mark):
                assert counted_then == rows > 0, steps  # analysed with the batch's rows (a sample of every row, here)
            elif after < mark:
                assert counted_then == -1, steps  # not yet: never analysed
    assert steps[-1][3][1] > 0, steps  # (the registrations were written: the pupils view is projected beside the model)
    assert all(analysed_columns(store, t) for t in ("rm_events", "rm_months", "rm_registrations", "pv_pupil_facts"))


def analysed_columns(store: Any, table: str) -> bool:
    return bool(store.query("SELECT 1 FROM pg_stats WHERE schemaname = 'public' AND tablename = ?", [table]))


@pytest.mark.parametrize("size", [0, -1, -(2**63)])
def test_a_batch_of_no_events_or_fewer_is_refused(world: World, size: int) -> None:
    """0 read nothing for ever (catch_up stopped at once), and SQLite takes a negative LIMIT as none at all."""
    with pytest.raises(ValueError, match="at least 1 event"):
        Projector(world.ledger.store, batch_size=size)


def test_events_written_after_a_read_ahead_found_the_logs_end_are_projected_by_the_next_step(world: World) -> None:
    """A full batch that ends at the log's end starts a read ahead (PostgreSQL), which finds nothing. That says
    where the log ended then, not now: events written afterwards are projected by the next step, and
    ``catch_up`` reaches them (the incremental = rebuild property found a stale empty read ahead taken for the
    log's end, so ``catch_up`` stopped short of events already written)."""
    store = world.ledger.store
    projector = Projector(store, batch_size=store.max_sequence())  # the whole log in one full batch
    assert projector.step() == store.max_sequence()
    ahead = projector._ahead
    assert (ahead is not None) == store.is_postgres
    if ahead is not None:  # the read ahead has found the log's end before the next event is written
        assert ahead[1].result().rows == []
    world.admit(upn(500))
    assert projector.catch_up() == 1
    assert min(projector.positions().values()) == store.max_sequence()
    assert dump(store) == dump_rebuilt(world)


def test_a_pupil_erased_between_a_steps_read_and_its_write_is_left_out_of_every_view(world: World) -> None:
    """The batch is read and decrypted (with the key still cached) before the write transaction; a pupil erased
    in between must not reach the views, while the other pupils of the same batch do."""
    world.admit(upn(1))
    world.admit(upn(2))
    store = world.ledger.store
    projector = Projector(store)
    projector.ensure()
    decode = projector._decode
    erased: list[str] = []

    def erase_during_the_read(row: Any, stream: Any, fetched: Any) -> Any:
        if not erased:  # by another process's ledger: this one still holds the key it prefetched
            erased.append(str(world.ledger.secrets.pupil_id(upn(1))))
            other = admin.open_ledger(world.ledger.settings)
            try:
                other.erase(upn(1), "erasure_request")
            finally:
                other.store.close()
        return decode(row, stream, fetched)

    projector._decode = erase_during_the_read  # type: ignore[method-assign, assignment]
    projector.catch_up()
    subjects = {row[0] for view in VIEWS for t in view.tables if t.keyed_by_subject for row in store.query(f"SELECT subject FROM {t.name}")}
    assert erased and erased[0] not in subjects
    assert str(world.ledger.secrets.pupil_id(upn(2))) in subjects


def test_an_error_reading_an_event_that_is_not_an_erasure_fails_the_step_and_loses_nothing(world: World) -> None:
    """Only an erased pupil's events are left out (``SubjectErased``). Any other ``LedgerError`` while an event was read
    was taken for an erasure too: the event was dropped and the position moved past it, so the views lost it for good.
    Now the step fails, nothing moves, and the next step projects the event."""
    world.admit(upn(1))
    store = world.ledger.store
    projector = Projector(store)
    projector.ensure()
    mapper = store.app.subject_mapper
    entry_of = mapper.entry_of

    def away(*args: Any, **kwargs: Any) -> Any:
        raise LedgerError.one("unreadable", "$", "an event that cannot be read just now", Category.CONFLICT)

    mapper.entry_of = away  # type: ignore[method-assign]
    try:
        with pytest.raises(LedgerError, match="unreadable"):
            projector.catch_up()
    finally:
        mapper.entry_of = entry_of  # type: ignore[method-assign]
    assert {int(p) for (p,) in store.query("SELECT position FROM pv_positions")} == {0}  # nothing moved past the event
    projector.catch_up()
    pupil = str(world.ledger.secrets.pupil_id(upn(1)))
    assert store.query("SELECT COUNT(*) FROM pv_pupil_facts WHERE subject = ?", [pupil])[0][0] > 0


def dump_rebuilt(world: World) -> dict[str, list[tuple[Any, ...]]]:
    Projector(world.ledger.store).rebuild()
    return dump(world.ledger.store)


# -- ranks among peers --------------------------------------------------------------------------------------------


def materialised_rank(values: dict[str, Any], scope: str) -> tuple[int | None, int]:
    """The rank as it was computed before peers without items were counted instead of made: every peer's figure in
    one dict, the scope's value compared with each number."""
    numbers = {k: f.value for k, f in values.items() if isinstance(f.value, (int, float))}
    if scope not in numbers:
        return None, len(numbers)
    return 1 + sum(1 for v in numbers.values() if v > numbers[scope]), len(numbers)


FIGURE = st.sampled_from([None, 0, 1, 2, 2.5, -1.0, 100])


@hsettings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(st.sampled_from(list("abcdefgh")), FIGURE),
    without_items=st.integers(0, 5),
    empty=st.sampled_from([None, 0, 0.0, 1]),
    scope=st.sampled_from(list("abcdefghz")),
)
def test_peers_without_items_are_counted_as_if_each_had_the_empty_figure(
    values: dict[str, Any], without_items: int, empty: Any, scope: str
) -> None:
    from projections.metrics import Figure, rank

    figures = {k: Figure(v) for k, v in values.items()}
    every = {**figures, **{f"none{i}": Figure(empty) for i in range(without_items)}}
    assert rank(values, scope, empty, without_items) == materialised_rank(every, scope)


@hsettings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["urn:100001", "urn:100002", "urn:100003", "la:801", "uprov:802-1", "ukprn:10000001"]),
            st.sampled_from(["k1", "k2", "k3", "k4"]),
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from(["", "a", "b"]),
        ),
        max_size=12,
    ),
    kind=st.sampled_from(["count", "rate", "breakdown", "median"]),
    level=st.sampled_from(["school", "la", "trust", "national"]),
    scope=st.sampled_from(["urn:100001", "urn:100003", "la:801", "la:802", "trust:TR01", "england", "nowhere"]),
)
def test_one_scope_s_figure_is_its_figure_among_every_scope_s(
    rows: list[tuple[str, str, int, int, str]], kind: str, level: str, scope: str
) -> None:
    """``figure_of`` (a school read's own, national and regional figures) gives what ``figures`` gives the scope,
    keys repeated across units and scopes included, and the empty figure for a scope without items."""
    from projections.context import Contribution, Metric
    from projections.metrics import empty_figure, figure_of, figures
    from projections.orgs import Directory, Org

    orgs = Directory(
        {
            "urn:100001": Org("urn:100001", "school", "la:801", "trust:TR01"),
            "urn:100002": Org("urn:100002", "school", "la:802", "trust:TR01"),
            "urn:100003": Org("urn:100003", "school", "la:801"),
        }
    )
    metric = Metric("m", "g", kind, lambda ctx: [])
    contributions = [Contribution(unit, key, num, den, label) for unit, key, num, den, label in rows]
    expected = figures(metric, contributions, level, Directory(dict(orgs.orgs))).get(scope, empty_figure(metric))
    assert figure_of(metric, contributions, level, orgs, scope) == expected


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["urn:100001", "urn:100002", "urn:100003", "la:801"]),
            st.sampled_from(["k1", "k2", "k3", "k4"]),
            st.integers(-2, 7),
            st.integers(-1, 3),
            st.sampled_from(["", "a", "b"]),
        ),
        max_size=12,
    ),
    kind=st.sampled_from(["count", "rate", "mean", "median", "breakdown"]),
    scale=st.sampled_from([1, 100, 1000]),
    level=st.sampled_from(["school", "la", "national"]),
)
def test_every_peers_value_is_the_value_of_its_figure(
    rows: list[tuple[str, str, int, int, str]], kind: str, scale: int, level: str
) -> None:
    """The ranks' values made in one comprehension (``_values``: a count's and a rate's from the sums alone) are each
    scope's figure's value, a denominator of 0 (no value) and negative parts included."""
    from projections.context import Contribution, Metric
    from projections.metrics import _grouped, _values, figures
    from projections.orgs import Directory, Org

    orgs = Directory({"urn:100001": Org("urn:100001", "school", "la:801"), "urn:100002": Org("urn:100002", "school", "la:802")})
    metric = Metric("m", "g", kind, lambda ctx: [], scale=scale)
    contributions = [Contribution(unit, key, num, den, label) for unit, key, num, den, label in rows]
    expected = {scope: figure.value for scope, figure in figures(metric, contributions, level, orgs).items()}
    assert _values(metric, *_grouped(contributions, level, orgs)) == expected


def test_a_school_and_an_la_rank_among_every_peer_of_their_level(area: Area) -> None:
    """report() counts the peers without items instead of giving each a figure: every rank and peer count of a
    school read and an LA read equals the materialised computation over every registered peer."""
    from projections.metrics import METRICS, PEER_KINDS, empty_figure, figures
    from projections.read_model_queries import read_model_context

    reader = Reader(area.ledger.store)
    ctx = read_model_context(reader, Moment(AS_OF), ViewSettings())
    for level, scope in (("school", A), ("la", "la:801"), ("school", "urn:999999")):
        body = metrics_for(area, level, scope)["metrics"]
        for metric in METRICS:
            every = figures(metric, ctx.contributions(metric), level, ctx.directory)
            for peer in ctx.directory.of_kind(*PEER_KINDS[level]):
                every.setdefault(peer, empty_figure(metric))
            expected = (None, len(every)) if metric.kind == "breakdown" else materialised_rank(every, scope)
            assert (body[metric.name]["rank"], body[metric.name]["peers"]) == expected, (level, scope, metric.name)


@given(st.lists(st.tuples(st.integers(-3, 400), st.integers(-1, 4)), max_size=12))
def test_the_weighted_mean_and_median_are_statistics_of_the_values_repeated(counts: list[tuple[int, int]]) -> None:
    """``weighted`` gives what ``statistics`` gives each value repeated its count of times, of the same type (an int
    where the answer is one there: the JSON says 27, not 27.0); a count of 0 or less holds nothing."""
    import statistics

    from projections import weighted

    repeated = [value for value, count in counts for _ in range(max(count, 0))]
    for ours, theirs in ((weighted.median, statistics.median), (weighted.mean, statistics.mean)):
        found, expected = ours(counts), theirs(repeated) if repeated else None
        assert (found, type(found)) == (expected, type(expected)), (ours.__name__, repeated)
