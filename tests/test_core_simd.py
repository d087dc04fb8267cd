"""The vectorised whole-word pass (squeeze + gathered keys) against pyahocorasick.

Bodies of a few KB give many 64-byte blocks and many groups of 8 word starts (the
random texts of test_core_oracle are short); window seams followed by long separator
runs force the scalar tail of a window. Both paths must equal the oracle.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from test_core_oracle import LISTS, PIECES, SCANNERS, core, oracle

from guard import _core
from guard.scanner import Scanner
from guard.terms import TermList


def _both_paths(data: bytes, leet: bool) -> None:
    expected = oracle(LISTS, data, leet)
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            assert core(SCANNERS[leet], data) == expected, (mode, data[:80])
    finally:
        _core.scan_simd(before)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=200, max_size=900), st.booleans())
def test_kilobyte_texts_match_oracle(parts: list[str], leet: bool) -> None:
    _both_paths("".join(parts).encode("utf-8", "surrogateescape"), leet)


def test_window_seams_with_long_separator_runs() -> None:
    """Word starts just before a window's end whose next letters lie past the squeezed
    look-ahead (runs of separators), and words cut by the seam."""
    rng = random.Random(3)
    window = 65536
    for pad in range(window - 24, window + 2, 3):
        for gap in (b" " * 70, b"." * 130, b"\n", b" -  "):
            tail = b" ".join(rng.choice([b"N O", b"NO", b"FORN", b"blue", b"heron", b"a"])
                             for _ in range(4))
            data = b"z" * pad + b" " + tail + gap + b"FORN blue heron NOFORN"
            _both_paths(data, False)


def test_substring_terms_alone() -> None:
    """A policy whose only terms are substrings (it used to crash the SIMD path: its
    scratch memory was reserved only when whole-word terms existed)."""
    import numpy as np

    from guard.scanner import Scanner
    from guard.terms import TermList

    sc = Scanner([TermList("d", "dirty", ["~secret"])])
    body = b"top secret stuff, topsecretly"
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            assert [(m.start, m.end) for m in sc.scan(body).matches] == [(4, 10), (21, 27)]
            br = sc.scan_batch(body * 2, np.array([0, len(body), 2 * len(body)]))
            assert br.msg.tolist() == [0, 0, 1, 1]
    finally:
        _core.scan_simd(before)


_PFX_TERMS = ["thei", "blue", "heron", "herons", "stead", "steady", "thing steady",
              "completely", "complete the", "bluer"]
_PFX_LISTS = [TermList("p", "dirty", _PFX_TERMS)]
_PFX_SCANNER = Scanner(_PFX_LISTS, encoded_min_len=None)
_PFX_WORDS = ["the", "their", "thei", "blue", "bluer", "blueish", "heron", "herons",
              "heronsx", "stead", "steady", "steadyx", "thing", "complete", "completely",
              "a", "b", "of", "x.y", "N O", "-", "steadying"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_PFX_WORDS), min_size=20, max_size=700),
       st.sampled_from([" ", "  ", "\n", ". ", "-"]))
def test_first_fragment_classes_match_oracle(words: list[str], sep: str) -> None:
    """Terms of 4, 5..7 and 8+ characters that are prefixes of the text's words ("thei" in
    "their"): the group loop tests every class on every lane and drops the classes the
    first fragment rules out afterwards; lanes are listed 16 at a time (runs of starts
    that are not a multiple of 8 or 16)."""
    data = sep.join(words).encode()
    expected = oracle(_PFX_LISTS, data)
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            assert core(_PFX_SCANNER, data) == expected, (mode, data[:80])
    finally:
        _core.scan_simd(before)
