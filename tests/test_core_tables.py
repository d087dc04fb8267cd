"""Prefilter tables at their extremes, SIMD against portable against pyahocorasick.

- Big whole-word tables (more than 8,192 keys: every key hashes its own Bloom word, no
  shared words) with terms of every prefix class (1, 2, 3, 4, 5..7 and 8+ characters).
- Substring terms: few distinct first-4-character prefixes (the exact SIMD prefix pass on
  the squeezed letters) and more than the pass takes (the coarser flags pass).
- Dense substring candidates ("pppp...", "sesese...": one candidate per byte) across
  window seams: they used to overflow the candidate buffer and corrupt the heap.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from test_core_oracle import core, oracle

from guard import _core
from guard.bench.core import make_terms
from guard.scanner import Scanner
from guard.terms import TermList

SHORT = ["q", "zx", "jkw", "oq", "x y"]  # prefix classes 1..3 (and a phrase of class 3)
BIG = TermList("big", "dirty", SHORT + make_terms(12000, seed=5))
FEW_SUB = TermList("sub", "dirty", ["~secret", "~PROJ-77", "~OPLAN-5", "~a", "~pp"])
MANY_SUB = TermList("msub", "dirty", [f"~{w}" for w in make_terms(40, seed=9)])


def _paths(sc: Scanner, lists: list[TermList], data: bytes) -> set[tuple]:
    """The matches of both paths, which must be equal, and equal to the oracle's."""
    expected = oracle(lists, data)
    before = _core.scan_simd()
    try:
        got = []
        for mode in (True, False):
            _core.scan_simd(mode)
            got.append(core(sc, data))
            offsets = np.array([0, len(data)], dtype=np.int64)
            rows = sc.scan_batch(data, offsets).matches_for(0)
            assert sorted((m.start, m.end, m.term) for m in rows) == sorted(
                (m.start, m.end, m.term) for m in sc.scan(data).matches), mode
    finally:
        _core.scan_simd(before)
    assert got[0] == got[1] == expected, (len(got[0]), len(got[1]), len(expected))
    return expected


def _text(rng: random.Random, terms: list[str], nwords: int) -> bytes:
    words = ["the", "naval", "report", "said", "q", "zx", "jk", "a", "x", "y", "of"]
    out = []
    for _ in range(nwords):
        r = rng.random()
        if r < 0.08:
            w = rng.choice(terms).lstrip("~")
            # evasions too: letter spacing, dots, a hyphen, case
            k = rng.random()
            if k < 0.2:
                w = " ".join(w)
            elif k < 0.3:
                w = ".".join(w)
            elif k < 0.4 and len(w) > 3:
                w = w[:2] + "-" + w[2:]
            out.append(w.upper() if rng.random() < 0.5 else w.lower())
        elif r < 0.12:
            out.append(rng.choice(terms).lstrip("~")[:-1])  # near miss
        else:
            out.append(rng.choice(words))
    return " ".join(out).encode()


def test_big_table_uses_own_words_and_matches_oracle() -> None:
    sc = Scanner([BIG], encoded_min_len=None)
    assert len(BIG.terms) > 8192
    found = _paths(sc, [BIG], _text(random.Random(1), BIG.terms, 4000))
    assert len(found) > 200  # the planted terms were found (not a vacuous comparison)


@pytest.mark.parametrize("lists", [[FEW_SUB], [MANY_SUB], [FEW_SUB, TermList(
    "w", "dirty", ["NOFORN", "blue heron", "q"])]], ids=["few", "many", "mixed"])
def test_substring_prefix_passes_match_oracle(lists: list[TermList]) -> None:
    sc = Scanner(lists, encoded_min_len=None)
    terms = [t for tl in lists for t in tl.terms]
    rng = random.Random(2)
    total = 0
    for _ in range(6):
        body = _text(rng, terms, 700)
        # substrings glued inside longer tokens too
        body += b" x" + rng.choice(terms).lstrip("~").encode() + b"y topsecretly"
        total += len(_paths(sc, lists, body))
    assert total > 100


@pytest.mark.parametrize(("unit", "dense"), [
    (b"p", True), (b"pppp ", True), (b"p.", True), (b"a", True), (b"pP-", True),
    (b"se", False)])  # "sesese": every letter a candidate of the flags pass, no match
def test_dense_substring_candidates_across_windows(unit: bytes, dense: bool) -> None:
    sc = Scanner([FEW_SUB], encoded_min_len=None)
    data = unit * (70_000 // len(unit))  # past the first 65,536-byte window
    found = _paths(sc, [FEW_SUB], data)
    assert (len(found) > 5_000) == dense
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            res = sc.scan_batch(data * 2, np.array([0, len(data), 2 * len(data)]))
            assert np.bincount(res.msg, minlength=2).tolist() == [len(found)] * 2, mode
    finally:
        _core.scan_simd(before)
