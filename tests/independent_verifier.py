"""An independent verifier for RFC 6962 / RFC 9162 transparency logs in C2SP form.

Written only from the public specifications, and deliberately sharing no code with ``ledger/``, so that
the ledger's own Merkle, note and tile code can be checked against a second implementation:

- RFC 6962 §2.1 hashing: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right),
  empty tree = SHA-256("").
- RFC 9162 §2.1.3.2 (verifying an inclusion proof) and §2.1.4.2 (verifying a consistency proof),
  with the edge-case policy of the transparency-dev/merkle test vectors: a consistency proof from
  size 0 is an error, size1 == size2 needs an empty proof and equal roots, proof lengths are exact.
- c2sp.org/signed-note (note format, key IDs, vkeys), c2sp.org/tlog-cosignature (Ed25519 type 0x04),
  c2sp.org/tlog-checkpoint (note body), c2sp.org/tlog-tiles (tile paths, partial tiles, entry bundles).

Only the standard library and ``cryptography`` (for Ed25519) are used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Checkpoint",
    "VerificationError",
    "audit",
    "dir_fetcher",
    "entries_path",
    "leaf_hash",
    "merkle_tree_hash",
    "node_hash",
    "parse_checkpoint",
    "parse_entry_bundle",
    "parse_vkey",
    "root_from_tiles",
    "tile_path",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
]

HASH_SIZE = 32
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8192 bytes in a full tile
MAX_TILE_LEVEL = 63
EMPTY_ROOT = hashlib.sha256(b"").digest()

# signed-note signature types (c2sp.org/signed-note "Signature types")
SIG_TYPE_ED25519 = 0x01
SIG_TYPE_COSIGNATURE_V1 = 0x04  # c2sp.org/tlog-cosignature, timestamped Ed25519
# signed-note: verifiers SHOULD limit the number of signatures, and MUST accept at least 16.
MAX_NOTE_SIGNATURES = 100
MAX_COSIGNATURE_TIMESTAMP = (1 << 63) - 1

_SIG_PREFIX = "\u2014 "  # em dash, space
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_HEX8 = re.compile(r"[0-9a-f]{8}\Z")


class VerificationError(ValueError):
    """Raised for every verification failure: malformed input, a bad proof, a bad signature, a bad tile."""


# --------------------------------------------------------------------------------------------------
# RFC 6962 hashing
# --------------------------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + bytes(left) + bytes(right)).digest()


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise VerificationError(f"{what} is not bytes")
    value = bytes(value)
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")
    return value


def _check_size(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | str) or not isinstance(proof, Sequence):
        raise VerificationError("proof must be a list of hashes")
    return [_check_hash(p, f"proof[{i}]") for i, p in enumerate(proof)]


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class _CompactRange:
    """The perfect subtrees covering leaves [0, size), left to right, as (hash, size) pairs.

    Appending merges equal-sized neighbours; ``root()`` folds them right to left, which is exactly
    RFC 6962's MTH for a tree whose size is not a power of two (split at the largest power of two
    smaller than n, recursively).
    """

    def __init__(self) -> None:
        self._stack: list[tuple[bytes, int]] = []
        self.size = 0

    def append(self, subtree_hash: bytes, subtree_size: int = 1) -> None:
        if subtree_size & (subtree_size - 1) or subtree_size <= 0 or self.size % subtree_size:
            raise ValueError("subtree must be perfect and aligned")  # programming error, not bad data
        h, n = subtree_hash, subtree_size
        while self._stack and self._stack[-1][1] == n:
            left, _ = self._stack.pop()
            h, n = node_hash(left, h), n * 2
        self._stack.append((h, n))
        self.size += subtree_size

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][0]
        for left, _ in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def merkle_tree_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (SHA-256("") for the empty tree)."""
    rng = _CompactRange()
    for i, h in enumerate(leaf_hashes):
        rng.append(_check_hash(h, f"leaf hash {i}"))
    return rng.root()


