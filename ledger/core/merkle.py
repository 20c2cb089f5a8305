"""RFC 6962 / RFC 9162 Merkle tree maths: hashing, tree heads, inclusion and consistency proofs.

Pure functions, no I/O. Proof *construction* takes a ``NodeSource``: a function returning the
stored hash of a complete subtree, addressed as ``(level, index)`` = the subtree of leaves
``[index * 2**level, (index + 1) * 2**level)``. Only complete subtrees are ever stored; the
right edge of a tree whose size is not a power of two is computed from them on the fly, so a proof
needs O(log n) stored hashes. :func:`plan` runs a construction against a recorder to learn those
addresses first, so a store can fetch them in one query.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 with the edge-case policy of the
transparency-dev vectors: hashes are exactly 32 bytes, proof lengths are exact, a consistency proof
from size 0 is an error, and ``size1 == size2`` needs an empty proof and equal roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index) of a complete subtree
NodeSource = Callable[[int, int], bytes]
T = TypeVar("T")


class ProofError(ValueError):
    """A proof or tree head that does not verify, or a request for one that cannot exist."""


class InvalidRange(ProofError):
    """An index or size outside what the tree allows (e.g. a consistency proof from size 0)."""


class InvalidHashSize(ProofError):
    """A hash that is not 32 bytes."""


class WrongProofSize(ProofError):
    """A proof with more or fewer hashes than the sizes require."""


class RootMismatch(ProofError):
    """A proof that does not lead to the expected root."""


# -- hashing ----------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes (for small trees and tests; stores use :func:`range_hash`)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def complete_subtrees(start: int, end: int) -> list[NodeId]:
    """The maximal complete subtrees covering ``[start, end)``, left to right."""
    nodes: list[NodeId] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(get: NodeSource, start: int, end: int) -> bytes:
    """Hash of the RFC 6962 subtree over leaves ``[start, end)`` (a tree node, possibly on the right edge)."""
    if start >= end:
        return EMPTY_ROOT
    hashes = [get(level, index) for level, index in complete_subtrees(start, end)]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def tree_hash(get: NodeSource, size: int) -> bytes:
    return range_hash(get, 0, size)


# -- proof construction (RFC 9162 §2.1.3.1 and §2.1.4.1) -----------------------------------------------


def inclusion_proof(get: NodeSource, index: int, size: int) -> list[bytes]:
    if not 0 <= index < size:
        raise InvalidRange(f"leaf index {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:  # walk down, collecting siblings; the proof lists them bottom-up
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            proof.append(range_hash(get, lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(get, lo, lo + k))
            lo = lo + k
    return proof[::-1]


def consistency_proof(get: NodeSource, size1: int, size2: int) -> list[bytes]:
    if not 0 < size1 <= size2:
        raise InvalidRange(f"no consistency proof from size {size1} to size {size2}")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            proof.append(range_hash(get, lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(get, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(range_hash(get, lo, hi))
    return proof[::-1]


def plan(build: Callable[[NodeSource], T]) -> list[NodeId]:
    """The stored nodes a construction reads (so a store can fetch them in one round trip)."""
    wanted: list[NodeId] = []

    def record(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return EMPTY_ROOT

    build(record)
    return list(dict.fromkeys(wanted))


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------------------


def _check_hashes(**hashes: bytes | Sequence[bytes]) -> None:
    for name, value in hashes.items():
        values = [value] if isinstance(value, bytes) else list(value)
        for i, h in enumerate(values):
            if len(h) != HASH_SIZE:
                where = name if isinstance(value, bytes) else f"{name}[{i}]"
                raise InvalidHashSize(f"{where} is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1-5)."""
    _check_hashes(leaf_hash=leaf, proof=proof)
    if not 0 <= index < size:
        raise InvalidRange(f"leaf index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise WrongProofSize(f"the proof has {len(proof)} hashes; fewer are needed for index {index} in size {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise WrongProofSize(f"the proof has {len(proof)} hashes; more are needed for index {index} in size {size}")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    if root_from_inclusion(leaf, index, size, proof) != root:
        raise RootMismatch(f"the inclusion proof for index {index} does not lead to the root of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    _check_hashes(proof=proof)  # roots are only compared, as in the reference implementation
    if size1 <= 0 or size2 < size1:
        raise InvalidRange(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        if proof:
            raise WrongProofSize("a consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise RootMismatch(f"two different roots for the same size {size1}")
        return
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 a power of two: root1 is itself the first node of the path
        path.insert(0, root1)
    if not path:
        raise WrongProofSize("the consistency proof is empty")
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise WrongProofSize(f"the consistency proof from {size1} to {size2} has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise WrongProofSize(f"the consistency proof from {size1} to {size2} has too few hashes")
    if fr != root1:
        raise RootMismatch(f"the consistency proof does not lead to the root of size {size1}")
    if sr != root2:
        raise RootMismatch(f"the consistency proof does not lead to the root of size {size2}")


# -- an in-memory tree (the sealer's frontier and the auditor's recomputation) ------------------------------


class CompactRange:
    """The right edge of a tree being appended to: the roots of its maximal complete subtrees.

    ``append`` returns every complete node it finishes, so a store can persist each exactly once.
    """

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()):
        self.size = size
        self.edge = list(edge)  # hashes of complete_subtrees(0, size), left to right
        if len(self.edge) != bin(size).count("1"):
            raise ValueError(f"a tree of size {size} has {bin(size).count('1')} edge nodes, not {len(self.edge)}")

    @classmethod
    def load(cls, get: NodeSource, size: int) -> CompactRange:
        return cls(size, [get(level, index) for level, index in complete_subtrees(0, size)])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the completed nodes ``(level, index, hash)``, the leaf first."""
        index = self.size
        done = [(0, index, leaf)]
        h, level = leaf, 0
        while index & (1 << level):  # the left sibling at this level is complete: merge
            h = node_hash(self.edge.pop(), h)
            level += 1
            done.append((level, index >> level, h))
        self.edge.append(h)
        self.size += 1
        return done

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        result = self.edge[-1]
        for left in reversed(self.edge[:-1]):
            result = node_hash(left, result)
        return result
