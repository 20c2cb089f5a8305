"""The submission pipeline and reads, on SQLite and on PostgreSQL (each test its own database)."""

from __future__ import annotations

import json
import re
import time
import uuid
import zlib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import IntegrityError, StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from ledger import own_events, signatures
from ledger.config import Settings
from ledger.core import envelope, jcs
from ledger.core.errors import Category, LedgerError
from ledger.service import RECEIPT_PAYLOAD_TYPE
from ledger.storage import recorders
from ledger.storage import store as store_module
from ledger.storage.store import Store, persistence_env
from ledger.tools import admin

from .conftest import LA, PROVIDER, SCHOOL_A, SCHOOL_B, UPN, World, upn


def rejected(world: World, env: dict, *codes: str) -> LedgerError:
    store = world.ledger.store
    before = (store.count_events(), store.count_stored_events())
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit(env)
    got = [p.code for p in exc.value.problems]
    assert set(codes) <= set(got), got
    assert (store.count_events(), store.count_stored_events()) == before, "a rejected event must store nothing"
    return exc.value


def test_accepted_event_gets_a_receipt_signed_by_the_ledger(world: World) -> None:
    receipt = world.admit(UPN)
    assert receipt.created and receipt.sequence > 0
    signed = envelope.decode(receipt.signed, payload_type=RECEIPT_PAYLOAD_TYPE)
    assert signed.verify(world.ledger.secrets.signing_key.public_key(), world.ledger.secrets.signing_key_id)
    assert signed.body["event_digest"] == receipt.event_digest and signed.body["sequence"] == receipt.sequence
    stored = world.ledger.get_event(receipt.event_id)
    assert envelope.sha256_hex(envelope.b64decode_strict(stored["envelope"]["payload"])) == receipt.event_digest


def test_replay_returns_original_and_other_bytes_conflict(world: World) -> None:
    body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    first = world.ledger.submit(world.sign(body))
    world.clock.advance(minutes=5)
    again = world.ledger.submit(world.sign(body))
    assert (again.created, again.sequence, again.received_at) == (False, first.sequence, first.received_at)
    changed = dict(body, data={**body["data"], "year_group": "10"})
    error = rejected(world, world.sign(changed), "event_id_conflict")
    assert error.category is Category.CONFLICT
    assert len(world.ledger.pupil_history(UPN)["events"]) == 1


