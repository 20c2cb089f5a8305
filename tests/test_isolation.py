"""One bad request never fails its neighbours in a group commit (issue 18, item 2).

The known bad shapes are refused up front with a 4xx of their own; anything else one item raises while it is
judged rejects that item alone; and a write that fails for one item's sake is split until only that item fails.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.config import Settings
from ledger.core import envelope, jcs
from ledger.core.errors import Category, LedgerError
from ledger.core.rules import Record
from ledger.group_commit import GroupCommitter, _Request
from ledger.service import Receipt, utcnow
from ledger.storage.store import Subject
from ledger.submission import checks as checks_module
from ledger.tools import admin

from .conftest import LA, SCHOOL_A, SCHOOL_B, World, upn
from .processes import Server, run_cli

REGISTRATION = {"enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}


def registration(world: World, n: int, school: str = SCHOOL_A) -> dict[str, Any]:
    return world.sign(world.event("pupil.registered", school, {**REGISTRATION, "school": school}, upn=upn(n)))


def one_group(world: World, envelopes: list[Any]) -> list[Receipt | Exception]:
    """Submit the envelopes as one group commit (all queued before the committer starts)."""
    committer = GroupCommitter(world.ledger)
    requests = [_Request(env, None) for env in envelopes]
    for r in requests:
        committer._queue.put(r)
    committer._start()
    outcomes: list[Receipt | Exception] = []
    for r in requests:
        try:
            outcomes.append(r.answer.result(timeout=120))
        except Exception as exc:  # noqa: BLE001 - each outcome is checked
            outcomes.append(exc)
    committer.stop()
    assert committer.groups == 1 and committer.largest_group == len(envelopes)
    return outcomes


def problem(outcome: Receipt | Exception) -> tuple[str, str, Category]:
    assert isinstance(outcome, LedgerError), outcome
    return outcome.problems[0].code, outcome.problems[0].path, outcome.category


def raw_payload_envelope(payload: bytes, kid: str = "0" * 16) -> dict[str, Any]:
    return {
        "payloadType": envelope.EVENT_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": kid, "sig": base64.b64encode(b"\0" * 64).decode()}],
    }


# -- the known bad shapes, each refused alone with its own 4xx ------------------------------------


def bad_shapes(world: World) -> dict[str, Any]:
    """The shapes of issue 18 item 2: a lone-surrogate keyid, a 5,000-digit integer and 5,000-deep nesting in the
    payload, and an org.key_added naming another organisation's key id."""
    lone = registration(world, 900)
    lone["signatures"][0]["keyid"] = "\ud800"
    stolen = admin.key_data(world.keys[SCHOOL_A].public_key())
    return {
        "lone_surrogate_keyid": lone,
        "huge_integer": raw_payload_envelope(b'{"n":' + b"9" * 5000 + b"}"),
        "deep_nesting": raw_payload_envelope(b'{"n":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "key_of_another_org": world.sign(world.event("org.key_added", SCHOOL_B, stolen, org=SCHOOL_B)),
    }


EXPECTED = {
    "lone_surrogate_keyid": ("keyid_shape", "$.signatures[0].keyid", Category.MALFORMED),
    "huge_integer": ("payload_not_json", "$.payload", Category.MALFORMED),
    "deep_nesting": ("payload_not_json", "$.payload", Category.MALFORMED),
    "key_of_another_org": ("key_id_taken", "$.payload.data.key_id", Category.CONFLICT),
}


def test_each_known_bad_shape_fails_alone_in_a_group(world: World) -> None:
    shapes = bad_shapes(world)
    good = [registration(world, n) for n in range(1, 6)]
    before = world.ledger.store.count_events()
    outcomes = one_group(world, [good[0], *shapes.values(), *good[1:]])
    assert [problem(o) for o in outcomes[1:5]] == list(EXPECTED.values())
    assert all(isinstance(o, Receipt) and o.created for o in [outcomes[0], *outcomes[5:]])
    assert world.ledger.store.count_events() == before + 5
    assert world.ledger.store.key_owner(envelope.key_id(world.keys[SCHOOL_A].public_key())) == SCHOOL_A


def test_a_key_id_is_one_organisations_even_within_one_batch(world: World) -> None:
    shared = Ed25519PrivateKey.generate()
    key = admin.key_data(shared.public_key())
    first = own_events.admin_event(world.ledger, "org.key_added", SCHOOL_A, key)
    second = own_events.admin_event(world.ledger, "org.key_added", SCHOOL_B, key)
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit_batch([first, second])
    assert [(p.code, p.path) for p in exc.value.problems] == [("key_id_taken", "$.envelopes[1].payload.data.key_id")]
    assert "urn:" not in exc.value.problems[0].message  # the owner is not named
    world.ledger.submit(first)
    with pytest.raises(LedgerError) as again:
        world.ledger.submit(second)
    assert again.value.category is Category.CONFLICT and again.value.problems[0].code == "key_id_taken"


# -- anything else an item raises, and a write that fails for one item's sake ---------------------


def test_an_item_that_raises_while_judged_is_rejected_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unforeseen failure in one item's rule check (injected: no real input is known to cause one now) rejects
    that item with a 422 and a reference; the group, a later event on the same pupil included, commits."""
    culprit = registration(world, 2)
    culprit_id = jcs.parse(base64.b64decode(culprit["payload"]))["event_id"]
    real_check = checks_module.check_pupil

    def check_pupil(records: Any, new: Record, *orgs: Any) -> Any:
        if new.event_id == culprit_id:
            raise ZeroDivisionError("a bug met by this envelope only")
        return real_check(records, new, *orgs)

    monkeypatch.setattr(checks_module, "check_pupil", check_pupil)
    leave = world.sign(
        world.event("pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=upn(1))
    )
    outcomes = one_group(world, [registration(world, 1), culprit, leave, registration(world, 3)])
    assert problem(outcomes[1])[::2] == ("unprocessable", Category.INVALID) and "reference" in outcomes[1].args[0]
    assert all(isinstance(o, Receipt) for o in (outcomes[0], outcomes[2], outcomes[3]))
    assert [e["type"] for e in world.ledger.pupil_history(upn(1))["events"]] == ["pupil.registered", "pupil.deregistered"]
    with pytest.raises(LedgerError):
        world.ledger.pupil_history(upn(2))


def test_an_item_that_fails_after_its_write_was_staged_leaves_nothing_behind(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the item's event was added to the working state (injected) must not let that event be
    written with the next item on the same pupil: the others are judged again without it."""
    culprit = world.sign(
        world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, upn=upn(1))
    )
    real_record = Subject.record

    def record(self: Subject, text: str, *args: Any, **kwargs: Any) -> None:
        real_record(self, text, *args, **kwargs)
        if text == envelope.decode(culprit).canonical_bytes.decode():
            raise RuntimeError("failed half way through staging")

    monkeypatch.setattr(Subject, "record", record)
    leave = world.sign(
        world.event("pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=upn(1))
    )
    outcomes = one_group(world, [registration(world, 1), culprit, leave])
    assert problem(outcomes[1])[0] == "unprocessable"
    assert [e["type"] for e in world.ledger.pupil_history(upn(1))["events"]] == ["pupil.registered", "pupil.deregistered"]


def refuse_event(world: World, event_id: str) -> None:
    """A database trigger that fails any write holding this event's index row (as a fault only it meets would)."""
    store = world.ledger.store
    if store.is_postgres:
        store.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.event_id = '{event_id}' THEN RAISE EXCEPTION 'this one row is refused'; END IF; RETURN NEW; END $$"
        )
        store.execute("CREATE TRIGGER refuse BEFORE INSERT ON ledger_index FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        store.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON ledger_index WHEN NEW.event_id = '{event_id}' "
            "BEGIN SELECT RAISE(ABORT, 'this one row is refused'); END"
        )


