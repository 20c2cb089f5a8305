"""Crash test: SIGKILL a real ``pupil-ledger project run`` worker mid-way, restart it, and the views
equal a clean rebuild (no event applied twice, none skipped). On PostgreSQL also: one active worker
per view, and a standby takes over when the active one dies."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import date

import psycopg
import pytest

from ledger import own_events
from ledger.config import Settings
from ledger.tools import admin
from ledger.tools.simulate import simulate_area
from ledger.tools.simulate_load import load_area
from projections.facts import View
from projections.runner import VIEWS, Projector, in_dependency_order
from projections.worker import lock_key

from .conftest import upn
from .processes import CLI, env_for, run_cli
from .test_projections import dump


def start_worker(settings: Settings, batch: int = 10) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "project", "run", "--batch", str(batch), "--idle", "0.05"],
        env=env_for(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def positions(store: object) -> list[int]:
    try:
        return [int(p) for (p,) in store.query("SELECT position FROM pv_positions")]  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the worker has not created its tables yet
        return []


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(poll)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(20)


def test_killed_worker_restarts_and_equals_a_clean_rebuild(settings: Settings) -> None:
    ledger = admin.initialise(settings).ledger
    load_area(ledger, simulate_area(pupils=1500, seed=7, la_code="801", today=date(2026, 10, 5)))
    store, latest = ledger.store, ledger.store.max_sequence()
    worker = start_worker(settings)
    try:
        wait_until(lambda: len(positions(store)) == len(VIEWS) and min(positions(store)) > 0, 60)
        kill(worker)
        reached = positions(store)
        assert 0 < min(reached) < latest, f"killed too late to prove anything: {reached} of {latest}"
        worker = start_worker(settings, batch=200)
        wait_until(lambda: positions(store) == [latest] * len(VIEWS), 120, poll=0.05)
    finally:
        stop(worker)
    after_crash = dump(store)
    assert sum(len(rows) for rows in after_crash.values()) > 1000
    Projector(store).rebuild()
    assert dump(store) == after_crash
    store.close()


def test_one_active_worker_per_view_and_a_standby_takes_over(pg_url: str, tmp_path: object) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_url)  # type: ignore[operator]
    ledger = admin.initialise(settings).ledger
    load_area(ledger, simulate_area(pupils=2500, seed=8, la_code="801", today=date(2026, 10, 5)))
    store, latest = ledger.store, ledger.store.max_sequence()
    first = second = start_worker(settings, batch=2)  # small batches: it is still busy when it is killed
    keys = [lock_key(v) for v in VIEWS]

    def holders() -> set[int]:
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(
                "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = ANY(%s) AND granted",
                ([k & 0xFFFFFFFF for k in keys],),
            ).fetchall()
        return {pid for (pid,) in rows}

    try:
        wait_until(lambda: len(positions(store)) == len(VIEWS) and min(positions(store)) > 0, 60)
        assert len(holders()) == 1  # the first worker holds every view's lock
        second = start_worker(settings)
        time.sleep(1.0)
        assert len(holders()) == 1 and second.poll() is None  # the second stands by
        kill(first)
        assert min(positions(store)) < latest, "the first worker finished before it could be killed"
        wait_until(lambda: positions(store) == [latest] * len(VIEWS), 120, poll=0.05)  # the standby took over
        assert len(holders()) == 1
    finally:
        stop(first)
        stop(second)
    projected = dump(store)
    Projector(store).rebuild()
    assert dump(store) == projected
    store.close()


def test_a_view_never_passes_a_view_it_reads_that_another_worker_projects(settings: Settings) -> None:
    """The read model's state folds the pupils view's facts. A worker holding the model's lock but not yet the pupils'
    (a standby, in the moment between taking one lock and the next) waits at the pupils view's position: projected past
    it, the model kept rows missing those facts for good (the standby-takeover test once saw the reintegration rate's
    numerator 0 where a rebuild had 9). A projector given the views in another order writes the pupils' facts first."""
    ledger = admin.initialise(settings).ledger
    load_area(ledger, simulate_area(pupils=300, seed=8, la_code="801", today=date(2026, 10, 5)))
    store, latest = ledger.store, ledger.store.max_sequence()
    by_name = {v.name: v for v in VIEWS}
    state, pupils, events = by_name["read_model_state"], by_name["pupils"], by_name["read_model_events"]

    def at() -> dict[str, int]:
        return {str(v): int(p) for v, p in store.query("SELECT view, position FROM pv_positions")}

    Projector(store, batch_size=latest // 3).step()
    third = at()["pupils"]
    assert 0 < third < latest and set(at().values()) == {third}
    alone = Projector(store, (state,))
    assert alone.catch_up() == 0 and at()["read_model_state"] == third  # it waits: the pupils view is projected elsewhere
    Projector(store, (pupils,), batch_size=100).step()
    assert third < at()["pupils"] < latest
    assert alone.catch_up() == 0 and at()["read_model_state"] == third  # and the events view (the units' LAs) is not
    Projector(store, (events,), batch_size=200).step()
    assert at()["pupils"] < at()["read_model_events"] < latest
    assert alone.catch_up() > 0 and at()["read_model_state"] == at()["pupils"]  # as far as the pupils view, no further
    backwards = tuple(reversed(VIEWS))
    Projector(store, backwards).catch_up()
    assert set(at().values()) == {latest}
    projected = dump(store)
    Projector(store).rebuild()
    assert dump(store) == projected
    store.close()


def test_views_that_read_each_other_are_refused() -> None:
    a = View("a", 1, (), lambda ev: (), reads=("b",))
    b = View("b", 1, (), lambda ev: (), reads=("a",))
    with pytest.raises(ValueError, match="views that read each other: a, b"):
        in_dependency_order((a, b))
    assert [v.name for v in in_dependency_order((a, View("b", 1, (), lambda ev: ())))] == ["b", "a"]


def test_a_view_that_reads_a_view_that_does_not_exist_is_refused(settings: Settings) -> None:
    """It would find no position for it, take 0, and wait there for ever (a worker paused, not failed)."""
    store = admin.initialise(settings).ledger.store
    reader = View("reader", 1, (), lambda ev: (), reads=("pupils", "nonesuch"))
    with pytest.raises(ValueError, match="a view reads a view that does not exist: reader reads nonesuch"):
        Projector(store, (reader,))
    store.close()


def test_project_commands(tmp_path: object) -> None:
    settings = Settings(home=tmp_path / "home")  # type: ignore[operator]
    ledger = admin.initialise(settings).ledger
    load_area(ledger, simulate_area(pupils=100, seed=3, la_code="801", today=date(2026, 10, 5)))
    latest, events = ledger.store.max_sequence(), ledger.store.count_events()
    ledger.store.close()
    held = run_cli(settings, "project", "rebuild", "read_model_state")  # it reads the pupils view, not projected yet
    assert "rebuilt read_model_state from 0 events" in held.stdout
    assert f"read_model_state stopped at sequence 0 of {latest}: it reads pupils, read_model_events, which are only that far" in held.stderr
    rebuilt = run_cli(settings, "project", "rebuild", "pupils")
    assert f"rebuilt pupils from {events} events" in rebuilt.stdout and "rebuilding" in rebuilt.stderr
    run_cli(settings, "project", "rebuild", "read_model_events")
    caught_up = run_cli(settings, "project", "rebuild", "read_model_state")
    assert f"rebuilt read_model_state from {events} events" in caught_up.stdout and "stopped at" not in caught_up.stderr
    status = run_cli(settings, "project", "status").stdout
    assert f"pupils: {latest} (latest {latest})" in status and f"orgs: 0 (latest {latest})" in status
    unknown = run_cli(settings, "project", "rebuild", "nonesuch", check=False)
    assert unknown.returncode == 2 and "unknown view nonesuch" in unknown.stderr
    for size in ("0", "-1", "-9223372036854775808"):  # 0 read nothing for ever; SQLite takes a negative LIMIT as none
        for command in (["rebuild", "pupils"], ["run"]):  # run would follow the log until stopped: refused first
            refused = run_cli(settings, "project", *command, "--batch", size, check=False)
            assert refused.returncode == 2 and "--batch" in refused.stderr, (command, size, refused.stderr)
    assert run_cli(settings, "project", "status").stdout == status  # nothing was reset or moved
    for command in ("run", "rebuild", "status"):
        assert "Example:" in run_cli(settings, "project", command, "--help").stdout


def test_served_views_read_their_writes(settings: Settings) -> None:
    """A real ``pupil-ledger serve`` runs the projector in-process: a read with a receipt's sequence sees it."""
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .processes import Server

    ledger = admin.initialise(settings).ledger
    school, key = "urn:100005", Ed25519PrivateKey.generate()
    admin.add_org(ledger, "la:801", "la", "LA")
    admin.add_org(ledger, school, "school", "School", "la:801")
    admin.add_key(ledger, school, key.public_key())
    token = ledger.issue_token(school, "school")
    today = ledger.clock().date()
    ledger.store.close()
    server = Server(settings).start()
    try:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
            for n in range(1, 4):
                body = own_events.event_body(
                    "pupil.registered",
                    school,
                    {"upn": upn(n)},
                    {"school": school, "enrolment_status": "C", "year_group": "7", "sen_status": "N", "looked_after": False},
                    today,
                    ledger.clock(),
                )
                receipt = client.post("/events", json=own_events.signed(body, key)).json()
            for _ in range(20):  # a client honours 503 + Retry-After (the machine may be busy)
                got = client.get("/views/metrics", params={"level": "school", "org": school, "min_sequence": receipt["sequence"]})
                if got.status_code != 503:
                    break
                time.sleep(float(got.headers["retry-after"]))
            assert got.status_code == 200, got.text
            assert got.json()["metrics"]["pupils_on_roll"]["value"] == 3
            assert client.get("/views/metrics", params={"level": "school", "org": "urn:100006"}).status_code == 403
    finally:
        server.stop()
