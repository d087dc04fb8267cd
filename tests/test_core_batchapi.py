"""The batch result API: arrays, row bounds and Match objects all tell the same story.

``matches_by_message`` (one pass over the batch) must give exactly what ``matches_for``
gives message by message, which must be what ``Scanner.scan`` finds alone in each body
(pure ASCII in the core, the rest folded in Python, encoded runs included); messages
without matches get empty lists, and ``message_bounds`` delimits every message's rows.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import _core
from guard.scanner import Scanner
from guard.terms import TermList

SCANNER = Scanner([
    TermList("d", "dirty", ["NOFORN", "blue heron", "~secret", "orcon"]),
    TermList("p", "pattern", [r"ssn = \d{3}-\d{2}-\d{4}"]),
    TermList("c", "clean", ["Secretary"]),
], encoded_min_len=24)
PIECES = st.sampled_from([
    b"plain ", b"words ", b"NOFORN ", b"N.O.F.O.R.N ", b"blue  heron ", b"topsecret ",
    b"Secretary ", b"123-45-6789 ", "caf\u00e9 ".encode(), "N\u041eFORN ".encode(), b"\xff ",
    b"\x00", base64.b64encode(b"a clean sentence without anything in it") + b" ",
    base64.b64encode(b"this one says orcon in the middle of it") + b" ", b"\n",
])
BODY = st.lists(PIECES, max_size=30).map(b"".join)


def _alone(body: bytes) -> list[tuple]:
    res = SCANNER.scan(body)
    return sorted(res.matches + res.encoded)


@settings(max_examples=60, deadline=None)
@given(st.lists(BODY, min_size=1, max_size=12), st.booleans())
def test_batch_views_agree_with_single_scans(bodies: list[bytes], simd: bool) -> None:
    before = _core.scan_simd()
    try:
        _core.scan_simd(simd)
        offsets = np.cumsum([0] + [len(b) for b in bodies]).astype(np.int64)
        res = SCANNER.scan_batch(b"".join(bodies), offsets)
        per = res.matches_by_message()
        bounds = res.message_bounds()
        assert len(per) == len(bodies) and len(bounds) == len(bodies) + 1
        for i, body in enumerate(bodies):
            assert sorted(per[i]) == sorted(res.matches_for(i)) == _alone(body), (i, body)
            rows = range(int(bounds[i]), int(bounds[i + 1]))
            assert all(int(res.msg[k]) == i for k in rows)
            assert len(rows) == len(per[i])
            assert [(m.start, m.end) for m in per[i]] == [
                (int(res.start[k]), int(res.end[k])) for k in rows]
    finally:
        _core.scan_simd(before)


def test_messages_without_matches_get_fresh_empty_lists() -> None:
    bodies = [b"nothing here", b"NOFORN", b"", b"still nothing"]
    offsets = np.cumsum([0] + [len(b) for b in bodies]).astype(np.int64)
    res = SCANNER.scan_batch(b"".join(bodies), offsets)
    per = res.matches_by_message()
    assert [len(p) for p in per] == [0, 1, 0, 0]
    per[0].append("x")  # a caller's list is its own
    assert res.matches_by_message()[0] == [] and res.matches_for(0) == []
    assert res.matches_for(7) == [] and res.matches_for(-1) == []


def test_match_objects_built_in_the_core() -> None:
    """Matches built by the core are ordinary Match tuples: equal to ones built in Python,
    sharing the scanner's strings, off the GC's lists (they cannot form cycles), and a
    row naming a term the scanner does not have is an error, never a wrong Match."""
    import gc
    import sys

    from guard.scanner import Match

    body = b"NOFORN and blue heron, 123-45-6789"
    res = SCANNER.scan_batch(body, np.array([0, len(body)], dtype=np.int64))
    got = res.matches_for(0)
    assert got == [Match("d", "dirty", "NOFORN", 0, 6), Match("d", "dirty", "blue heron", 11, 21),
                   Match("p", "pattern", "ssn", 23, 34)]
    assert all(type(m) is Match and not gc.is_tracked(m) for m in got)
    assert got[0].term is SCANNER._prefix[0][0][2]
    term = got[0].term
    refs = sys.getrefcount(term)
    again = res.matches_by_message()[0]
    with_again = sys.getrefcount(term)
    del again
    after = sys.getrefcount(term)
    assert (with_again, after) == (refs + 1, refs)  # one reference per Match, none leaked
    table = SCANNER._mtable
    assert table.rows([0, -1], [1, 1], [5, 7], [9, 11]) == [
        Match("d", "dirty", "blue heron", 5, 9), Match("", "encoded", "hex", 7, 11)]
    for li, ti in ((0, 99), (3, 0), (-2, 0), (-1, 2), (1, -1)):
        with pytest.raises(IndexError):
            table.rows([li], [ti], [0], [1])
    with pytest.raises(ValueError):
        table.view(np.array([1, 0], np.int32), [0, 0], [0, 0], [0, 0], [1, 1], 2)
    with pytest.raises(TypeError):
        _core.MatchTable(tuple, SCANNER._prefix)


def test_offsets_are_shared_ints_below_the_limit_and_exact_above() -> None:
    """Offsets under 65,536 are one shared int per value (the core's table of shared
    ints); offsets at or above it, and negative ones, are made per Match. Values are
    exact either way, and a Match holds one reference to each int: dropping the Matches
    returns them."""
    import sys

    table = SCANNER._mtable
    starts = [0, 300, 65535, 65536, 2**40, -5]
    ends = [1, 301, 70000, 2**40 + 1, 2**41, 3]
    rows = table.rows([0] * 6, [0] * 6, starts, ends)
    assert [(m.start, m.end) for m in rows] == list(zip(starts, ends, strict=True))
    again = table.rows([0] * 6, [0] * 6, starts, ends)
    assert again[1].start is rows[1].start and again[2].start is rows[2].start
    assert again[3].start is not rows[3].start  # past the limit: a new int
    shared = rows[1].start
    refs = sys.getrefcount(shared)
    del again
    assert sys.getrefcount(shared) == refs - 1
    del rows
    assert shared == 300
