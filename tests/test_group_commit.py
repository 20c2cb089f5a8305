"""Group commit and the batch path's subject cache, on SQLite and PostgreSQL.

Many concurrent single submissions share one transaction, yet each is judged alone, answered only after
the commit, and stored exactly once; cached subject state never decides a rejection or a stale write.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from ledger.core.errors import Category, LedgerError
from ledger.group_commit import GroupCommitter, _Request
from ledger.service import Receipt
from ledger.tools import admin

from .conftest import SCHOOL_A, SCHOOL_B, World, upn

REGISTRATION = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}


def registration(world: World, n: int, school: str = SCHOOL_A) -> dict:
    return world.sign(world.event("pupil.registered", school, {**REGISTRATION, "school": school}, upn=upn(n)))


def outcome(future: Future[Receipt]) -> Receipt | LedgerError:
    try:
        return future.result(timeout=60)
    except LedgerError as exc:
        return exc


def test_concurrent_submissions_share_transactions_and_each_gets_its_receipt(world: World) -> None:
    committer = GroupCommitter(world.ledger)
    envelopes = [registration(world, n) for n in range(1, 201)]
    futures: list[Future[Receipt]] = []
    lock = threading.Lock()

    def client(share: list[dict]) -> None:
        for env in share:
            future = committer.enqueue(env)
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=client, args=(envelopes[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    receipts = [f.result(timeout=60) for f in futures]
    committer.stop()
    assert all(r.created for r in receipts)
    assert len({r.sequence for r in receipts}) == 200 and len({r.event_id for r in receipts}) == 200
    assert committer.groups < 200 and committer.largest_group > 1, "concurrent submissions were not grouped"
    assert world.ledger.store.count_events() == world.ledger.store.count_stored_events()
    assert set(world.ledger.store.index_rows([r.event_id for r in receipts])) == {r.event_id for r in receipts}


def test_a_bad_envelope_fails_alone_and_later_ones_see_earlier_ones(world: World) -> None:
    committer = GroupCommitter(world.ledger)
    forged = registration(world, 2)
    forged["signatures"][0]["sig"] = registration(world, 3)["signatures"][0]["sig"]
    leave = world.sign(
        world.event("pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=upn(1))
    )
    stranger = world.sign(
        world.event("pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=upn(9))
    )
    before = world.ledger.store.count_events()
    futures = [
        committer._queue.put(r) or r.answer
        for r in [  # all five queued before the committer starts: one group
            _request(registration(world, 1)),
            _request(forged),
            _request(leave),
            _request(stranger),
            _request({"payload": 1}),
        ]
    ]
    committer._start()
    outcomes = [outcome(f) for f in futures]
    committer.stop()
    assert committer.groups == 1 and committer.largest_group == 5
    admitted, bad_signature, left, unknown, malformed = outcomes
    assert isinstance(admitted, Receipt) and isinstance(left, Receipt) and left.sequence > admitted.sequence
    assert isinstance(bad_signature, LedgerError) and bad_signature.problems[0].code == "signature_invalid"
    assert bad_signature.category is Category.FORBIDDEN and bad_signature.problems[0].path == "$.signatures"
    assert isinstance(unknown, LedgerError) and unknown.problems[0].code == "unknown_pupil"
    assert isinstance(malformed, LedgerError) and malformed.category is Category.MALFORMED
    assert world.ledger.store.count_events() == before + 2


def _request(raw: dict) -> _Request:
    return _Request(raw, None)


def test_one_event_id_twice_in_a_group_is_a_replay_or_a_conflict(world: World) -> None:
    committer = GroupCommitter(world.ledger)
    first = registration(world, 1)
    body = world.event("pupil.registered", SCHOOL_A, REGISTRATION, upn=upn(2))
    other_bytes = world.sign({**body, "data": {**REGISTRATION, "year_group": "10"}})
    requests = [_request(first), _request(first), _request(world.sign(body)), _request(other_bytes)]
    for r in requests:  # all queued before the committer starts: one group
        committer._queue.put(r)
    committer._start()
    created, replay, kept, conflict = (outcome(r.answer) for r in requests)
    committer.stop()
    assert isinstance(created, Receipt) and isinstance(replay, Receipt) and isinstance(kept, Receipt)
    assert created.created and not replay.created and replay.sequence == created.sequence
    assert isinstance(conflict, LedgerError) and conflict.category is Category.CONFLICT
    assert len(world.ledger.pupil_history(upn(1))["events"]) == 1 and len(world.ledger.pupil_history(upn(2))["events"]) == 1


def test_a_failed_commit_answers_every_caller_with_the_failure_and_stores_nothing(world: World) -> None:
    store = world.ledger.store
    if store.is_postgres:
        store.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$")
        store.execute("CREATE TRIGGER refuse BEFORE INSERT ON ledger_index FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        store.execute("CREATE TRIGGER refuse BEFORE INSERT ON ledger_index BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    before = (store.count_events(), store.count_stored_events())
    committer = GroupCommitter(world.ledger)
    futures = [committer.enqueue(registration(world, n)) for n in range(1, 6)]
    for f in futures:
        with pytest.raises(Exception, match="disk on fire"):
            f.result(timeout=120)
    committer.stop()
    assert (store.count_events(), store.count_stored_events()) == before


def test_cached_state_never_decides_a_rejection_or_a_stale_write(world: World) -> None:
    """A second ledger on the same database stands for another API process."""
    world.admit(upn(1))
    world.admit(upn(2))
    other = admin.open_ledger(world.ledger.settings)
    try:
        left = world.event(
            "pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=upn(1)
        )
        other.submit(world.sign(left))
        # this ledger's cache still has pupil 1 on roll at school A: a second main registration would be refused
        assert world.ledger.submit(registration(world, 1, SCHOOL_B)).created
        other.submit(
            world.sign(
                world.event(
                    "pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=upn(2)
                )
            )
        )
        # and here the cache would accept removing a pupil already removed: the commit conflicts, the retry refuses
        removal = world.sign(
            world.event(
                "pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "registered_elsewhere", "destination": "unknown"}, upn=upn(2)
            )
        )
        with pytest.raises(LedgerError) as exc:
            world.ledger.submit(removal)
        assert exc.value.problems[0].code == "not_on_roll"
        assert [e["type"] for e in world.ledger.pupil_history(upn(2))["events"]] == ["pupil.registered", "pupil.deregistered"]
    finally:
        other.store.close()
