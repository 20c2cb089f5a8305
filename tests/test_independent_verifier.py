"""The independent verifier against public conformance vectors (never against the ledger's own code)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests import independent_verifier as iv
from tests.conftest import VECTORS

MERKLE = VECTORS / "transparency-dev-merkle"
REFERENCE = json.loads((VECTORS / "rfc6962_reference_tree.json").read_text())

CASES = sorted(MERKLE.rglob("*.json"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _b64s(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


def test_all_transparency_dev_vectors_are_found() -> None:
    assert len(CASES) == 196
    kinds = [c.relative_to(MERKLE).parts[0] for c in CASES]
    assert (kinds.count("inclusion"), kinds.count("consistency")) == (98, 98)


@pytest.mark.parametrize("case", CASES, ids=[str(c.relative_to(MERKLE)) for c in CASES])
def test_transparency_dev_vector(case: Path) -> None:
    v = json.loads(case.read_text())
    kind = case.relative_to(MERKLE).parts[0]
    if kind == "inclusion":

        def run() -> None:
            iv.verify_inclusion(_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _b64s(v["proof"]), _b64(v["root"]))

    else:
        assert kind == "consistency"

        def run() -> None:
            iv.verify_consistency(v["size1"], v["size2"], _b64s(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))

    if v["wantErr"]:
        with pytest.raises(iv.VerificationError):
            run()
    else:
        run()


def test_verification_error_is_a_value_error() -> None:
    assert issubclass(iv.VerificationError, ValueError)


# ---- the classic 8-leaf RFC 6962 tree -----------------------------------------------------------

LEAVES = [bytes.fromhex(h) for h in REFERENCE["leaf_inputs_hex"]]
ROOTS = [bytes.fromhex(h) for h in REFERENCE["root_hashes_hex_by_size"]]


def test_hasher_checks() -> None:
    for check in REFERENCE["hasher_checks"]:
        want = bytes.fromhex(check["want_hex"])
        if "left" in check:
            assert iv.node_hash(check["left"].encode(), check["right"].encode()) == want
        elif "leaf_input_hex" in check:
            assert iv.leaf_hash(bytes.fromhex(check["leaf_input_hex"])) == want
        else:
            assert iv.EMPTY_ROOT == want == iv.merkle_tree_hash([])
    assert [iv.leaf_hash(x).hex() for x in LEAVES] == REFERENCE["leaf_hashes_hex"]


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size: int) -> None:
    assert iv.merkle_tree_hash([iv.leaf_hash(x) for x in LEAVES[:size]]) == ROOTS[size]


@pytest.mark.parametrize("size", range(9))
def test_reference_roots_from_a_single_partial_tile(size: int) -> None:
    tile = b"".join(iv.leaf_hash(x) for x in LEAVES[:size])
    store = {iv.tile_path(0, 0, size): tile} if size else {}
    assert iv.root_from_tiles(store.__getitem__, size) == ROOTS[size]


def test_reference_proofs() -> None:
    for p in REFERENCE["inclusion_proofs_hex"]:
        index, size = p["leaf_index_1based"] - 1, p["tree_size"]
        proof = [bytes.fromhex(h) for h in p["proof"]]
        iv.verify_inclusion(iv.leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size])
        with pytest.raises(iv.VerificationError):
            iv.verify_inclusion(iv.leaf_hash(LEAVES[index] + b"x"), index, size, proof, ROOTS[size])
    for p in REFERENCE["consistency_proofs_hex"]:
        s1, s2 = p["size1"], p["size2"]
        proof = [bytes.fromhex(h) for h in p["proof"]]
        iv.verify_consistency(s1, s2, proof, ROOTS[s1], ROOTS[s2])
        if s1 != s2:
            with pytest.raises(iv.VerificationError):
                iv.verify_consistency(s1, s2, proof, ROOTS[s1], ROOTS[s2 - 1])


def test_proof_edge_cases() -> None:
    root1 = ROOTS[1]
    with pytest.raises(iv.VerificationError, match="empty tree"):
        iv.verify_consistency(0, 1, [], iv.EMPTY_ROOT, root1)
    with pytest.raises(iv.VerificationError, match="larger"):
        iv.verify_consistency(2, 1, [], ROOTS[2], root1)
    with pytest.raises(iv.VerificationError):
        iv.verify_consistency(1, 1, [root1], root1, root1)
    iv.verify_consistency(3, 3, [], ROOTS[3], ROOTS[3])
    with pytest.raises(iv.VerificationError, match="32"):
        iv.verify_inclusion(b"\x00" * 31, 0, 1, [], root1)
    with pytest.raises(iv.VerificationError, match="32"):
        iv.verify_inclusion(iv.leaf_hash(LEAVES[0]), 0, 1, [], root1 + b"\x00")
    with pytest.raises(iv.VerificationError):
        iv.verify_inclusion(iv.leaf_hash(LEAVES[0]), 0, 0, [], iv.EMPTY_ROOT)
    with pytest.raises(iv.VerificationError):
        iv.verify_inclusion(iv.leaf_hash(LEAVES[0]), -1, 1, [], root1)


# ---- signed notes, from the Go x/mod/sumdb/note test data (an independent implementation) ----------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def test_parse_vkey() -> None:
    name, key_hash, public_key = iv.parse_vkey(PETER_VKEY)
    assert (name, key_hash) == ("PeterNeumann", bytes.fromhex("c74f20a3"))
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert base64.b64encode(b"\x01" + raw).decode() == PETER_VKEY.split("+")[2]
    for bad in (
        PETER_VKEY[:-1],
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),
        PETER_VKEY.replace("PeterNeumann", "PeterNeumanm"),
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm (Go test data)
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong key length (Go test data)
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(iv.VerificationError):
            iv.parse_vkey(bad)


def test_verify_note_go_vectors() -> None:
    assert iv.verify_note(GO_TEXT + "\n" + PETER_SIG, [PETER_VKEY]) == GO_TEXT
    # A signature by an unknown key is ignored; the known one must verify.
    assert iv.verify_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER_VKEY]) == GO_TEXT
    assert iv.verify_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER_VKEY, ENOCH_VKEY], require_all=True) == GO_TEXT
    with pytest.raises(iv.VerificationError, match="no signature by a trusted key"):
        iv.verify_note(GO_TEXT + "\n" + ENOCH_SIG, [PETER_VKEY])
    with pytest.raises(iv.VerificationError, match="not signed by"):
        iv.verify_note(GO_TEXT + "\n" + PETER_SIG, [PETER_VKEY, ENOCH_VKEY], require_all=True)
    with pytest.raises(iv.VerificationError, match="does not verify"):
        iv.verify_note(GO_TEXT.replace("answer", "Answer") + "\n" + PETER_SIG, [PETER_VKEY])
    malformed = [
        GO_TEXT + PETER_SIG,  # no blank line
        GO_TEXT + "\n" + PETER_SIG.rstrip("\n"),  # signature block not newline-terminated
        GO_TEXT + "\n" + PETER_SIG.replace("—", "-"),  # not an em dash
        GO_TEXT + "\n" + PETER_SIG.replace("PeterNeumann ", "Peter+Neumann "),
        GO_TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # bad base64
        GO_TEXT.replace("problem,", "problem,\r") + "\n" + PETER_SIG,  # control character
        GO_TEXT.rstrip("\n") + "\n" + PETER_SIG,  # the text then has no final newline before the blank line
    ]
    for note in malformed:
        with pytest.raises(iv.VerificationError):
            iv.verify_note(note, [PETER_VKEY])


def _vkey(name: str, sig_type: int, key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + raw).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(bytes([sig_type]) + raw).decode()}"


def _sig_line(name: str, key_id: bytes, sig: bytes) -> str:
    return f"— {name} {base64.b64encode(key_id + sig).decode()}\n"


def test_checkpoint_and_cosignature() -> None:
    log_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    witness_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
    origin = "example.com/behind-the-sofa"
    log_vkey = _vkey(origin, 0x01, log_key)
    witness_vkey = _vkey("witness.example.com/w1", 0x04, witness_key)
    body = f"{origin}\n8\n{base64.b64encode(ROOTS[8]).decode()}\n"
    ts = 1679315147
    cosig = ts.to_bytes(8, "big") + witness_key.sign(f"cosignature/v1\ntime {ts}\n".encode() + body.encode())
    note = (
        body
        + "\n"
        + _sig_line(origin, iv.parse_vkey(log_vkey)[1], log_key.sign(body.encode()))
        + _sig_line("witness.example.com/w1", iv.parse_vkey(witness_vkey)[1], cosig)
    )
    cp = iv.verify_checkpoint(note, log_vkey)
    assert cp == iv.Checkpoint(origin, 8, ROOTS[8], ())
    assert iv.verify_note(note, [witness_vkey]) == body
    assert iv.verify_note(note, [log_vkey, witness_vkey], require_all=True) == body
    # a cosignature over a different timestamp does not verify
    bad = note.replace(_sig_line("witness.example.com/w1", iv.parse_vkey(witness_vkey)[1], cosig), "")
    bad += _sig_line("witness.example.com/w1", iv.parse_vkey(witness_vkey)[1], (ts + 1).to_bytes(8, "big") + cosig[8:])
    with pytest.raises(iv.VerificationError, match="does not verify"):
        iv.verify_note(bad, [witness_vkey])
    # the origin must be the log key's name
    other_vkey = _vkey("example.com/other", 0x01, log_key)
    other_note = body + "\n" + _sig_line("example.com/other", iv.parse_vkey(other_vkey)[1], log_key.sign(body.encode()))
    with pytest.raises(iv.VerificationError, match="origin"):
        iv.verify_checkpoint(other_note, other_vkey)


def test_parse_checkpoint() -> None:
    root = base64.b64encode(ROOTS[3]).decode()
    assert iv.parse_checkpoint(f"o\n3\n{root}\next one\n") == iv.Checkpoint("o", 3, ROOTS[3], ("ext one",))
    assert iv.parse_checkpoint(f"o\n0\n{base64.b64encode(iv.EMPTY_ROOT).decode()}\n").size == 0
    for bad in (
        f"o\n3\n{root}",  # no final newline
        f"o\n03\n{root}\n",  # leading zero
        f"o\n+3\n{root}\n",
        f"o\n3\n{root[:-4]}\n",  # short root
        f"o\n3\n{root}\n\n",  # empty extension line
        f"\n3\n{root}\n",  # empty origin
        "o\n3\n",
    ):
        with pytest.raises(iv.VerificationError):
            iv.parse_checkpoint(bad)


# ---- tile paths (examples from c2sp.org/tlog-tiles) ---------------------------------------------------


def test_tile_paths() -> None:
    assert iv.tile_path(0, 1234067, 8) == "tile/0/x001/x234/067.p/8"
    assert iv.tile_path(0, 1234067, 256) == "tile/0/x001/x234/067"
    assert iv.tile_path(1, 0, 256) == "tile/1/000"
    assert iv.tile_path(2, 1000, 1) == "tile/2/x001/000.p/1"
    assert iv.tile_path(0, 999, 255) == "tile/0/999.p/255"
    assert iv.entries_path(5, 256) == "tile/entries/005"
    assert iv.entries_path(1234067, 3) == "tile/entries/x001/x234/067.p/3"
    for bad in ((0, 0, 0), (0, 0, 257), (64, 0, 256), (-1, 0, 256), (0, -1, 256)):
        with pytest.raises(iv.VerificationError):
            iv.tile_path(*bad)


def test_parse_entry_bundle() -> None:
    assert iv.parse_entry_bundle(b"") == []
    assert iv.parse_entry_bundle(b"\x00\x00\x00\x02hi\x00\x01x") == [b"", b"hi", b"x"]
    for bad in (b"\x00", b"\x00\x03ab", b"\x00\x01x\x00"):
        with pytest.raises(iv.VerificationError):
            iv.parse_entry_bundle(bad)


def _in_memory_log(entries: list[bytes]) -> dict[str, bytes]:
    """A tiled log built by brute force from RFC 6962 MTH over slices (tlog-tiles' formal definition)."""
    size = len(entries)
    leaves = [iv.leaf_hash(e) for e in entries]
    store: dict[str, bytes] = {}
    level = 0
    while size // 256**level:
        unit = 256**level
        count = size // unit
        hashes = [iv.merkle_tree_hash(leaves[i * unit : (i + 1) * unit]) for i in range(count)]
        for n in range(0, count, 256):
            chunk = hashes[n : n + 256]
            store[iv.tile_path(level, n // 256, len(chunk))] = b"".join(chunk)
            if level == 0:
                bundle = entries[n : n + 256]
                store[iv.entries_path(n // 256, len(bundle))] = b"".join(len(e).to_bytes(2, "big") + e for e in bundle)
        level += 1
    return store


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 511, 512, 513, 256 * 3 + 7])
def test_root_from_tiles_matches_mth(size: int) -> None:
    entries = [b"e%d" % i for i in range(size)]
    store = _in_memory_log(entries)
    assert iv.root_from_tiles(store.__getitem__, size) == iv.merkle_tree_hash([iv.leaf_hash(e) for e in entries])


def test_audit_in_memory_and_partial_fallback() -> None:
    key = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    vkey = _vkey("example.com/mem", 0x01, key)
    entries = [b"e%d" % i for i in range(600)]
    store = _in_memory_log(entries)
    root = iv.merkle_tree_hash([iv.leaf_hash(e) for e in entries])
    body = f"example.com/mem\n600\n{base64.b64encode(root).decode()}\n"
    note = body + "\n" + _sig_line("example.com/mem", iv.parse_vkey(vkey)[1], key.sign(body.encode()))
    assert iv.audit(store.__getitem__, note, vkey).size == 600
    # An earlier tree size (300) is still computable from the full tiles once its partial tiles are gone.
    root300 = iv.merkle_tree_hash([iv.leaf_hash(e) for e in entries[:300]])
    assert iv.root_from_tiles(store.__getitem__, 300, check_higher=False) == root300
    with pytest.raises(iv.VerificationError, match=r"tile/1/000\.p/1 is missing"):
        iv.root_from_tiles(store.__getitem__, 300)
    # A missing tile is an error that names it.
    del store["tile/0/001"]
    with pytest.raises(iv.VerificationError, match="tile/0/001"):
        iv.audit(store.__getitem__, note, vkey)
