"""C2SP signed notes, checkpoints and cosignatures (pure).

- signed-note (c2sp.org/signed-note): a UTF-8 text body ending in a newline, a blank line, and
  signature lines ``— <key name> base64(4-byte key id || signature)``. Ed25519 key id =
  SHA-256(name || "\\n" || 0x01 || public key)[:4]; verifier keys are
  ``<name>+<hex key id>+<base64(type || public key)>``.
- tlog-checkpoint (c2sp.org/tlog-checkpoint): origin, decimal size, base64 root hash, then optional
  extension lines.
- tlog-cosignature/v1 (c2sp.org/tlog-cosignature): type 0x04, signed message
  ``"cosignature/v1\\ntime <t>\\n" || checkpoint body``, signature = u64 timestamp || Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core import ed25519

ED25519_ALG = b"\x01"
COSIGNATURE_ALG = b"\x04"
DASH = "\u2014"
MAX_SIGNATURES = 100  # as Go's note.Open: a note with more is malformed
_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")


class NoteError(ValueError):
    """A note, checkpoint or verifier key that is malformed or not signed by a trusted key."""


def key_hash(name: str, public_raw: bytes, alg: bytes = ED25519_ALG) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + alg + public_raw).digest()[:4]


def vkey(name: str, public_raw: bytes, alg: bytes = ED25519_ALG) -> str:
    """``<name>+<hex key hash>+<base64(type || public key)>``."""
    encoded = base64.b64encode(alg + public_raw).decode("ascii")
    return f"{name}+{key_hash(name, public_raw, alg).hex()}+{encoded}"


def _public_raw(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not standard base64") from None


@dataclass(frozen=True)
class Verifier:
    """A parsed verifier key: Ed25519 note signer (0x01) or Ed25519 cosigner (0x04)."""

    name: str
    key_id: bytes
    alg: bytes
    public_raw: bytes

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not parts[0]:
            raise NoteError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        if any(c.isspace() for c in name):
            raise NoteError("a key name has no spaces")
        data = _b64(encoded, "the verifier key")
        alg, raw = data[:1], data[1:]
        if alg not in (ED25519_ALG, COSIGNATURE_ALG) or len(raw) != 32:
            raise NoteError(f"unsupported verifier key type {alg.hex() or 'none'} (want 01 or 04 with a 32-byte Ed25519 key)")
        try:
            key_id = bytes.fromhex(hex_id)
        except ValueError:
            raise NoteError("the verifier key id is not hex") from None
        if len(key_id) != 4 or key_id != key_hash(name, raw, alg):
            raise NoteError(f"the verifier key id {hex_id} does not match its name and key")
        return cls(name, key_id, alg, raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return ed25519.verify(self.public_raw, signature, message)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    body: str
    signatures: tuple[Signature, ...] = field(default=())

    def text(self) -> str:
        return self.body + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, text: str) -> Note:
        if len(text) > 1_000_000:
            raise NoteError("the note is too large")
        if _FORBIDDEN.search(text):  # as Go's note.Open: UTF-8 text whose only control character is the newline
            raise NoteError("a note holds no control characters other than newlines, and no unpaired surrogates")
        split = text.rfind("\n\n")
        if split < 0:
            raise NoteError("a signed note has a body, a blank line and signature lines")
        body, sig_text = text[: split + 1], text[split + 2 :]
        if not sig_text.endswith("\n"):
            raise NoteError("the signature lines end with a newline")
        lines = sig_text[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"more than {MAX_SIGNATURES} signature lines")
        signatures = []
        for line in lines:
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != DASH or not parts[1]:
                raise NoteError(f"malformed signature line {line[:80]!r}")
            blob = _b64(parts[2], "a signature")
            if len(blob) < 5:
                raise NoteError("a signature is a 4-byte key id and the signature")
            signatures.append(Signature(parts[1], blob[:4], blob[4:]))
        return cls(body, tuple(signatures))


def sign_note(body: str, name: str, key: Ed25519PrivateKey) -> str:
    if not body.endswith("\n") or "\n\n" in body:
        raise NoteError("a note body ends with a newline and has no blank lines")
    sig = Signature(name, key_hash(name, _public_raw(key)), key.sign(body.encode("utf-8")))
    return Note(body, (sig,)).text()


def open_note(text: str, verifiers: list[Verifier]) -> tuple[Note, list[Verifier]]:
    """Parse a note and return it with the note-signing verifiers (type 0x01) whose signatures verify.

    As c2sp.org/signed-note and Go's ``note.Open``: signatures by unknown keys are ignored; a known key's first
    signature line decides for that key (later lines by the same key name and id are ignored), and if it does not
    verify the note is rejected, whatever else verifies. No verifying signature at all is an error too.
    """
    note = Note.parse(text)
    known = {(v.name, v.key_id): v for v in verifiers if v.alg == ED25519_ALG}
    body = note.body.encode("utf-8")
    seen: set[tuple[str, bytes]] = set()
    good = []
    for sig in note.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None or (sig.name, sig.key_id) in seen:
            continue
        seen.add((sig.name, sig.key_id))
        if not v.verify(body, sig.signature):
            raise NoteError(f"the signature by the trusted key {v.name}+{v.key_id.hex()} does not verify")
        good.append(v)
    if not good:
        raise NoteError("no signature on the note verifies with the given key(s)")
    return note, good


# -- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint body is origin, size and root hash lines, each ending in a newline")
        origin, size_text, root_text, *extensions = lines[:-1]
        if not origin:
            raise NoteError("the checkpoint origin line is empty")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError(f"the checkpoint size {size_text!r} is not a decimal number without leading zeroes")
        root = _b64(root_text, "the checkpoint root hash")
        if len(root) != 32:
            raise NoteError("the checkpoint root hash is not 32 bytes")
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> str:
    return sign_note(checkpoint.body(), checkpoint.origin, key)


def open_checkpoint(text: str, vkey_text: str) -> tuple[Checkpoint, Note]:
    """Verify a checkpoint note against the log's verifier key (whose name must be the origin)."""
    verifier = Verifier.parse(vkey_text)
    note, _ = open_note(text, [verifier])
    checkpoint = Checkpoint.parse(note.body)
    if checkpoint.origin != verifier.name:
        raise NoteError(f"the checkpoint origin {checkpoint.origin!r} is not the key name {verifier.name!r}")
    return checkpoint, note


