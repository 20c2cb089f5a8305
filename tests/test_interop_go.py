"""An existing tlog client reads our log unchanged: Go's golang.org/x/mod/sumdb verifies the export.

tests/interop/go-client/main.go uses only x/mod's ``tlog`` and ``note`` packages (and the standard
library). Given the directory ``Log.export`` writes and the ledger's vkey it opens the checkpoint,
recomputes the root from the hash tiles, checks every entry of every bundle against its leaf hash,
proves and checks sampled records, and checks inclusionProof responses served by our HTTP API. This
is the reverse of tests/test_foreign_tlog.py (our verifiers on a log Go wrote).

Go is built offline in GOPATH mode from Debian's packages, as in tests/fixtures/foreign-tlog; the
test fails, not skips, when they are missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.core import envelope, notes
from ledger.tools import admin
from ledger.transparency.tlog import Log

from .conftest import World, upn

SOURCE = Path(__file__).resolve().parent / "interop" / "go-client"
GOCODE = Path("/usr/share/gocode")  # Debian's golang-golang-x-mod-dev puts golang.org/x/mod/... under src/ here
INSTALL = (
    "DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go golang-golang-x-mod-dev "
    "(Go and golang.org/x/mod sources in /usr/share/gocode; .ci/run does this)"
)
PUPILS = 600  # with the world's setup events: two full level-0 tiles, a partial one, and a partial level-1 tile


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go client, compiled once per session into a temporary directory."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"`go` is not on PATH; install it: {INSTALL}")
    for package in ("tlog", "note"):
        if not (GOCODE / "src/golang.org/x/mod/sumdb" / package).is_dir():
            pytest.fail(f"golang.org/x/mod/sumdb/{package} is not in {GOCODE}/src; install it: {INSTALL}")
    out = tmp_path_factory.mktemp("go-client")
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOCODE), GOCACHE=str(out / "cache"), GOPROXY="off", GOFLAGS="")
    binary = out / "go-client"
    built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=SOURCE, env=env, capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.fail(f"go build of {SOURCE} failed ({INSTALL}):\n{built.stdout}{built.stderr}")
    return binary


def run_client(binary: Path, directory: Path, vkey: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "-dir", str(directory), "-vkey", vkey, *extra], capture_output=True, text=True, timeout=300)


@pytest.fixture
def exported(world: World, tmp_path: Path) -> tuple[World, Path]:
    """A sealed log with two checkpoints, exported as a static C2SP tiled log."""
    sealer = admin.sealer(world.ledger)
    for i in range(1, PUPILS + 1):
        world.admit(upn(i))
        if i == PUPILS // 2:
            sealer.seal_all()  # an older checkpoint, for proofs against a tree size that is not the latest
    sealer.seal_all()
    Log(world.ledger.store).export(tmp_path / "log")
    return world, tmp_path / "log"


def test_go_client_verifies_our_exported_log(exported: tuple[World, Path], go_client: Path, tmp_path: Path) -> None:
    world, directory = exported
    log = Log(world.ledger.store)
    size = log.tree_size()
    assert size == world.ledger.store.count_events() >= PUPILS
    hash_tiles = [p for p in log.tile_paths(size) if not p.startswith("tile/entries/")]
    assert {"tile/0/000", "tile/0/001", "tile/1/000.p/2"} <= set(hash_tiles) and any(
        ".p/" in p for p in hash_tiles if p.startswith("tile/0/")
    )
    older = int(world.ledger.store.query("SELECT MIN(tree_size) FROM log_checkpoints WHERE tree_size > 0")[0][0])
    assert older < size

    # inclusionProof responses as our HTTP API serves them, for the latest and an older checkpoint
    with TestClient(create_app(world.ledger)) as client:
        wanted = [(i, size) for i in (0, 1, 255, 256, 511, 512, size - 1)] + [(i, older) for i in (0, older // 2, older - 1)]
        responses = [client.get("/log/proof/inclusion", params={"index": i, "tree_size": n}) for i, n in wanted]
    assert all(r.status_code == 200 for r in responses)
    proofs = tmp_path / "proofs.json"
    proofs.write_text(json.dumps([r.json() for r in responses]))

    done = run_client(go_client, directory, admin.log_vkey(world.ledger), "-proofs", str(proofs))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    origin = world.ledger.settings.origin
    root = log.tree.root(size)
    assert lines[-1].startswith(f"OK origin {origin} size {size} root {base64.b64encode(root).decode()}: "), done.stdout
    assert f"{len(hash_tiles)} hash tiles, {(size + 255) // 256} entry bundles, {size} leaves" in lines[-1], (hash_tiles, done.stdout)
    assert f"{len(wanted)} served proofs" in lines[-1]
    assert lines[:-1] == [
        f"proof leaf {i} tree {n}: {len(r.json()['proof'])} hashes, tlog.CheckRecord OK"
        for (i, n), r in zip(wanted, responses, strict=True)
    ]

    # a served proof with one hash changed is rejected by tlog.CheckRecord
    forged = [r.json() for r in responses]
    hashes = forged[3]["proof"]
    hashes[2] = base64.b64encode(bytes([base64.b64decode(hashes[2])[0] ^ 1]) + base64.b64decode(hashes[2])[1:]).decode()
    proofs.write_text(json.dumps(forged))
    bad = run_client(go_client, directory, admin.log_vkey(world.ledger), "-proofs", str(proofs))
    assert bad.returncode == 1 and "FAILED: proofs[3] (leaf 256, tree size" in bad.stderr and "invalid transparency proof" in bad.stderr, (
        bad.stderr
    )


def test_go_client_rejects_one_changed_byte(exported: tuple[World, Path], go_client: Path, tmp_path: Path) -> None:
    world, directory = exported
    vkey = admin.log_vkey(world.ledger)
    size = Log(world.ledger.store).tree_size()
    last = (size - 1) // 256
    partial0 = f"tile/0/{last:03d}.p/{size - 256 * last}"
    entry0 = int.from_bytes((directory / "tile/entries/000").read_bytes()[:2], "big")
    note = (directory / "checkpoint").read_text()
    signature = note.index("\u2014")
    cases = [
        ("tile/0/000", 100, "hash tiles of entries 0-255 do not lead to the checkpoint root"),  # a full tile
        (partial0, 5, "tree hash from the tiles: downloaded inconsistent tile"),
        ("tile/1/000.p/2", 40, "tree hash from the tiles: downloaded inconsistent tile"),
        ("tile/entries/000", 2 + entry0 // 2, "entry 0 in tile/entries/000: tlog.RecordHash(entry)"),  # inside entry 0
        ("tile/entries/001", 0, "entry bundle tile/entries/001"),  # a length prefix
        ("checkpoint", note.index("\n") + 1, "checkpoint: note.Open"),  # the size line
        ("checkpoint", note.index("\n", note.index("\n") + 1) + 3, "checkpoint: note.Open"),  # the root line
        ("checkpoint", len(note[:signature].encode()) + 3 + len(world.ledger.settings.origin) + 10, "checkpoint: note.Open"),  # signature
    ]
    for number, (relative, offset, expect) in enumerate(cases):
        copy = tmp_path / f"case{number}"
        shutil.copytree(directory, copy)
        data = bytearray((copy / relative).read_bytes())
        data[offset] ^= 0x01
        (copy / relative).write_bytes(bytes(data))
        done = run_client(go_client, copy, vkey)
        assert done.returncode == 1 and not done.stdout, (relative, offset, done.stdout, done.stderr)
        assert done.stderr.startswith("FAILED: ") and expect in done.stderr, (relative, offset, done.stderr)
    assert run_client(go_client, directory, vkey).returncode == 0  # the untouched export still verifies


def test_go_client_rejects_a_checkpoint_signed_by_another_key(exported: tuple[World, Path], go_client: Path) -> None:
    world, directory = exported
    other = notes.vkey(world.ledger.settings.origin, envelope.raw_public_key(Ed25519PrivateKey.generate().public_key()))
    done = run_client(go_client, directory, other)
    assert done.returncode == 1 and "checkpoint: note.Open" in done.stderr, done.stderr
