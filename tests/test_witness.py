"""Witnessing (c2sp.org/tlog-witness, tlog-cosignature/v1): every add-checkpoint rule over real HTTP, the
spec's race, persistence across a restart, the ledger's witnessing follower, and the verifier's quorum."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.witness_app import create_witness_app
from ledger.config import Settings
from ledger.core import merkle, notes
from ledger.core.notes import QuorumError, require_quorum
from ledger.tools import admin
from ledger.transparency.tlog import Log
from ledger.transparency.witness import Witness, WitnessState, public_raw, witness_vkey
from ledger.transparency.witnessing import WitnessConfig, Witnessing, parse_witnesses

from . import independent_verifier as iv
from .conftest import World, upn
from .processes import CLI, Server, free_port

ORIGIN = "example.org/test-log"
NOW = 1_790_000_000


class TestLog:
    """A small log kept in memory: real RFC 6962 roots and consistency proofs, checkpoints signed with a real key."""

    __test__ = False

    def __init__(self, origin: str = ORIGIN, key: Ed25519PrivateKey | None = None, salt: str = ""):
        self.origin = origin
        self.key = key or Ed25519PrivateKey.generate()
        self.vkey = notes.vkey(origin, public_raw(self.key))
        self.leaves = [merkle.leaf_hash(f"{salt}entry {i}".encode()) for i in range(64)]

    def _get(self, level: int, idx: int) -> bytes:
        return merkle.root_of(self.leaves[idx << level : (idx + 1) << level])

    def root(self, size: int) -> bytes:
        return merkle.tree_hash(self._get, size) if size else merkle.EMPTY_ROOT

    def proof(self, old: int, size: int) -> list[bytes]:
        return merkle.consistency_proof(self._get, old, size) if 0 < old < size else []

    def checkpoint(self, size: int) -> str:
        return notes.sign_checkpoint(notes.Checkpoint(self.origin, size, self.root(size)), self.key)

    def body(self, old: int, size: int, proof: list[bytes] | None = None, note: str | None = None) -> bytes:
        lines = [f"old {old}", *(base64.b64encode(h).decode() for h in (self.proof(old, size) if proof is None else proof))]
        return ("\n".join(lines) + "\n\n" + (note or self.checkpoint(size))).encode()


class InThreadWitness:
    """The witness app under uvicorn on a free port, in a thread of this process."""

    def __init__(self, witness: Witness):
        self.witness = witness
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_witness_app(witness), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InThreadWitness:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the witness app did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(f"{self.url}/add-checkpoint", content=body, timeout=10)


class WitnessProcess:
    """A real ``pupil-ledger witness serve`` process."""

    def __init__(self, name: str, key_file: Path, log_vkeys: list[str], db: Path):
        self.args = [*CLI, "witness", "serve", "--name", name, "--key-file", str(key_file), "--db", str(db)]
        for v in log_vkeys:
            self.args += ["--log-vkey", v]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WitnessProcess:
        self.process = subprocess.Popen([*self.args, "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"witness exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the witness did not start in 30 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def witness_init(tmp_path: Path, name: str) -> tuple[Path, str]:
    """``pupil-ledger witness init``: the key file and the printed vkey."""
    key_file = tmp_path / f"{name.replace('/', '_')}.pem"
    done = subprocess.run(
        [*CLI, "witness", "init", "--name", name, "--key-file", str(key_file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return key_file, done.stdout.split("witness vkey: ")[1].split()[0]


@pytest.fixture
def test_log() -> TestLog:
    return TestLog()


@pytest.fixture
def witness(tmp_path: Path, test_log: TestLog) -> Iterator[InThreadWitness]:
    w = Witness(
        "witness.example/w1", Ed25519PrivateKey.generate(), [test_log.vkey], WitnessState(tmp_path / "witness.sqlite3"), clock=lambda: NOW
    )
    with InThreadWitness(w) as running:
        yield running


def latest_size(w: InThreadWitness, origin: str = ORIGIN) -> int | None:
    latest = w.witness.state.latest(origin)
    return latest.size if latest else None


# -- the add-checkpoint rules ---------------------------------------------------------------------------


def test_cosigns_a_first_checkpoint_and_the_independent_verifier_accepts_it(witness: InThreadWitness, test_log: TestLog) -> None:
    assert httpx.get(witness.url + "/").text == witness.witness.vkey + "\n"
    assert witness.witness.vkey.startswith("witness.example/w1+")
    note = test_log.checkpoint(5)
    response = witness.post(test_log.body(0, 5, note=note))
    assert response.status_code == 200, response.text
    assert response.text.startswith("\u2014 witness.example/w1 ") and response.text.endswith("\n")
    cosigned = note + response.text
    assert (
        iv.verify_note(cosigned, [test_log.vkey, witness.witness.vkey], require_all=True) == test_log.checkpoint(5).split("\n\n")[0] + "\n"
    )
    assert require_quorum(cosigned, [witness.witness.vkey], 1) == {"witness.example/w1": NOW}
    assert latest_size(witness) == 5


def test_extends_with_a_consistency_proof_and_recosigns_the_same_checkpoint(witness: InThreadWitness, test_log: TestLog) -> None:
    assert witness.post(test_log.body(0, 3)).status_code == 200
    for old, size in ((3, 8), (8, 8), (8, 33), (33, 64)):
        response = witness.post(test_log.body(old, size))
        assert response.status_code == 200, (old, size, response.text)
        assert require_quorum(test_log.checkpoint(size) + response.text, [witness.witness.vkey], 1)
        assert latest_size(witness) == size


def test_unknown_origin_is_404(witness: InThreadWitness) -> None:
    other = TestLog("example.org/other-log")
    response = witness.post(other.body(0, 4))
    assert (response.status_code, latest_size(witness, other.origin)) == (404, None)
    assert "unknown log origin" in response.text


def test_no_trusted_signature_is_403(witness: InThreadWitness, test_log: TestLog) -> None:
    impostor = TestLog(ORIGIN)  # same origin, another key
    response = witness.post(impostor.body(0, 4))
    assert (response.status_code, latest_size(witness)) == (403, None)
    # a trusted key's name and id with a signature over other bytes does not count either
    good = test_log.checkpoint(4)
    forged = good.replace(base64.b64encode(test_log.root(4)).decode(), base64.b64encode(test_log.root(5)).decode())
    assert witness.post(test_log.body(0, 4, note=forged)).status_code == 403
    # unknown extra signatures are ignored: the trusted one is enough
    trusted, untrusted = notes.Note.parse(good), notes.Note.parse(impostor.checkpoint(4))
    both = notes.Note(trusted.body, (*untrusted.signatures, *trusted.signatures))
    assert witness.post(test_log.body(0, 4, note=both.text())).status_code == 200


def _malformed_bodies(log: TestLog) -> dict[str, bytes]:
    note = log.checkpoint(5)
    h = base64.b64encode(b"\x07" * 32).decode()
    return {
        "old size larger than the checkpoint": log.body(6, 5, proof=[]),
        "no blank line": f"old 0\n{note.split(chr(10) + chr(10))[0]}\n".encode(),
        "leading zero": b"old 00\n\n" + note.encode(),
        "negative": b"old -1\n\n" + note.encode(),
        "not old": b"older 0\n\n" + note.encode(),
        "two spaces": b"old  0\n\n" + note.encode(),
        "not base64": b"old 3\n!!!!\n\n" + note.encode(),
        "short hash": f"old 3\n{base64.b64encode(b'x' * 31).decode()}\n\n".encode() + note.encode(),
        "64 proof lines": ("old 3\n" + (h + "\n") * 64 + "\n").encode() + note.encode(),
        "not utf-8": b"old 0\n\n\xff\xfe" + note.encode(),
        "bad checkpoint size": b"old 0\n\n" + note.replace("\n5\n", "\n05\n").encode(),
        "no signature lines": b"old 0\n\n" + note.split("\n\n")[0].encode() + b"\n",
    }


@pytest.mark.parametrize("case", list(_malformed_bodies(TestLog())))
def test_malformed_requests_are_400_and_change_nothing(witness: InThreadWitness, test_log: TestLog, case: str) -> None:
    assert witness.post(test_log.body(0, 3)).status_code == 200
    response = witness.post(_malformed_bodies(test_log)[case])
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain") and response.text.strip()
    assert latest_size(witness) == 3


def test_at_most_63_proof_lines_are_accepted_as_a_proof(witness: InThreadWitness, test_log: TestLog) -> None:
    assert witness.post(test_log.body(0, 3)).status_code == 200
    response = witness.post(test_log.body(3, 5, proof=[b"\x07" * 32] * 63))
    assert response.status_code == 422  # parsed, then the proof fails


def test_a_stale_old_size_is_409_with_the_latest_size(witness: InThreadWitness, test_log: TestLog) -> None:
    assert witness.post(test_log.body(0, 0)).status_code == 200  # the empty tree can be cosigned
    assert witness.post(test_log.body(0, 5)).status_code == 200
    for old, size in ((0, 9), (3, 9), (6, 9)):
        response = witness.post(test_log.body(old, size))
        assert response.status_code == 409
        assert response.headers["content-type"] == "text/x.tlog.size"
        assert response.text == "5\n"
    assert latest_size(witness) == 5
    assert witness.witness.state.evidence(ORIGIN) == []  # a stale client is not evidence of anything


def test_the_same_size_with_another_root_is_409_and_kept_as_evidence(witness: InThreadWitness, test_log: TestLog) -> None:
    assert witness.post(test_log.body(0, 5)).status_code == 200
    fork = TestLog(ORIGIN, key=test_log.key, salt="fork ")  # the trusted key signs a different tree
    response = witness.post(fork.body(5, 5))
    assert (response.status_code, response.headers["content-type"], response.text) == (409, "text/x.tlog.size", "5\n")
    assert latest_size(witness) == 5 and witness.witness.state.latest(ORIGIN).root == test_log.root(5)  # type: ignore[union-attr]
    [(status, reason, request)] = witness.witness.state.evidence(ORIGIN)
    assert status == 409 and "another root" in reason and fork.checkpoint(5).split("\n\n")[0] in request


def test_a_bad_consistency_proof_is_422_and_kept_as_evidence(witness: InThreadWitness, test_log: TestLog) -> None:
    assert witness.post(test_log.body(0, 5)).status_code == 200
    proof = test_log.proof(5, 9)
    tampered = [proof[0], bytes([proof[1][0] ^ 1]) + proof[1][1:], *proof[2:]]
    fork = TestLog(ORIGIN, key=test_log.key, salt="fork ")
    cases = {
        "tampered hash": test_log.body(5, 9, proof=tampered),
        "one hash short": test_log.body(5, 9, proof=proof[:-1]),
        "one hash too many": test_log.body(5, 9, proof=[*proof, proof[0]]),
        "proof for another tree": fork.body(5, 9),
        "proof for another size": test_log.body(5, 9, proof=test_log.proof(4, 9)),
        "equal sizes need an empty proof": test_log.body(5, 5, proof=[proof[0]]),
    }
    for case, body in cases.items():
        response = witness.post(body)
        assert response.status_code == 422, (case, response.text)
        assert latest_size(witness) == 5, case
    assert [e[0] for e in witness.witness.state.evidence(ORIGIN)] == [422] * len(cases)
    assert witness.post(test_log.body(5, 9)).status_code == 200


def test_a_proof_from_size_zero_must_be_empty(witness: InThreadWitness, test_log: TestLog) -> None:
    response = witness.post(test_log.body(0, 5, proof=[test_log.root(2)]))
    assert (response.status_code, latest_size(witness)) == (422, None)


# -- the race the spec describes ------------------------------------------------------------------------------


def test_concurrent_submissions_cannot_roll_the_witness_back(witness: InThreadWitness, test_log: TestLog) -> None:
    """All requests claim the same old size: exactly one wins each round, the others get 409 with the winner's size."""
    assert witness.post(test_log.body(0, 4)).status_code == 200
    old = 4
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(6):
            sizes = [old + 1 + k for k in range(8)]  # A with size N, B with size N+K, ...
            barrier = threading.Barrier(len(sizes))

            def submit(size: int, old: int = old, barrier: threading.Barrier = barrier) -> tuple[int, int, str]:
                body = test_log.body(old, size)
                barrier.wait()
                r = witness.post(body)
                return size, r.status_code, r.text

            results = list(pool.map(submit, sizes))
            winners = [size for size, status, _ in results if status == 200]
            assert len(winners) == 1, (round_, results)
            assert all(text == f"{winners[0]}\n" for _, status, text in results if status == 409), results
            assert {status for _, status, _ in results} <= {200, 409}
            assert latest_size(witness) == winners[0]
            old = winners[0]
    assert old > 4


