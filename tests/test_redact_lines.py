"""``build_lines`` slices runs of adjacent kept lines at once: its output must be the
line-by-line reference (each span joined by '\\n' under the banner) for any spans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.markings import parse, render_banner, rollup
from guard.redact import build_lines

MARKS = ["S//REL TO USA, FVEY", "U"]


def _reference(text: bytes, lines: list[tuple[int, int]]) -> bytes:
    head = render_banner(rollup([parse(m, "portion").marking for m in MARKS])).encode()
    body = b"\n".join([text[s:e] for s, e in lines])
    return b"".join((head, b"\n", body, b"\n", head, b"\n"))


@st.composite
def _report(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    n = draw(st.integers(1, 12))
    bodies = draw(st.lists(st.text("ab \n\r()", max_size=8), min_size=n, max_size=n))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=n, max_size=n))
    text, spans = b"TOP\n", []
    for body, end in zip(bodies, ends, strict=True):
        line = f"(U) {body}".encode()
        spans.append((len(text), len(text) + len(line)))
        text += line + end.encode()
    keep = draw(st.lists(st.sampled_from(range(n)), min_size=1, max_size=2 * n))
    return text, [spans[i] for i in keep]


@settings(max_examples=300, deadline=None)
@given(_report())
def test_build_lines_matches_line_by_line(case: tuple[bytes, list[tuple[int, int]]]) -> None:
    text, lines = case
    markings = [parse(m, "portion").marking for m in MARKS]
    out, _banner = build_lines(text, lines, MARKS, markings)
    assert out == _reference(text, lines)
