"""RFC 9162 Merkle trees: our roots and proofs against an independent recursive
reimplementation of the RFC's definitions (MTH, PATH, PROOF), computed straight
from hashlib so it shares no code with guard.audit.merkle."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_and_paths,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH, over raw entries."""
    n = len(entries)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + entries[0])
    k = _k(n)
    return _h(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


entries_st = st.lists(st.binary(max_size=8), min_size=1, max_size=40, unique=True)


def test_prefixes_are_domain_separated() -> None:
    assert leaf_hash(b"ab") == _h(b"\x00ab")
    assert node_hash(b"a" * 32, b"b" * 32) == _h(b"\x01" + b"a" * 32 + b"b" * 32)
    assert EMPTY_ROOT == _h(b"") == root_of([])
    # a leaf can never be confused with a node over the same bytes
    assert leaf_hash(b"\x01" + b"a" * 64) != node_hash(b"a" * 32, b"a" * 32)


@settings(max_examples=60, deadline=None)
@given(entries_st)
def test_roots_match_the_rfc_definition(entries: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in entries]
    tree = MerkleTree(leaves)
    for n in range(len(entries) + 1):
        assert tree.root(n) == mth(entries[:n])


@settings(max_examples=60, deadline=None)
@given(entries_st, st.data())
def test_frontier_matches_in_any_chunking(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in entries]
    f = Frontier()
    i = 0
    while i < len(leaves):
        step = data.draw(st.integers(1, 7))
        f.extend(leaves[i:i + step])
        i += step
        assert f.root() == mth(entries[:min(i, len(entries))])
    assert f.size == len(entries)


@settings(max_examples=50, deadline=None)
@given(entries_st)
def test_inclusion_proofs(entries: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in entries]
    tree = MerkleTree(leaves)
    n = len(entries)
    root = mth(entries)
    for m in range(n):
        proof = tree.inclusion_proof(m, n)
        assert proof == path(m, entries)
        assert verify_inclusion(leaves[m], m, n, proof, root)
        # wrong leaf, wrong index, wrong size, altered path: all rejected
        assert not verify_inclusion(leaf_hash(entries[m] + b"x"), m, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaves[m], (m + 1) % n, n, proof, root)
            bad = list(proof)
            bad[0] = bytes(32)
            assert not verify_inclusion(leaves[m], m, n, bad, root)
            assert not verify_inclusion(leaves[m], m, n, proof[:-1], root)


@settings(max_examples=50, deadline=None)
@given(entries_st)
def test_all_paths_at_once_are_the_rfc_paths(entries: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in entries]
    root, paths = root_and_paths(leaves)
    assert root == mth(entries)
    assert paths == [path(m, entries) for m in range(len(entries))]
    for m, p in enumerate(paths):
        assert root_from_inclusion(leaves[m], m, len(leaves), p) == root
        if len(leaves) > 1:  # (the size alone may not change the walk: stamps sign it)
            assert root_from_inclusion(leaves[m], (m + 1) % len(leaves), len(leaves), p) != root


@settings(max_examples=50, deadline=None)
@given(entries_st)
def test_consistency_proofs(entries: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in entries]
    tree = MerkleTree(leaves)
    n = len(entries)
    for m in range(1, n + 1):
        proof = tree.consistency_proof(m, n)
        assert proof == subproof(m, entries, True)
        assert verify_consistency(m, n, mth(entries[:m]), mth(entries), proof)
        if m < n:
            # an old root that is not a prefix, or a tampered proof, is rejected
            assert not verify_consistency(m, n, mth([*entries[:m - 1], b"forged"]),
                                          mth(entries), proof)
            bad = list(proof)
            bad[-1] = bytes(32)
            assert not verify_consistency(m, n, mth(entries[:m]), mth(entries), bad)
            assert not verify_consistency(m, n, mth(entries[:m]), mth(entries), [])


def test_out_of_range_requests_are_refused() -> None:
    tree = MerkleTree([leaf_hash(b"a"), leaf_hash(b"b")])
    for call in (lambda: tree.inclusion_proof(2, 2), lambda: tree.consistency_proof(0, 2),
                 lambda: tree.consistency_proof(1, 3), lambda: tree.root(3)):
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("out-of-range proof request accepted")
    assert not verify_inclusion(leaf_hash(b"a"), 5, 2, [], tree.root())