def test_a_write_that_fails_for_one_items_sake_fails_only_that_item(world: World) -> None:
    envelopes = [registration(world, n) for n in range(1, 12)]
    culprit = jcs.parse(base64.b64decode(envelopes[6]["payload"]))["event_id"]
    refuse_event(world, culprit)
    before = world.ledger.store.count_events()
    outcomes = one_group(world, envelopes)
    assert "this one row is refused" in str(outcomes[6]) and not isinstance(outcomes[6], Receipt)
    assert all(isinstance(o, Receipt) for i, o in enumerate(outcomes) if i != 6)
    assert world.ledger.store.count_events() == before + 10 == world.ledger.store.count_stored_events()
    assert not world.ledger.store.index_rows([culprit])


# -- over HTTP: a school sending bad requests at 50 a second beside another school's valid ones -------


class Schools:
    def __init__(self, settings: Settings):
        run_cli(settings, "init")
        ledger = admin.open_ledger(settings)
        try:
            admin.add_org(ledger, LA, "la", "Test LA")
            self.keys, self.tokens = {}, {}
            for school in (SCHOOL_A, SCHOOL_B):
                admin.add_org(ledger, school, "school", f"Test {school}", LA)
                self.keys[school] = Ed25519PrivateKey.generate()
                admin.add_key(ledger, school, self.keys[school].public_key())
                self.tokens[school] = ledger.issue_token(school, "school")
        finally:
            ledger.store.close()

    def signed(self, event_type: str, school: str, data: dict[str, Any], subject: dict[str, str]) -> dict[str, Any]:
        now = utcnow()
        return own_events.signed(own_events.event_body(event_type, school, subject, data, now.date(), now), self.keys[school])

    def bad(self, n: int) -> tuple[str, bytes]:
        """Bad request ``n`` of school B: one of the four shapes in turn (raw JSON text)."""
        shape = n % 4
        if shape == 0:
            env = self.signed("pupil.registered", SCHOOL_B, {**REGISTRATION, "school": SCHOOL_B}, {"upn": upn(50_000 + n)})
            env["signatures"][0]["keyid"] = "LONE"
            return "keyid_shape", jcs.canonicalize(env).replace(b'"LONE"', b'"\\ud800"')
        if shape == 3:
            stolen = admin.key_data(self.keys[SCHOOL_A].public_key())
            return "key_id_taken", jcs.canonicalize(self.signed("org.key_added", SCHOOL_B, stolen, {"org": SCHOOL_B}))
        inner = b"9" * 5000 if shape == 1 else b"[" * 5000 + b"]" * 5000
        payload = b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","n":' + inner + b"}"
        return "", jcs.canonicalize(raw_payload_envelope(payload, envelope.key_id(self.keys[SCHOOL_B].public_key())))


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[Schools, Server]]:
    schools = Schools(settings)
    running = Server(settings).start()
    try:
        yield schools, running
    finally:
        running.stop()


