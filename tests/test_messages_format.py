"""Message formats: detection from content only, structure, spans, and never a crash."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.messages import ism_to_mark, marking_to_ism, parse_mark, parse_message

REPORT = (b"SECRET//REL TO USA, GBR\r\n"
          b"(S//REL TO USA, GBR) Naval activity.\r\n"
          b"\r\n"
          b"(U) Weather clear.\r\n"
          b"------ TEARLINE ------\r\n"
          b"SECRET//REL TO USA, FVEY\r\n"
          b"(S//REL TO USA, FVEY) Naval activity.\r\n"
          b"SECRET//REL TO USA, FVEY\r\n"
          b"SECRET//REL TO USA, GBR\r\n")


def test_text_report_structure_and_spans() -> None:
    m = parse_message(REPORT)
    assert m.ok and m.format == "text"
    assert m.banner == "SECRET//REL TO USA, GBR"
    assert [len(s.portions) for s in m.sections] == [2, 1]
    assert m.sections[1].tearline and m.sections[1].banner == "SECRET//REL TO USA, FVEY"
    p = m.portions[0]
    assert REPORT[p.start:p.end] == b"(S//REL TO USA, GBR) Naval activity."
    assert REPORT[p.start:p.mark_end] == b"(S//REL TO USA, GBR)"
    assert m.portions[2].section == 1
    # banners and marks are excluded from term search, body text is not
    spans = m.skip_spans()
    assert (p.start, p.mark_end) in spans and m.banner_spans[0] in spans
    assert len(m.banner_spans) == 3  # top, bottom and the tearline's closing banner


def test_header_claims_do_not_decide_the_format() -> None:
    # a "Content-Type" style first line is not a banner: it is refused, not trusted
    m = parse_message(b"Content-Type: application/json\n(U) x\nContent-Type: application/json\n")
    assert not m.ok and m.findings[0].rule == "banner-invalid"
    # a JSON document is JSON whatever line it claims to be
    doc = {"banner": {"classification": "U"}, "portions": [{"text": "x", "classification": "U"}]}
    m = parse_message(b"  \n" + json.dumps(doc).encode())
    assert m.ok and m.format == "json"


def test_json_document_normalised_form() -> None:
    doc = {
        "banner": {"classification": "S", "releasableTo": ["USA", "GBR"],
                   "disseminationControls": ["REL"]},
        "portions": [{"text": "two\nlines", "classification": "S",
                      "releasableTo": ["USA", "GBR"], "disseminationControls": ["REL"]}],
        "tearlines": [{"banner": {"classification": "U"},
                       "portions": [{"text": "open", "classification": "U"}]}],
    }
    m = parse_message(json.dumps(doc).encode())
    assert m.ok and m.format == "json" and m.json_portions is not None
    assert m.text.splitlines()[1] == b"(S//REL TO USA, GBR) two lines"
    assert len(m.sections) == 2 and m.sections[1].banner == "UNCLASSIFIED"


def test_ism_mapping_round_trip() -> None:
    obj = {"classification": "TS", "SCIcontrols": ["SI", "TK"],
           "disseminationControls": ["OC", "REL"], "releasableTo": ["USA", "GBR"]}
    mark = ism_to_mark(obj)
    assert mark == "TS//SI/TK//OC/REL TO USA, GBR"
    res = parse_mark(mark, "portion")
    assert res.valid and res.marking is not None
    back = marking_to_ism(res.marking)
    assert parse_mark(ism_to_mark(back), "portion").marking == res.marking
    assert ism_to_mark({"classification": "S", "ownerProducer": ["GBR"]}) == "//GBR S"


def test_findings_have_spans() -> None:
    data = b"SECRET\n(S) fine\nnot marked\n(S) fine\nSECRET\n"
    m = parse_message(data)
    f = next(x for x in m.findings if x.rule == "portion-unmarked")
    assert data[f.start:f.end] == b"not marked"
    bad = b"SECRET\n(S) caf\xe9\nSECRET\n"
    f = parse_message(bad).findings[0]
    assert f.rule == "message-encoding" and bad[f.start:f.end] == b"\xe9"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_never_crashes_on_garbage(data: bytes) -> None:
    m = parse_message(data)
    assert m.ok or all(f.rule and f.message for f in m.findings)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["banner", "portions", "tearlines", "text",
                                         "classification", "releasableTo", "x"]), c,
                        max_size=4), max_leaves=12))
def test_never_crashes_on_odd_json(doc: object) -> None:
    m = parse_message(json.dumps(doc).encode())
    assert m.ok or m.findings


def test_deep_json_is_refused() -> None:
    m = parse_message(b"{" + b'"a":{' * 100_000 + b"}" * 100_001)
    assert not m.ok and m.findings[0].rule == "message-format"


LINES = ["SECRET//REL TO USA, GBR", "(S//REL TO USA, GBR) Convoy.", "(U) Rain.", "(S//NF) Src.",
         "", " ", "  (U) indented", "(a) list item", "plain text", "(Q) bad", "(U",
         "---- TEARLINE ----", "UNCLASSIFIED", "(TS//SI//NF) x", "(U)"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LINES), min_size=0, max_size=8), st.booleans(),
       st.booleans(), st.sampled_from(["SECRET//REL TO USA, GBR", "UNCLASSIFIED", "(U)"]))
def test_fast_path_equals_full_parser(middle: list[str], crlf: bool, final_nl: bool,
                                      banner: str) -> None:
    """The one-pass recogniser path gives exactly what the line-by-line parser gives."""
    import guard.messages as msgs

    eol = "\r\n" if crlf else "\n"
    data = (eol.join([banner, *middle, banner]) + (eol if final_nl else "")).encode()

    def key(m: msgs.Message) -> tuple:
        return (m.banner, m.marking, m.banner_spans, [f.rule for f in m.findings],
                [(p.start, p.end, p.mark_end, p.mark, p.section, p.marking) for p in m.portions],
                [(s.index, s.tearline, s.banner, s.banner_span, s.portions) for s in m.sections])

    fast = parse_message(data)
    original = msgs._fast_text
    msgs._fast_text = lambda *a: None  # type: ignore[assignment]
    try:
        slow = parse_message(data)
    finally:
        msgs._fast_text = original
    assert key(fast) == key(slow)
