"""The transparency log: entry format, notes, sealing, checkpoints, tiles and proofs (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.core import merkle, notes, tiles
from ledger.core.notes import Checkpoint, NoteError, Verifier
from ledger.tools import admin
from ledger.transparency import tlog

from .conftest import World, upn


def test_entry_bytes_are_the_jcs_serialisation() -> None:
    fields = {"index": 1234, "received_at": "2026-10-05T09:00:00.000000Z", "event_digest": "ab" * 32, "envelope_digest": "cd" * 32}
    assert tiles.log_entry(**fields) == rfc8785.dumps(fields)


@pytest.mark.parametrize(("n", "path"), [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")])
def test_tile_index_encoding(n: int, path: str) -> None:
    assert tiles.encode_index(n) == path
    assert tiles.parse_tile_path(f"tile/2/{path}.p/7") == tiles.TileRef(2, n, 7)
    assert tiles.parse_tile_path(f"tile/entries/{path}") == tiles.TileRef(-1, n, 256)


@pytest.mark.parametrize(
    "bad",
    [
        "tile/0/1",
        "tile/0/x000/001",
        "tile/0/001.p/256",
        "tile/0/001.p/0",
        "tile/0/001.p/07",
        "tile/x/001",
        "tile/0/../001",
        "tile/64/000",
        "tile/0/001\n",
        "tile/entries/000.p/7\n",
        "tile/0/001\r",
    ],
)
def test_bad_tile_paths_are_rejected(bad: str) -> None:
    with pytest.raises(tiles.TilePathError):
        tiles.parse_tile_path(bad)


def test_entry_bundles_round_trip_and_reject_truncation() -> None:
    entries = [b"", b"a", b"x" * 300]
    assert tiles.decode_bundle(tiles.encode_bundle(entries)) == entries
    with pytest.raises(ValueError):
        tiles.decode_bundle(tiles.encode_bundle(entries)[:-1])


def test_checkpoint_notes_sign_verify_and_reject_tampering() -> None:
    key = Ed25519PrivateKey.generate()
    vkey = notes.vkey("example.org/log", notes._public_raw(key))
    text = notes.sign_checkpoint(Checkpoint("example.org/log", 7, b"\x01" * 32), key)
    checkpoint, _ = notes.open_checkpoint(text, vkey)
    assert (checkpoint.size, checkpoint.root) == (7, b"\x01" * 32)
    with pytest.raises(NoteError):
        notes.open_checkpoint(text.replace("\n7\n", "\n8\n"), vkey)
    other = notes.vkey("example.org/log", notes._public_raw(Ed25519PrivateKey.generate()))
    with pytest.raises(NoteError):
        notes.open_checkpoint(text, other)
    with pytest.raises(NoteError):
        Verifier.parse(vkey.replace("+", "+0", 1))


def test_cosignatures_verify_only_for_the_named_witness() -> None:
    log_key, witness_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = Checkpoint("example.org/log", 3, b"\x02" * 32).body()
    text = notes.sign_note(body, "example.org/log", log_key)
    line = notes.cosign(body, "witness.example/w1", witness_key, 1_700_000_000).line()
    note = notes.Note.parse(text + line)
    witness = Verifier.parse(notes.vkey("witness.example/w1", notes._public_raw(witness_key), notes.COSIGNATURE_ALG))
    assert notes.cosigners(note, [witness]) == {"witness.example/w1": 1_700_000_000}
    impostor = Verifier.parse(notes.vkey("witness.example/w1", notes._public_raw(Ed25519PrivateKey.generate()), notes.COSIGNATURE_ALG))
    assert notes.cosigners(note, [impostor]) == {}


# -- sealing ---------------------------------------------------------------------------------


def fill(world: World, n: int, first: int = 1) -> list[str]:
    return [world.admit(upn(i)).event_id for i in range(first, first + n)]


def expected_leaves(world: World) -> list[bytes]:
    """Leaf hashes recomputed from the ledger's own index, in sequence order (independently of the sealer)."""
    rows = world.ledger.store.query("SELECT received_at, event_digest, envelope_digest FROM ledger_index ORDER BY sequence")
    return [
        merkle.leaf_hash(rfc8785.dumps({"index": i, "received_at": r[0], "event_digest": r[1], "envelope_digest": r[2]}))
        for i, r in enumerate(rows)
    ]


