"""When the database goes away or the disk fills, the API answers at once and honestly (issue 18, item 9):
503 ``database_unavailable`` (nothing stored) or 504 ``commit_unconfirmed`` (resubmit: idempotent) with Retry-After
within seconds, ``/healthz`` 503 within 2 s, 507 for a full disk; a 2xx still means committed, and no request
answered 503 was stored. PostgreSQL is reached through a TCP proxy the tests black-hole and cut; the disk is a
real, small tmpfs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ledger import own_events
from ledger.config import Settings
from ledger.service import Ledger
from ledger.storage import database
from ledger.tools import admin

from .conftest import PG_ADMIN_URL, SCHOOL_A, upn
from .processes import Server
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

ANSWER_BOUND_SECONDS = 8.0  # every request, whatever the database does
HEALTH_BOUND_SECONDS = 2.0


def _url_via(url: str, port: int) -> str:
    base, name = url.rsplit("/", 1)
    return f"{base.rsplit(':', 1)[0]}:{port}/{name}"


@dataclass
class School:
    ledger: Ledger
    key: Ed25519PrivateKey
    token: str

    def envelope(self, n: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        body = own_events.event_body(
            "pupil.registered",
            SCHOOL_A,
            {"upn": upn(n)},
            {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "7", "sen_status": "N", "looked_after": False},
            now.date(),
            now,
        )
        return own_events.signed(body, self.key)


def _school(settings: Settings) -> School:
    ledger = admin.initialise(settings).ledger
    admin.add_org(ledger, SCHOOL_A, "school", "School", "la:801")
    key = Ed25519PrivateKey.generate()
    admin.add_key(ledger, SCHOOL_A, key.public_key())
    return School(ledger, key, ledger.issue_token(SCHOOL_A, "school"))


def event_id_of(env: dict[str, Any]) -> str:
    return str(json.loads(__import__("base64").b64decode(env["payload"]))["event_id"])


@dataclass
class Answer:
    started: float
    seconds: float
    status: int
    code: str
    retry_after: str | None
    event_id: str = ""


def _answer(started: float, response: httpx.Response, event_id: str = "") -> Answer:
    code = response.json()["errors"][0]["code"] if response.status_code >= 300 else ""
    return Answer(started, time.monotonic() - started, response.status_code, code, response.headers.get("retry-after"), event_id)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    tcp = TcpProxy(("127.0.0.1", int(PG_ADMIN_URL.rsplit(":", 1)[1].split("/")[0])))
    yield tcp
    tcp.close()


def test_database_away_is_told_within_seconds_and_no_503_was_stored(pg_url: str, tmp_path: Path, proxy: TcpProxy) -> None:
    school = _school(Settings(home=tmp_path / "home", database_url=pg_url))
    school.ledger.store.close()
    server = Server(Settings(home=tmp_path / "home", database_url=_url_via(pg_url, proxy.port))).start()
    writes: list[Answer] = []
    health: list[Answer] = []
    stop = threading.Event()
    numbers = iter(range(1, 1_000_000))
    lock = threading.Lock()

    def writer() -> None:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {school.token}"}, timeout=30) as http:
            while not stop.is_set():
                with lock:
                    env = school.envelope(next(numbers))
                started = time.monotonic()
                writes.append(_answer(started, http.post("/events", json=env), event_id_of(env)))
                stop.wait(0.02)

    def prober() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                started = time.monotonic()
                health.append(_answer(started, http.get("/healthz")))
                stop.wait(0.2)

    threads = [threading.Thread(target=writer) for _ in range(4)] + [threading.Thread(target=prober)]
    for t in threads:
        t.start()
    outages: list[tuple[str, float, float]] = []
    try:
        for mode, seconds in (("blackhole", 7.0), ("cut", 4.0)):
            time.sleep(1.5)
            began = time.monotonic()
            getattr(proxy, mode)()
            time.sleep(seconds)
            proxy.restore()
            outages.append((mode, began, time.monotonic()))
            deadline = time.monotonic() + 15
            while not any(w.status == 201 and w.started > outages[-1][2] for w in list(writes)) and time.monotonic() < deadline:
                time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(40)
        server.stop()

    assert max(w.seconds for w in writes) < ANSWER_BOUND_SECONDS, sorted(w.seconds for w in writes)[-5:]
    assert {w.status for w in writes} <= {201, 503, 504}, {(w.status, w.code) for w in writes}
    for w in writes:
        if w.status != 201:
            assert (w.status, w.code) in ((503, "database_unavailable"), (504, "commit_unconfirmed")) and w.retry_after, w
    assert max(h.seconds for h in health) < HEALTH_BOUND_SECONDS, sorted(h.seconds for h in health)[-5:]
    for mode, began, ended in outages:
        during = [w for w in writes if began < w.started < ended]
        assert during and {w.status for w in during} <= {503, 504} | ({201} if mode == "blackhole" else set()), (mode, during[:3])
        assert sum(w.status == 503 for w in during) >= 5, mode  # the outage was met, and answered, many times
        told = [h for h in health if began + HEALTH_BOUND_SECONDS < h.started < ended]
        assert told and all(h.status == 503 for h in told), (mode, told)  # /healthz says so within 2 s of the outage
        assert any(w.status == 201 and w.started > ended for w in writes), f"no write succeeded after the {mode} ended"

    school.ledger = admin.open_ledger(Settings(home=tmp_path / "home", database_url=pg_url))
    stored = school.ledger.store.index_rows([w.event_id for w in writes])
    school.ledger.store.close()
    acknowledged = {w.event_id for w in writes if w.status == 201}
    refused = {w.event_id for w in writes if w.status == 503}
    assert acknowledged <= set(stored), "an acknowledged event is missing"
    assert not refused & set(stored), f"{len(refused & set(stored))} events answered 503 were stored"


def _blackhole_once_before_commit(ledger: Ledger, proxy: TcpProxy) -> None:
    """Black-hole the link when the next write has drawn its sequence numbers, just before it sends COMMIT (the
    store tells ``on_ids`` then: ``ledger.store.PostgresLedgerRecorder``)."""
    append = ledger.store.append

    def append_then_lose_the_link(events: Any, index_rows: Any, key_rows: Any, on_ids: Any = None, **beside: Any) -> Any:
        def before_commit(ids: Any) -> None:
            proxy.blackhole()
            if on_ids is not None:
                on_ids(ids)

        ledger.store.append = append  # type: ignore[method-assign]  # once
        return append(events, index_rows, key_rows, on_ids=before_commit, **beside)

    ledger.store.append = append_then_lose_the_link  # type: ignore[method-assign]


def test_a_commit_whose_answer_is_lost_is_504_and_may_be_stored(pg_url: str, tmp_path: Path, proxy: TcpProxy) -> None:
    """The COMMIT goes out, the link dies before its answer: the ledger cannot know whether it committed, so it
    says so (504), never 503. Here the commit did happen (it reached the server when the link came back), and
    resubmitting the same envelope returns its receipt (200)."""
    _school(Settings(home=tmp_path / "home", database_url=pg_url)).ledger.store.close()
    settings = Settings(home=tmp_path / "home", database_url=_url_via(pg_url, proxy.port))
    ledger = admin.open_ledger(settings)
    school = School(ledger, Ed25519PrivateKey.generate(), "")
    admin.add_key(ledger, SCHOOL_A, school.key.public_key())
    client = TestClient(create_app(ledger), raise_server_exceptions=False)
    client.headers["authorization"] = f"Bearer {ledger.issue_token(SCHOOL_A, 'school')}"
    with client:
        env = school.envelope(1)
        _blackhole_once_before_commit(ledger, proxy)
        started = time.monotonic()
        lost = client.post("/events", json=env)
        assert time.monotonic() - started < ANSWER_BOUND_SECONDS
        assert (lost.status_code, lost.json()["errors"][0]["code"]) == (504, "commit_unconfirmed"), lost.text
        assert lost.headers["retry-after"]
        other = school.envelope(2)
        away = client.post("/events", json=other)  # meanwhile: refused at once, before anything is sent
        assert (away.status_code, away.json()["errors"][0]["code"]) == (503, "database_unavailable")
        assert client.get("/healthz").status_code == 503
        proxy.restore()
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        again = client.post("/events", json=env)
        assert (again.status_code, again.json()["status"]) == (200, "duplicate"), again.text
        assert client.post("/events", json=other).json()["status"] == "created"  # the one refused was not stored
    ledger.store.close()


def test_a_group_whose_commit_is_in_doubt_is_504_for_every_request_never_503(pg_url: str, tmp_path: Path, proxy: TcpProxy) -> None:
    """Group commit: several requests share the transaction whose COMMIT answer is lost. Each may be stored, so each
    is told 504; the group is not split and written again in halves (the halves met the database away and were told
    503, for events the doubtful commit had stored: the full suite saw 3 such events under load)."""
    _school(Settings(home=tmp_path / "home", database_url=pg_url)).ledger.store.close()
    ledger = admin.open_ledger(Settings(home=tmp_path / "home", database_url=_url_via(pg_url, proxy.port)))
    school = School(ledger, Ed25519PrivateKey.generate(), "")
    admin.add_key(ledger, SCHOOL_A, school.key.public_key())
    envelopes = [school.envelope(n) for n in (1, 2, 3)]
    _blackhole_once_before_commit(ledger, proxy)
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        ledger.submit_each([(env, None) for env in envelopes])
    assert time.monotonic() - started < ANSWER_BOUND_SECONDS
    assert database.failure_of(raised.value) is database.UNCONFIRMED, repr(raised.value)
    proxy.restore()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            stored = ledger.store.index_rows([event_id_of(env) for env in envelopes])
            break
        except Exception:  # noqa: BLE001 - the database is still away for this process
            time.sleep(0.1)
    assert set(stored) == {event_id_of(env) for env in envelopes}  # the commit did happen: 504 was the truth, 503 would not be
    ledger.store.close()


def test_a_link_cut_before_commit_is_503_and_nothing_is_stored(pg_url: str, tmp_path: Path, proxy: TcpProxy) -> None:
    _school(Settings(home=tmp_path / "home", database_url=pg_url)).ledger.store.close()
    ledger = admin.open_ledger(Settings(home=tmp_path / "home", database_url=_url_via(pg_url, proxy.port)))
    key = Ed25519PrivateKey.generate()
    admin.add_key(ledger, SCHOOL_A, key.public_key())
    school = School(ledger, key, ledger.issue_token(SCHOOL_A, "school"))
    append = ledger.store.append

    def append_then_cut(events: Any, index_rows: Any, key_rows: Any, on_ids: Any = None, **beside: Any) -> Any:
        ledger.store.append = append  # type: ignore[method-assign]
        return append(events, index_rows, key_rows, on_ids=lambda ids: proxy.cut(), **beside)

    ledger.store.append = append_then_cut  # type: ignore[method-assign]
    with TestClient(create_app(ledger), raise_server_exceptions=False, headers={"authorization": f"Bearer {school.token}"}) as client:
        env = school.envelope(1)
        refused = client.post("/events", json=env)
        assert (refused.status_code, refused.json()["errors"][0]["code"]) == (503, "database_unavailable"), refused.text
        proxy.restore()
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.post("/events", json=env).status_code == 201  # it was not stored: now it is created
    ledger.store.close()


# -- a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(where: Path, megabytes: int, owner: str | None = None) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted at ``where`` (skips the test where mounting is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small filesystem here ({done.stderr.strip() or done.returncode}): the disk-full test needs root and mount"
        )
    try:
        if owner:
            shutil.chown(where, owner, owner)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(filesystem: Path, leave: int = 0) -> Path:
    """Fill ``filesystem`` but ``leave`` bytes."""
    stats = os.statvfs(filesystem)
    filler = filesystem / "filler"
    with filler.open("wb") as out:
        remaining = stats.f_bavail * stats.f_frsize - leave
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            try:
                out.write(b"\0" * chunk)
                out.flush()
            except OSError:
                break
            remaining -= chunk
    return filler


def _until_full(client: TestClient, school: School, start: int) -> tuple[list[tuple[int, str]], list[str]]:
    """Submit events until one is refused for the full disk (at most 400): every status, and the refused event ids."""
    statuses, refused = [], []
    for n in range(start, start + 400):
        env = school.envelope(n)
        response = client.post("/events", json=env)
        statuses.append((response.status_code, response.json()["errors"][0]["code"] if response.status_code >= 300 else ""))
        if response.status_code == 507:
            refused.append(event_id_of(env))
            if len(refused) == 3:
                break
    return statuses, refused


def _check_full_disk(client: TestClient, school: School, filler: Path) -> None:
    statuses, refused = _until_full(client, school, 1)
    assert refused, f"the disk never filled: {statuses[-5:]}"
    assert {s for s in statuses} <= {(201, ""), (507, "insufficient_storage")}, set(statuses)
    assert not school.ledger.store.index_rows(refused), "an event refused for the full disk was stored"
    assert school.ledger.store.count_stored_events() == school.ledger.store.count_events()
    filler.unlink()
    deadline = time.monotonic() + 10
    while (response := client.post("/events", json=school.envelope(10_000))).status_code != 201 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 201, response.text


def test_a_full_disk_is_507_and_stores_nothing_sqlite(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", 24) as disk:
        school = _school(Settings(home=disk / "home"))
        with TestClient(
            create_app(school.ledger), raise_server_exceptions=False, headers={"authorization": f"Bearer {school.token}"}
        ) as client:
            filler = fill(disk, leave=64 * 1024)
            _check_full_disk(client, school, filler)
        school.ledger.store.close()


def test_a_full_disk_is_507_and_stores_nothing_postgres(pg_url: str, tmp_path: Path) -> None:
    """The ledger's tables on a tablespace in a small tmpfs (PostgreSQL runs on this machine)."""
    space = f"pl_small_{uuid.uuid4().hex[:8]}"
    mount_point = Path(tempfile.mkdtemp(prefix="pl-small-"))  # the server (user postgres) cannot enter pytest's 0700 folders
    mount_point.chmod(0o755)
    with small_filesystem(mount_point, 24, owner="postgres") as disk:
        (disk / "pg").mkdir()
        shutil.chown(disk / "pg", "postgres", "postgres")
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE {space} LOCATION '{disk / 'pg'}'")
        try:
            school = _school(Settings(home=tmp_path / "home", database_url=pg_url))
            with psycopg.connect(pg_url, autocommit=True) as conn:
                for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
                    conn.execute(f'ALTER TABLE "{table}" SET TABLESPACE {space}')
                for (index,) in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").fetchall():
                    conn.execute(f'ALTER INDEX "{index}" SET TABLESPACE {space}')
            with TestClient(
                create_app(school.ledger), raise_server_exceptions=False, headers={"authorization": f"Bearer {school.token}"}
            ) as client:
                filler = fill(disk, leave=0)
                _check_full_disk(client, school, filler)
            school.ledger.store.close()
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
                conn.execute(f"DROP TABLESPACE IF EXISTS {space}")
    mount_point.rmdir()


