"""The fused fold pass: with term lists present, the SIMD path finds pattern starts and
does the batch pre-pass (NUL, bytes >= 0x80) inside the fold of each window, and lists
word starts by squeezed index only. Both must equal the portable path (and a regex for the
PII figures) at block seams, window seams and the text's end, and whole batches of the
bench corpus must give identical arrays in both paths.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.bench.core import full_lists, make_corpus, make_terms
from guard.scanner import Scanner
from guard.terms import TermList
from tests.simd_paths import batch_arrays, both_paths

WORD = rb"A-Za-z0-9\x80-\xff"
SSN_RX = re.compile(rb"(?<![" + WORD + rb"])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![" + WORD + rb"])")
SCANNER = Scanner([TermList("d", "dirty", ["noforn", "blue falcon"]),
                   TermList("p", "pattern", [r"ssn = \d{3}-\d{2}-\d{4}"])])
SEAMS = (0, 1, 63, 64, 65, 127, 128, 4095, 4096, 65535, 65536, 65537, 65600, 65601)


def _ssn_rows(data: bytes) -> list[tuple[int, int]]:
    hits, _runs = SCANNER._core.scan(data, as_lists=True)
    return sorted((s, e) for c, s, e in hits if c >= SCANNER._core.nterms)


@pytest.mark.parametrize("before", [b" ", b"a", b"9", b"-"])
@pytest.mark.parametrize("after", [b"", b" ", b"x", b"7", b"."])
def test_pii_at_block_and_window_seams_with_terms(before: bytes, after: bytes) -> None:
    fig = b"123-45-6789"
    for seam in SEAMS:
        for start in {max(0, seam - len(fig)), max(0, seam - 5), seam}:
            if start < len(before):
                continue
            pad = b"noforn word " * (start // 12 + 1)
            head = (pad[: start - len(before)] + before) if start else b""
            data = head + fig + after
            simd, portable = both_paths(lambda d=data: _ssn_rows(d))
            expected = [(m.start(), m.end()) for m in SSN_RX.finditer(data)]
            assert simd == portable == expected, (seam, start, before, after)


def test_bench_corpus_batches_identical_in_both_paths() -> None:
    terms = make_terms(300)
    sc = Scanner(full_lists(terms))
    msgs = make_corpus(4096, 40, terms, 11) + make_corpus(512, 40, terms, 3)
    # a long body (two windows), odd bodies between ordinary ones
    msgs.insert(5, b" ".join(msgs[:30]))
    msgs.insert(7, "caf\u00e9 noforn 123-45-6789".encode())
    msgs.insert(9, b"noforn\x00123-45-6789")
    msgs.insert(11, b"")
    msgs.insert(13, b"x" * 70 + "\u00e9".encode())
    simd, portable = both_paths(lambda: batch_arrays(sc, msgs))
    assert simd == portable
    assert simd[6][msgs.index(b"noforn\x00123-45-6789")] != 0  # the NUL body is flagged


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=12))
def test_random_batches_identical_in_both_paths(msgs: list[bytes]) -> None:
    simd, portable = both_paths(lambda: batch_arrays(SCANNER, msgs))
    assert simd == portable


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["noforn", "blue falcon", "a", "x" * 25, "y" * 70, "zz9",
                                 "Secretary", "123-45-6789", "-", ". ", "\n"]),
                min_size=1, max_size=400).map(" ".join))
def test_long_words_and_short_words_identical_in_both_paths(text: str) -> None:
    # eight word starts spanning more than 120 letters take the gather, fewer the permute
    sc = Scanner(full_lists(["noforn", "blue falcon", "xxxxxxxxxx"]))
    data = text.encode()
    simd, portable = both_paths(lambda: batch_arrays(sc, [data, data[::-1]]))
    assert simd == portable


@pytest.mark.parametrize("lead", [0, 1, 7, 40, 57, 63])
@pytest.mark.parametrize("length", [64, 70, 100])
def test_encoded_run_carried_into_a_short_block(lead: int, length: int) -> None:
    # the run starts in one block and ends early in the next, whose own bytes are short
    # alphabet stretches (words): the block skip must not drop it (fail open)
    sc = Scanner([TermList("d", "dirty", ["noforn"])])
    data = b"." * lead + b"y" * length + b" nrofon" * 12
    simd, portable = both_paths(lambda: sc.scan(data).encoded)
    assert simd == portable
    assert [(m.start, m.end) for m in simd] == [(lead, lead + length)]
