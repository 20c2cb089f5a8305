"""Signature verification in worker processes (ledger/signatures.py): verdicts in order, and no worker outlives its parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import envelope, signatures

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


PARENT = """
from ledger import signatures
if __name__ == "__main__":
    batch = signatures.Batch(task_size=4)
    for _ in range(8):
        batch.add((b"k" * 32, b"s" * 64, b"m"))
    batch.results()
    print(" ".join(str(pid) for pid in signatures._pool._processes), flush=True)
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
    deadline = time.monotonic() + 10 * signatures.PARENT_CHECK_SECONDS
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