def test_reads_of_the_figures_answer_503_at_once_while_the_database_is_away(pg_url: str, tmp_path: Path, proxy: TcpProxy) -> None:
    """accountabilityMetrics asks the database from two threads (the year-before state beside the asked one: of every
    unit for England, of the scope's items for an LA or a school) and a series from more (its states, two at a time):
    with the database away, cut or black-holed, each still answers 503 ``database_unavailable`` within seconds, and 200
    again once the database is back; an LA's dashboard page answers 503 alike."""
    from ledger.service import ADMIN_ORG

    _school(Settings(home=tmp_path / "home", database_url=pg_url)).ledger.store.close()
    ledger = admin.open_ledger(Settings(home=tmp_path / "home", database_url=_url_via(pg_url, proxy.port)))
    token = ledger.issue_token(ADMIN_ORG, "admin")
    days = iter(f"2026-{month:02d}-{day:02d}" for month in range(1, 13) for day in range(1, 29))  # a new moment each time: nothing cached

    asked = (
        ("/views/metrics", {}),
        ("/views/metrics", {"level": "la", "org": "la:801"}),
        ("/views/metrics", {"level": "school", "org": SCHOOL_A}),
    )
    asked += (("/views/metrics/series", {}),)

    def ask(client: TestClient, path: str, scope: dict[str, str]) -> httpx.Response:
        day = next(days)
        return client.get(path, params={**scope, **({"as_of": day} if path == "/views/metrics" else {"from": "2025-06-01", "to": day})})

    with TestClient(create_app(ledger), raise_server_exceptions=False, headers={"authorization": f"Bearer {token}"}) as client:
        for path, scope in asked:
            assert ask(client, path, scope).status_code == 200
        assert client.get(f"/dashboards/la/la:801?as_of={next(days)}").status_code == 200
        for mode in ("cut", "blackhole"):
            getattr(proxy, mode)()
            for path, scope in asked:
                started = time.monotonic()
                got = ask(client, path, scope)
                assert time.monotonic() - started < ANSWER_BOUND_SECONDS, (mode, path, scope)
                assert (got.status_code, got.json()["errors"][0]["code"]) == (503, "database_unavailable"), (mode, path, scope, got.text)
                assert got.headers["retry-after"]
            # an LA's dashboard at a new moment: its state asks its statements ahead on other connections, as the API's do
            started = time.monotonic()
            page = client.get(f"/dashboards/la/la:801?as_of={next(days)}")
            assert time.monotonic() - started < ANSWER_BOUND_SECONDS and page.status_code == 503, (mode, page.status_code, page.text[:300])
            proxy.restore()
            deadline = time.monotonic() + 15
            while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            for path, scope in asked:
                assert ask(client, path, scope).status_code == 200, (mode, path, scope)
            assert client.get(f"/dashboards/la/la:801?as_of={next(days)}").status_code == 200, mode
    ledger.store.close()
