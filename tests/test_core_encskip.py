"""The fold pass notes whether some aligned 32-byte half block holds only base64/hex
alphabet bytes; every run of 63 or more holds one, so without any the encoded-run pass is
skipped (encoded_min_len >= 63). Runs of every length around the threshold, at every
offset around half-block, block and window seams, must be reported exactly as the
portable path (which always runs the encoded-run pass) reports them.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.scanner import Scanner
from guard.terms import TermList
from tests.simd_paths import batch_arrays, both_paths

LISTS = [TermList("d", "dirty", ["noforn", "blue falcon"]),
         TermList("p", "pattern", [r"ssn = \d{3}-\d{2}-\d{4}"])]


def _run(length: int, hexonly: bool) -> bytes:
    if hexonly:
        return (b"0123456789abcdef" * (length // 16 + 1))[:length]
    raw = base64.b64encode(b"noforn 123-45-6789 " * (length // 8 + 1))
    return raw[:length]


@pytest.mark.parametrize("min_len", [40, 63, 64, 100])
@pytest.mark.parametrize("length", [31, 32, 62, 63, 64, 65, 96, 130])
def test_runs_at_every_seam(min_len: int, length: int) -> None:
    sc = Scanner(LISTS, encoded_min_len=min_len)
    msgs = []
    for at in (*range(0, 70), *range(90, 100), 65500, 65536 - length, 65530, 65536):
        pad = (b"ab " * (at // 3 + 1))[:at]
        for hexonly in (False, True):
            run = _run(length, hexonly)
            msgs.append(pad + run)
            msgs.append(pad + run + b" noforn")
    simd, portable = both_paths(lambda: batch_arrays(sc, msgs))
    assert simd == portable
    if length >= min_len:
        # every body holds a run long enough: each one is reported (an encoded row, the
        # decoded content's matches, or a flag)
        flagged = {i for i, f in enumerate(simd[6]) if f}
        assert set(simd[0]) | flagged == set(range(len(msgs)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"A", b"z9", b"+", b"/", b"0f", b" ", b"-", b"noforn",
                                 b"QUJD" * 8, b"=", b"\n"]), max_size=400).map(b"".join))
def test_random_bodies_identical_in_both_paths(body: bytes) -> None:
    sc = Scanner(LISTS)
    simd, portable = both_paths(lambda: batch_arrays(sc, [body, body[::-1], body * 3]))
    assert simd == portable