def test_signature_and_key_problems(world: World) -> None:
    body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    assert rejected(world, world.sign(body, signer=SCHOOL_B), "key_not_submitters").category is Category.FORBIDDEN
    stranger = own_events.signed(body, Ed25519PrivateKey.generate())
    rejected(world, stranger, "key_unknown")
    forged = world.sign(body)
    forged["signatures"][0]["sig"] = world.sign(dict(body, occurred_on="2026-10-01"))["signatures"][0]["sig"]
    rejected(world, forged, "signature_invalid")
    unknown_org = world.event(
        "pupil.registered",
        "urn:999999",
        {"school": "urn:999999", "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    rejected(world, world.sign(unknown_org, signer=SCHOOL_A), "submitter_unknown")


def test_every_signature_must_be_by_a_valid_key_of_the_submitter_and_verify_whatever_the_order(world: World) -> None:
    """One rule for envelopes with several signatures (README, "What the ledger checks"): [valid, invalid] and
    [invalid, valid] are both refused, as is any signature by an unknown, another organisation's or a revoked key."""
    body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    second, retired = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    admin.add_key(world.ledger, SCHOOL_A, second.public_key())
    admin.add_key(world.ledger, SCHOOL_A, retired.public_key())
    admin.revoke_key(world.ledger, SCHOOL_A, envelope.key_id(retired.public_key()))
    world.clock.advance(seconds=1)
    good = world.sign(body)["signatures"][0]
    also_good = own_events.signed(body, second)["signatures"][0]
    invalid = dict(also_good, sig=own_events.signed(dict(body, occurred_on="2026-10-01"), second)["signatures"][0]["sig"])
    others = world.sign(body, signer=SCHOOL_B)["signatures"][0]
    stranger = own_events.signed(body, Ed25519PrivateKey.generate())["signatures"][0]
    revoked = own_events.signed(body, retired)["signatures"][0]
    envelope_of = world.sign(body)
    for signatures_, code in (
        ([good, invalid], "signature_invalid"),
        ([invalid, good], "signature_invalid"),
        ([good, stranger], "key_unknown"),
        ([stranger, good], "key_unknown"),
        ([good, others], "key_not_submitters"),
        ([others, good], "key_not_submitters"),
        ([good, revoked], "key_revoked"),
        ([revoked, good], "key_revoked"),
    ):
        error = rejected(world, {**envelope_of, "signatures": signatures_}, code)
        assert error.category is Category.FORBIDDEN and [p.path for p in error.problems] == ["$.signatures"]
    repeated = rejected(world, {**envelope_of, "signatures": [good, good]}, "keyid_repeated")
    assert repeated.category is Category.MALFORMED and repeated.problems[0].path == "$.signatures[1].keyid"
    assert world.ledger.submit({**envelope_of, "signatures": [also_good, good]}).created


def test_a_conflict_says_only_that_the_event_id_is_taken(world: World) -> None:
    """A 409 tells the submitter nothing about the other event (not its sequence, not its submitter)."""
    taken = world.admit(UPN)
    body = world.event(
        "pupil.registered",
        SCHOOL_B,
        {"school": SCHOOL_B, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=upn(7),
        event_id=taken.event_id,
    )
    error = rejected(world, world.sign(body), "event_id_conflict")
    assert error.category is Category.CONFLICT and error.problems[0].path == "$.payload.event_id"
    message = error.problems[0].message
    assert taken.event_id in message and "taken" in message
    assert str(taken.sequence) not in message.replace(taken.event_id, "") and SCHOOL_A not in message and "sequence" not in message


def test_revoked_key_is_rejected_after_revocation(world: World) -> None:
    key_id = envelope.key_id(world.keys[SCHOOL_A].public_key())
    body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    admin.revoke_key(world.ledger, SCHOOL_A, key_id, "compromised", world.clock.now + timedelta(hours=1))
    world.ledger.submit(world.sign(body))  # still valid: revocation takes effect in an hour
    world.clock.advance(hours=2)
    later = world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, upn=UPN)
    assert rejected(world, world.sign(later), "key_revoked").category is Category.FORBIDDEN
    assert [k["revoked_at"] is not None for o in world.ledger.list_orgs() if o["org"] == SCHOOL_A for k in o["keys"]] == [True]


def test_invalid_content_stores_nothing(world: World) -> None:
    good = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
    rejected(world, world.sign(world.event("pupil.registered", SCHOOL_A, good, upn="Z801200001001")), "upn_check_letter")
    rejected(world, world.sign(world.event("pupil.registered", SCHOOL_A, {**good, "sen_status": "Q"}, upn=UPN)), "unknown_code")
    rejected(world, world.sign(world.event("pupil.registered", SCHOOL_A, good, upn=UPN, occurred_on=date(2027, 1, 1))), "future_date")


def test_batch_is_all_or_nothing(world: World) -> None:
    good = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
    envs = [world.sign(world.event("pupil.registered", SCHOOL_A, good, upn=upn(i))) for i in range(5)]
    envs[3] = world.sign(world.event("pupil.registered", SCHOOL_A, good, upn="Z801200001001"))
    before = world.ledger.store.max_sequence()
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit_batch(envs)
    assert [(p.code, p.path) for p in exc.value.problems] == [("upn_check_letter", "$.envelopes[3].payload.subject.upn")]
    assert world.ledger.store.max_sequence() == before
    envs[3] = world.sign(world.event("pupil.registered", SCHOOL_A, good, upn=upn(3)))
    receipts = world.ledger.submit_batch(envs)
    assert [r.created for r in receipts] == [True] * 5
    assert sorted(r.sequence for r in receipts) == [r.sequence for r in receipts]
    assert [r.created for r in world.ledger.submit_batch(envs)] == [False] * 5


def test_a_rule_problem_in_a_batch_names_its_envelope_once(world: World) -> None:
    """Every problem's path is rooted at its envelope once: the organisation rules' ``submitter_not_allowed`` (a school
    rotating another school's key) was rooted twice in a batch (``$.envelopes[1].envelopes[1]...``)."""
    good = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
    registered = world.sign(world.event("pupil.registered", SCHOOL_A, good, upn=upn(1)))
    new_key = admin.key_data(Ed25519PrivateKey.generate().public_key())
    foreign = world.sign(world.event("org.key_added", SCHOOL_A, new_key, org=SCHOOL_B))
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit_batch([registered, foreign])
    assert [(p.code, p.path) for p in exc.value.problems] == [("submitter_not_allowed", "$.envelopes[1].payload.submitter")]
    with pytest.raises(LedgerError) as alone:
        world.ledger.submit(foreign)
    assert [(p.code, p.path) for p in alone.value.problems] == [("submitter_not_allowed", "$.payload.submitter")]


def test_a_forged_signature_in_a_large_batch_fails_it_though_the_rules_ran_before_the_verdict(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch this large has its signatures verified by worker processes while the rules run, as if valid;
    the verdicts are collected before the commit, and one forgery rejects the batch with its own path."""
    good = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
    bodies = [world.event("pupil.registered", SCHOOL_A, good, upn=upn(100 + i)) for i in range(3 * signatures.MIN_BATCH)]
    envs = [world.sign(b) for b in bodies]
    envs[20]["signatures"][0]["sig"] = envs[21]["signatures"][0]["sig"]
    sent: list[int] = []  # verdicts from the real workers, counted per attempt
    real_results = signatures.Batch.results
    monkeypatch.setattr(signatures.Batch, "results", lambda batch: sent.append(len(batch)) or real_results(batch))
    before = world.ledger.store.max_sequence()
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit_batch(envs)
    assert [(p.code, p.path) for p in exc.value.problems] == [("signature_invalid", "$.envelopes[20].signatures")]
    assert sent[0] == len(envs) and not any(sent[1:])  # verified once, ahead; later judgements used the verdicts
    assert world.ledger.store.max_sequence() == before
    sent.clear()
    outcomes = world.ledger.submit_each([(env, None) for env in envs])  # a group: the forgery fails alone
    assert [i for i, o in enumerate(outcomes) if isinstance(o, LedgerError)] == [20]
    assert sent[0] == len(envs) and not any(sent[1:])
    assert world.ledger.store.count_events() == world.ledger.store.count_stored_events() == before + len(envs) - 1


def _registrations(world: World, first: int, count: int) -> list[dict[str, Any]]:
    good = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
    return [world.sign(world.event("pupil.registered", SCHOOL_A, good, upn=upn(first + i))) for i in range(count)]


def test_signatures_go_to_the_workers_as_the_batch_is_decoded(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the ledger has seen is sent with each signature as its envelope is decoded, before the batch's state
    is read, so the workers verify while the submitting thread decodes, reads and applies the rules."""
    steps: list[str] = []
    real_add, real_lookups = signatures.Tasks.add, world.ledger.store.lookups
    monkeypatch.setattr(signatures.Tasks, "add", lambda tasks, item: steps.append("sent") or real_add(tasks, item))
    monkeypatch.setattr(world.ledger.store, "lookups", lambda *a, **k: steps.append("read") or real_lookups(*a, **k))
    envs = _registrations(world, 200, 2 * signatures.MIN_BATCH)
    assert all(r.created for r in world.ledger.submit_batch(envs))
    assert steps[: len(envs) + 1] == ["sent"] * len(envs) + ["read"]  # (then the receipts' signatures)


def test_a_key_remembered_wrongly_costs_only_a_verification(world: World) -> None:
    """What was sent ahead is only whether the bytes verify under the key remembered for that key id; the key the
    submitter has decides, and a signature sent with the wrong key is verified again with the right one."""
    kid = envelope.key_id(world.keys[SCHOOL_A].public_key())
    world.ledger.submissions.hints.keys[kid] = envelope.raw_public_key(Ed25519PrivateKey.generate().public_key())
    envs = _registrations(world, 300, 2 * signatures.MIN_BATCH)
    assert all(r.created for r in world.ledger.submit_batch(envs))
    world.ledger.submissions.hints.keys[kid] = envelope.raw_public_key(world.keys[SCHOOL_B].public_key())  # another organisation's key
    forged = _registrations(world, 400, 2 * signatures.MIN_BATCH)
    forged[5] = own_events.signed(json.loads(envelope.decode(forged[5]).payload), world.keys[SCHOOL_B])
    forged[5]["signatures"][0]["keyid"] = kid  # signed with school B's key (the one remembered), claiming school A's key id
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit_batch(forged)
    assert [(p.code, p.path) for p in exc.value.problems] == [("signature_invalid", "$.envelopes[5].signatures")]


def test_receipts_started_for_a_write_that_failed_are_never_shown(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Receipts are signed from the moment the store knows the sequence numbers, before the commit. A write
    that then fails (here: once, as if another writer got there first) is retried, and the receipts returned
    are those of what committed."""
    store = world.ledger.store
    real_append = store.append
    failed: list[list[int]] = []

    def append_failing_once(events: Any, index_rows: Any, key_rows: Any, on_ids: Any = None, **beside: Any) -> Any:
        if not failed:
            bogus = [10_000_000 + i for i in range(len(events))]
            on_ids(bogus)
            failed.append(bogus)
            raise IntegrityError("as if another writer had taken these streams first")
        return real_append(events, index_rows, key_rows, on_ids=on_ids, **beside)

    monkeypatch.setattr(store, "append", append_failing_once)
    envs = _registrations(world, 500, 2 * signatures.MIN_BATCH)
    receipts = world.ledger.submit_batch(envs)
    assert failed and not set(failed[0]) & {r.sequence for r in receipts}
    index = store.index_rows([r.event_id for r in receipts])
    for r in receipts:
        assert r.sequence == index[r.event_id].sequence
        claim = json.loads(envelope.decode(r.signed, payload_type=RECEIPT_PAYLOAD_TYPE).payload)
        assert claim["sequence"] == r.sequence
        assert envelope.decode(r.signed, payload_type=RECEIPT_PAYLOAD_TYPE).verify(
            world.ledger.secrets.signing_key.public_key(), world.ledger.secrets.signing_key_id
        )


def test_sequence_numbers_stay_in_order_across_copied_and_inserted_writes(world: World) -> None:
    """A large write reserves its notification ids from the table's sequence and writes them itself (``COPY``);
    a small one draws them as it inserts. Mixed, every id is new and in order, and receipts give the stored ones."""
    sequences: list[int] = []
    first = 600
    for count in (recorders.SMALL_WRITE + 6, 3, 1, recorders.SMALL_WRITE + 1, 2):
        receipts = world.ledger.submit_batch(_registrations(world, first, count))
        first += count
        sequences.extend(r.sequence for r in receipts)
        index = world.ledger.store.index_rows([r.event_id for r in receipts])
        assert [index[r.event_id].sequence for r in receipts] == [r.sequence for r in receipts]
    assert sequences == sorted(set(sequences))
    assert world.ledger.store.max_sequence() == sequences[-1]


def test_one_event_id_twice_in_a_batch_is_rejected(world: World) -> None:
    body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    other = dict(body, subject={"upn": upn(2)})
    before = world.ledger.store.count_stored_events()
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit_batch([world.sign(body), world.sign(body), world.sign(other)])
    assert [(p.code, p.path, "item 0" in p.message) for p in exc.value.problems] == [
        ("duplicate_in_batch", "$.envelopes[1].payload.event_id", True),
        ("duplicate_in_batch", "$.envelopes[2].payload.event_id", True),
    ]
    assert world.ledger.store.count_events() == world.ledger.store.count_stored_events() == before


def test_batch_applies_rules_in_order_within_the_batch(world: World) -> None:
    admission = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    removal = world.event(
        "pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=UPN
    )
    assert len(world.ledger.submit_batch([world.sign(admission), world.sign(removal)])) == 2
    with pytest.raises(LedgerError) as exc:  # the other way round cannot be true
        world.ledger.submit_batch(
            [
                world.sign(
                    world.event(
                        "pupil.deregistered",
                        SCHOOL_B,
                        {"school": SCHOOL_B, "ground": "moved_away", "destination": "moved_away"},
                        upn=upn(7),
                    )
                )
            ]
        )
    assert exc.value.problems[0].code == "unknown_pupil"


def test_rules_reject_what_cannot_be_true(world: World) -> None:
    leave = {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}
    rejected(world, world.sign(world.event("pupil.deregistered", SCHOOL_A, leave, upn=UPN)), "unknown_pupil")
    rejected(
        world,
        world.sign(
            world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, upn=UPN)
        ),
        "unknown_pupil",
    )
    world.admit(UPN, occurred_on=date(2026, 9, 3))
    second = world.event(
        "pupil.registered",
        SCHOOL_B,
        {"school": SCHOOL_B, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    error = rejected(world, world.sign(second), "second_main_registration")
    assert error.problems[0].path == "$.payload.data.enrolment_status"
    dual = dict(second, data={**second["data"], "enrolment_status": "S"})
    world.ledger.submit(world.sign(dual))  # a subsidiary (dual) registration is lawful
    rejected(
        world,
        world.sign(
            world.event("pupil.ap_placement_ended", SCHOOL_A, {"placement_event_id": str(uuid.uuid4()), "outcome": "mainstream"}, upn=UPN)
        ),
        "placement_not_open",
    )
    rejected(
        world,
        world.sign(world.event("pupil.deregistered", SCHOOL_A, leave, upn=UPN, occurred_on=date(2026, 9, 1))),
        "removal_before_admission",
    )
    mismatch = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_B, "enrolment_status": "S", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=upn(2),
    )
    rejected(world, world.sign(mismatch), "not_submitter")


def test_placement_lifecycle(world: World) -> None:
    world.admit(UPN, occurred_on=date(2026, 9, 3))
    start = world.post(
        "pupil.ap_placement_started",
        SCHOOL_A,
        {
            "commissioner": SCHOOL_A,
            "setting": PROVIDER,
            "setting_type": "UKPRN",
            "tier": 2,
            "reason": "BEHAVIOUR",
            "planned_end": "2026-12-01",
            "hours_per_week": 15,
            "dual_registered": False,
        },
        upn=UPN,
        occurred_on=date(2026, 9, 21),
    )
    ended = {"placement_event_id": start.event_id, "outcome": "mainstream"}
    world.post("pupil.ap_placement_ended", PROVIDER, ended, upn=UPN)  # the setting may end it
    rejected(world, world.sign(world.event("pupil.ap_placement_ended", SCHOOL_A, ended, upn=UPN)), "placement_not_open")


def test_flags_for_lawful_but_concerning_events(world: World) -> None:
    world.admit(UPN, sen="K", occurred_on=date(2026, 9, 3))
    flags = []
    for day in (date(2026, 9, 7), date(2026, 9, 14), date(2026, 9, 21)):
        receipt = world.post(
            "pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 32, "reasons": ["PA"]}, upn=UPN, occurred_on=day
        )
        flags.append({f["code"] for f in receipt.flags})
    assert "suspension_cap_exceeded" not in flags[0] | flags[1] and "suspension_cap_exceeded" in flags[2]  # 48 days > 45
    assert "late_report" in flags[0]  # 20 school days after occurred_on
    assert "late_report" not in {f["code"] for f in world.admit(upn(5)).flags}  # same day
    removal = world.post(
        "pupil.deregistered",
        SCHOOL_A,
        {"school": SCHOOL_A, "ground": "continuous_absence_20_days", "destination": "unknown"},
        upn=UPN,
        occurred_on=date(2026, 9, 10),
    )
    assert {"backdated_removal", "unknown_destination", "sen_exit", "late_report"} <= {f["code"] for f in removal.flags}


def test_corrections_supersede_and_history_shows_both(world: World) -> None:
    wrong = world.admit(UPN, occurred_on=date(2026, 9, 3))
    fixed_body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "10", "sen_status": "E", "looked_after": False},
        upn=UPN,
        occurred_on=date(2026, 9, 4),
        corrects=wrong.event_id,
    )
    fixed = world.ledger.submit(world.sign(fixed_body))
    events = world.ledger.pupil_history(UPN)["events"]
    assert [(e["event_id"], e["superseded_by"]) for e in events] == [(wrong.event_id, fixed.event_id), (fixed.event_id, None)]
    assert world.ledger.pupil_history(UPN)["on_roll"] == [
        {"school": SCHOOL_A, "enrolment_status": "C", "since": "2026-09-04", "sen_status": "E"}
    ]
    other = world.event("pupil.record_retracted", SCHOOL_B, {"reason": "wrong_pupil"}, upn=UPN, corrects=fixed.event_id)
    rejected(world, world.sign(other), "correction_not_own")
    again = world.event("pupil.record_retracted", SCHOOL_A, {"reason": "entered_in_error"}, upn=UPN, corrects=wrong.event_id)
    rejected(world, world.sign(again), "already_corrected")
    world.ledger.submit(
        world.sign(world.event("pupil.record_retracted", SCHOOL_A, {"reason": "wrong_pupil"}, upn=UPN, corrects=fixed.event_id))
    )
    assert world.ledger.pupil_history(UPN)["on_roll"] == []


def test_a_later_dated_correction_still_governs_earlier_as_of_dates(world: World) -> None:
    wrong = world.post(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
        occurred_on=date(2026, 9, 3),
    )
    world.ledger.submit(
        world.sign(
            world.event(
                "pupil.record_retracted",
                SCHOOL_A,
                {"reason": "wrong_pupil"},
                upn=UPN,
                occurred_on=date(2026, 10, 1),
                corrects=wrong.event_id,
            )
        )
    )
    as_of = world.ledger.pupil_history(UPN, as_of=date(2026, 9, 10))
    assert as_of["events"][0]["superseded_by"] is not None
    assert as_of["on_roll"] == [], "the state must agree with superseded_by"


def test_history_is_bitemporal(world: World) -> None:
    world.admit(UPN, occurred_on=date(2026, 9, 3))
    known_before_exclusion = world.clock.now
    world.clock.advance(days=1)
    world.post(
        "pupil.excluded",
        SCHOOL_A,
        {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]},
        upn=UPN,
        occurred_on=date(2026, 10, 1),
    )
    world.clock.advance(days=1)
    world.post(
        "pupil.deregistered",
        SCHOOL_A,
        {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"},
        upn=UPN,
        occurred_on=date(2026, 10, 6),
    )
    history = world.ledger.pupil_history
    assert [e["type"] for e in history(UPN)["events"]] == ["pupil.registered", "pupil.excluded", "pupil.deregistered"]
    assert [e["type"] for e in history(UPN, as_of=date(2026, 10, 2))["events"]] == ["pupil.registered", "pupil.excluded"]
    assert history(UPN, as_of=date(2026, 10, 2))["on_roll"][0]["school"] == SCHOOL_A
    assert history(UPN)["on_roll"] == []
    assert [e["type"] for e in history(UPN, known_at=known_before_exclusion)["events"]] == ["pupil.registered"]
    assert [e["type"] for e in history(UPN, as_of=date(2026, 9, 1))["events"]] == []


def test_organisations_and_providers(world: World) -> None:
    uprov = "uprov:801-7"
    world.post("provider.unregistered_recorded", LA, {"name": "Horse Care CIC", "postcode": "BS1 4DJ"}, org=uprov)
    rejected(
        world,
        world.sign(world.event("provider.unregistered_recorded", LA, {"name": "Again", "postcode": "BS1 4DJ"}, org=uprov)),
        "already_registered",
    )
    rejected(
        world,
        world.sign(world.event("provider.unregistered_recorded", LA, {"name": "Other LA's", "postcode": "BS1 4DJ"}, org="uprov:202-1")),
        "not_own_provider_id",
    )
    world.post("provider.concern_raised", LA, {"category": "safeguarding"}, org=uprov)
    with pytest.raises(LedgerError) as exc:
        admin.add_org(world.ledger, SCHOOL_A, "school", "again")
    assert exc.value.problems[0].code == "already_registered"
    with pytest.raises(LedgerError):
        admin.add_org(world.ledger, "la:202", "school", "wrong kind")
    assert {o["org"] for o in world.ledger.list_orgs()} >= {SCHOOL_A, SCHOOL_B, LA, PROVIDER, uprov, "dfe:admin"}


def test_upns_are_encrypted_at_rest(world: World) -> None:
    receipt = world.admit(UPN)
    store = world.ledger.store
    payload = world.ledger.get_event(receipt.event_id)["envelope"]["payload"]  # base64 of the JCS body, UPN inside
    assert UPN in envelope.b64decode_strict(payload).decode()
    (state,) = store.query(
        f"SELECT state FROM {store.events_table} WHERE originator_id = ?",
        (world.ledger.secrets.pupil_id(UPN) if store.is_postgres else world.ledger.secrets.pupil_id(UPN).hex,),
    )[0]
    stored = bytes(state)
    assert payload.encode() not in stored and UPN.encode() not in stored
    with pytest.raises(zlib.error):
        zlib.decompress(stored)  # not merely compressed
    with pytest.raises(ValueError):
        store.app.mapper.cipher.decrypt(stored)  # not the store key: each pupil's events have the pupil's own key
    pupil = world.ledger.secrets.pupil_id(UPN)
    key = store.app.pupil_keys.data_key(pupil)
    assert key is not None
    nonce, sealed = stored[:12], stored[12:]
    plain = AESGCM(key).decrypt(nonce, sealed, pupil.bytes + (1).to_bytes(8, "big") + b"pupil-ledger/Subject.Created")
    assert payload.encode() in plain  # the event's JSON itself: new events are not compressed (store.InflatingCompressor)
    assert all(UPN not in str(r) for r in store.query("SELECT * FROM ledger_index"))


def test_events_stored_compressed_are_still_read(world: World) -> None:
    """Events were stored zlib-compressed until 2026-11-28: a ledger holding both kinds reads both."""
    world.admit(UPN)
    settings, secrets = world.ledger.settings, world.ledger.secrets
    env = persistence_env(settings.database_url, str(settings.sqlite_path), secrets.cipher_key, False, secrets.master_key)
    old = Store.open({**env, "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"})
    store = world.ledger.store
    try:  # rewrite every stored event as it used to be stored
        for originator_id, version, topic, state in store.query(
            f"SELECT originator_id, originator_version, topic, state FROM {store.events_table}"
        ):
            stored = StoredEvent(
                originator_id if isinstance(originator_id, uuid.UUID) else uuid.UUID(originator_id), version, topic, bytes(state)
            )
            rewritten = old.app.mapper.to_stored_event(store.app.mapper.to_domain_event(stored))
            store.execute(
                f"UPDATE {store.events_table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                (rewritten.state, originator_id, version),
            )
        (state,) = store.query(
            f"SELECT state FROM {store.events_table} WHERE originator_id = ?",
            (secrets.pupil_id(UPN) if store.is_postgres else secrets.pupil_id(UPN).hex,),
        )[0]
        key = store.app.pupil_keys.data_key(secrets.pupil_id(UPN))
        assert key is not None
        aad = secrets.pupil_id(UPN).bytes + (1).to_bytes(8, "big") + b"pupil-ledger/Subject.Created"
        assert zlib.decompress(AESGCM(key).decrypt(bytes(state)[:12], bytes(state)[12:], aad))  # really the old form
    finally:
        old.close()
    store.close()
    world.ledger = admin.open_ledger(settings)  # nothing cached from before the rewrite
    world.ledger.clock = world.clock
    world.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PA"]}, upn=UPN)
    assert [e["type"] for e in world.ledger.pupil_history(UPN)["events"]] == ["pupil.registered", "pupil.excluded"]
    assert {SCHOOL_A, LA} <= {o["org"] for o in world.ledger.list_orgs()}


def test_subject_events_are_written_as_the_library_writes_them(world: World) -> None:
    """A subject's events are encoded by orjson (store.SubjectMapper), not the library's encoder: the library's
    own transcoder must read back exactly the state it would have written itself."""
    world.admit(UPN)
    world.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PA"]}, upn=UPN)
    store = world.ledger.store
    mapper = store.app.mapper
    assert isinstance(mapper, store_module.SubjectMapper)
    library = mapper._plain()
    stored = store.query(f"SELECT originator_id, originator_version, topic, state FROM {store.events_table}")
    kinds = set()
    for originator_id, version, topic, state in stored:
        as_id = originator_id if isinstance(originator_id, uuid.UUID) else uuid.UUID(originator_id)
        event = mapper.to_domain_event(StoredEvent(as_id, version, topic, bytes(state)))
        object.__setattr__(event, "flags", [{"code": "late_notification", "message": 'non-ASCII é ✓, "quoted", \\ and \n'}])
        ours, theirs = mapper._plain_stored(event), library.to_stored_event(event)
        assert (ours.originator_id, ours.originator_version, ours.topic) == (theirs.originator_id, theirs.originator_version, theirs.topic)
        assert library.transcoder.decode(ours.state) == library.transcoder.decode(theirs.state)
        assert type(library.to_domain_event(ours)) is type(event)
        kinds.add(type(event).__name__)
    assert kinds == {"Created", "Recorded"}


def test_the_log_readers_entry_of_a_stored_event_is_the_librarys(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SubjectMapper.entry_of`` (the projectors', the relay's and the replay's decode of every stored event) reads the
    state with orjson instead of the library's decoder: for every kind of stored event it must give exactly the
    envelope, receipt time and flags the library's ``to_domain_event`` gives, and go the library's way for a state
    it does not recognise (then it must still give the library's answer)."""
    world.admit(UPN)
    world.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PA"]}, upn=UPN)
    settings, secrets = world.ledger.settings, world.ledger.secrets
    store = world.ledger.store
    mapper = store.app.subject_mapper
    env = persistence_env(settings.database_url, str(settings.sqlite_path), secrets.cipher_key, False, secrets.master_key)
    zlib_store = Store.open(
        {**env, "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}
    )  # how events were stored before 2026-11-28
    variants: list[tuple[str, StoredEvent, bool]] = []  # (what, stored event, read by orjson)
    try:
        for originator_id, version, topic, state in store.query(
            f"SELECT originator_id, originator_version, topic, state FROM {store.events_table}"
        ):
            stored = StoredEvent(
                originator_id if isinstance(originator_id, uuid.UUID) else uuid.UUID(originator_id), version, topic, bytes(state)
            )
            kind = "pupil" if stored.originator_id.version == 8 else "organisation"
            variants.append((f"{kind} {topic} as stored", stored, True))
            event = mapper.to_domain_event(stored)
            odd = [
                {"code": "late_notification", "message": 'non-ASCII é ✓, "quoted", \\ and \n \u2028'},
                {"code": "x", "a": "", "b": 'the "_type_" and "_data_" keys', "_type_ ": "_type_ "},  # text, not keys
            ]
            object.__setattr__(event, "flags", odd)
            object.__setattr__(event, "received_at", datetime(2026, 3, 29, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))))  # no microseconds
            variants.append((f"{kind} odd flags, offset time", mapper.to_stored_event(event), True))
            variants.append((f"{kind} zlib-compressed", zlib_store.app.mapper.to_stored_event(event), True))
            object.__setattr__(
                event, "flags", [{"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"}]
            )  # the library's hook reads it
            variants.append((f"{kind} flag shaped as a transcoded value", mapper.to_stored_event(event), False))
            object.__setattr__(event, "flags", [{"code": "x", "_type_": "y"}, {"code": "_type_"}])  # not the hook's, but not known
            variants.append((f"{kind} flags with a _type_ key or value", mapper.to_stored_event(event), False))
    finally:
        zlib_store.close()
    library_calls = 0
    library = type(mapper).to_domain_event

    def counted(self: Any, stored: StoredEvent) -> Any:
        nonlocal library_calls
        library_calls += 1
        return library(self, stored)

    for what, stored, fast in variants:
        event = mapper.to_domain_event(stored)
        monkeypatch.setattr(type(mapper), "to_domain_event", counted)
        library_calls = 0
        entry = mapper.entry_of(stored)
        monkeypatch.undo()
        assert entry == (event.envelope, event.received_at, event.flags), what
        assert entry[1].utcoffset() == event.received_at.utcoffset(), what
        assert library_calls == (0 if fast else 1), what
    assert len(variants) >= 15 and {"pupil", "organisation"} == {what.split()[0] for what, _, _ in variants}
    # A state that cannot be read (not JSON; an impossible receipt date) fails with the library's own error, not another
    organisation = next(stored for what, stored, _ in variants if what.startswith("organisation") and what.endswith("as stored"))
    assert mapper.cipher is not None
    state = orjson.loads(mapper.cipher.decrypt(bytes(organisation.state)))
    state["received_at"]["_data_"] = "2026-13-45T00:00:00+00:00"
    for broken in (b'{"envelope": "x", "received_at', orjson.dumps(state)):
        stored = StoredEvent(organisation.originator_id, organisation.originator_version, organisation.topic, mapper.cipher.encrypt(broken))
        with pytest.raises(Exception) as library_error:  # noqa: PT011 - whichever the library raises
            mapper.to_domain_event(stored)
        with pytest.raises(type(library_error.value), match=re.escape(str(library_error.value))):
            mapper.entry_of(stored)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30)), timezone(timedelta(hours=14))]),
    )
)
def test_timestamp_is_the_strftime_form_it_always_had(moment: Any) -> None:
    """``timestamp`` formats by ``isoformat`` now (every event's receipt time passes through it on the projectors'
    path): the text, which the tables store and compare as time, must be exactly the ``strftime`` form's."""
    from ledger.core.times import timestamp

    assert timestamp(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_subject_started_directly_is_what_the_library_would_create(world: World) -> None:
    """``Subject.start`` builds the aggregate and its Created event without the library's ``_create``: the same
    state and the same event (timestamps aside), which the library then replays into an equal aggregate."""
    from ledger.storage.store import Subject

    world.admit(UPN)
    entry = world.ledger.store.subject(world.ledger.secrets.pupil_id(UPN)).entries[0]
    aggregate_id = uuid.uuid4()
    flags = [{"code": "late_notification", "message": "m"}]
    ours = Subject.start(aggregate_id, entry.envelope, entry.received_at, flags)
    theirs = Subject._create(Subject.Created, id=aggregate_id, envelope=entry.envelope, received_at=entry.received_at, flags=flags)
    (ours_event,), (their_event,) = ours.collect_events(), theirs.collect_events()
    assert type(ours_event) is type(their_event)
    assert {**vars(ours_event), "timestamp": None} == {**vars(their_event), "timestamp": None}
    assert {**vars(ours), "_created_on": None, "_modified_on": None} == {**vars(theirs), "_created_on": None, "_modified_on": None}
    assert ours.created_on == ours.modified_on == ours_event.timestamp
    assert vars(ours_event.mutate(None)) == vars(ours)


def test_work_done_meanwhile_runs_while_the_database_answers_the_reads(world: World) -> None:
    """``Store.reads`` runs ``meanwhile`` once (a batch computes its digests there); on PostgreSQL while the
    queries are already running, seen from another connection."""
    from ledger.storage.store import Read

    store = world.ledger.store
    slow = Read(
        "SELECT pg_sleep(0.5), x FROM (VALUES ('a'), ('b')) AS t(x) WHERE {where}"
        if store.is_postgres
        else "SELECT 0, x FROM (SELECT 'a' AS x UNION ALL SELECT 'b') WHERE {where}",
        "x",
        ["a"],
    )
    seen: list[int] = []

    def meanwhile() -> None:
        if not store.is_postgres:
            seen.append(1)
            return
        # Sent already; on a loaded machine the server may take a moment to start it: look for it within the 0.5 s it
        # sleeps (a read that ran only after ``meanwhile`` returned is never seen active here).
        running = "SELECT count(*) FROM pg_stat_activity WHERE starts_with(query, 'SELECT pg_sleep(0.5)') AND state = 'active'"
        deadline = time.monotonic() + 0.4
        count = int(store.query(running)[0][0])
        while count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            count = int(store.query(running)[0][0])
        seen.append(count)

    assert [[row[1] for row in rows] for rows in store.reads([slow], meanwhile)] == [["a"]]
    assert seen == [1]
    seen.clear()
    store.lookups([], [], meanwhile=lambda: seen.append(2))  # nothing to read: still run, once
    assert seen == [2]


def test_tokens(world: World) -> None:
    token = world.ledger.issue_token(SCHOOL_A, "school")
    assert world.ledger.authenticate(token).org == SCHOOL_A
    assert world.ledger.authenticate(token[:-1] + ("x" if token[-1] != "x" else "y")) is None
    assert world.ledger.revoke_token(token.split("_")[1])
    assert world.ledger.authenticate(token) is None
    expiring = world.ledger.issue_token(SCHOOL_A, "school", world.clock.now + timedelta(days=1))
    world.clock.advance(days=2)
    assert world.ledger.authenticate(expiring) is None
    with pytest.raises(LedgerError):
        world.ledger.issue_token("urn:999999", "school")


def test_event_bytes_survive_reopen(world: World, settings) -> None:
    receipt = world.admit(UPN)
    world.ledger.store.close()
    reopened = admin.open_ledger(settings)
    try:
        event = reopened.get_event(receipt.event_id)
        assert envelope.sha256_hex(jcs.canonicalize(event["envelope"])) == receipt.envelope_digest
    finally:
        reopened.store.close()


def test_concurrent_submissions_of_one_envelope_store_it_once(world: World) -> None:
    import threading

    world.admit(UPN, occurred_on=date(2026, 9, 3))
    env = world.sign(
        world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, upn=UPN)
    )
    others = [
        world.sign(world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PA"]}, upn=UPN))
        for _ in range(3)
    ]
    results: list = []
    barrier = threading.Barrier(6)

    def send(e: dict) -> None:
        barrier.wait()
        results.append(world.ledger.submit(e))

    threads = [threading.Thread(target=send, args=(e,)) for e in [env, env, env, *others]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same = [r for r in results if r.event_id == json.loads(envelope.b64decode_strict(env["payload"]))["event_id"]]
    assert sorted(r.created for r in same) == [False, False, True] and len({r.sequence for r in same}) == 1
    assert len(world.ledger.pupil_history(UPN)["events"]) == 5  # admission + 4 distinct exclusions, same-pupil writes serialised


def test_a_subject_recorded_in_a_batch_equals_the_one_read_back(world: World) -> None:
    """The batch hands each new event's record to its subject instead of parsing the envelope again: what the
    next batch's rules see from the cache must be exactly what a fresh read of the stored events gives."""
    world.admit(UPN)
    world.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PA"]}, upn=UPN)
    pupil = world.ledger.secrets.pupil_id(UPN)
    cached = world.ledger.submissions.subjects.take([pupil])[pupil]
    assert cached is not None
    read_back = world.ledger.store.subjects([pupil])[pupil]
    assert len(cached.records) == 2
    assert cached.records == read_back.records
    assert [e.envelope for e in cached.entries] == [e.envelope for e in read_back.entries]


def test_a_batch_reads_what_it_needs_in_one_round_trip_and_writes_in_one_transaction(world: World) -> None:
    """Before its checks a batch reads the index rows of its event ids, its subjects and submitters, and the
    pupils' keys: on PostgreSQL together, on one connection from the pool; the write takes one more."""
    world.admit(upn(1))
    world.admit(upn(2))
    store = world.ledger.store
    world.ledger.submissions.subjects.forget(list(world.ledger.submissions.subjects._items))  # nothing cached: every subject is read
    batch = [
        world.sign(
            world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PA"]}, upn=upn(n))
        )
        for n in (1, 2)
    ]
    batch.append(
        world.sign(
            world.event(
                "pupil.registered",
                SCHOOL_A,
                {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
                upn=upn(3),
            )
        )
    )
    reads: list[int] = []
    original = store.reads

    def counted(batch_reads: Any, *meanwhile: Any) -> Any:
        reads.append(len(batch_reads))
        return original(batch_reads, *meanwhile)

    store.reads = counted  # type: ignore[method-assign]
    receipts = world.ledger.submit_batch(batch)
    assert [r.created for r in receipts] == [True, True, True]
    assert reads == [3]  # the event ids, the pupils' keys and the subjects' events: one call, one round trip on PostgreSQL
    assert world.ledger.submit_batch(batch[:1])[0].created is False and reads[1:] == [
        1
    ]  # a replay: its index row (its subjects are cached)


def test_postgres_without_autovacuum_is_reported(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """With autovacuum off nothing keeps the planner's statistics (this CI machine: its 10M-event load slowed
    fourfold), so opening a store says so, once per process."""
    if settings.database_url is None:
        pytest.skip("PostgreSQL only")
    store_module._autovacuum_warning.cache_clear()
    ledger = admin.initialise(settings).ledger
    try:
        autovacuum = ledger.store.query("SELECT current_setting('autovacuum')")[0][0]
        warned = [r for r in caplog.records if "autovacuum off" in r.getMessage()]
        assert len(warned) == (0 if autovacuum == "on" else 1)
    finally:
        ledger.store.close()


def test_statements_over_an_array_of_ids_are_never_prepared(pg_url: str, tmp_path: Path) -> None:
    """psycopg prepares what a connection ran five times, and PostgreSQL may then keep a generic plan made while
    the table was small: a read of ``pupil_keys`` per group commit whose cost grew with the table
    (``ledger.store.execute_in``). The reads by ``= ANY(array)`` are planned for their array every time."""
    from contextlib import ExitStack

    from ledger.storage.secrets import as_pupil_uuid

    ledger = admin.initialise(Settings(home=tmp_path / "home", database_url=pg_url)).ledger
    try:
        store = ledger.store
        pupils = [as_pupil_uuid(bytes([n]) * 16) for n in range(14)]
        for _ in range(60):  # at least five times on each of the pool's connections
            store.app.pupil_keys.prefetch(pupils)
            store.subjects(pupils)
            store.index_rows(["no-such-event"])
            store.query("SELECT count(*) FROM ledger_index WHERE event_id <> ?", ["x"])
        pool = store.app.recorder.datastore.pool
        with ExitStack() as held:
            connections = [held.enter_context(pool.connection()) for _ in range(pool.get_stats()["pool_available"])]  # every idle one
            prepared = [row["statement"] for c in connections for row in c.execute("SELECT statement FROM pg_prepared_statements")]
        assert any("count(*) FROM ledger_index" in p for p in prepared), prepared  # psycopg does prepare the rest
        assert not [p for p in prepared if "ANY(" in p]
    finally:
        ledger.store.close()


def test_reads_by_a_list_of_ids_find_exactly_those_ids_whatever_they_hold(world: World) -> None:
    """On PostgreSQL the ids go to the server as one text it splits at commas (``ledger.store.where_in``); an id
    that holds a comma, or is empty (an event id from a URL may be anything), must still match only itself."""
    receipt = world.admit(UPN)
    store = world.ledger.store
    assert list(store.index_rows([receipt.event_id, "no-such-event"])) == [receipt.event_id]
    assert store.index_rows([f"{receipt.event_id},x"]) == {} and store.index_rows([""]) == {}
    assert list(store.index_rows(["", f"{receipt.event_id},{receipt.event_id}", receipt.event_id])) == [receipt.event_id]
    pupil = world.ledger.secrets.pupil_id(UPN)
    assert list(store.subjects([pupil, uuid.uuid4()])) == [pupil]
    assert len(store.query_in("SELECT originator_id FROM pupil_keys WHERE {where}", "originator_id", [str(pupil), "a,b"])) == 1


@pytest.mark.parametrize("others", [1, 80])  # PostgreSQL writes up to 64 events as one INSERT per table, more by COPY
def test_a_write_that_conflicts_in_the_store_stores_nothing(world: World, others: int) -> None:
    """The store's own last line (what concurrent writers meet): a stream version or an event_id already
    stored makes the whole write an IntegrityError, with nothing of it kept; the next write still works."""
    from eventsourcing.persistence import IntegrityError

    from ledger.storage.store import Subject

    receipt = world.admit(UPN)
    store = world.ledger.store
    pupil = world.ledger.secrets.pupil_id(UPN)
    entry = store.subject(pupil).entries[0]
    before = (store.count_events(), store.count_stored_events(), store.max_sequence())

    def write(stream: uuid.UUID, event_id: str) -> tuple[list, list[str]]:
        row = {
            "event_id": event_id,
            "originator_id": str(stream),
            "originator_version": 1,
            "type": "org.registered",
            "submitter": "x",
            "event_digest": "d",
            "envelope_digest": "e",
            "received_at": "2026-09-01T00:00:00Z",
        }
        events, rows = [], []
        for _ in range(others):  # new, harmless streams written beside the one that may conflict
            fresh = Subject.start(uuid.uuid4(), entry.envelope, entry.received_at, [], entry.record)
            events.extend(fresh.collect_events())
            rows.append(dict(row, event_id=str(uuid.uuid4()), originator_id=str(fresh.id)))
        events.extend(Subject.start(stream, entry.envelope, entry.received_at, [], entry.record).collect_events())
        rows.append(row)
        return store.append(events, rows, []), [r["event_id"] for r in rows]

    with pytest.raises(IntegrityError):
        write(uuid.uuid4(), receipt.event_id)  # a new stream, but an event_id already accepted
    assert (store.count_events(), store.count_stored_events(), store.max_sequence()) == before
    with pytest.raises(IntegrityError):
        write(pupil, str(uuid.uuid4()))  # a new event_id, but version 1 of a stream that has it
    assert (store.count_events(), store.count_stored_events(), store.max_sequence()) == before
    recorded, event_ids = write(uuid.uuid4(), str(uuid.uuid4()))
    assert len(recorded) == others + 1 and store.count_events() == before[0] + others + 1
    sequences = recorded
    assert sequences == sorted(sequences) and sequences[0] > before[2] and store.max_sequence() == sequences[-1]
    indexed = store.index_rows(event_ids)
    assert [indexed[e].sequence for e in event_ids] == sequences  # each index row carries its own event's sequence


@pytest.mark.parametrize("others", [0, 80])  # both PostgreSQL write paths (one INSERT per table, COPY)
def test_a_write_to_a_pupil_erased_meanwhile_stores_nothing(world: World, others: int) -> None:
    """The write checks, inside its transaction, that every pupil stream it extends still has its key: a pupil
    erased by another process after this one read it is refused whole, new streams beside it included."""
    from ledger.storage.store import ErasedMeanwhile, Subject

    world.admit(UPN)
    store = world.ledger.store
    pupil = world.ledger.secrets.pupil_id(UPN)
    read = store.subject(pupil)
    entry = read.entries[0]
    extended = read.clone()
    extended.record(entry.envelope, entry.received_at, [], entry.record)
    events = list(extended.collect_events())
    row = {
        "event_id": str(uuid.uuid4()),
        "originator_id": str(pupil),
        "originator_version": 2,
        "type": "pupil.excluded",
        "submitter": "x",
        "event_digest": "d",
        "envelope_digest": "e",
        "received_at": "2026-09-01T00:00:00Z",
    }
    rows = [row]
    for _ in range(others):
        fresh = Subject.start(uuid.uuid4(), entry.envelope, entry.received_at, [], entry.record)
        events.extend(fresh.collect_events())
        rows.append(dict(row, event_id=str(uuid.uuid4()), originator_id=str(fresh.id), originator_version=1))
    before = (store.count_events(), store.count_stored_events(), store.max_sequence())
    store.execute("DELETE FROM pupil_keys WHERE originator_id = ?", (str(pupil),))  # erased by someone else meanwhile
    with pytest.raises(ErasedMeanwhile):
        store.append(events, rows, [])
    assert (store.count_events(), store.count_stored_events(), store.max_sequence()) == before
