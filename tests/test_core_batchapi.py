"""The batch result API: arrays, row bounds and Match objects all tell the same story.

``matches_by_message`` (one pass over the batch) must give exactly what ``matches_for``
gives message by message, which must be what ``Scanner.scan`` finds alone in each body
(pure ASCII in the core, the rest folded in Python, encoded runs included); messages
without matches get empty lists, and ``message_bounds`` delimits every message's rows.
"""

from __future__ import annotations

import base64

import numpy as np
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
