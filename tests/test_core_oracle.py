"""The core's match sets equal pyahocorasick's on the same normalised text.

The oracle: guard.normalize gives the squeezed skeleton of a body (letters/digits only,
with the kind of separator run before each); pyahocorasick finds every occurrence of every
squeezed term in it; the acceptance rules of the issue (whole words, gaps inside a word,
clean words override) are re-stated here in plain Python; spans are mapped back through
the offset map. The Cython core must report exactly the same set.
"""

from __future__ import annotations

from collections.abc import Iterator

import ahocorasick
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import _core
from guard.normalize import GAP_HARD, GAP_LOOSE, GAP_NONE, GAP_TIGHT, fold, squeeze
from guard.scanner import Scanner
from guard.terms import TermList

DIRTY = [
    "NOFORN",
    "blue heron",
    "~rainbow",
    "ab",
    "x",
    "kestrel",
    "orcon",
    "aaab",
    "ice cream",
    "no",
    "~sec",
    "a b c",
    "sandstorm",
    "nightjar",
    "~quartzite",
]
CLEAN = ["secretary", "~rainbows end"]


def _term_rows(lists: list[TermList], leet: bool):
    rows = []
    for li, tl in enumerate(lists):
        for ti, raw in enumerate(tl.terms):
            sub = raw.startswith("~")
            text = raw[1:] if sub else raw
            sq = squeeze(fold(text.encode()).text, leet)
            rows.append((li, ti, sq.chars.decode("latin-1"), sq.gaps, sub, tl.kind == "clean"))
    return rows


def _gaps_ok(gaps: bytes, start: int, tgaps: bytes) -> bool:
    m = len(tgaps)
    for j in range(1, m):
        g = gaps[start + j]
        if g == GAP_NONE:
            continue
        if g == GAP_HARD:
            return False
        if tgaps[j] != GAP_NONE or g == GAP_TIGHT:
            continue
        assert g == GAP_LOOSE
        if not (j == 1 or gaps[start + j - 1] != GAP_NONE):
            return False
        if not (j + 1 == m or gaps[start + j + 1] != GAP_NONE):
            return False
    return True


def oracle(lists: list[TermList], data: bytes, leet: bool = False) -> set[tuple]:
    """(list_id, term_id, start, end) by pyahocorasick + the acceptance rules."""
    rows = _term_rows(lists, leet)
    auto = ahocorasick.Automaton()
    for idx, row in enumerate(rows):
        bucket = auto.get(row[2], []) if auto.exists(row[2]) else []
        bucket.append(idx)
        auto.add_word(row[2], bucket)
    auto.make_automaton()
    f = fold(data)
    sq = squeeze(f.text, leet)
    text = sq.chars.decode("latin-1")
    n = len(text)
    found = []
    for end, bucket in auto.iter(text) if text else []:
        for idx in bucket:
            li, ti, chars, tgaps, sub, clean = rows[idx]
            start = end - len(chars) + 1
            if not sub:
                if start > 0 and sq.gaps[start] == GAP_NONE:
                    continue
                if end + 1 < n and sq.gaps[end + 1] == GAP_NONE:
                    continue
            if not _gaps_ok(sq.gaps, start, tgaps):
                continue
            fs, fe = sq.index[start], sq.index[end]
            span = (fs, fe + 1) if f.start is None else (f.start[fs], f.end[fe])
            found.append((li, ti, span[0], span[1], clean))
    cleans = [(s, e) for _li, _ti, s, e, c in found if c]
    return {
        (li, ti, s, e)
        for li, ti, s, e, c in found
        if not c and not any(cs < e and ce > s for cs, ce in cleans)
    }


def core(sc: Scanner, data: bytes) -> set[tuple]:
    out = set()
    for m in sc.scan(data).matches:
        li = next(i for i, tl in enumerate(sc.lists) if tl.name == m.list_name)
        names = [t[1:] if t.startswith("~") else t for t in sc.lists[li].terms]
        out.add((li, names.index(m.term), m.start, m.end))
    return out


LISTS = [TermList("d", "dirty", DIRTY), TermList("c", "clean", CLEAN)]
SCANNERS = {leet: Scanner(LISTS, leet=leet, encoded_min_len=None) for leet in (False, True)}

