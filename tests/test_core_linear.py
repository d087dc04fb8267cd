"""Adversarial inputs: results stay correct and scanning stays linear (no hang).

Timing is not asserted (bench/ measures speed); the timeout only turns a pathological
slowdown into a failure instead of a hung suite.
"""

from __future__ import annotations

import base64

import pytest

from guard.scanner import Scanner
from guard.terms import TermList

TERMS = TermList("d", "dirty", ["a" * 200 + "b", "aaab", "~" + "ab" * 100 + "c", "a b",
                                "n o f o r n"])
PII = TermList("p", "pattern", [r"digits = \d{3}-\d{2}-\d{4}", r"w = \w{1,60}x"])


@pytest.fixture(scope="module")
def sc() -> Scanner:
    return Scanner([TERMS, PII], leet=True, encoded_min_len=64)


@pytest.mark.timeout(120)
def test_repetitions(sc: Scanner) -> None:
    n = 4_000_000
    assert sc.scan(b"a" * n).matches == []
    assert sc.scan(b"a " * (n // 2)).matches == []
    r = sc.scan(b"ab" * (n // 2) + b"c")
    assert [m.term for m in r.matches] == ["ab" * 100 + "c"]
    assert sc.scan(b"1" * n).matches == []
    assert sc.scan(b"123-45-678" * (n // 10)).matches == []
    r = sc.scan(b"aaab " * (n // 5))
    assert len(r.matches) == n // 5


@pytest.mark.timeout(120)
def test_separator_runs(sc: Scanner) -> None:
    n = 4_000_000
    assert sc.scan(b" " * n).matches == []
    assert sc.scan(b"a" + b"-" * n + b"aab").matches == []
    assert sc.scan(b".-" * (n // 2)).matches == []
    r = sc.scan(b"a. " * (n // 3))
    assert all(m.term == "a b" for m in r.matches) and r.matches == []
    assert sc.scan("\u200b".encode() * (n // 3)).matches == []


@pytest.mark.timeout(120)
def test_huge_encoded_runs(sc: Scanner) -> None:
    blob = base64.b64encode(b"\x00\x01" * 1_500_000)
    r = sc.scan(b"x " + blob + b" y")
    assert [m.term for m in r.encoded] == ["base64"]
    r = sc.scan(b"Z" * 3_000_001)  # not valid base64 (length 1 mod 4)
    assert [m.term for m in r.encoded] == ["base64"]
    text = base64.b64encode(b"plain words " * 200_000 + b"aaab")
    assert [m.term for m in sc.scan(text).matches] == ["aaab"]


@pytest.mark.timeout(180)
def test_hundred_megabytes(sc: Scanner) -> None:
    data = (b"ordinary words in a very long message " * 2_700_000)[:100_000_000] + b" aaab"
    r = sc.scan(data)
    assert [f.rule for f in r.findings] == ["core.oversize"]
    assert [(m.term, m.start) for m in r.matches] == [("aaab", 100_000_001)]
    r = sc.scan("é".encode() * 50_000_000)
    assert [f.rule for f in r.findings] == ["core.oversize"] and r.matches == []
