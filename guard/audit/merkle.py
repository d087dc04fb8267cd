"""Merkle tree hashing, proofs and proof checking exactly as RFC 9162 section 2.1.

Leaf hash ``SHA-256(0x00 || entry)``, interior node ``SHA-256(0x01 || left || right)``,
the tree over ``n`` leaves splits at the largest power of two smaller than ``n``.
``MerkleTree`` holds every level so proofs for any earlier tree size cost
O(log n) lookups; ``Frontier`` is the writer's O(log n)-memory running root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha = hashlib.sha256
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = _sha(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 leaf hash of one log entry."""
    return _sha(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash."""
    return _sha(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _pairs(nodes: Sequence[bytes]) -> list[bytes]:
    """Hash adjacent pairs (0,1), (2,3) ...; an odd last node is left out."""
    sha, pre = _sha, NODE_PREFIX
    return [sha(pre + nodes[i] + nodes[i + 1]).digest() for i in range(0, len(nodes) - 1, 2)]


class MerkleTree:
    """All levels of the tree over a list of leaf hashes (n - 1 node hashes to build).

    ``levels[k][i]`` is the root of the perfect subtree over leaves
    ``[i * 2**k, (i + 1) * 2**k)``; any RFC 9162 subtree is either one of these
    or splits into one of these plus a right-edge subtree, so roots and proofs
    of every earlier size come from lookups.
    """

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        level = self.levels[0]
        while len(level) > 1:
            level = _pairs(level)
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves[start:end]; ``start`` is aligned as in the RFC recursion."""
        n = end - start
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:  # perfect subtree: stored if aligned
            k = n.bit_length() - 1
            if start % n == 0 and k < len(self.levels):
                level = self.levels[k]
                if start >> k < len(level):
                    return level[start >> k]
        if n == 1:
            return self.levels[0][start]
        k = _split(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} outside 0..{self.size}")
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.3.1 PATH(index, D[0:size])."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
        proof.reverse()  # the RFC lists the sibling nearest the leaf first
        return proof

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.4.1 PROOF(old_size, D[0:size])."""
        size = self.size if size is None else size
        if not 0 < old_size <= size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {size}")
        return self._subproof(old_size, 0, size, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self._subtree(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self._subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._subtree(start, start + k)]


def root_and_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """MTH over ``leaves`` and every leaf's inclusion path, with n - 1 hashes in all
    (``MerkleTree.inclusion_proof`` per leaf re-hashes the right edge each time)."""
    if not leaves:
        raise ValueError("no leaves")
    paths: list[list[bytes]] = [[] for _ in leaves]
    return _build(leaves, paths, 0, len(leaves)), paths


def _build(leaves: Sequence[bytes], paths: list[list[bytes]], start: int, end: int) -> bytes:
    # a module function, not a closure: a recursive closure is a reference cycle, and
    # would keep every path alive until the garbage collector's next pass
    if end - start == 1:
        return leaves[start]
    mid = start + _split(end - start)
    left, right = _build(leaves, paths, start, mid), _build(leaves, paths, mid, end)
    # appended after the subtrees': the sibling nearest the leaf comes first
    for i in range(start, mid):
        paths[i].append(right)
    for i in range(mid, end):
        paths[i].append(left)
    return _sha(NODE_PREFIX + left + right).digest()


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes."""
    return MerkleTree(leaves).root()


def root_from_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes | None:
    """RFC 9162 2.1.3.2: the root ``proof`` leads to from ``leaf`` at ``index`` in a
    tree of ``size`` leaves, or None if the proof cannot belong to such a tree."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return None
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
    return r if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show ``leaf`` at ``index`` in the tree ``root``?"""
    return root_from_inclusion(leaf, index, size, proof) == root


def verify_consistency(
    old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree ``old_root`` (old_size) a prefix of ``root`` (size)?"""
    if old_size == size:
        return not proof and old_root == root
    if not 0 < old_size < size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: old_root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
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
    return sn == 0 and fr == old_root and sr == root


class Frontier:
    """Running root of a growing tree: one perfect-subtree root per set bit of ``size``.

    ``extend`` hashes a batch of leaves level by level with list comprehensions,
    so the writer pays n - 1 node hashes in total and keeps O(log n) memory.
    """

    __slots__ = ("nodes", "size")

    def __init__(self) -> None:
        self.size = 0
        self.nodes: list[bytes | None] = []  # nodes[k]: subtree of 2**k leaves, if bit k set

    @classmethod
    def of_tree(cls, tree: MerkleTree) -> Frontier:
        """The frontier of a complete tree, read from its levels (no hashing)."""
        f = cls()
        n = f.size = tree.size
        f.nodes = [tree.levels[k][(n >> k) - 1] if n >> k & 1 else None
                   for k in range(n.bit_length())]
        return f

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append leaf hashes (in order)."""
        if not leaves:
            return
        pos = self.size  # index, at the current level, of the first new node
        nodes = list(leaves)
        level = 0
        while nodes:
            if len(self.nodes) <= level:
                self.nodes.append(None)
            if pos & 1:  # the first new node is a right child: pull in its left sibling
                nodes.insert(0, self.nodes[level])  # type: ignore[arg-type]
                pos -= 1
            self.nodes[level] = nodes[-1] if len(nodes) & 1 else None
            nodes = _pairs(nodes)
            pos >>= 1
            level += 1
        self.size += len(leaves)

    def extend_packed(self, leaves: bytes) -> None:
        """Append packed 32-byte leaf hashes (the writer's form; see ``accel.FastFrontier``)."""
        if len(leaves) % 32:
            raise ValueError("leaves must be a whole number of 32-byte hashes")
        self.extend([leaves[i:i + 32] for i in range(0, len(leaves), 32)])

    def root(self) -> bytes:
        """MTH of all leaves so far."""
        r: bytes | None = None
        for h in self.nodes:
            if h is not None:
                r = h if r is None else node_hash(h, r)
        return EMPTY_ROOT if r is None else r
