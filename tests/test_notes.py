"""The note opener agrees with c2sp.org/signed-note and Go's note.Open (issue 18, item 16): a trusted key's first
signature line decides for that key, and one that does not verify makes the note invalid, whatever follows.

Each case is also opened by Go's golang.org/x/mod/sumdb/note (tests/interop/go-note), built offline from Debian's
packages as tests/test_interop_go.py does; the test fails, not skips, when they are missing.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core import notes

SOURCE = Path(__file__).resolve().parent / "interop" / "go-note"
GOCODE = Path("/usr/share/gocode")
INSTALL = "apt-get install -y golang-go golang-golang-x-mod-dev (.ci/run does this)"

BODY = "log.example/a\n7\nb3JpZ2luYWwgcm9vdCBoYXNoIG9mIDMyIGJ5dGVzIQ==\n"
LOG, OTHER = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
LOG_VKEY = notes.vkey("log.example/a", notes._public_raw(LOG))
OTHER_VKEY = notes.vkey("log.example/b", notes._public_raw(OTHER))


def line(name: str, key: Ed25519PrivateKey, body: str = BODY, broken: bool = False) -> str:
    sig = bytearray(key.sign(body.encode()))
    if broken:
        sig[10] ^= 1
    return f"\u2014 {name} {base64.b64encode(notes.key_hash(name, notes._public_raw(key)) + bytes(sig)).decode()}\n"


def note(*lines: str, body: str = BODY) -> str:
    return body + "\n" + "".join(lines)


VALID, INVALID = line("log.example/a", LOG), line("log.example/a", LOG, broken=True)
CASES = {  # name: (note, expected: names of the verified signers, or None when the note is invalid)
    "valid": (note(VALID), ["log.example/a"]),
    "invalid then valid": (note(INVALID, VALID), None),
    "valid then invalid (a repeat of one key is ignored)": (note(VALID, INVALID), ["log.example/a"]),
    "invalid alone": (note(INVALID), None),
    "unknown key's bad signature is ignored": (note(line("stranger.example", STRANGER, broken=True), VALID), ["log.example/a"]),
    "the trusted key under another name is unknown": (note(line("log.example/z", LOG)), None),
    "two trusted keys": (note(VALID, line("log.example/b", OTHER)), ["log.example/a", "log.example/b"]),
    "second trusted key fails": (note(VALID, line("log.example/b", OTHER, broken=True)), None),
    "second trusted key fails first": (note(line("log.example/b", OTHER, broken=True), VALID), None),
    "a control character in the body": (note(line("log.example/a", LOG, BODY + "x\t\n"), body=BODY + "x\t\n"), None),
    "a carriage return in the body": (note(line("log.example/a", LOG, BODY + "x\r\n"), body=BODY + "x\r\n"), None),
    "101 signature lines": (note(VALID, *[line(f"s{i}.example", STRANGER) for i in range(100)]), None),
    "100 signature lines": (note(VALID, *[line(f"s{i}.example", STRANGER) for i in range(99)]), ["log.example/a"]),
}


def ours(text: str) -> list[str] | None:
    try:
        opened, good = notes.open_note(text, [notes.Verifier.parse(LOG_VKEY), notes.Verifier.parse(OTHER_VKEY)])
    except notes.NoteError:
        return None
    assert opened.body + "\n" == text[: len(opened.body) + 1]
    return [v.name for v in good]


@pytest.mark.parametrize("name", list(CASES))
def test_the_opener_decides_as_the_signed_note_specification_says(name: str) -> None:
    text, expected = CASES[name]
    assert ours(text) == expected


def test_a_checkpoint_whose_log_signature_fails_is_rejected_though_a_later_one_verifies() -> None:
    checkpoint = notes.Checkpoint("log.example/a", 7, bytes(32))
    good = notes.sign_checkpoint(checkpoint, LOG)
    body, signature = good.split("\n\n")
    forged_sig = bytearray(base64.b64decode(signature.split(" ")[2]))
    forged_sig[20] ^= 1
    forged = f"{body}\n\n\u2014 log.example/a {base64.b64encode(bytes(forged_sig)).decode()}\n{signature}"
    assert notes.open_checkpoint(good, LOG_VKEY)[0] == checkpoint
    with pytest.raises(notes.NoteError, match="does not verify"):
        notes.open_checkpoint(forged, LOG_VKEY)


@pytest.fixture(scope="module")
def go_note(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"`go` is not on PATH; install it: {INSTALL}")
    if not (GOCODE / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail(f"golang.org/x/mod/sumdb/note is not in {GOCODE}/src; install it: {INSTALL}")
    out = tmp_path_factory.mktemp("go-note")
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOCODE), GOCACHE=str(out / "cache"), GOPROXY="off", GOFLAGS="")
    built = subprocess.run([go, "build", "-o", str(out / "go-note"), "."], cwd=SOURCE, env=env, capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.fail(f"go build of {SOURCE} failed ({INSTALL}):\n{built.stdout}{built.stderr}")
    return out / "go-note"


def test_go_note_open_agrees_on_every_case(go_note: Path, tmp_path: Path) -> None:
    files = []
    for i, (text, _) in enumerate(CASES.values()):
        path = tmp_path / f"note{i}"
        path.write_bytes(text.encode())
        files.append(str(path))
    done = subprocess.run([str(go_note), "-vkey", LOG_VKEY, "-vkey", OTHER_VKEY, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    go = [None if out.startswith("ERR") else out.split()[1:] for out in done.stdout.splitlines()]
    assert dict(zip(CASES, go, strict=True)) == {name: expected for name, (_, expected) in CASES.items()}, done.stdout