def test_the_check_and_update_wait_for_one_transaction(witness: InThreadWitness, test_log: TestLog, tmp_path: Path) -> None:
    """While another writer holds the witness file, two submissions (N and N+K) queue; afterwards neither rolled back."""
    import sqlite3

    assert witness.post(test_log.body(0, 4)).status_code == 200
    blocker = sqlite3.connect(tmp_path / "witness.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(witness.post, test_log.body(4, 20))
        time.sleep(0.3)
        small = pool.submit(witness.post, test_log.body(4, 6))
        time.sleep(0.3)
        assert not big.done() and not small.done()
        blocker.execute("COMMIT")
        statuses = sorted([big.result().status_code, small.result().status_code])
    blocker.close()
    assert statuses == [200, 409]
    assert latest_size(witness) in (6, 20)
    if latest_size(witness) == 6:  # the small one won; the big one can still follow with a proof from 6
        assert witness.post(test_log.body(6, 20)).status_code == 200
    assert witness.post(test_log.body(4, 6)).status_code == 409  # never back to 6
    assert latest_size(witness) == 20


# -- persistence ------------------------------------------------------------------------------------------------


def test_the_witness_process_keeps_its_state_across_a_restart(tmp_path: Path, test_log: TestLog) -> None:
    key_file, vkey = witness_init(tmp_path, "witness.example/persistent")
    again = subprocess.run(
        [*CLI, "witness", "init", "--name", "witness.example/persistent", "--key-file", str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "never overwritten" in again.stderr
    process = WitnessProcess("witness.example/persistent", key_file, [test_log.vkey], tmp_path / "w.sqlite3").start()
    try:
        assert httpx.get(process.url + "/").text.strip() == vkey
        response = httpx.post(process.url + "/add-checkpoint", content=test_log.body(0, 7))
        assert response.status_code == 200
        assert iv.verify_note(test_log.checkpoint(7) + response.text, [vkey])
    finally:
        process.kill()  # SIGKILL: the state must already be on disk when the 200 was sent
    process.start()
    try:
        stale = httpx.post(process.url + "/add-checkpoint", content=test_log.body(0, 9))
        assert (stale.status_code, stale.text) == (409, "7\n")
        assert httpx.post(process.url + "/add-checkpoint", content=test_log.body(7, 9)).status_code == 200
    finally:
        process.kill()


@pytest.mark.parametrize("command", ["init", "serve"])
def test_witness_commands_have_help_with_an_example(command: str) -> None:
    done = subprocess.run([*CLI, "witness", command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Example:" in done.stdout and f"pupil-ledger witness {command}" in done.stdout


def test_witness_serve_rejects_a_cosigner_key_as_a_log_key(tmp_path: Path) -> None:
    key_file, vkey = witness_init(tmp_path, "witness.example/w")
    done = subprocess.run(
        [
            *CLI,
            "witness",
            "serve",
            "--name",
            "witness.example/w",
            "--key-file",
            str(key_file),
            "--log-vkey",
            vkey,
            "--db",
            str(tmp_path / "w.sqlite3"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "type 01" in done.stderr


# -- quorum -----------------------------------------------------------------------------------------------------


def test_require_quorum_counts_only_valid_cosignatures_of_the_named_witnesses(test_log: TestLog) -> None:
    keys = {name: Ed25519PrivateKey.generate() for name in ("w.example/a", "w.example/b", "w.example/c")}
    vkeys = {name: witness_vkey(name, key) for name, key in keys.items()}
    note = test_log.checkpoint(5)
    body = notes.Note.parse(note).body
    lines = {name: notes.cosign(body, name, key, NOW + i) for i, (name, key) in enumerate(keys.items())}
    two = note + lines["w.example/a"].line() + lines["w.example/b"].line()
    assert require_quorum(two, [vkeys["w.example/a"], vkeys["w.example/b"]], 2) == {"w.example/a": NOW, "w.example/b": NOW + 1}
    assert require_quorum(two, list(vkeys.values()), 2) == {"w.example/a": NOW, "w.example/b": NOW + 1}
    with pytest.raises(QuorumError, match="no valid cosignature by: w.example/c") as raised:
        require_quorum(two, list(vkeys.values()), 3)
    assert raised.value.missing == ["w.example/c"]
    # a cosignature whose timestamp was changed does not count
    sig = lines["w.example/b"]
    moved = notes.Signature(sig.name, sig.key_id, (NOW + 99).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(QuorumError, match="w.example/b"):
        require_quorum(note + lines["w.example/a"].line() + moved.line(), [vkeys["w.example/a"], vkeys["w.example/b"]], 2)
    # a cosignature by the same name with another key does not count
    other = notes.cosign(body, "w.example/c", Ed25519PrivateKey.generate(), NOW)
    with pytest.raises(QuorumError, match="w.example/c"):
        require_quorum(note + other.line(), [vkeys["w.example/c"]], 1)
    for bad_quorum in (0, 3):
        with pytest.raises(notes.NoteError, match="quorum"):
            require_quorum(two, [vkeys["w.example/a"], vkeys["w.example/b"]], bad_quorum)
    with pytest.raises(notes.NoteError, match="type 04"):
        require_quorum(two, [test_log.vkey], 1)
    with pytest.raises(notes.NoteError, match="same name"):
        require_quorum(two, [vkeys["w.example/a"], witness_vkey("w.example/a", Ed25519PrivateKey.generate())], 1)


def test_witness_configuration_is_checked() -> None:
    vkey = witness_vkey("w.example/a", Ed25519PrivateKey.generate())
    [config] = parse_witnesses(f" http://127.0.0.1:8100/ ={vkey} , ")
    assert (config.url, config.name) == ("http://127.0.0.1:8100", "w.example/a")
    assert Settings.from_env({"PUPIL_LEDGER_WITNESSES": f"http://w={vkey}"}).witnesses == f"http://w={vkey}"
    for bad in (
        vkey,
        f"ftp://w={vkey}",
        "http://w=nonsense",
        f"http://w={notes.vkey('log', b'x' * 32)}",
        f"http://a={vkey},http://b={vkey}",
    ):
        with pytest.raises(ValueError):
            parse_witnesses(bad)


# -- the ledger's side ---------------------------------------------------------------------------------------


def _seal(world: World, pupils: range) -> int:
    for n in pupils:
        world.admit(upn(n))
    admin.sealer(world.ledger).seal_all()
    return Log(world.ledger.store).tree_size()


def test_the_follower_learns_the_witness_size_from_a_409_and_stores_verified_cosignatures(world: World, tmp_path: Path) -> None:
    ledger = world.ledger
    log_vkey = admin.log_vkey(ledger)
    w = Witness("inspectorate.example/witness", Ed25519PrivateKey.generate(), [log_vkey], WitnessState(tmp_path / "w.sqlite3"))
    with InThreadWitness(w) as running:
        first = _seal(world, range(1, 4))
        first_note = Log(ledger.store).checkpoint()[1]  # type: ignore[index]
        assert running.post(f"old 0\n\n{first_note}".encode()).status_code == 200  # someone else showed it this checkpoint
        second = _seal(world, range(4, 9))
        assert second > first
        follower = Witnessing(ledger.store, [WitnessConfig(running.url, notes.Verifier.parse(w.vkey))])
        try:
            assert follower.step() == 1  # old 0 -> 409 "first" -> proof first..second -> 200
            assert follower.step() == 0  # nothing new
        finally:
            follower.close()
        assert latest_size(running, ledger.settings.origin) == second
    size, served = Log(ledger.store).checkpoint()  # type: ignore[misc]
    assert size == second
    assert iv.verify_checkpoint(served, log_vkey).size == second
    assert iv.verify_note(served, [log_vkey, w.vkey], require_all=True)


def test_the_follower_stores_nothing_that_does_not_verify_with_the_configured_key(world: World, tmp_path: Path) -> None:
    ledger = world.ledger
    w = Witness(
        "inspectorate.example/witness", Ed25519PrivateKey.generate(), [admin.log_vkey(ledger)], WitnessState(tmp_path / "w.sqlite3")
    )
    _seal(world, range(1, 3))
    wrong = notes.Verifier.parse(witness_vkey("inspectorate.example/witness", Ed25519PrivateKey.generate()))
    with InThreadWitness(w) as running:
        follower = Witnessing(ledger.store, [WitnessConfig(running.url, wrong)])
        try:
            assert follower.step() == 0
        finally:
            follower.close()
        assert latest_size(running, ledger.settings.origin) is not None  # the witness did cosign ...
    assert ledger.store.query("SELECT COUNT(*) FROM log_cosignatures")[0][0] == 0  # ... but not with the key we trust


def _wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_end_to_end_two_witnesses_cosign_the_served_checkpoint_and_the_quorum_names_the_missing_one(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_vkey = admin.log_vkey(world.ledger)
    first_size = _seal(world, range(1, 6))
    witnesses = {}
    for name in ("inspectorate.example/w1", "audit.example/w2"):
        key_file, vkey = witness_init(tmp_path, name)
        witnesses[name] = (WitnessProcess(name, key_file, [log_vkey], tmp_path / f"{name.replace('/', '_')}.sqlite3").start(), vkey)
    both = [vkey for _, vkey in witnesses.values()]
    monkeypatch.setenv("PUPIL_LEDGER_WITNESSES", ",".join(f"{p.url}={vkey}" for p, vkey in witnesses.values()))
    server = Server(world.ledger.settings).start()
    try:

        def served() -> str:
            return httpx.get(f"{server.url}/log/checkpoint").text

        def has_quorum(vkeys: list[str], quorum: int, size: int) -> bool:
            text = served()
            try:
                require_quorum(text, vkeys, quorum)
            except QuorumError:
                return False
            return iv.verify_checkpoint(text, log_vkey).size == size  # the latest, signed by the log, cosigned

        _wait_for(lambda: has_quorum(both, 2, first_size), "2 of 2 cosignatures")
        assert iv.verify_note(served(), [log_vkey, *both], require_all=True)

        w2, w2_vkey = witnesses["audit.example/w2"]
        w2.kill()
        for n in range(6, 9):
            world.admit(upn(n))  # the server's sealer signs a new checkpoint; only w1 can cosign it
        new_size = first_size + 3
        _wait_for(lambda: has_quorum(both[:1], 1, new_size), "w1's cosignature on the new checkpoint")
        text = served()
        with pytest.raises(QuorumError, match="no valid cosignature by: audit.example/w2") as raised:
            require_quorum(text, both, 2)
        assert raised.value.missing == ["audit.example/w2"]
        assert require_quorum(text, both, 1).keys() == {"inspectorate.example/w1"}

        w2.start()  # back, with its old state: the ledger brings it forward with a consistency proof
        _wait_for(lambda: has_quorum(both, 2, new_size), "w2 catching up")
    finally:
        server.stop()
        for process, _ in witnesses.values():
            process.kill()


def test_the_api_keeps_asking_witnesses_when_sealing_and_projecting_run_elsewhere(world: World) -> None:
    """`serve --no-followers` leaves sealing and projections to their own processes, but nothing else asks the
    witnesses to cosign, so the witnessing follower stays in the API process."""
    from dataclasses import replace

    from api.bootstrap import default_followers
    from ledger.transparency.tlog import Sealer
    from ledger.transparency.witnessing import Witnessing
    from projections.runner import Projector

    vkey = witness_vkey("w.example/a", Ed25519PrivateKey.generate())
    world.ledger.settings = replace(world.ledger.settings, witnesses=f"http://127.0.0.1:1={vkey}")
    kinds = {False: [Witnessing], True: [Sealer, Projector, Witnessing]}
    for in_process, expected in kinds.items():
        followers = default_followers(world.ledger, in_process)
        assert [type(f) for f in followers] == expected
        for follower in followers:
            getattr(follower, "close", lambda: None)()
