"""``build_lines`` and ``build_text`` slice runs of adjacent kept lines at once: their
output must be the line-by-line reference (each span, with its cuts, joined by '\\n'
under the banners) for any spans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.markings import parse, render_banner, rollup
from guard.messages import TEARLINE
from guard.redact import Plan, _cut, build_lines, build_text

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


@settings(max_examples=300, deadline=None)
@given(_report(), st.data())
def test_build_text_matches_line_by_line(case: tuple[bytes, list[tuple[int, int]]],
                                         data: st.DataObject) -> None:
    """``build_text`` slices runs of adjacent uncut lines at once too: its output must be
    each portion's line (with its cuts) joined by '\\n', per section, under the banners."""
    text, spans = case
    n = len(spans)
    mark_of = data.draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))
    marks = [MARKS[m] for m in mark_of]
    markings = [parse(m, "portion").marking for m in marks]
    split = data.draw(st.integers(0, n))
    sections = [list(range(split)), list(range(split, n))]
    cuts = {}
    for i in data.draw(st.lists(st.sampled_from(range(n)), max_size=3)):
        s, e = spans[i]
        a = data.draw(st.integers(s, e))
        cuts[i] = [(a, data.draw(st.integers(a, e + 2)))]
    out, banner = build_text(text, Plan(sections, cuts), [s for s, _ in spans],
                             [e for _, e in spans], marks, markings)
    kept = [i for sec in sections for i in sec]
    if not kept:
        return
    head = render_banner(rollup([markings[i] for i in kept])).encode()
    lines = [head]
    for k, sec in enumerate(s for s in sections if s):
        if k:
            lines += [TEARLINE, render_banner(rollup([markings[i] for i in sec])).encode()]
        for i in sec:
            s, e = spans[i]
            lines.append(_cut(text[s:e], s, cuts[i]) if i in cuts else text[s:e])
    assert out == b"\n".join([*lines, head]) + b"\n"
    assert banner == head.decode()


def test_core_joins_refuse_spans_outside_the_text() -> None:
    """The core's joins fail (the stage then blocks the message) rather than read past
    the text for a span that is not inside it, or take a part of another type."""
    import pytest

    from guard._core import msgidx_join_lines, msgidx_join_parts

    text = b"TOP\n(U) a\n"
    assert msgidx_join_lines(text, [(4, 9)], b"H") == b"H\n(U) a\nH\n"
    assert msgidx_join_parts(text, [b"H", (4, 9), b"H"]) == b"H\n(U) a\nH\n"
    for bad in ([(4, 11)], [(5, 4)], [(-1, 2)]):
        with pytest.raises(ValueError):
            msgidx_join_lines(text, bad, b"H")
        with pytest.raises(ValueError):
            msgidx_join_parts(text, [b"H", *bad])
    with pytest.raises(TypeError):
        msgidx_join_parts(text, [b"H", [4, 9]])


def test_core_joins_refuse_malformed_lines_and_parts_changed_under_them() -> None:
    """A line that is not an (s, e) pair is an error, never a read past a tuple, and a
    part list changed while it is joined (here by an ``__index__``) is an error, never a
    copy past the allocation."""
    import pytest

    from guard._core import msgidx_join_lines, msgidx_join_parts

    text = b"TOP\n(U) a\n"
    for bad in ([()], [(4,)], [(4, 9, 10)]):
        with pytest.raises(ValueError):
            msgidx_join_lines(text, bad, b"H")
    parts: list[object] = [b"H", b"", b"H"]

    class Grows:
        def __index__(self) -> int:
            parts[1] = b"x" * 4096  # longer than what the first pass counted
            return 9

    parts.append((4, Grows()))
    with pytest.raises(ValueError, match="changed"):
        msgidx_join_parts(text, parts)
