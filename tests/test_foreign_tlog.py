"""The independent verifier audits a tiled log written by another implementation (Go's x/mod/sumdb).

The fixture in tests/fixtures/foreign-tlog/ was produced by generator/main.go with
golang.org/x/mod/sumdb/tlog and golang.org/x/mod/sumdb/note (see the README there). Accepting it shows
our reading of RFC 6962, C2SP tlog-tiles, tlog-checkpoint and signed-note agrees with that code;
rejecting every one-byte change shows the audit really checks each part.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from tests import independent_verifier as iv

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "foreign-tlog"
VKEY = (FIXTURE / "vkey").read_text()
SIZE = 66085  # 258 full level-0 tiles + 37; 1 full level-1 tile + 2; a level-2 tile of width 1


@pytest.fixture
def log_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "log"
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("generator", "README.md"))
    return dest


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _audit(directory: Path) -> iv.Checkpoint:
    return iv.audit(iv.dir_fetcher(directory), (directory / "checkpoint").read_text(), VKEY)


def test_fixture_is_accepted() -> None:
    checkpoint = _audit(FIXTURE)
    assert checkpoint.origin == "example.com/foreign-log" == iv.parse_vkey(VKEY)[0]
    assert checkpoint.size == SIZE
    assert checkpoint.extensions == ()
    assert iv.root_from_tiles(iv.dir_fetcher(FIXTURE), SIZE) == checkpoint.root
    # audit can also read the checkpoint itself through fetch
    assert iv.audit(iv.dir_fetcher(FIXTURE), None, VKEY) == checkpoint


def test_fixture_has_exactly_the_c2sp_tiles_for_its_size() -> None:
    """The Go writer's file set is the one tlog-tiles prescribes for the checkpoint's tree size."""
    want = {"checkpoint", "vkey"}
    level = 0
    while SIZE // 256**level:
        count = SIZE // 256**level
        for n in range(count // 256):
            want.add(iv.tile_path(level, n, 256))
            if level == 0:
                want.add(iv.entries_path(n, 256))
        if count % 256:
            want.add(iv.tile_path(level, count // 256, count % 256))
            if level == 0:
                want.add(iv.entries_path(count // 256, count % 256))
        level += 1
    have = {p.relative_to(FIXTURE).as_posix() for p in FIXTURE.rglob("*") if p.is_file()}
    have = {p for p in have if not p.startswith("generator/") and p != "README.md"}
    assert have == want
    assert {"tile/0/258.p/37", "tile/entries/258.p/37", "tile/1/000", "tile/1/001.p/2", "tile/2/000.p/1"} <= have


def test_fixture_entries_are_what_the_generator_wrote() -> None:
    fetch = iv.dir_fetcher(FIXTURE)
    first = iv.parse_entry_bundle(fetch("tile/entries/000"))
    assert len(first) == 256
    assert first[0] == b"" and first[1] == b"1" and first[255] == b"255"
    long_one = iv.parse_entry_bundle(fetch("tile/entries/003"))[999 - 768]
    assert long_one.startswith(b"long entry 999 ") and len(long_one) == 300
    assert iv.parse_entry_bundle(fetch("tile/entries/258.p/37"))[-1] == str(SIZE - 1).encode()


@pytest.mark.parametrize(
    ("resource", "offset", "error"),
    [
        ("tile/0/000", 0, r"^entry 0: leaf hash in tile/0/000 "),
        ("tile/0/100", 5 * 32 + 31, r"^entry 25605: leaf hash in tile/0/100 "),
        ("tile/0/258.p/37", 36 * 32, r"^entry 66084: leaf hash in tile/0/258\.p/37 "),
        ("tile/entries/000", 2 + 0 + 2, r"^entry 1: leaf hash in tile/0/000 does not match the entry in tile/entries/000"),
        ("tile/entries/258.p/37", -1, r"^entry 66084: leaf hash "),
        ("tile/entries/001", 0, r"^entry 256: leaf hash in tile/0/001 "),  # a length prefix: entry 256 swallows the next ones
        ("tile/1/000", 3 * 32 + 7, r"^entry 768: hash #3 of tile/1/000 \(entries 768\.\.1023\) is not the hash of tile tile/0/003"),
        ("tile/1/001.p/2", 32, r"^entry 65792: hash #1 of tile/1/001\.p/2 \(entries 65792\.\.66047\) is not the hash of tile tile/0/257"),
        ("tile/2/000.p/1", 0, r"^entry 0: hash #0 of tile/2/000\.p/1 \(entries 0\.\.65535\) is not the hash of tile tile/1/000"),
        ("checkpoint", 0, r"does not verify"),  # origin line
        ("checkpoint", len("example.com/foreign-log\n66085\n"), r"does not verify"),  # root hash line
        ("checkpoint", len("example.com/foreign-log\n"), r"does not verify"),  # size line
        ("checkpoint", -10, r"does not verify|base64"),  # inside the signature
    ],
)
def test_one_flipped_byte_is_rejected(log_copy: Path, resource: str, offset: int, error: str) -> None:
    target = log_copy / resource
    _flip(target, offset if offset >= 0 else target.stat().st_size + offset)
    with pytest.raises(iv.VerificationError, match=error):
        _audit(log_copy)


def test_the_first_bad_index_is_named(log_copy: Path) -> None:
    _flip(log_copy / "tile/entries/200", 2 + 1)  # entry 51200's first byte
    _flip(log_copy / "tile/0/007", 32 * 9)  # entry 1801's leaf hash
    with pytest.raises(iv.VerificationError, match=r"^entry 1801: "):
        _audit(log_copy)


def test_missing_and_truncated_resources_are_rejected(log_copy: Path) -> None:
    (log_copy / "tile/0/050").unlink()
    with pytest.raises(iv.VerificationError, match=r"tile/0/050 is missing"):
        _audit(log_copy)
    shutil.copyfile(FIXTURE / "tile/0/050", log_copy / "tile/0/050")
    (log_copy / "tile/1/000").write_bytes((FIXTURE / "tile/1/000").read_bytes()[:-32])
    with pytest.raises(iv.VerificationError, match=r"tile/1/000 is 8160 bytes, expected 8192"):
        _audit(log_copy)
    shutil.copyfile(FIXTURE / "tile/1/000", log_copy / "tile/1/000")
    (log_copy / "tile/entries/002").write_bytes((FIXTURE / "tile/entries/002").read_bytes()[:-1])
    with pytest.raises(iv.VerificationError, match=r"^entry 767: tile/entries/002: entry bundle truncated in entry #255"):
        _audit(log_copy)
    shutil.copyfile(FIXTURE / "tile/entries/002", log_copy / "tile/entries/002")
    (log_copy / "tile/entries/002").write_bytes((FIXTURE / "tile/entries/002").read_bytes() + b"\x00\x00")
    with pytest.raises(iv.VerificationError, match=r"^entry 768: tile/entries/002 holds more than 256 entries"):
        _audit(log_copy)


def test_a_consistent_rewrite_is_caught_one_level_up_at_a_time(log_copy: Path) -> None:
    """Rewrite entry 5 and, step by step, every hash above it: the check one level higher still fails."""
    bundle = log_copy / "tile/entries/000"
    _flip(bundle, 5 * 2 + sum(len(str(i)) for i in range(1, 5)) + 2)  # "5" -> "4"
    entries = iv.parse_entry_bundle(bundle.read_bytes())
    assert entries[5] == b"4"

    def patch_hash(resource: str, slot: int, value: bytes) -> None:
        data = bytearray((log_copy / resource).read_bytes())
        data[slot * 32 : (slot + 1) * 32] = value
        (log_copy / resource).write_bytes(bytes(data))

    def tile_root(resource: str) -> bytes:
        data = (log_copy / resource).read_bytes()
        return iv.merkle_tree_hash([data[i : i + 32] for i in range(0, len(data), 32)])

    with pytest.raises(iv.VerificationError, match=r"^entry 5: "):
        _audit(log_copy)
    patch_hash("tile/0/000", 5, iv.leaf_hash(b"4"))
    with pytest.raises(iv.VerificationError, match=r"^entry 0: hash #0 of tile/1/000 "):
        _audit(log_copy)
    patch_hash("tile/1/000", 0, tile_root("tile/0/000"))
    with pytest.raises(iv.VerificationError, match=r"^entry 0: hash #0 of tile/2/000\.p/1 "):
        _audit(log_copy)
    patch_hash("tile/2/000.p/1", 0, tile_root("tile/1/000"))
    with pytest.raises(iv.VerificationError, match=r"root hash recomputed from the tiles .* is not the checkpoint's"):
        _audit(log_copy)
    # Only the log's key could now make the rewritten tree acceptable.
    forged = (log_copy / "checkpoint").read_text()
    old_root = forged.split("\n")[2]
    new_root = base64.b64encode(iv.root_from_tiles(iv.dir_fetcher(log_copy), SIZE)).decode()
    (log_copy / "checkpoint").write_text(forged.replace(old_root, new_root))
    with pytest.raises(iv.VerificationError, match=r"does not verify"):
        _audit(log_copy)


def test_wrong_key_is_rejected() -> None:
    other = "example.com/foreign-log+" + VKEY.split("+", 1)[1].replace("33bd17cd", "00000000")
    with pytest.raises(iv.VerificationError):
        iv.audit(iv.dir_fetcher(FIXTURE), None, other)
    # a well-formed key for the same name but different material: its signature is simply absent
    peter = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    with pytest.raises(iv.VerificationError, match="no signature by a trusted key"):
        iv.audit(iv.dir_fetcher(FIXTURE), None, peter)