FIXED = [
    b"NOFORN",
    b"xNOFORN",
    b"NOFORNx",
    b"N.O.F.O.R.N",
    b"N O F O R N",
    b"NO-FORN",
    b"NO\nFORN",
    b"NO\n\nFORN",
    b"NO FORN",
    b"N  O  F  O  R  N",
    b"N         O",
    b"blue heron",
    b"blue\nheron",
    b"blueheron",
    b"blue   -  heron",
    b"a rainbow!",
    b"rainbows end",
    b"secretary secret sec",
    b"aaaaaaaaab aaab aaab",
    b"x x-x x.x",
    b"ice\r\ncream",
    b"no no no. No",
    b"a b c",
    b"abc",
    b"a  b  c",
    b"n0f0rn",
    "ＮＯＦＯＲＮ".encode(),
    "NОFОRN".encode(),
    "NO\u200bFORN".encode(),
    "NÖFÖRN".encode(),
    "blue\u00a0heron".encode(),
    b"sandstokm nightjav quartzitx",
    b"sand storm",
    b"blue herxn",
    b"nightjaxx",
    b"sandstorx",
    b"\xff\xfeNOFORN\xc3",
    b"",
    b"----",
    b"a\x00b NOFORN",
]

PIECES = [
    "NOFORN",
    "no",
    "FORN",
    "blue",
    "heron",
    "rainbow",
    "ab",
    "x",
    "a",
    "b",
    "c",
    "kestrel",
    "orcon",
    "sandstorm",
    "sandstokm",
    "night",
    "jar",
    "jav",
    "quartz",
    "ite",
    "itx",
    "s",
    "n",
    "secretary",
    "ice",
    "cream",
    "aaa",
    "sec",
    "end",
    "n0",
    "0rn",
    " ",
    "  ",
    "\n",
    "\n\n",
    "-",
    ".",
    ", ",
    "\u200b",
    "Ｎ",
    "о",
    "é",
    "\u00ad",
    "         ",
    "\t",
    "'",
    "\xff",
]


@pytest.fixture(params=[True, False], ids=["simd", "portable"])
def simd(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run with the AVX-512 hot path (when the CPU has it) and with the portable one."""
    before = _core.scan_simd()
    _core.scan_simd(request.param)
    yield request.param
    _core.scan_simd(before)


def test_fixed_cases_match_oracle(simd: bool) -> None:
    for leet, sc in SCANNERS.items():
        for data in FIXED:
            assert core(sc, data) == oracle(LISTS, data, leet), (leet, data)


def test_fixed_cases_find_what_they_should(simd: bool) -> None:
    sc = SCANNERS[False]
    hits = {d: {m.term for m in sc.scan(d).matches} for d in FIXED}
    assert "NOFORN" in hits[b"N.O.F.O.R.N"] and "NOFORN" in hits[b"NO\nFORN"]
    assert "NOFORN" not in hits[b"NO\n\nFORN"] and "NOFORN" not in hits[b"NOFORNx"]
    assert "rainbow" not in hits[b"rainbows end"]  # the clean phrase overrides
    assert "blue heron" in hits[b"blueheron"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40), st.booleans())
def test_random_texts_match_oracle(parts: list[str], leet: bool) -> None:
    data = "".join(parts).encode("utf-8", "surrogateescape")
    expected = oracle(LISTS, data, leet)
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            assert core(SCANNERS[leet], data) == expected, mode
    finally:
        _core.scan_simd(before)


def test_long_texts_match_oracle_in_both_paths() -> None:
    """Texts longer than a window (64 KB) with matches everywhere, incl. at the seams."""
    import random

    rng = random.Random(5)
    for pieces in ([p.encode() for p in PIECES], [p.encode() for p in PIECES if p.isascii()]):
        data = b"".join(rng.choice(pieces) for _ in range(60_000))
        expected = oracle(LISTS, data, True)
        assert len(expected) > 1000
        before = _core.scan_simd()
        try:
            for mode in (True, False):
                _core.scan_simd(mode)
                assert core(SCANNERS[True], data) == expected, mode
        finally:
            _core.scan_simd(before)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_match_oracle(data: bytes) -> None:
    assert core(SCANNERS[False], data) == oracle(LISTS, data, False)