def log_vkey(world: World) -> str:
    return admin.log_vkey(world.ledger)


def test_sealing_in_small_batches_builds_the_rfc6962_tree_and_signs_consistent_checkpoints(world: World) -> None:
    fill(world, 40)
    sealer = admin.sealer(world.ledger)
    sealer.batch_size = 7
    assert sealer.seal_all() == world.ledger.store.count_events()
    leaves = expected_leaves(world)
    log = tlog.Log(world.ledger.store)
    size, note = log.checkpoint() or (0, "")
    checkpoint, _ = notes.open_checkpoint(note, log_vkey(world))
    assert size == checkpoint.size == len(leaves)
    assert checkpoint.root == merkle.root_of(leaves)
    sizes = [int(r[0]) for r in world.ledger.store.query("SELECT tree_size FROM log_checkpoints ORDER BY tree_size")]
    assert sizes == [*range(7, len(leaves), 7), len(leaves)]
    for old in sizes:
        old_checkpoint, _ = notes.open_checkpoint((log.checkpoint(old) or (0, ""))[1], log_vkey(world))
        proof = log.tree.consistency_proof(old, size)
        merkle.verify_consistency(old, size, proof, old_checkpoint.root, checkpoint.root)
    for i, leaf in enumerate(leaves):
        merkle.verify_inclusion(leaf, i, size, log.tree.inclusion_proof(i, size), checkpoint.root)


def test_sealer_is_idempotent_and_follows_new_events(world: World) -> None:
    sealer = admin.sealer(world.ledger)
    first = sealer.seal_all()
    assert sealer.seal_all() == 0
    fill(world, 3, first=100)
    assert sealer.seal_all() == 3
    assert tlog.Log(world.ledger.store).tree_size() == first + 3


def test_sealer_refuses_to_sign_a_tree_inconsistent_with_its_last_checkpoint(world: World) -> None:
    sealer = admin.sealer(world.ledger)
    fill(world, 5)
    sealer.seal_all()
    store = world.ledger.store
    level, idx = merkle.complete_subtrees(0, tlog.Log(store).tree_size())[0]  # the oldest part of the tree's right edge
    store.execute("UPDATE log_nodes SET hash = ? WHERE level = ? AND idx = ?", (b"\x00" * 32, level, idx))  # behind its back
    before = store.query("SELECT COUNT(*) FROM log_checkpoints")
    fill(world, 2, first=100)
    with pytest.raises(tlog.LogError, match="not consistent|does not hash"):
        sealer.seal_batch()
    assert store.query("SELECT COUNT(*) FROM log_checkpoints") == before


def test_log_endpoints_serve_checkpoint_tiles_and_proofs(world: World) -> None:
    ids = fill(world, 300)
    admin.sealer(world.ledger).seal_all()
    leaves = expected_leaves(world)
    with TestClient(create_app(world.ledger)) as client:
        note = client.get("/log/checkpoint").text
        checkpoint, _ = notes.open_checkpoint(note, client.get("/log/vkey").text.strip())
        assert checkpoint.size == len(leaves) and checkpoint.root == merkle.root_of(leaves)
        full = client.get("/log/tile/0/000")
        assert full.status_code == 200 and full.content == b"".join(leaves[:256])
        assert "immutable" in full.headers["cache-control"]
        width = len(leaves) - 256
        assert client.get(f"/log/tile/0/001.p/{width}").content == b"".join(leaves[256:])
        assert client.get("/log/tile/1/000.p/1").content == merkle.root_of(leaves[:256])
        assert client.get("/log/tile/0/001").status_code == 404
        assert client.get(f"/log/tile/0/001.p/{width + 1}").status_code == 404
        bad = client.get("/log/tile/0/1")
        assert bad.status_code == 404 and bad.json()["errors"][0]["code"] == "no_such_tile"
        bundle = tiles.decode_bundle(client.get("/log/tile/entries/000").content)
        assert [merkle.leaf_hash(e) for e in bundle] == leaves[:256]

        body = client.get("/log/proof/inclusion", params={"event_id": ids[10]}).json()
        merkle.verify_inclusion(
            base64.b64decode(body["leaf_hash"]),
            body["leaf_index"],
            body["tree_size"],
            [base64.b64decode(p) for p in body["proof"]],
            checkpoint.root,
        )
        assert body["checkpoint"] == note
        assert client.get("/log/proof/inclusion", params={"index": 3, "event_id": ids[0]}).status_code == 400
        assert client.get("/log/proof/inclusion", params={"index": 10_000}).status_code == 404

        body = client.get("/log/proof/consistency", params={"first": 5}).json()
        merkle.verify_consistency(
            5, body["second"], [base64.b64decode(p) for p in body["proof"]], merkle.root_of(leaves[:5]), checkpoint.root
        )
        assert client.get("/log/proof/consistency", params={"first": len(leaves) + 1}).status_code == 422

        proof = client.get(f"/events/{ids[0]}/tlog-proof")
        assert proof.status_code == 200 and proof.text.startswith("c2sp.org/tlog-proof@v1\nextra ")
        assert client.get("/events/00000000-0000-4000-8000-000000000000/tlog-proof").status_code == 404
        late = world.admit(upn(999)).event_id
        pending = client.get(f"/events/{late}/tlog-proof")
        assert pending.status_code == 404 and pending.json()["errors"][0]["code"] == "not_yet_sealed"


