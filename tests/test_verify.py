"""Verification from outside: an independent verifier, `pupil-ledger verify`, and tampering behind the ledger's back."""

from __future__ import annotations

import base64
import itertools
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ledger.config import Settings
from ledger.core import envelope, merkle
from ledger.tools import admin
from ledger.transparency import verify
from ledger.transparency.tlog import Log, stored_envelopes

from . import independent_verifier as iv
from .conftest import SCHOOL_A, World, upn
from .processes import CLI, Server, env_for, run_cli

FOREIGN = Path(__file__).parent / "fixtures" / "foreign-tlog"


def wait_sealed(url: str, size: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/log/checkpoint")
        if response.status_code == 200 and int(response.text.split("\n")[1]) >= size:
            return response.text
        time.sleep(0.05)
    raise AssertionError(f"the log did not reach size {size} in {timeout} s")


@pytest.mark.slow
def test_an_independent_verifier_checks_everything_the_server_serves(world: World) -> None:
    """Checkpoint signature, every inclusion proof, consistency between saved checkpoints, and the root from tiles."""
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school")
    server = Server(ledger.settings).start()
    try:
        vkey = httpx.get(f"{server.url}/log/vkey").text.strip()
        saved: list[iv.Checkpoint] = []
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}) as client:
            for batch in range(4):
                envelopes = [
                    world.sign(
                        world.event(
                            "pupil.registered",
                            SCHOOL_A,
                            {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
                            upn=upn(batch * 1000 + i),
                        )
                    )
                    for i in range(1, 31 + batch * 40)
                ]
                assert client.post("/batches", json={"envelopes": envelopes}).status_code == 201
                size = ledger.store.count_events()
                saved.append(iv.verify_checkpoint(wait_sealed(server.url, size), vkey))
                assert saved[-1].size == size
            latest = saved[-1]
            for index in range(latest.size):
                body = client.get("/log/proof/inclusion", params={"index": index, "tree_size": latest.size}).json()
                entry = base64.b64decode(body["entry"])
                iv.verify_inclusion(iv.leaf_hash(entry), index, latest.size, [base64.b64decode(p) for p in body["proof"]], latest.root)
            for one, two in itertools.combinations(saved, 2):
                body = client.get("/log/proof/consistency", params={"first": one.size, "second": two.size}).json()
                iv.verify_consistency(one.size, two.size, [base64.b64decode(p) for p in body["proof"]], one.root, two.root)

            def http_fetch(path: str) -> bytes:
                response = client.get(f"/log/{path}")
                if response.status_code == 404:
                    raise FileNotFoundError(path)
                return response.content

            assert iv.root_from_tiles(http_fetch, latest.size) == latest.root
            assert iv.audit(http_fetch, None, vkey).size == latest.size
    finally:
        server.stop()


def entry_at(offset: int) -> int:
    """Which entry of the foreign log's first bundle holds byte ``offset``."""
    data, i, n = (FOREIGN / "tile/entries/000").read_bytes(), 0, 0
    while i + 2 + int.from_bytes(data[i : i + 2], "big") <= offset:
        i, n = i + 2 + int.from_bytes(data[i : i + 2], "big"), n + 1
    return n


def test_verify_audit_accepts_a_log_written_by_another_implementation_and_rejects_one_changed_byte(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "unused")
    vkey = (FOREIGN / "vkey").read_text().strip()
    ok = run_cli(settings, "verify", "audit", str(FOREIGN), "--vkey", vkey)
    assert "OK: example.com/foreign-log size 66085" in ok.stdout
    for relative, offset, expect in [
        ("tile/0/001", 40, "entry 257"),
        ("tile/entries/000", 10, f"entry {entry_at(10)}"),
        ("tile/1/000", 100, "does not match the tiles below"),
        ("checkpoint", 30, "checkpoint"),
    ]:
        copy = tmp_path / relative.replace("/", "_")
        shutil.copytree(FOREIGN, copy)
        data = bytearray((copy / relative).read_bytes())
        data[offset] ^= 0x01
        (copy / relative).write_bytes(bytes(data))
        bad = run_cli(settings, "verify", "audit", str(copy), "--vkey", vkey, check=False)
        assert bad.returncode == 1, relative
        assert "FAILED" in bad.stderr and expect in bad.stderr, (relative, bad.stderr)


def test_our_exported_log_is_audited_by_both_verifiers(world: World, tmp_path: Path) -> None:
    for i in range(1, 300):
        world.admit(upn(i))
    admin.sealer(world.ledger).seal_all()
    log = Log(world.ledger.store)
    log.export(tmp_path / "log")
    vkey = admin.log_vkey(world.ledger)
    assert iv.audit(iv.dir_fetcher(tmp_path / "log"), None, vkey).size == log.tree_size()
    report = verify.audit(verify.dir_fetcher(tmp_path / "log"), vkey)
    assert report.entries == log.tree_size() and report.tiles_read == sum(1 for _ in log.tile_paths(log.tree_size()))


# -- tampering with the stored data behind the ledger's back ----------------------------------------------


def _id_column(world: World) -> str:
    return "notification_id" if world.ledger.store.is_postgres else "rowid"


def _leaf_of_sequence(world: World, sequence: int) -> int:
    return int(world.ledger.store.query("SELECT leaf_index FROM log_entries WHERE sequence = ?", (sequence,))[0][0])


@pytest.fixture
def sealed(world: World) -> World:
    for i in range(1, 41):
        world.admit(upn(i))
    admin.sealer(world.ledger).seal_all()
    report = verify.audit(Log(world.ledger.store).fetch, admin.log_vkey(world.ledger), envelopes=stored_envelopes(world.ledger.store))
    assert report.envelopes_checked == report.entries == world.ledger.store.count_events()
    return world


def audit_failure(world: World) -> verify.AuditFailure:
    with pytest.raises(verify.AuditFailure) as exc:
        verify.audit(Log(world.ledger.store).fetch, admin.log_vkey(world.ledger), envelopes=stored_envelopes(world.ledger.store))
    return exc.value


def sequences(world: World) -> list[int]:
    return [int(r[0]) for r in world.ledger.store.query("SELECT sequence FROM ledger_index ORDER BY sequence")]


def test_audit_names_an_event_whose_stored_bytes_were_changed(sealed: World) -> None:
    store, column = sealed.ledger.store, _id_column(sealed)
    victim = sequences(sealed)[20]
    state = bytearray(store.query(f"SELECT state FROM {store.events_table} WHERE {column} = ?", (victim,))[0][0])
    state[-5] ^= 0x01
    store.execute(f"UPDATE {store.events_table} SET state = ? WHERE {column} = ?", (bytes(state), victim))
    failure = audit_failure(sealed)
    assert failure.index == _leaf_of_sequence(sealed, victim) and "cannot be read" in str(failure)


def test_audit_names_a_deleted_event(sealed: World) -> None:
    store, column = sealed.ledger.store, _id_column(sealed)
    victim = sequences(sealed)[15]
    store.execute(f"DELETE FROM {store.events_table} WHERE {column} = ?", (victim,))
    failure = audit_failure(sealed)
    assert failure.index == _leaf_of_sequence(sealed, victim) and "other digests" in str(failure)


def test_audit_names_two_reordered_events(sealed: World) -> None:
    store, column = sealed.ledger.store, _id_column(sealed)
    first, second = sequences(sealed)[12], sequences(sealed)[30]
    for old, new in ((first, -1), (second, first), (-1, second)):  # swap the two events' places in the ledger's order
        store.execute(f"UPDATE {store.events_table} SET {column} = ? WHERE {column} = ?", (new, old))
    failure = audit_failure(sealed)
    assert failure.index == _leaf_of_sequence(sealed, first) and "reordered" in str(failure)


def test_audit_names_events_whose_rows_were_swapped(sealed: World) -> None:
    store, column = sealed.ledger.store, _id_column(sealed)
    first, second = sequences(sealed)[12], sequences(sealed)[30]
    a, b = (store.query(f"SELECT state FROM {store.events_table} WHERE {column} = ?", (s,))[0][0] for s in (first, second))
    store.execute(f"UPDATE {store.events_table} SET state = ? WHERE {column} = ?", (b, first))
    store.execute(f"UPDATE {store.events_table} SET state = ? WHERE {column} = ?", (a, second))
    failure = audit_failure(sealed)
    assert failure.index == _leaf_of_sequence(sealed, first)
    assert "altered" in str(failure)  # each pupil's rows are encrypted for their own place: a moved row no longer opens


def test_audit_names_a_changed_log_entry_even_when_its_hashes_are_rewritten(sealed: World) -> None:
    store = sealed.ledger.store
    store.execute("UPDATE log_entries SET entry = ? WHERE leaf_index = 7", (b'{"forged":true}',))
    assert audit_failure(sealed).index == 7
    # rewrite the leaf hash too, and every node above it: only the signed root can still tell
    forged = b'{"forged":true}'
    store.execute("UPDATE log_nodes SET hash = ? WHERE level = 0 AND idx = 7", (merkle.leaf_hash(forged),))
    nodes = {(int(lv), int(ix)): bytes(h) for lv, ix, h in store.query("SELECT level, idx, hash FROM log_nodes")}
    level, idx = 0, 7
    while (level + 1, idx // 2) in nodes:
        parent = merkle.node_hash(nodes[(level, idx & ~1)], nodes[(level, idx | 1)])
        level, idx = level + 1, idx // 2
        nodes[(level, idx)] = parent
        store.execute("UPDATE log_nodes SET hash = ? WHERE level = ? AND idx = ?", (parent, level, idx))
    failure = audit_failure(sealed)
    assert "entry 7" in str(failure) or "root" in str(failure)


def test_audit_names_a_truncated_tree(sealed: World) -> None:
    store = sealed.ledger.store
    size = Log(store).tree_size()
    store.execute("DELETE FROM log_entries WHERE leaf_index >= ?", (size - 3,))
    store.execute("DELETE FROM log_nodes WHERE level = 0 AND idx >= ?", (size - 3,))
    failure = audit_failure(sealed)
    assert failure.index == 0 and "missing" in str(failure)  # the only, partial, level-0 tile is gone at this size


def test_an_erased_pupil_leaves_the_log_verifiable(sealed: World) -> None:
    store = sealed.ledger.store
    assert store.erase_subject(sealed.ledger.secrets.pupil_id(upn(3))) == 1
    report = verify.audit(Log(store).fetch, admin.log_vkey(sealed.ledger), envelopes=stored_envelopes(store))
    assert report.envelopes_erased == 1 and report.envelopes_checked == report.entries - 1


def test_verify_audit_store_command_reports_the_first_bad_index(sealed: World) -> None:
    settings = sealed.ledger.settings
    vkey = admin.log_vkey(sealed.ledger)
    count = sealed.ledger.store.count_events()
    assert f"{count} entries, {count} stored envelopes" in run_cli(settings, "verify", "audit", "--store", "--vkey", vkey).stdout
    store, column = sealed.ledger.store, _id_column(sealed)
    victim = sequences(sealed)[25]
    store.execute(f"DELETE FROM {store.events_table} WHERE {column} = ?", (victim,))
    bad = run_cli(settings, "verify", "audit", "--store", "--vkey", vkey, check=False)
    assert bad.returncode == 1 and f"entry {_leaf_of_sequence(sealed, victim)}:" in bad.stderr


# -- crash safety of the sealer -------------------------------------------------------------------------


@pytest.mark.slow
def test_killing_the_sealer_mid_batch_and_restarting_gives_the_same_tree(world: World) -> None:
    ledger = world.ledger
    bodies = [
        world.sign(
            world.event(
                "pupil.registered",
                SCHOOL_A,
                {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
                upn=upn(i),
            )
        )
        for i in range(1, 3001)
    ]
    for start in range(0, len(bodies), 500):
        ledger.submit_batch(bodies[start : start + 500])
    total = ledger.store.count_events()
    want = merkle.root_of([merkle.leaf_hash(e) for e in _entries_from_index(world)])
    log, batch, kills = Log(ledger.store), 400, 0
    while kills < 5 and log.tree_size() < total:
        before = log.tree_size()
        process = subprocess.Popen(
            [*CLI, "seal", "--batch", str(batch)], env=env_for(ledger.settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while log.tree_size() == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert process.poll() is None, "the sealer exited by itself"
        process.send_signal(signal.SIGKILL)  # a batch has just committed: the next one is in its transaction
        process.wait(10)
        kills += 1
        size = log.tree_size()
        assert size % batch == 0 or size == total, f"a partial batch survived the kill: size {size}"
        assert int(ledger.store.query("SELECT COUNT(*) FROM log_entries")[0][0]) == size
    assert kills >= 2
    run_cli(ledger.settings, "seal", "--once")
    assert log.tree_size() == total
    assert verify.audit(log.fetch, admin.log_vkey(ledger), envelopes=stored_envelopes(ledger.store)).checkpoint.root == want


def _entries_from_index(world: World) -> list[bytes]:
    from ledger.core.tiles import log_entry

    rows = world.ledger.store.query("SELECT received_at, event_digest, envelope_digest FROM ledger_index ORDER BY sequence")
    return [log_entry(i, *r) for i, r in enumerate(rows)]


# -- the verify commands against a live server -----------------------------------------------------------


@pytest.mark.slow
def test_verify_commands_against_a_live_server(world: World, tmp_path: Path) -> None:
    ledger = world.ledger
    server = Server(ledger.settings).start()
    try:
        settings = ledger.settings
        env_path = tmp_path / "envelope.json"
        signed = world.sign(
            world.event(
                "pupil.registered",
                SCHOOL_A,
                {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
                upn=upn(1),
            )
        )
        env_path.write_text(envelope.decode(signed).canonical_bytes.decode())
        token = ledger.issue_token(SCHOOL_A, "school")
        assert httpx.post(f"{server.url}/events", json=signed, headers={"authorization": f"Bearer {token}"}).status_code == 201
        (tmp_path / "old.txt").write_text(wait_sealed(server.url, ledger.store.count_events()))
        world.admit(upn(2))
        (tmp_path / "new.txt").write_text(wait_sealed(server.url, ledger.store.count_events()))
        vkey = tmp_path / "vkey"
        vkey.write_text(httpx.get(f"{server.url}/log/vkey").text)
        url = ["--url", server.url]
        assert "OK:" in run_cli(settings, "verify", "checkpoint", str(tmp_path / "new.txt"), "--vkey", str(vkey)).stdout
        proof = tmp_path / "envelope.tlog-proof"
        assert (
            "OK: event" in run_cli(settings, "verify", "inclusion", str(env_path), "--vkey", str(vkey), "--save", str(proof), *url).stdout
        )
        assert (
            "carries this envelope"
            in run_cli(settings, "verify", "proof", str(proof), "--envelope", str(env_path), "--vkey", str(vkey)).stdout
        )
        assert (
            "extends"
            in run_cli(
                settings, "verify", "consistency", str(tmp_path / "old.txt"), str(tmp_path / "new.txt"), "--vkey", str(vkey), *url
            ).stdout
        )
        assert "OK:" in run_cli(settings, "verify", "audit", server.url, "--vkey", str(vkey)).stdout
        forged = tmp_path / "forged.txt"
        forged.write_text(
            (tmp_path / "new.txt").read_text().replace("\n", "\n", 1).replace((tmp_path / "new.txt").read_text().split("\n")[1], "999", 1)
        )
        assert run_cli(settings, "verify", "checkpoint", str(forged), "--vkey", str(vkey), check=False).returncode == 1
        other = tmp_path / "other.json"
        other.write_text(
            envelope.decode(
                world.sign(
                    world.event(
                        "pupil.registered",
                        SCHOOL_A,
                        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
                        upn=upn(3),
                    )
                )
            ).canonical_bytes.decode()
        )
        mismatch = run_cli(settings, "verify", "proof", str(proof), "--envelope", str(other), "--vkey", str(vkey), check=False)
        assert mismatch.returncode == 1 and "not this envelope" in mismatch.stderr
    finally:
        server.stop()
