"""Key revocation reaches every process at once (issue 18, item 1; docs/access.md, "Signing keys").

Each process judges submissions on organisation state it caches, refreshed only by its own writes; a revocation
committed by another process (the CLI, another API worker) is enforced by the write itself, which checks under
the store's write lock that no key it was judged under was revoked by the events' ``received_at``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.config import Settings
from ledger.core import envelope
from ledger.core.errors import Category, LedgerError
from ledger.group_commit import GroupCommitter
from ledger.service import Ledger, Receipt, utcnow
from ledger.tools import admin

from .conftest import LA, SCHOOL_A, World, upn
from .processes import Server, run_cli

REGISTRATION = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}


@pytest.fixture
def other(world: World) -> Iterator[Ledger]:
    """A second ledger on the same database, as another process has it: its own pool and caches."""
    ledger = admin.open_ledger(world.ledger.settings)
    ledger.clock = world.clock
    yield ledger
    ledger.store.close()


def registration(world: World, n: int) -> dict[str, Any]:
    return world.sign(world.event("pupil.registered", SCHOOL_A, REGISTRATION, upn=upn(n)))


def refused(outcome: Receipt | Exception, code: str) -> None:
    assert isinstance(outcome, LedgerError), outcome
    assert [p.code for p in outcome.problems] == [code] and outcome.category is Category.FORBIDDEN


def test_a_revocation_by_another_process_is_obeyed_by_the_next_submission(world: World, other: Ledger) -> None:
    kid = envelope.key_id(world.keys[SCHOOL_A].public_key())
    world.ledger.submit(registration(world, 1))  # this ledger now holds the school's state, key valid
    world.ledger.submit_batch([registration(world, n) for n in range(2, 40)])  # and has sent its key to the workers
    world.clock.advance(seconds=1)
    admin.revoke_key(other, SCHOOL_A, kid, "compromised")
    world.clock.advance(seconds=1)
    before = world.ledger.store.count_events()
    with pytest.raises(LedgerError) as single:
        world.ledger.submit(registration(world, 100))
    refused(single.value, "key_revoked")
    assert "compromised" not in single.value.problems[0].message and kid in single.value.problems[0].message
    with pytest.raises(LedgerError) as batch:
        world.ledger.submit_batch([registration(world, n) for n in range(101, 140)])
    assert {p.code for p in batch.value.problems} == {"key_revoked"}
    refused(world.ledger.submit_each([(registration(world, 200), None)])[0], "key_revoked")
    assert world.ledger.store.count_events() == before


def test_a_revocation_at_a_stated_later_time_lets_events_received_before_it_through(world: World, other: Ledger) -> None:
    kid = envelope.key_id(world.keys[SCHOOL_A].public_key())
    world.ledger.submit(registration(world, 1))
    later = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
    admin.revoke_key(other, SCHOOL_A, kid, "superseded", later)
    assert world.ledger.submit(registration(world, 2)).created  # 09:00, before the stated 10:00
    world.clock.now = later
    refused(world.ledger.submit_each([(registration(world, 3), None)])[0], "key_revoked")


def test_no_event_received_after_a_concurrent_revocation_committed_is_accepted(world: World, other: Ledger) -> None:
    """Clients keep submitting through one ledger's group commit while another revokes the key; every event
    accepted was received before the revocation committed, and the submissions after it are refused."""
    world.ledger.clock = other.clock = utcnow  # real time: the order of receipt and revocation is the point
    kid = envelope.key_id(world.keys[SCHOOL_A].public_key())
    committer = GroupCommitter(world.ledger)
    outcomes: list[tuple[datetime, Receipt | Exception]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(first: int) -> None:
        n = first
        while not stop.is_set():
            sent = utcnow()
            future = committer.enqueue(registration(world, n))
            try:
                outcome: Receipt | Exception = future.result(timeout=60)
            except Exception as exc:  # noqa: BLE001 - every outcome is checked below
                outcome = exc
            with lock:
                outcomes.append((sent, outcome))
            n += 1

    threads = [threading.Thread(target=client, args=(1 + 10_000 * i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        admin.revoke_key(other, SCHOOL_A, kid, "compromised")
        committed = utcnow()  # the revocation committed before this moment
        time.sleep(0.7)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        committer.stop()
    accepted = [o for _, o in outcomes if isinstance(o, Receipt)]
    assert accepted and all(datetime.fromisoformat(r.received_at) < committed for r in accepted)
    after = [o for sent, o in outcomes if sent > committed]
    assert after, "no submission was made after the revocation"
    for outcome in after:
        refused(outcome, "key_revoked")


# -- real processes ----------------------------------------------------------------------------


class School:
    """A school registered in a fresh ledger home, with its key and bearer token, posting over HTTP."""

    def __init__(self, settings: Settings):
        run_cli(settings, "init")
        ledger = admin.open_ledger(settings)
        try:
            admin.add_org(ledger, LA, "la", "Test LA")
            admin.add_org(ledger, SCHOOL_A, "school", "Test school", LA)
            self.key = Ed25519PrivateKey.generate()
            admin.add_key(ledger, SCHOOL_A, self.key.public_key())
            self.token = ledger.issue_token(SCHOOL_A, "school")
        finally:
            ledger.store.close()
        self.kid = envelope.key_id(self.key.public_key())
        self.pupils = itertools.count(1)  # its next() is one step under the GIL: the fixture's threads never share a pupil

    def envelope(self, event_type: str, data: dict[str, Any], subject: dict[str, str] | None = None) -> dict[str, Any]:
        now = utcnow()
        if subject is None:
            subject = {"upn": upn(next(self.pupils))}
        return own_events.signed(own_events.event_body(event_type, SCHOOL_A, subject, data, now.date(), now), self.key)

    def post(self, url: str, env: dict[str, Any]) -> httpx.Response:
        """One request on a connection of its own, so the kernel may hand it to any worker."""
        with httpx.Client(base_url=url, timeout=60, headers={"authorization": f"Bearer {self.token}"}) as client:
            return client.post("/events", json=env)

    def register(self, url: str) -> httpx.Response:
        return self.post(url, self.envelope("pupil.registered", REGISTRATION))


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[School, Server]]:
    """A school and a running ``serve`` (two API processes on PostgreSQL), every process holding the school's
    state: each has accepted some of its events."""
    school = School(settings)
    server = Server(settings, args=("--workers", "2") if settings.database_url else ()).start()
    try:
        with ThreadPoolExecutor(8) as pool:  # new connections, spread over the workers by the kernel
            assert {r.status_code for r in pool.map(lambda _: school.register(server.url), range(24))} == {201}
        yield school, server
    finally:
        server.stop()


def assert_all_refused(school: School, server: Server, count: int = 30) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: school.register(server.url), range(count)))
    assert [(r.status_code, r.json()["errors"][0]["code"]) for r in answers] == [(403, "key_revoked")] * count


def test_keys_revoke_on_the_command_line_is_obeyed_by_a_running_server_at_once(served: tuple[School, Server]) -> None:
    school, server = served
    run_cli(server.settings, "keys", "revoke", SCHOOL_A, school.kid, "--reason", "compromised")
    assert_all_refused(school, server)


def test_a_revocation_posted_over_http_is_obeyed_by_every_api_process_at_once(served: tuple[School, Server]) -> None:
    school, server = served
    revocation = school.envelope("org.key_revoked", {"key_id": school.kid, "reason": "compromised"}, {"org": SCHOOL_A})
    assert school.post(server.url, revocation).status_code == 201
    assert_all_refused(school, server)