def test_bad_requests_at_50_a_second_never_fail_another_schools_valid_ones(server: tuple[Schools, Server]) -> None:
    schools, running = server
    stop = threading.Event()
    valid: list[int] = []
    bad: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def school_a(first: int) -> None:
        with httpx.Client(base_url=running.url, timeout=60, headers={"authorization": f"Bearer {schools.tokens[SCHOOL_A]}"}) as client:
            n = first
            while not stop.is_set():
                env = schools.signed("pupil.registered", SCHOOL_A, {**REGISTRATION, "school": SCHOOL_A}, {"upn": upn(n)})
                status = client.post("/events", json=env).status_code
                with lock:
                    valid.append(status)
                n += 1

    def school_b(offset: int) -> None:
        """One of four clients sending 12.5 bad requests a second: 50 in all."""
        headers = {"authorization": f"Bearer {schools.tokens[SCHOOL_B]}", "content-type": "application/json"}
        with httpx.Client(base_url=running.url, timeout=60, headers=headers) as client:
            started = time.monotonic()
            n = 0
            while not stop.is_set():
                n += 1
                expected, body = schools.bad(n + offset)
                answer = client.post("/events", content=body)
                with lock:
                    bad.append((expected, answer.status_code, answer.json()["errors"][0]["code"]))
                time.sleep(max(0.0, started + n / 12.5 - time.monotonic()))

    threads = [threading.Thread(target=school_a, args=(1 + 10_000 * i,)) for i in range(4)]
    threads += [threading.Thread(target=school_b, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(60)
    assert set(valid) == {201}, {s: valid.count(s) for s in set(valid)}
    assert len(bad) >= 100 and len(valid) >= 50, (len(bad), len(valid))
    assert all(400 <= status < 500 and (code == expected or not expected) for expected, status, code in bad), sorted(
        {(e, s, c) for e, s, c in bad}
    )
