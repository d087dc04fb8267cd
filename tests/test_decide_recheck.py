"""The independent re-check refuses every kind of bad output on its own."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.policy import load_policy
from guard.recheck import Rechecker

POLICIES = Path(__file__).resolve().parents[1] / "policies"
GB = "SECRET//REL TO USA, GBR"


@pytest.fixture(scope="module")
def gbr() -> Rechecker:
    return Rechecker(load_policy(POLICIES / "us-secret-to-gbr.yaml"))


def _doc(*lines: str, banner: str = GB) -> bytes:
    return ("\n".join([banner, *lines, banner]) + "\n").encode()


GOOD_JSON = {"banner": {"classification": "S", "releasableTo": ["USA", "GBR"],
                        "disseminationControls": ["REL"]},
             "portions": [{"text": "Convoy.", "classification": "S",
                           "releasableTo": ["USA", "GBR"], "disseminationControls": ["REL"]}]}

BAD = [
    ("nf-portion", _doc("(S//REL TO USA, GBR) a.", "(S//NF) b.", banner="SECRET//NOFORN"),
     "not releasable to GBR"),
    ("above-accreditation", _doc("(TS//REL TO USA, GBR) a.",
                                 banner="TOP SECRET//REL TO USA, GBR"), "accreditation"),
    ("sci", _doc("(S//SI//REL TO USA, GBR) a.", banner="SECRET//SI//REL TO USA, GBR"), "SCI"),
    ("wrong-banner", _doc("(U) a."), "roll-up"),
    ("banners-differ", b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) a.\nSECRET\n", "differ"),
    ("unmarked", _doc("(S//REL TO USA, GBR) a.", "plain"), "not a portion-marked"),
    ("codeword", _doc("(S//REL TO USA, GBR) NIGHTJAR."), "codewords"),
    ("pii", _doc("(S//REL TO USA, GBR) 123-45-6789."), "pii"),
    ("quarantine-term", _doc("(S//REL TO USA, GBR) a clandestine source."), "sensitive"),
    ("encoded", _doc("(S//REL TO USA, GBR) " + "QUJD" * 30), "encoded"),
    ("not-utf8", b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) \xff\nSECRET//REL TO USA, GBR\n",
     "UTF-8"),
    ("json-hidden-key", json.dumps({**GOOD_JSON, "portions": [
        {**GOOD_JSON["portions"][0], "note": "hidden"}]}).encode(), "portion keys"),
    ("empty-tearline", _doc("(S//REL TO USA, GBR) a.", "---- TEARLINE ----"), "tearline"),
    # display tricks the first pass refuses on input: the re-check refuses them on output
    ("control-byte", _doc("(S//REL TO USA, GBR) a\x1b[8m hidden."), "control byte 0x1b"),
    ("bare-cr", _doc("(S//REL TO USA, GBR) a.\r(S//NF) b."), "control byte 0x0d"),
    ("bidi-override", _doc("(S//REL TO USA, GBR) a \u202eNF//S\u202c."), "U+202E"),
    ("line-separator", _doc("(S//REL TO USA, GBR) a.\u2028(S//NF) b."), "U+2028"),
    ("json-control", json.dumps({**GOOD_JSON, "portions": [
        {**GOOD_JSON["portions"][0], "text": "a\u0007b"}]}).encode(), "control byte 0x07"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_recheck_refuses(gbr: Rechecker, case: tuple[str, bytes, str]) -> None:
    _name, output, why = case
    problems = gbr.check(output)
    assert problems and all(p.rule == "recheck-failed" for p in problems)
    assert any(why in p.message for p in problems), problems


def test_recheck_accepts_good_output(gbr: Rechecker) -> None:
    assert gbr.check(_doc("(S//REL TO USA, GBR) Convoy.", "(U) Rain.")) == []
    assert gbr.check(json.dumps(GOOD_JSON).encode()) == []
    # a quarantine list is allowed only after review
    held = _doc("(S//REL TO USA, GBR) a clandestine source.")
    assert gbr.check(held, allow_quarantine=True) == []


LINES = ["(S//REL TO USA, GBR) Convoy.", "(U) Rain.", "(S//NF) Src.", "", "  (U) indented",
         "(a) list item", "plain", "(Q) bad", "---- TEARLINE ----", "UNCLASSIFIED",
         "SECRET//REL TO USA, GBR", "(S//REL TO USA, GBR) NIGHTJAR 123-45-6789."]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(LINES), min_size=0, max_size=6), st.booleans(),
       st.sampled_from(["SECRET//REL TO USA, GBR", "UNCLASSIFIED", "SECRET//NOFORN"]))
def test_fast_path_equals_line_parser(middle: list[str], crlf: bool, banner: str) -> None:
    rc = Rechecker(load_policy(POLICIES / "us-secret-to-gbr.yaml")) if not _RC else _RC[0]
    _RC[:] = [rc]
    eol = "\r\n" if crlf else "\n"
    data = (eol.join([banner, *middle, banner]) + eol).encode()
    fast = [(f.rule, f.message, f.start, f.end) for f in rc.check(data)]
    rc._fast = lambda text: None  # type: ignore[method-assign]
    try:
        slow = [(f.rule, f.message, f.start, f.end) for f in rc.check(data)]
    finally:
        del rc._fast
    assert fast == slow


_RC: list[Rechecker] = []


_BINARY_B64 = base64.b64encode(bytes(range(128, 200)))  # decodes to bytes, not text


def test_check_batch_judges_matches_like_check() -> None:
    """The batch re-check counts in the core only the matches ``finish`` reports: a
    quarantine list's term may stay in a quarantine candidate (and only there), a
    redact or block list's term, a PII pattern and an encoded run never, a lane
    indicator does not matter; whatever the count says, ``check_batch`` equals
    ``check`` and the outputs without a reportable match pass on the index."""
    from guard.decide import Pipeline

    rc = Pipeline(load_policy(POLICIES / "us-secret-to-nato.yaml"),
                  watchdog=False).stages[-1].rechecker  # type: ignore[attr-defined]
    head = b"SECRET//REL TO USA, NATO\n(S//REL TO USA, NATO) Convoy left port"
    tails = [b".", b" with a US person.", b" near 123-45-6789.", b" under KLONDIKE.",
             b" as sea level rose.", b" " + _BINARY_B64 + b".",
             b" with a US person as sea level rose."]
    outs = [head + t + b"\nSECRET//REL TO USA, NATO\n" for t in tails]
    for allow in (False, True):
        flags = [allow] * len(outs)
        got = rc.check_batch(outs, flags)
        want = [rc.check(o, allow_quarantine=allow) for o in outs]
        assert [[f.to_dict() for f in x] for x in got] == \
            [[f.to_dict() for f in x] for x in want]
        passed = [not x for x in got]
        assert passed == [True, allow, False, False, True, False, allow]


@pytest.mark.parametrize("tear", ["--- TEARL\u0130NE ---", "--- tearl\u0131ne ---"])
def test_non_ascii_tearline_look_alike_is_no_tearline(gbr: Rechecker, tear: str) -> None:
    """Only ASCII case folding makes a tearline (as in the first pass): a look-alike line
    is an unmarked line of the output, and the batch check agrees."""
    out = _doc("(S//REL TO USA, GBR) a.", tear, "(U) b.", banner=GB)
    ok = _doc("(S//REL TO USA, GBR) a.", "--- tearline ---", "UNCLASSIFIED", "(U) b.")
    got = gbr.check(out)
    assert any("not a portion-marked paragraph" in f.message for f in got)
    assert not gbr.check(ok)
    assert gbr.check_batch([out, ok], [False, False]) == [got, []]