def test_the_embedded_default_seals_in_the_background(world: World) -> None:
    from api.bootstrap import default_followers

    with TestClient(create_app(world.ledger, default_followers(world.ledger))) as client:
        receipt = world.admit(upn(5))
        import time

        deadline = time.monotonic() + 5
        while client.get(f"/events/{receipt.event_id}/tlog-proof").status_code != 200:
            assert time.monotonic() < deadline, "not sealed within 5 s"
            time.sleep(0.05)


@pytest.fixture
def sealed_world(world: World) -> Iterator[World]:
    fill(world, 3)
    admin.sealer(world.ledger).seal_all()
    yield world


def test_receipts_promise_inclusion_within_the_maximum_merge_delay(world: World) -> None:
    from ledger.core import envelope
    from ledger.service import RECEIPT_PAYLOAD_TYPE

    receipt = world.admit(upn(7))
    claim = envelope.decode(receipt.signed, payload_type=RECEIPT_PAYLOAD_TYPE).body
    assert claim["max_merge_delay_seconds"] == world.ledger.settings.max_merge_delay == 1.0
    assert claim["ledger"] == world.ledger.settings.origin


def test_under_load_the_sealer_paces_itself_and_keeps_the_merge_delay(world: World) -> None:
    """While events keep arriving, a follower that found less than a full batch waits its pace before the next
    step, so one sealing transaction takes several commits; the last event is still sealed within the maximum
    merge delay the receipts promise. (Stepping again at once, it would follow every commit with its own
    transaction: the gaps below would be near zero.)"""
    import time

    from api.background import Background

    sealer = admin.sealer(world.ledger)
    steps: list[tuple[float, int]] = []

    class TimedSealer:  # the real sealer; only its steps are timed
        name = "sealer"
        batch_size = sealer.batch_size

        def step(self) -> int:
            started = time.monotonic()
            done = sealer.step()
            steps.append((started, done))
            return done

    pace = 0.15
    background = Background([TimedSealer()], idle_seconds=0.05, pace_seconds=pace)
    background.start()
    try:
        commits = 0
        until = time.monotonic() + 1.2
        while time.monotonic() < until:
            world.admit(upn(200 + commits))
            commits += 1
            time.sleep(0.005)
        last_commit = time.monotonic()
        expected = world.ledger.store.count_events()
        while tlog.Log(world.ledger.store).tree_size() < expected:
            assert time.monotonic() - last_commit < world.ledger.settings.max_merge_delay, "not sealed within the maximum merge delay"
            time.sleep(0.01)
    finally:
        background.stop()
    busy = [i for i, (_, done) in enumerate(steps) if done]
    after_busy = [steps[i + 1][0] - steps[i][0] for i in busy if i + 1 < len(steps)]
    assert len(busy) >= 3 and min(after_busy) >= pace
    assert len(busy) < commits / 2, f"{len(busy)} sealing steps for {commits} commits"
