"""Portion marks found in message bodies (Cython core) and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guard._core import find_portions
from guard.cli import main
from guard.markings import recognize as rec
from guard.markings import recognize_portions

BODY = (
    "SECRET//REL TO USA, GBR\n"
    "(S//REL TO USA, GBR) Naval activity increased near the strait on 12 May.\n"
    "(S//NF) The reporting comes from a sensitive technical source.\n"
    "   (U) Weather in the area was clear.\n"
    "(see the annex) is not a portion mark, nor is a (S) mid-line.\n"
    "(a) list items are not marks, (TS) mid-line neither\n"
    "(S//NОFORN) a Cyrillic O must still be reported\n"
    "(s//nf) lower case too\n"
    "(TS)"
)


def test_finds_marks_at_line_starts_only() -> None:
    hits = recognize_portions(BODY.encode("utf-8"))
    data = BODY.encode("utf-8")
    texts = [data[h.start:h.end].decode("utf-8") for h in hits]
    assert texts == ["(S//REL TO USA, GBR)", "(S//NF)", "(U)", "(S//NОFORN)", "(s//nf)", "(TS)"]
    assert [h.result.valid for h in hits] == [True, True, True, False, False, True]
    assert hits[3].result.errors[0].rule == "input-lookalike"
    assert "input-lowercase" in {e.rule for e in hits[4].result.errors}


def test_str_bodies_give_character_offsets() -> None:
    hits = recognize_portions(BODY)
    assert [BODY[h.start:h.end] for h in hits][3] == "(S//NОFORN)"
    ascii_body = "(U) a\n(S//NF) b"
    assert [(h.start, h.end) for h in recognize_portions(ascii_body)] == [(0, 3), (6, 13)]


def test_core_returns_int64_spans() -> None:
    spans = find_portions(b"(S//NF) x\n(U)")
    assert spans.dtype == np.int64 and spans.tolist() == [[0, 7], [10, 13]]
    assert find_portions(b"").shape == (0, 2)
    assert find_portions(b"(" + b"S" * 300 + b")").shape == (0, 2)   # too long for a mark
    assert find_portions(b"(S//NF\n) x").shape == (0, 2)               # not on one line


def test_many_marks_beyond_the_fixed_bound() -> None:
    body = b"(U)\n" * 70000
    assert find_portions(body).shape == (70000, 2)


def test_parses_are_cached_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "CACHE_MAX", 4)
    rec._cache.clear()
    a = recognize_portions(b"(S//NF) x\n(S//NF) y")
    assert a[0].result is a[1].result  # one parse for one distinct string
    recognize_portions(b"\n".join(b"(S//REL TO USA, %s)" % c for c in
                                   (b"GBR", b"CAN", b"AUS", b"NZL", b"JPN", b"DEU")))
    assert len(rec._cache) <= 4


# ---- command line ---------------------------------------------------------------------

def test_cli_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["markings", "check", "--json", "SECRET//NOFORN", "(S//REL TO CAN)"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert lines[0]["valid"] is True and lines[0]["kind"] == "banner"
    assert set(lines[0]) == {"input", "kind", "valid", "errors", "parsed"}
    assert lines[1]["kind"] == "portion" and lines[1]["errors"][0]["rule"] == "rel-no-usa"
    assert set(lines[1]["errors"][0]) == {"rule", "message", "start", "end"}
    assert main(["markings", "check", "TOP SECRET//SI//NOFORN"]) == 0


def test_cli_rollup_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["markings", "rollup", "--json", "(S//REL TO USA, FVEY)", "(C)"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out == {"banner": "SECRET//NOFORN", "errors": []}
    status = main(["markings", "rollup", "--json", "(S//NF)", "(X)"])
    out = json.loads(capsys.readouterr().out)
    assert status == 1 and out["banner"] is None and out["errors"]


def test_cli_releasable_json_and_stdin(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        b"SECRET//REL TO USA, FVEY\nSECRET//NOFORN\n")))
    status = main(["markings", "releasable", "--json", "--to", "GBR", "-"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert lines[0] == {"releasable": True, "reasons": []}
    assert lines[1]["releasable"] is False and lines[1]["reasons"]