# -- cosignatures (tlog-cosignature/v1, Ed25519) ----------------------------------------------------


def cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + checkpoint_body.encode("utf-8")


def cosign(checkpoint_body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> Signature:
    raw = _public_raw(key)
    signature = key.sign(cosigned_message(checkpoint_body, timestamp))
    return Signature(name, key_hash(name, raw, COSIGNATURE_ALG), timestamp.to_bytes(8, "big") + signature)


def cosigners(note: Note, witnesses: list[Verifier]) -> dict[str, int]:
    """The named witnesses whose v1 cosignature on the note verifies, with their timestamps."""
    found: dict[str, int] = {}
    for w in witnesses:
        if w.alg != COSIGNATURE_ALG:
            continue
        for sig in note.signatures:
            if sig.name != w.name or sig.key_id != w.key_id or len(sig.signature) != 72:
                continue
            timestamp = int.from_bytes(sig.signature[:8], "big")
            if timestamp < 2**63 and w.verify(cosigned_message(note.body, timestamp), sig.signature[8:]):
                found[w.name] = timestamp
                break
    return found


class QuorumError(NoteError):
    """Fewer than the required number of the named witnesses cosigned the checkpoint."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


def require_quorum(note_text: str, witness_vkeys: Sequence[str], quorum: int) -> dict[str, int]:
    """Check that at least ``quorum`` of the named witnesses cosigned the note; return {witness name: timestamp}.

    Cosignatures by other keys are ignored. Raises :class:`QuorumError` naming the witnesses without a
    valid cosignature, or :class:`NoteError` for a malformed note or key.
    """
    witnesses = [Verifier.parse(v) for v in witness_vkeys]
    for w in witnesses:
        if w.alg != COSIGNATURE_ALG:
            raise NoteError(f"the witness key {w.name} is not a cosignature key (type 04)")
    names = [w.name for w in witnesses]
    if len(set(names)) != len(names):
        raise NoteError("two witness keys have the same name")
    if not 1 <= quorum <= len(witnesses):
        raise NoteError(f"a quorum of {quorum} is not between 1 and the {len(witnesses)} witness key(s) given")
    found = cosigners(Note.parse(note_text), witnesses)
    if len(found) < quorum:
        missing = [n for n in names if n not in found]
        raise QuorumError(
            f"{len(found)} of the required {quorum} witness cosignatures; no valid cosignature by: " + ", ".join(missing), missing
        )
    return found
