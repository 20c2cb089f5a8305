"""Signature verification in worker processes (ledger/signatures.py): verdicts in order, and no worker outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import signatures
from ledger.core import envelope

ROOT = Path(__file__).resolve().parents[1]


def test_batch_verdicts_come_back_in_order() -> None:
    key = Ed25519PrivateKey.generate()
    public = envelope.raw_public_key(key.public_key())
    checks = []
    for i in range(3 * signatures.TASK_SIZE + 5):
        message = f"message {i}".encode()
        signature = key.sign(message if i % 7 else b"something else")  # every seventh is signed over other bytes
        checks.append((public, signature, message))
    batch = signatures.Batch()
    for check in checks:
        batch.add(check)
    assert batch.results() == [i % 7 != 0 for i in range(len(checks))]


def test_signing_in_the_workers_gives_the_bytes_signing_here_gives() -> None:
    key = Ed25519PrivateKey.generate()
    for count in (signatures.MIN_BATCH - 1, 3 * signatures.SIGN_TASK_SIZE + 1):  # in the caller, then in the workers
        messages = [f"receipt {i}".encode() for i in range(count)]
        assert signatures.Signing(key, messages).results() == [key.sign(m) for m in messages]


def test_a_worker_that_dies_leaves_its_work_to_the_caller(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(signatures, "_broken", False)  # whatever this test breaks, later tests get fresh workers
    signatures.start()
    key = Ed25519PrivateKey.generate()
    public = envelope.raw_public_key(key.public_key())
    checks = [(public, key.sign(b"m%d" % i), b"m%d" % i if i % 5 else b"other") for i in range(4 * signatures.TASK_SIZE)]
    for pid in signatures.pids():
        os.kill(pid, signal.SIGKILL)
    batch = signatures.Batch()
    for check in checks:
        batch.add(check)
    assert batch.results() == [i % 5 != 0 for i in range(len(checks))]
    assert "signature workers unavailable; working in the calling thread" in caplog.text
    caplog.clear()
    assert signatures.Signing(key, [b"a"] * 40).results() == [key.sign(b"a")] * 40
    again = signatures.Batch()
    for check in checks:
        again.add(check)
    assert again.results() == [i % 5 != 0 for i in range(len(checks))]
    assert caplog.text == ""  # said once per process, not once per batch (a backfill has thousands)


SMALL_PIPES = """
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ledger import signatures
if __name__ == "__main__":
    signatures.PIPE_BYTES = 4096  # the smallest pipe Linux makes: a batch's tasks and results overflow it many times
    key = Ed25519PrivateKey.generate()
    messages = [b"receipt %d" % i for i in range(5000)]
    print(signatures.Signing(key, messages).results() == [key.sign(m) for m in messages], flush=True)
"""


def test_a_batch_larger_than_the_pipes_does_not_deadlock(tmp_path: Path) -> None:
    """The largest batch (5,000 receipts) sends all its tasks before it reads a result; with pipes too small to
    hold them, the caller must still read results as it sends, or it and the workers wait for each other."""
    script = tmp_path / "small_pipes.py"
    script.write_text(SMALL_PIPES)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


PARENT = """
from ledger import signatures
if __name__ == "__main__":
    batch = signatures.Batch(task_size=4)
    for _ in range(8):
        batch.add((b"k" * 32, b"s" * 64, b"m"))
    batch.results()
    print(" ".join(str(pid) for pid in signatures.pids()), flush=True)
    import time
    time.sleep(60)
"""


def test_workers_leave_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert workers and all(_alive(pid) for pid in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
