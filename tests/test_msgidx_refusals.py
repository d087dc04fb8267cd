"""Messages the index refuses at once, with the parser's own findings.

Beyond the simple report shape, the index recognises a few shapes whose parse ends in
findings it can state itself (``BatchIndex.bad_mark_findings``): portion marks not valid
or not closed in sections that keep a valid one (status 2), a last line that is not the
first banner again (3), a first line that is a portion mark (4), fewer than three lines of
text (5). For any message of banner-, portion-, tearline- and blank-like lines, with any
line ends and line limit, those findings must be exactly ``parse_message``'s, and a
message the index takes as simple must parse without findings."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.decide import Pipeline
from guard.messages import BatchIndex, MarkIndex, parse_mark, parse_message, portion_marking
from guard.policy import load_policy
from tests.decisions import decision_key, reference_key

REPO = Path(__file__).resolve().parents[1]

_LINES = [
    b"SECRET//REL TO USA, FVEY", b"SECRET", b"  SECRET  ", b"SECRET//NOFORN", b"UNCLASSIFIED",
    b"SECRET//BOGUS", b"TOP SECRET//SI//NOFORN", b"(S//REL TO USA, FVEY) Convoy moved.",
    b"(S) Fleet sailed.", b"(U) Clear.", b"(S//NF) Source.", b"(QQ) Bad mark.",
    b"(S//REL TO USA, FVEY Not closed.", b"(S", b"(" + b"S" * 600 + b") long", b"()", b"",
    b"   ", b"\t", b"----- TEARLINE -----", b"---TEARLINE---", b"Unmarked text.",
    b"{\"banner\": 1}", b"<html>", b"[1]", b" (S) Indented.", b"S\xc3\xa9CRET",
]


def _index(datas: list[bytes], max_portions: int) -> BatchIndex:
    marks = MarkIndex(portion_marking, lambda t: parse_mark(t, "banner").marking
                      if not parse_mark(t, "banner").errors else None)
    return BatchIndex(datas, marks, max_portions)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_LINES), max_size=9), min_size=1, max_size=5),
       st.sampled_from([b"\n", b"\r\n"]), st.sampled_from([b"", b"\n", b"\n\n", b"\r\n"]),
       st.integers(1, 6))
def test_refusals_are_the_parsers(bodies: list[list[bytes]], nl: bytes, end: bytes,
                                  max_portions: int) -> None:
    datas = [nl.join(lines) + end for lines in bodies]
    ix = _index(datas, max_portions)
    for k, data in enumerate(datas):
        status = int(ix.status[k])
        ref = parse_message(data, max_portions)
        if status == 0:
            assert ref.ok, data
        elif status != 1:
            got = ix.bad_mark_findings(k)
            assert got == ref.findings and got, (data, status)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LINES[:16]), min_size=1, max_size=12),
       st.integers(1, 300))
def test_line_limit_as_the_parser(lines: list[bytes], max_portions: int) -> None:
    """Many lines against a small limit: the parser's message-limit comes first."""
    data = b"\n".join(lines * (1 + 300 // len(lines))) + b"\n"
    ix = _index([data], max_portions)
    if int(ix.status[0]) not in (0, 1):
        assert ix.bad_mark_findings(0) == parse_message(data, max_portions).findings


_SHAPES = [
    b"SECRET\n" + b"(S) a\n" * 300 + b"UNCLASSIFIED\n",   # 3: the last line differs
    b"(S) a\n" * 302,                                   # 4: no banner
    b"SECRET\n" + b"\n" * 300 + b"(S) a\n",              # 5: two lines of text
    b"SECRET\n(S) a\n" + b"(QQ) b\n" * 299 + b"SECRET\n",  # 2: invalid marks
]


def test_line_limit_at_its_edge() -> None:
    """The parser counts a message's lines against max_portions + 258 before anything
    else: at the limit, one under and one over, the index refuses as the parser does."""
    met = 0
    for data in _SHAPES:
        lines = data.count(b"\n") + 1
        for max_portions in range(max(1, lines - 262), lines - 254):
            ix = _index([data], max_portions)
            ref = parse_message(data, max_portions).findings
            if int(ix.status[0]) != 1:
                met += 1
                assert ix.bad_mark_findings(0) == ref, (data[:20], max_portions)
    assert met >= 8


_T = b"----- TEARLINE -----"
_SECTIONS = [[b"(S) a", b"(QQ) b"], [b"(QQ) b"], [b"(QQ) b", b"(S) a"], [b"(S c"],
             [b"(S) a"], [b"(QQ) b", b"(S c"]]


def test_sections_that_keep_no_valid_portion() -> None:
    """Invalid or unclosed marks in tearline sections (closing banners or not): the index
    states the parser's findings only when every section keeps a valid portion."""
    datas = []
    for main in _SECTIONS:
        for sec in _SECTIONS:
            for closing in (False, True):
                body = [b"SECRET", *main, _T, b"SECRET", *sec, *([b"SECRET"] * closing),
                        _T, b"SECRET", b"(S) z", b"SECRET"]
                datas.append(b"\n".join(body) + b"\n")
    ix = _index(datas, 100)
    met = 0
    for k, data in enumerate(datas):
        ref = parse_message(data, 100).findings
        if int(ix.status[k]) == 2:
            met += 1
            assert ix.bad_mark_findings(k) == ref, data
        else:
            assert int(ix.status[k]) == 1 or not ref
    assert met >= 8


_PIPE = Pipeline(load_policy(REPO / "policies" / "us-secret-to-fvey.yaml"), watchdog=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_LINES), max_size=8), min_size=1, max_size=6))
def test_batch_decides_as_each_alone(bodies: list[list[bytes]]) -> None:
    datas = [b"\n".join(lines) + b"\n" for lines in bodies]
    want = [reference_key(_PIPE, data) for data in datas]
    assert [decision_key(d) for d in _PIPE.decide_batch(datas)] == want


def test_each_refusal_is_met() -> None:
    """The shapes above really reach statuses 2 to 5 (with and without sections)."""
    datas = [
        b"SECRET\n(S) a\n(QQ) b\n----- TEARLINE -----\nSECRET\n(S) c\n(S d\nSECRET\n",
        b"SECRET\n(S) a\nUNCLASSIFIED\n", b"(S) a\n(S) b\n(S) c\n", b"SECRET\n(S) a\n",
    ]
    ix = _index(datas, 100)
    assert ix.status.tolist() == [2, 3, 4, 5]
    for k, data in enumerate(datas):
        assert ix.bad_mark_findings(k) == parse_message(data, 100).findings