def _perfect_subtree_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree whose bottom row is ``hashes`` (length a power of two)."""
    row = list(hashes)
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


# --------------------------------------------------------------------------------------------------
# RFC 9162 §2.1.3.2 and §2.1.4.2 proof verification
# --------------------------------------------------------------------------------------------------


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """Verify that ``leaf_hash`` is leaf ``index`` (0-based) of the tree of ``size`` with ``root``."""
    r = _check_hash(leaf_hash, "leaf hash")
    index = _check_size(index, "leaf index")
    size = _check_size(size, "tree size")
    root = _check_hash(root, "root hash")
    path = _check_proof(proof)
    # 1. leaf_index >= tree_size fails.
    if index >= size:
        raise VerificationError(f"leaf index {index} is not below tree size {size}")
    # 2.-3.
    fn, sn = index, size - 1
    # 4.
    for p in path:
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 5.
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    if not _same(r, root):
        raise VerificationError("inclusion proof does not lead to the root hash")


def verify_consistency(size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes) -> None:
    """Verify that the tree of ``size1`` with ``root1`` is a prefix of the tree of ``size2`` with ``root2``."""
    size1 = _check_size(size1, "first tree size")
    size2 = _check_size(size2, "second tree size")
    if size1 == 0:
        raise VerificationError("a consistency proof from the empty tree is not accepted")
    if size1 > size2:
        raise VerificationError(f"first tree size {size1} is larger than second tree size {size2}")
    if size1 == size2:
        # Nothing to prove: the two tree heads must simply be identical. The transparency-dev vectors
        # (consistency/additional/sizes-are-equal-one-and-proof-is-empty) expect success here even for
        # roots that are not 32 bytes, so the roots are compared as opaque byte strings.
        if not isinstance(root1, bytes | bytearray | memoryview) or not isinstance(root2, bytes | bytearray | memoryview):
            raise VerificationError("root hashes must be bytes")
        if _check_proof(proof):
            raise VerificationError("consistency proof between equal tree sizes must be empty")
        if not _same(bytes(root1), bytes(root2)):
            raise VerificationError("equal tree sizes with different root hashes")
        return
    root1 = _check_hash(root1, "first root hash")
    root2 = _check_hash(root2, "second root hash")
    path = _check_proof(proof)
    # 1. An empty proof fails.
    if not path:
        raise VerificationError("consistency proof is empty")
    # 2. If first is an exact power of 2, prepend first_hash.
    if size1 & (size1 - 1) == 0:
        path = [root1, *path]
    # 3.
    fn, sn = size1 - 1, size2 - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if not _same(fr, root1):
        raise VerificationError("consistency proof does not lead to the first root hash")
    if not _same(sr, root2):
        raise VerificationError("consistency proof does not lead to the second root hash")


# --------------------------------------------------------------------------------------------------
# c2sp.org/signed-note and vkeys
# --------------------------------------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise VerificationError(f"{what} is not standard base64") from exc
    # Reject non-canonical encodings (non-zero padding bits) so a value has exactly one spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerificationError(f"{what} is not canonical base64")
    return raw


def _valid_key_name(name: str) -> bool:
    """signed-note: key names MUST be non-empty and MUST NOT contain Unicode spaces or '+'."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note key ID: SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class _Verifier:
    name: str
    key_hash: bytes
    sig_type: int
    public_key: Ed25519PublicKey


def _parse_vkey(vkey: str) -> _Verifier:
    if not isinstance(vkey, str):
        raise VerificationError("vkey must be text")
    vkey = vkey.strip()
    parts = vkey.split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3:
        raise VerificationError("vkey must be <name>+<8 hex digits>+<base64 key>")
    name, hash_hex, key_b64 = parts
    if not _valid_key_name(name):
        raise VerificationError(f"vkey has an invalid key name {name!r}")
    if not _HEX8.match(hash_hex):
        raise VerificationError("vkey key hash must be 8 lower-case hex digits")
    key = _b64decode(key_b64, "vkey key")
    if len(key) < 1:
        raise VerificationError("vkey key is empty")
    sig_type, raw = key[0], key[1:]
    if sig_type not in (SIG_TYPE_ED25519, SIG_TYPE_COSIGNATURE_V1):
        raise VerificationError(f"vkey signature type 0x{sig_type:02x} is not supported")
    if len(raw) != 32:
        raise VerificationError(f"Ed25519 public key is {len(raw)} bytes, not 32")
    key_hash = bytes.fromhex(hash_hex)
    if not _same(key_hash, key_id(name, sig_type, raw)):
        raise VerificationError("vkey key hash does not match its name and key")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise VerificationError("vkey holds an invalid Ed25519 public key") from exc
    return _Verifier(name, key_hash, sig_type, public_key)


