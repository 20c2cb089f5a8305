"""The Merkle maths against the transparency-dev vectors and the RFC 6962 reference tree."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core import merkle
from tests.conftest import VECTORS

MERKLE_VECTORS = sorted((VECTORS / "transparency-dev-merkle").rglob("*.json"))
REFERENCE = json.loads((VECTORS / "rfc6962_reference_tree.json").read_text())
REFERENCE_LEAVES = [merkle.leaf_hash(bytes.fromhex(h)) for h in REFERENCE["leaf_inputs_hex"]]


def b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def memory_source(leaves: list[bytes]) -> merkle.NodeSource:
    """Complete-subtree hashes computed directly from the definition (MTH of the leaf range)."""

    def get(level: int, index: int) -> bytes:
        lo, hi = index << level, (index + 1) << level
        assert hi <= len(leaves), "asked for an incomplete subtree"
        return merkle.root_of(leaves[lo:hi])

    return get


def test_all_196_vectors_are_present() -> None:
    assert len(MERKLE_VECTORS) == 196


@pytest.mark.parametrize("path", MERKLE_VECTORS, ids=lambda p: str(p.relative_to(VECTORS)))
def test_transparency_dev_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    if "leafIdx" in case:

        def check() -> None:
            merkle.verify_inclusion(
                base64.b64decode(case["leafHash"]),
                case["leafIdx"],
                case["treeSize"],
                b64(case["proof"] or []),
                base64.b64decode(case["root"]),
            )
    else:

        def check() -> None:
            merkle.verify_consistency(
                case["size1"], case["size2"], b64(case["proof"] or []), base64.b64decode(case["root1"]), base64.b64decode(case["root2"])
            )

    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


def test_reference_tree_roots_for_sizes_0_to_8() -> None:
    want = [bytes.fromhex(h) for h in REFERENCE["root_hashes_hex_by_size"]]
    assert [merkle.root_of(REFERENCE_LEAVES[:n]) for n in range(9)] == want
    get = memory_source(REFERENCE_LEAVES)
    assert [merkle.tree_hash(get, n) for n in range(9)] == want
    for n in range(9):
        tree = merkle.CompactRange()
        for leaf in REFERENCE_LEAVES[:n]:
            tree.append(leaf)
        assert tree.root() == want[n]


def test_reference_tree_proofs_are_constructed_exactly() -> None:
    get = memory_source(REFERENCE_LEAVES)
    for case in REFERENCE["inclusion_proofs_hex"]:
        proof = merkle.inclusion_proof(get, case["leaf_index_1based"] - 1, case["tree_size"])
        assert [p.hex() for p in proof] == case["proof"]
    for case in REFERENCE["consistency_proofs_hex"]:
        proof = merkle.consistency_proof(get, case["size1"], case["size2"])
        assert [p.hex() for p in proof] == case["proof"]


def test_hasher_checks() -> None:
    for check in REFERENCE["hasher_checks"]:
        if "left" in check:
            got = merkle.node_hash(check["left"].encode(), check["right"].encode())
        elif "leaf_input_hex" in check:
            got = merkle.leaf_hash(bytes.fromhex(check["leaf_input_hex"]))
        else:
            got = merkle.EMPTY_ROOT
        assert got.hex() == check["want_hex"], check["what"]


@given(st.integers(1, 300), st.data())
def test_constructed_proofs_verify(size: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    get = memory_source(leaves)
    root = merkle.tree_hash(get, size)
    assert root == merkle.root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    merkle.verify_inclusion(leaves[index], index, size, merkle.inclusion_proof(get, index, size), root)
    size1 = data.draw(st.integers(1, size))
    root1 = merkle.tree_hash(get, size1)
    merkle.verify_consistency(size1, size, merkle.consistency_proof(get, size1, size), root1, root)
    other = merkle.leaf_hash(b"not in the tree")
    with pytest.raises(merkle.RootMismatch):
        merkle.verify_inclusion(other, index, size, merkle.inclusion_proof(get, index, size), root)


def test_proofs_read_logarithmically_many_stored_nodes() -> None:
    size = 1_000_003
    inclusion = merkle.plan(lambda get: merkle.inclusion_proof(get, 777_777, size))
    consistency = merkle.plan(lambda get: merkle.consistency_proof(get, 333_333, size))
    assert len(inclusion) <= 2 * size.bit_length()
    assert len(consistency) <= 3 * size.bit_length()


def test_compact_range_reports_each_completed_node_once() -> None:
    tree = merkle.CompactRange()
    seen: dict[tuple[int, int], bytes] = {}
    for i in range(37):
        for level, index, h in tree.append(merkle.leaf_hash(bytes([i]))):
            assert (level, index) not in seen
            seen[(level, index)] = h
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(37)]
    get = memory_source(leaves)
    assert all(seen[(lv, ix)] == get(lv, ix) for lv, ix in seen)
    reloaded = merkle.CompactRange.load(lambda lv, ix: seen[(lv, ix)], 37)
    assert reloaded.root() == tree.root() == merkle.root_of(leaves)


def test_bad_requests_are_named() -> None:
    with pytest.raises(merkle.InvalidRange):
        merkle.inclusion_proof(memory_source([]), 0, 0)
    with pytest.raises(merkle.InvalidRange):
        merkle.consistency_proof(memory_source([b"x" * 32]), 0, 1)
    with pytest.raises(merkle.InvalidHashSize):
        merkle.verify_inclusion(b"short", 0, 1, [], b"\0" * 32)
