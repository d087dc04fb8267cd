"""PII patterns: the core's NFA and its start prefilter against a regex reference.

The prefilter (SIMD or portable) skips every start whose run would die at once; this
checks, on random patterns and bodies dense in digits, letters, separators and bytes
>= 0x80, that both paths report exactly the longest whole-word match from every word
start that Python's ``re`` finds.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from guard import _core
from guard.scanner import Scanner
from guard.terms import TermList, parse_pattern

WORD = rb"A-Za-z0-9\x80-\xff"
_CLASS = {"d": rb"[0-9]", "a": rb"[A-Za-z]", "w": rb"[" + WORD + rb"]"}


def _regex(pattern: str) -> re.Pattern[bytes]:
    parts = []
    for a in parse_pattern(pattern):
        if a.lit:
            enc = a.cls.encode("utf-8")
            atom = (b"[" + a.cls.lower().encode() + a.cls.upper().encode() + b"]"
                    if a.cls.isascii() and a.cls.isalpha() else b"(?:" + re.escape(enc) + b")")
        else:
            atom = _CLASS[a.cls]
        parts.append(atom + b"{%d,%d}" % (a.lo, a.hi))
    return re.compile(b"".join(parts))


def _reference(patterns: list[str], data: bytes) -> list[tuple[int, int, int]]:
    word = re.compile(b"[" + WORD + b"]")
    n = len(data)
    out = []
    for p, pat in enumerate(patterns):
        rx = _regex(pat)
        for i in range(n):
            if i > 0 and word.match(data, i - 1):
                continue
            best = -1
            for e in range(i + 1, n + 1):
                if rx.fullmatch(data, i, e) and (e == n or not word.match(data, e)):
                    best = e
            if best >= 0:
                out.append((p, i, best))
    return sorted(out)


ATOM = st.sampled_from([r"\d", r"\a", r"\w", "A", "x", "-", ".", " ", "7", "é"])
REPEAT = st.sampled_from(["", "", "{2}", "{0,2}", "{1,3}", "{3}", "{0,1}"])
# a pattern file line is stripped, so a pattern never starts or ends with a space
PATTERN = (st.lists(st.tuples(ATOM, REPEAT).map("".join), min_size=1, max_size=5)
           .map(lambda parts: "".join(parts).strip()).filter(bool))
BODY = st.lists(st.sampled_from([b"1", b"23", b"456", b"-", b" ", b".", b"A", b"x", b"ab",
                                 b"Z9", "é".encode(), b"\xff", b"\n", b"7"]),
                max_size=40).map(b"".join)


def _compiles(pattern: str) -> bool:
    try:
        Scanner([TermList("p", "pattern", [f"p = {pattern}"])])
    except ValueError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(st.lists(PATTERN, min_size=1, max_size=4), st.lists(BODY, min_size=1, max_size=4))
def test_patterns_match_the_regex_reference_in_both_paths(patterns: list[str],
                                                          bodies: list[bytes]) -> None:
    assume(all(_compiles(p) for p in patterns))
    sc = Scanner([TermList("p", "pattern", [f"p{i} = {p}" for i, p in enumerate(patterns)])])
    before = _core.scan_simd()
    try:
        for body in bodies:
            expected = _reference(patterns, body)
            for mode in (True, False):
                _core.scan_simd(mode)
                hits, _runs = sc._core.scan(body, as_lists=True)
                got = sorted((c - sc._core.nterms, s, e) for c, s, e in hits)
                assert got == expected, (mode, body)
    finally:
        _core.scan_simd(before)


@pytest.mark.parametrize("pattern,body,span", [
    (r"\d", b"x 7 y", (2, 3)),                 # a one-byte match: any non-word byte follows
    (r"\d", b"7", (0, 1)),                     # ... or the end of the text
    (r"\a{0,1}\d{3}", b"no 123 here", (3, 6)),  # optional first atom: digit starts too
    (r"A-\d{3}", b"id a-123.", (3, 8)),
])
def test_prefilter_keeps_every_kind_of_start(pattern: str, body: bytes,
                                             span: tuple[int, int]) -> None:
    sc = Scanner([TermList("p", "pattern", [f"p = {pattern}"])])
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            long = b"filler text " * 20 + body + b" trailing words" * 10
            shift = len(b"filler text " * 20)
            got = [(m.start - shift, m.end - shift) for m in sc.scan(long).matches]
            assert got == [span], mode
            assert [(m.start, m.end) for m in sc.scan(body).matches] == [span], mode
    finally:
        _core.scan_simd(before)
