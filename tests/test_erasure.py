"""Erasure by crypto-shredding (docs/access.md): after `pupil-ledger erase` the UPN cannot be recovered
from any table or export, even with every key the ledger holds, and the whole log still verifies."""

from __future__ import annotations

import base64
import uuid
from datetime import date
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from api.app import create_app
from ledger.core import merkle, notes
from ledger.core.errors import LedgerError
from ledger.storage.store import SubjectErased
from ledger.tools import admin
from ledger.transparency import verify
from ledger.transparency.tlog import Log, stored_envelopes
from projections.runner import VIEWS, Projector

from .conftest import LA, PROVIDER, SCHOOL_A, UPN, World, upn
from .processes import run_cli


def tables(w: World) -> list[str]:
    store = w.ledger.store
    if store.is_postgres:
        return [r[0] for r in store.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    return [r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")]


def every_value(w: World) -> list[bytes]:
    out = []
    for table in tables(w):
        for row in w.ledger.store.query(f"SELECT * FROM {table}"):
            for value in row:
                out.append(bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode())
    return out


def traces(w: World, upn_: str, pseudonyms: list[str]) -> list[str]:
    """Where the UPN or a pseudonym of it appears, in any form, in any table."""
    needles = [upn_.encode(), base64.b64encode(upn_.encode())[:12]] + [p.encode() for p in pseudonyms]
    found = []
    for value in every_value(w):
        found.extend(n.decode() for n in needles if n in value)
    return found


def opens(cipher: Any, state: bytes, aad: bytes | None) -> bool:
    try:
        if isinstance(cipher, AESGCM):
            cipher.decrypt(state[:12], state[12:], aad)
        else:
            cipher.decrypt(state)
    except Exception:  # noqa: BLE001 - any failure to open is the answer "no"
        return False
    return True


def test_erase_leaves_nothing_recoverable_and_the_log_verifiable(world: World) -> None:
    w, ledger = world, world.ledger
    admission = w.admit(UPN, sen="E", occurred_on=date(2026, 9, 3)).event_id
    w.post(
        "pupil.ap_placement_started",
        LA,
        {
            "commissioner": LA,
            "setting": PROVIDER,
            "setting_type": "UKPRN",
            "tier": 2,
            "reason": "BEHAVIOUR",
            "planned_end": "2026-12-18",
            "hours_per_week": 15,
            "dual_registered": False,
        },
        upn=UPN,
    )
    w.admit(upn(2))  # another pupil, who must be untouched
    school = TestClient(create_app(ledger), headers={"authorization": f"Bearer {ledger.issue_token(SCHOOL_A, 'school')}"})
    assert school.get(f"/pupils/{UPN}/history").status_code == 200  # a view: recorded in the pupil's audit stream
    pupil_id = ledger.secrets.pupil_id(UPN)
    key = ledger.store.app.pupil_keys.get(pupil_id, max_age=0)
    assert key is not None
    wrapped = ledger.store.query("SELECT wrapped_key FROM pupil_keys WHERE originator_id = ?", (str(pupil_id),))[0][0]
    pseudonyms = [str(pupil_id), pupil_id.hex, key.audit_id, wrapped]
    projector = Projector(ledger.store)
    projector.catch_up()  # the views hold facts about the pupil, keyed by the pseudonym

    def view_facts() -> int:
        return sum(
            int(ledger.store.query(f"SELECT COUNT(*) FROM {t.name} WHERE subject = ?", (str(pupil_id),))[0][0])
            for view in VIEWS
            for t in view.tables
            if t.keyed_by_subject
        )

    def all_facts() -> int:
        return sum(int(ledger.store.query(f"SELECT COUNT(*) FROM {t.name}")[0][0]) for view in VIEWS for t in view.tables)

    assert view_facts() > 0
    others = all_facts() - view_facts()  # the other pupils' and organisations' facts, which must stay
    assert others > 0
    assert traces(w, UPN, pseudonyms), "the check must be able to find the pupil before erasure"
    sealer = admin.sealer(ledger)
    sealer.seal_all()
    before = Log(ledger.store).checkpoint()
    assert before is not None

    done = run_cli(ledger.settings, "erase", UPN, "--ground", "erasure_request", "--reference", "SAR-2026-17", "--yes")
    assert "erased 2 events" in done.stdout

    assert traces(w, UPN, pseudonyms) == []  # every table: the event store, the index, the keys, the views
    assert view_facts() == 0 and all_facts() == others
    projector.rebuild()  # and a rebuild of every view from the log cannot bring the pupil back
    assert traces(w, UPN, pseudonyms) == [] and view_facts() == 0
    if not ledger.store.is_postgres:  # secure_delete and the WAL checkpoint: not even in free pages of the file
        files = [ledger.settings.sqlite_path, ledger.settings.sqlite_path.with_name(ledger.settings.sqlite_path.name + "-wal")]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        assert wrapped.encode() not in raw and UPN.encode() not in raw

    # every key the ledger holds: the store key, and every pupil key still in the table, opens nothing of the pupil's
    store = ledger.store
    keys = [
        AESGCM(k.key)
        for k in (store.app.pupil_keys.get(uuid.UUID(r[0]), max_age=0) for r in store.query("SELECT originator_id FROM pupil_keys"))
        if k
    ]
    erased = 0
    for notification in store.app.recorder.select_notifications(1, 100_000):
        try:
            event: Any = store.app.mapper.to_domain_event(notification)
            assert UPN not in base64.b64decode(__import__("json").loads(event.envelope)["payload"]).decode()
        except SubjectErased:
            erased += 1
            state = bytes(notification.state)
            row = (
                uuid.UUID(str(notification.originator_id)).bytes
                + notification.originator_version.to_bytes(8, "big")
                + notification.topic.encode()
            )
            assert not any(opens(aes, state, aad) for aes in keys for aad in (None, b"", row)), (
                "a key in the database opened an erased event"
            )
            assert not opens(store.app.mapper.cipher, state, None), "the store key opened an erased event"
    assert erased == 2

    # reads forget the pupil; other pupils are untouched; the audit trail of who looked survives, unlinkable
    operator = TestClient(create_app(ledger), headers={"authorization": f"Bearer {w.admin_token}"})
    assert operator.get(f"/pupils/{UPN}/history", params={"purpose": "data_correction"}).status_code == 404
    assert operator.get(f"/events/{admission}", params={"purpose": "data_correction"}).status_code == 404
    assert operator.get("/access-log", params={"upn": UPN, "purpose": "subject_access_request"}).status_code == 404
    assert operator.get(f"/pupils/{upn(2)}/history", params={"purpose": "data_correction"}).status_code == 200
    oversight = operator.get("/access-log", params={"org": SCHOOL_A}).json()["views"]
    assert [v["type"] for v in oversight] == ["access.record_viewed"] and oversight[0]["pupil"] == key.audit_id
    kinds = [r[0] for r in store.query("SELECT type FROM ledger_index WHERE type IN ('access.record_viewed', 'access.record_erased')")]
    assert kinds.count("access.record_erased") == 1

    # the log: every entry and tile verifies, the erased envelopes are reported as erased, old checkpoints stay consistent
    sealer.seal_all()
    vkey = admin.log_vkey(ledger)
    log = Log(store)
    report = verify.audit(log.fetch, vkey, envelopes=stored_envelopes(store))
    assert report.envelopes_erased == 2 and report.envelopes_checked == report.entries - 2
    after = log.checkpoint()
    assert after is not None and after[0] > before[0]
    old, new = notes.open_checkpoint(before[1], vkey)[0], notes.open_checkpoint(after[1], vkey)[0]
    merkle.verify_consistency(old.size, new.size, log.tree.consistency_proof(old.size, new.size), old.root, new.root)
    exported = b"".join(log.fetch(path) for path in log.tile_paths(after[0]))
    assert UPN.encode() not in exported and str(pupil_id).encode() not in exported

    # the UPN may be recorded afresh: a new stream, a new key
    w.admit(UPN, occurred_on=date(2026, 10, 5))
    assert [e["type"] for e in ledger.pupil_history(UPN)["events"]] == ["pupil.registered"]
    assert ledger.store.app.pupil_keys.get(pupil_id, max_age=0) not in (None, key)


def test_erase_refuses_unknown_pupils_and_a_second_erase(world: World) -> None:
    w = world
    w.admit(UPN)
    assert run_cli(w.ledger.settings, "erase", upn(9), "--ground", "erasure_request", "--yes", check=False).returncode == 1
    assert run_cli(w.ledger.settings, "erase", UPN, "--ground", "curiosity", "--yes", check=False).returncode == 1  # not a ground
    assert w.ledger.pupil_history(UPN)["events"]  # nothing happened
    w.ledger.erase(UPN, "recorded_in_error")
    second = run_cli(w.ledger.settings, "erase", UPN, "--ground", "erasure_request", "--yes", check=False)
    assert second.returncode == 1 and "not_found" in second.stderr


def test_a_stale_writer_cannot_resurrect_an_erased_stream(world: World) -> None:
    """A process that cached the pupil before another process erased it: its write starts a fresh stream instead."""
    w = world
    w.admit(UPN, occurred_on=date(2026, 9, 3))
    pupil_id = w.ledger.secrets.pupil_id(UPN)
    other = admin.open_ledger(w.ledger.settings)  # a second process's view of the same database
    other.erase(UPN, "erasure_request")
    # this process still has the pupil and its key in memory: its write is re-checked against the database
    with pytest.raises(LedgerError) as exc:
        w.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, upn=UPN)
    assert exc.value.problems[0].code == "unknown_pupil"
    assert w.ledger.store.query("SELECT COUNT(*) FROM pupil_keys WHERE originator_id = ?", (str(pupil_id),))[0][0] == 0
    fresh = w.admit(UPN, occurred_on=date(2026, 10, 5))
    assert fresh.created
    assert [e["type"] for e in other.pupil_history(UPN)["events"]] == ["pupil.registered"]
    other.store.close()


def test_stored_key_is_wrapped_and_bound_to_its_pupil(world: World) -> None:
    w = world
    w.admit(UPN)
    w.admit(upn(2))
    store = w.ledger.store
    rows = dict(store.query("SELECT originator_id, wrapped_key FROM pupil_keys"))
    a, b = str(w.ledger.secrets.pupil_id(UPN)), str(w.ledger.secrets.pupil_id(upn(2)))
    store.execute("UPDATE pupil_keys SET wrapped_key = ? WHERE originator_id = ?", (rows[b], a))  # swap in another pupil's key
    store.app.pupil_keys.forget(uuid.UUID(a))
    try:
        store.app.pupil_keys.get(uuid.UUID(a), max_age=0)
    except Exception as exc:  # noqa: BLE001 - the wrapping binds the key to its pupil
        assert type(exc).__name__ == "InvalidTag"
    else:
        raise AssertionError("a key moved to another pupil's row unwrapped")


@pytest.mark.slow
def test_erasing_from_the_command_line_takes_effect_at_once_in_a_running_server(world: World) -> None:
    """`erase` is another process: the server's caches must not keep serving the pupil."""
    import httpx

    from .processes import Server

    w = world
    w.admit(UPN, occurred_on=date(2026, 9, 3))
    school, operator = w.ledger.issue_token(SCHOOL_A, "school"), w.admin_token
    server = Server(w.ledger.settings).start()
    try:
        with httpx.Client(base_url=server.url) as http:

            def history(token: str, **params: str) -> int:
                return http.get(f"/pupils/{UPN}/history", params=params, headers={"authorization": f"Bearer {token}"}).status_code

            assert history(school) == 200 and history(operator, purpose="data_correction") == 200  # now cached in the server
            run_cli(w.ledger.settings, "erase", UPN, "--ground", "erasure_request", "--yes")
            assert history(operator, purpose="data_correction") == 404
            assert history(school) == 403  # no relationship any more: the school's registration is gone with the rest
    finally:
        server.stop()


def test_pupil_keys_in_memory_are_only_the_recent_ones() -> None:
    """The key cache is bounded by age and by count: a long catch-up must not keep every pupil's key (or grow)."""
    import os
    import time

    from ledger.storage.secrets import as_pupil_uuid
    from ledger.storage.store import PupilKeys

    keys = PupilKeys(os.urandom(32), ttl=0.2, max_keys=100)
    pupils = [as_pupil_uuid(os.urandom(16)) for _ in range(1000)]
    for start in range(0, 1000, 50):
        with keys.creating(pupils[start : start + 50]):
            pass
    assert len(keys) == 100  # the count bound
    time.sleep(0.3)
    with keys.creating(pupils[:1]):
        pass
    assert len(keys) == 1  # the others were too old to be used again


def test_the_erasure_and_the_views_forgetting_the_pupil_commit_together(world: World) -> None:
    """One use case, one transaction (issue 19): if the views cannot forget the pupil, the data key is not destroyed
    either, and the pupil stays readable and in the views; the next erasure does both."""
    from projections.runner import forget_pupil

    w, ledger = world, world.ledger
    w.admit(UPN, sen="E", occurred_on=date(2026, 9, 3))
    w.admit(upn(2))
    Projector(ledger.store).catch_up()
    pupil_id = ledger.secrets.pupil_id(UPN)

    def view_facts() -> int:
        return sum(
            int(ledger.store.query(f"SELECT COUNT(*) FROM {t.name} WHERE subject = ?", (str(pupil_id),))[0][0])
            for view in VIEWS
            for t in view.tables
            if t.keyed_by_subject
        )

    assert view_facts() > 0

    def forget_then_fail(pupil: uuid.UUID) -> None:
        assert forget_pupil(ledger.store, pupil) > 0  # the facts are deleted ... and then the transaction fails
        raise RuntimeError("the views could not forget the pupil")

    with pytest.raises(RuntimeError):
        ledger.erase(UPN, "erasure_request", forget=forget_then_fail)
    assert ledger.store.app.pupil_keys.get(pupil_id, max_age=0) is not None  # the key was not destroyed
    assert view_facts() > 0  # nor the views' facts
    assert [e["type"] for e in ledger.pupil_history(UPN)["events"]] == ["pupil.registered"]

    done = ledger.erase(UPN, "erasure_request", forget=lambda pupil: forget_pupil(ledger.store, pupil))
    assert done["events_erased"] == 1
    assert ledger.store.app.pupil_keys.get(pupil_id, max_age=0) is None and view_facts() == 0
    with pytest.raises(LedgerError):
        ledger.pupil_history(UPN)
    assert ledger.pupil_history(upn(2))["events"]  # another pupil untouched


@given(raw=st.binary(min_size=16, max_size=16), version=st.integers(0, 15), variant=st.integers(0, 3))
def test_a_pupil_stream_is_a_version_8_uuid_of_rfc_4122s_variant(raw: bytes, version: int, variant: int) -> None:
    """``is_pupil_stream`` reads the bits as ``UUID.version`` does: every version under every variant, and the pupils' own."""
    from ledger.storage.secrets import as_pupil_uuid, is_pupil_stream

    value = int.from_bytes(raw, "big")
    value = (value & ~(0xF << 76)) | (version << 76)
    value = (value & ~(0x3 << 62)) | (variant << 62)
    made = uuid.UUID(int=value)
    assert is_pupil_stream(made) == (made.version == 8)
    assert is_pupil_stream(as_pupil_uuid(raw))
    assert not is_pupil_stream(uuid.UUID(bytes=raw, version=4))