def parse_vkey(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """Parse a C2SP/sumdb verifier key ``<name>+<hex key ID>+<base64(type || key)>``.

    Accepts Ed25519 note keys (type 0x01) and Ed25519 cosignature/v1 keys (type 0x04). Returns
    ``(name, key_hash, public_key)`` with the 4-byte key ID and a ``cryptography`` public key.
    """
    v = _parse_vkey(vkey)
    return v.name, v.key_hash, v.public_key


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes


def _split_note(note_text: str | bytes) -> tuple[str, list[NoteSignature]]:
    if isinstance(note_text, bytes | bytearray):
        try:
            note_text = bytes(note_text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError("note is not valid UTF-8") from exc
    if not isinstance(note_text, str):
        raise VerificationError("note must be text")
    try:
        note_text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise VerificationError("note is not valid UTF-8") from exc
    for ch in note_text:
        if ch < "\x20" and ch != "\n":
            raise VerificationError(f"note contains control character U+{ord(ch):04X}")
    # The text is separated from the signatures by the last empty line in the note.
    split = note_text.rfind("\n\n")
    if split < 0:
        raise VerificationError("note has no blank line before its signatures")
    text, sig_block = note_text[: split + 1], note_text[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise VerificationError("note signature block is empty or does not end in a newline")
    signatures: list[NoteSignature] = []
    for line in sig_block[:-1].split("\n"):
        if len(signatures) >= MAX_NOTE_SIGNATURES:
            raise VerificationError(f"note has more than {MAX_NOTE_SIGNATURES} signatures")
        if not line.startswith(_SIG_PREFIX):
            raise VerificationError(f"malformed signature line {line!r}")
        name, sep, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not _valid_key_name(name) or not sig_b64:
            raise VerificationError(f"malformed signature line {line!r}")
        raw = _b64decode(sig_b64, f"signature by {name!r}")
        if len(raw) < 5:
            raise VerificationError(f"signature by {name!r} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, signatures


def _verify_one(v: _Verifier, text: bytes, sig: bytes) -> bool:
    if v.sig_type == SIG_TYPE_ED25519:
        message = text
        if len(sig) != 64:
            return False
    else:  # cosignature/v1: u64 timestamp || Ed25519 signature over the cosigned message
        if len(sig) != 8 + 64:
            return False
        (timestamp,) = struct.unpack(">Q", sig[:8])
        if timestamp > MAX_COSIGNATURE_TIMESTAMP:
            return False
        message = b"cosignature/v1\ntime %d\n" % timestamp + text
        sig = sig[8:]
    try:
        v.public_key.verify(sig, message)
    except InvalidSignature:
        return False
    return True


def verify_note(note_text: str, vkeys: list[str], *, require_all: bool = False) -> str:
    """Verify a C2SP signed note against trusted ``vkeys`` and return its verified text (body).

    Signatures whose (name, key ID) match no given key are ignored, as the spec requires. A matching
    signature that fails to verify rejects the whole note. At least one given key must have signed;
    with ``require_all`` every given key must have signed (e.g. a witness quorum of all).
    """
    if isinstance(vkeys, str):
        vkeys = [vkeys]
    verifiers = [_parse_vkey(k) for k in vkeys]
    if not verifiers:
        raise VerificationError("no verifier keys given")
    text, signatures = _split_note(note_text)
    by_id = {(v.name, v.key_hash): v for v in verifiers}
    signed: set[tuple[str, bytes]] = set()
    body = text.encode("utf-8")
    for s in signatures:
        v = by_id.get((s.name, s.key_hash))
        if v is None:
            continue
        if not _verify_one(v, body, s.signature):
            raise VerificationError(f"signature by {s.name!r} (key ID {s.key_hash.hex()}) does not verify")
        signed.add((v.name, v.key_hash))
    if not signed:
        names = ", ".join(sorted(v.name for v in verifiers))
        raise VerificationError(f"note carries no signature by a trusted key ({names})")
    if require_all and len(signed) != len(by_id):
        missing = ", ".join(sorted(n for (n, h) in by_id if (n, h) not in signed))
        raise VerificationError(f"note is not signed by: {missing}")
    return text


# --------------------------------------------------------------------------------------------------
# c2sp.org/tlog-checkpoint
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default_factory=tuple)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint note text: origin, decimal size, base64 root, then optional extension lines."""
    if not isinstance(body, str):
        raise VerificationError("checkpoint body must be text")
    if not body.endswith("\n"):
        raise VerificationError("checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError("checkpoint body needs origin, size and root hash lines")
    if any(line == "" for line in lines):
        raise VerificationError("checkpoint lines must be non-empty")
    origin, size_line, root_line, *extensions = lines
    if not _DECIMAL.match(size_line):
        raise VerificationError(f"checkpoint tree size {size_line!r} is not a decimal without leading zeroes")
    root = _b64decode(root_line, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise VerificationError(f"checkpoint root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin=origin, size=int(size_line), root=root, extensions=tuple(extensions))


def verify_checkpoint(note_text: str, vkey: str) -> Checkpoint:
    """Verify a signed checkpoint with the log's key and check that the origin is the key's name."""
    name = _parse_vkey(vkey).name
    checkpoint = parse_checkpoint(verify_note(note_text, [vkey]))
    if checkpoint.origin != name:
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r} is not the log key's name {name!r}")
    return checkpoint


# --------------------------------------------------------------------------------------------------
# c2sp.org/tlog-tiles
# --------------------------------------------------------------------------------------------------


def _encode_tile_index(index: int) -> str:
    """<N> as zero-padded 3-digit path elements, all but the last prefixed with 'x' (1234067 -> x001/x234/067)."""
    index = _check_size(index, "tile index")
    parts = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        parts.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(parts))


def _width_suffix(width: int) -> str:
    if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= TILE_WIDTH:
        raise VerificationError(f"tile width must be 1..{TILE_WIDTH}, got {width!r}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """Path of a hash tile: ``tile/<L>/<N>[.p/<W>]`` (``.p/<W>`` only for partial tiles, width < 256)."""
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= MAX_TILE_LEVEL:
        raise VerificationError(f"tile level must be 0..{MAX_TILE_LEVEL}, got {level!r}")
    return f"tile/{level}/{_encode_tile_index(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """Path of an entry bundle: ``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{_encode_tile_index(index)}{_width_suffix(width)}"


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle: a sequence of big-endian uint16 length-prefixed entries."""
    return list(_iter_bundle(bytes(data)))


class _TruncatedBundle(VerificationError):
    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position


def _iter_bundle(data: bytes) -> Iterator[bytes]:
    """Yield the entries of a bundle in order; raise _TruncatedBundle naming the entry that is cut short."""
    offset, position = 0, 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise _TruncatedBundle(position, f"entry bundle truncated in the length prefix of entry #{position}")
        (length,) = struct.unpack_from(">H", data, offset)
        offset += 2
        if offset + length > len(data):
            raise _TruncatedBundle(position, f"entry bundle truncated in entry #{position} (needs {length} bytes)")
        yield data[offset : offset + length]
        offset += length
        position += 1


@dataclass(frozen=True)
class _TileRef:
    level: int
    index: int
    width: int

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)


def _tiles_for_size(size: int, level: int) -> list[_TileRef]:
    """The tiles a tree of ``size`` has at ``level``: full ones then at most one partial one."""
    count = size // TILE_WIDTH**level  # hashes at this tile level
    tiles = [_TileRef(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH)]
    if count % TILE_WIDTH:
        tiles.append(_TileRef(level, count // TILE_WIDTH, count % TILE_WIDTH))
    return tiles


def _fetch(fetch: Callable[[str], bytes], path: str, full_path: str) -> tuple[bytes, bool]:
    """Fetch a resource; a missing partial one may be replaced by its full one (tlog-tiles allows that fallback).

    Returns the data and whether it is the full resource standing in for the partial one.
    """
    try:
        return bytes(fetch(path)), False
    except (FileNotFoundError, KeyError):
        if path == full_path:
            raise VerificationError(f"{path} is missing") from None
    try:
        return bytes(fetch(full_path)), True
    except (FileNotFoundError, KeyError):
        raise VerificationError(f"{path} is missing (and so is {full_path})") from None


def _read_hash_tile(fetch: Callable[[str], bytes], tile: _TileRef) -> list[bytes]:
    data, fallback = _fetch(fetch, tile.path, tile_path(tile.level, tile.index))
    if fallback:
        if len(data) != TILE_WIDTH * HASH_SIZE:
            raise VerificationError(f"{tile_path(tile.level, tile.index)} is {len(data)} bytes, expected {TILE_WIDTH * HASH_SIZE}")
        data = data[: tile.width * HASH_SIZE]
    if len(data) != tile.width * HASH_SIZE:
        raise VerificationError(f"{tile.path} is {len(data)} bytes, expected {tile.width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _check_entry_bundle(fetch: Callable[[str], bytes], tile: _TileRef, hashes: list[bytes]) -> None:
    path = entries_path(tile.index, tile.width)
    data, fallback = _fetch(fetch, path, entries_path(tile.index))
    if fallback:
        path = entries_path(tile.index)
    expected = TILE_WIDTH if fallback else tile.width
    first = tile.index * TILE_WIDTH
    count = 0
    try:
        for entry in _iter_bundle(data):
            if count >= expected:
                raise VerificationError(f"entry {first + count}: {path} holds more than {expected} entries")
            if count < tile.width and not _same(leaf_hash(entry), hashes[count]):
                raise VerificationError(f"entry {first + count}: leaf hash in {tile.path} does not match the entry in {path}")
            count += 1
    except _TruncatedBundle as exc:
        raise VerificationError(f"entry {first + exc.position}: {path}: {exc}") from None
    if count != expected:
        raise VerificationError(f"entry {first + count}: {path} holds {count} entries, expected {expected}")


def _walk_tiles(fetch: Callable[[str], bytes], size: int, *, check_entries: bool, check_higher: bool) -> bytes:
    size = _check_size(size, "tree size")
    rng = _CompactRange()
    # MTH of each full tile at the level below, i.e. what the hashes of the level above must be.
    expected_above: list[bytes] = []
    for tile in _tiles_for_size(size, 0):
        hashes = _read_hash_tile(fetch, tile)
        if check_entries:
            _check_entry_bundle(fetch, tile, hashes)
        if tile.width == TILE_WIDTH:
            subtree = _perfect_subtree_root(hashes)
            rng.append(subtree, TILE_WIDTH)
            expected_above.append(subtree)
        else:
            for h in hashes:
                rng.append(h)
    level = 1
    while check_higher and size // TILE_WIDTH**level:
        next_expected: list[bytes] = []
        for tile in _tiles_for_size(size, level):
            hashes = _read_hash_tile(fetch, tile)
            for i, h in enumerate(hashes):
                slot = tile.index * TILE_WIDTH + i
                if not _same(h, expected_above[slot]):
                    unit = TILE_WIDTH**level
                    raise VerificationError(
                        f"entry {slot * unit}: hash #{i} of {tile.path} (entries {slot * unit}..{(slot + 1) * unit - 1}) "
                        f"is not the hash of tile {tile_path(level - 1, slot)}"
                    )
            if tile.width == TILE_WIDTH:
                next_expected.append(_perfect_subtree_root(hashes))
        expected_above = next_expected
        level += 1
    return rng.root()


def root_from_tiles(fetch: Callable[[str], bytes], size: int, *, check_higher: bool = True) -> bytes:
    """Recompute the RFC 6962 root of the tree of ``size`` from its level-0 tiles.

    Every higher-level tile the tree has is also read and must agree with the level below
    (unless ``check_higher`` is false). A missing partial tile may be replaced by its full tile.
    """
    return _walk_tiles(fetch, size, check_entries=False, check_higher=check_higher)


def audit(fetch: Callable[[str], bytes], checkpoint_note: str | None, vkey: str) -> Checkpoint:
    """Audit a whole tiled log: the signed checkpoint, every entry, every tile, and the root.

    ``checkpoint_note`` may be None to read ``checkpoint`` through ``fetch``. Returns the verified
    checkpoint; raises VerificationError naming the first bad entry index, tile or field.
    """
    if checkpoint_note is None:
        try:
            raw = fetch("checkpoint")
        except (FileNotFoundError, KeyError):
            raise VerificationError("checkpoint is missing") from None
        try:
            checkpoint_note = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError("checkpoint is not valid UTF-8") from exc
    checkpoint = verify_checkpoint(checkpoint_note, vkey)
    root = _walk_tiles(fetch, checkpoint.size, check_entries=True, check_higher=True)
    if not _same(root, checkpoint.root):
        raise VerificationError(
            f"root hash recomputed from the tiles ({base64.b64encode(root).decode()}) is not the checkpoint's "
            f"({base64.b64encode(checkpoint.root).decode()}) for size {checkpoint.size}"
        )
    return checkpoint


def dir_fetcher(directory: str | os.PathLike[str]) -> Callable[[str], bytes]:
    """A ``fetch`` for a log stored on disk (raises FileNotFoundError for a missing resource)."""
    base = Path(directory).resolve()

    def fetch(path: str) -> bytes:
        target = (base / path).resolve()
        if base not in target.parents:
            raise FileNotFoundError(path)
        return target.read_bytes()

    return fetch
