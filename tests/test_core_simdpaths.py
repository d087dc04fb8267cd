"""Block and chunk seams of the vectorised passes, SIMD against portable against a regex.

The pattern prefilter reads each 64-byte block once and takes the neighbours of its first
and last byte from the blocks around it (and from the next 2,048-byte chunk); a PII figure
placed across every such seam, with every kind of byte before and after it, must be found
(or not) exactly as Python's ``re`` says, by both paths. The batch pre-pass (pure ASCII?
NUL byte?) is checked at the same seams against Python's own answers.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import _core
from guard.scanner import FLAG_NUL, Scanner
from guard.terms import TermList

SSN = r"\d{3}-\d{2}-\d{4}"
WORD = rb"A-Za-z0-9\x80-\xff"
SSN_RX = re.compile(rb"(?<![" + WORD + rb"])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![" + WORD + rb"])")
SCANNER = Scanner([TermList("p", "pattern", [f"ssn = {SSN}", r"pp = \a\d{8}"])])
PP_RX = re.compile(rb"(?<![" + WORD + rb"])[A-Za-z][0-9]{8}(?![" + WORD + rb"])")
NAMES = ("ssn", "pp")
SEAMS = (0, 1, 63, 64, 65, 127, 128, 2047, 2048, 2049, 4095, 4096)


def _expected(data: bytes) -> list[tuple[str, int, int]]:
    out = [("ssn", m.start(), m.end()) for m in SSN_RX.finditer(data)]
    out += [("pp", m.start(), m.end()) for m in PP_RX.finditer(data)]
    return sorted(out)


def _both(data: bytes) -> None:
    expected = _expected(data)
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            # the core itself, on the raw bytes (Scanner.scan would fold "é" to "e" first)
            hits, _runs = SCANNER._core.scan(data, as_lists=True)
            got = sorted((NAMES[c - SCANNER._core.nterms], s, e) for c, s, e in hits)
            assert got == expected, (mode, len(data))
    finally:
        _core.scan_simd(before)


@pytest.mark.parametrize("before", [b" ", b"a", b"9", b"\xc3\xa9", b"-"])
@pytest.mark.parametrize("after", [b"", b" ", b"x", b"7", b"\xc3\xa9", b"."])
def test_pii_across_every_seam(before: bytes, after: bytes) -> None:
    fig = b"123-45-6789"
    for seam in SEAMS:
        # the figure starts at, ends at, and straddles the seam
        for start in {max(0, seam - len(fig)), max(0, seam - 5), seam, max(0, seam - 1)}:
            if start < len(before):
                continue
            head = (b"wo 12 " * (start // 6 + 1))[:start - len(before)] + before
            _both(head + fig + after + b" tail 987-65-4321 and A12345678 end")


BYTES = st.sampled_from([b"1", b"23", b"456", b"-", b" ", b".", b"A", b"x", b"ab", b"Z9",
                         "é".encode(), b"\n", b"7", b"123-45-6789", b"B12345678"])


@settings(max_examples=40, deadline=None)
@given(st.lists(BYTES, min_size=20, max_size=1500).map(b"".join))
def test_long_random_bodies_in_both_paths(data: bytes) -> None:
    _both(data)


@pytest.mark.parametrize("where", (*SEAMS, 4097, 5000))
@pytest.mark.parametrize("odd", [b"\x00", b"\x80", b"\xff"])
def test_batch_prepass_flags_at_seams(where: int, odd: bytes) -> None:
    """Which messages are pure ASCII (scanned in the core) and which hold a NUL byte,
    for a single odd byte at every seam of a batch of three messages."""
    clean = b"plain words 123-45-6789 " * 220
    msgs = [clean[:5001], clean[:5001], clean[:300]]
    msgs[1] = msgs[1][:where] + odd + msgs[1][where + 1:]
    buf = b"".join(msgs)
    offsets = np.cumsum([0] + [len(m) for m in msgs]).astype(np.int64)
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            res = SCANNER.scan_batch(buf, offsets)
            assert [bool(f & FLAG_NUL) for f in res.flags.tolist()] == [
                b"\x00" in m for m in msgs], mode
            for i, m in enumerate(msgs):
                assert sorted((x.term, x.start, x.end) for x in res.matches_for(i)) == (
                    _expected(m) if m.isascii() else sorted(
                        (x.term, x.start, x.end) for x in SCANNER.scan(m).matches)), (mode, i)
    finally:
        _core.scan_simd(before)
