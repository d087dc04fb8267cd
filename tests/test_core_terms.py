"""Term and pattern file formats (policies/terms/*.txt, *.patterns)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.scanner import Scanner
from guard.terms import Atom, TermList, load_patterns, load_terms, parse_pattern


def test_load_terms(tmp_path: Path) -> None:
    path = tmp_path / "dirty.txt"
    path.write_text("# comment\n\nNOFORN\n~rainbow\nblue   heron\n  ORCON  \n", encoding="utf-8")
    tl = load_terms(path, "d", "dirty")
    assert tl == TermList("d", "dirty", ["NOFORN", "~rainbow", "blue heron", "ORCON"])
    with pytest.raises(ValueError):
        load_terms(path, "d", "pattern")
    (tmp_path / "bad.txt").write_text("~\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        load_terms(tmp_path / "bad.txt", "d", "dirty")


def test_load_patterns(tmp_path: Path) -> None:
    path = tmp_path / "pii.patterns"
    path.write_text("# pii\nus-ssn = \\d{3}-\\d{2}-\\d{4}\nus-passport = \\a\\d{8}\n",
                    encoding="utf-8")
    tl = load_patterns(path, "pii")
    assert tl.kind == "pattern"
    assert tl.terms == ("us-ssn = \\d{3}-\\d{2}-\\d{4}", "us-passport = \\a\\d{8}")
    sc = Scanner([tl])
    assert [m.term for m in sc.scan(b"id 078-05-1120 and C03005988").matches] == [
        "us-ssn", "us-passport"]
    path.write_text("no equals sign\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pii\.patterns:1"):
        load_patterns(path, "pii")


def test_parse_pattern() -> None:
    assert parse_pattern("\\d{3}-x\\{") == [Atom("d", False, 3, 3), Atom("-", True, 1, 1),
                                             Atom("x", True, 1, 1), Atom("{", True, 1, 1)]
    assert parse_pattern("\\w{2,5}\\\\") == [Atom("w", False, 2, 5), Atom("\\", True, 1, 1)]
    for bad in ["", "\\d{", "\\d{3,1}", "a{x}", "\\", "\\d{0}", "}", "\\d{70}", "\\d{0,3}"]:
        with pytest.raises(ValueError):
            parse_pattern(bad)


def test_pattern_repetition_ranges() -> None:
    sc = Scanner([TermList("p", "pattern", ["code = X\\d{2,4}", "w = \\w{3}-\\w{3}"])])
    got = [(m.term, m.start, m.end) for m in sc.scan(b"X1 X12 X1234 X12345 ab1-Zz9").matches]
    assert got == [("code", 3, 6), ("code", 7, 12), ("w", 20, 27)]
