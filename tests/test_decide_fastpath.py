"""The batch fast paths decide exactly as the per-message reference path.

``Pipeline.decide_batch`` indexes messages in the Cython core and decides the simple ones
without building a ``Message`` (and re-checks simple outputs on the index). The reference
runs every stage's per-message ``run`` (``Stage.run_batch`` of the base class: the Python
parser, the full decide, ``build_output`` and ``Rechecker.check``). For generated messages
(valid and broken, LF and CRLF, tearlines, closing banners, blank lines, dirty terms and
PII, non-ASCII text, look-alike characters in marks and banners), both must give the
same verdict, findings, output, banner and lanes; the index must rebuild the very
``Message`` the parser gives; ``check_batch`` must equal ``check``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.decide import Pipeline
from guard.markings import parse, render_banner, rollup
from guard.messages import BatchIndex, MarkIndex, parse_mark, parse_message, portion_marking
from guard.policy import load_policy
from tests.decisions import decision_key, reference_key

POLICIES = Path(__file__).resolve().parents[1] / "policies"
NAMES = ["us-secret-to-gbr", "us-secret-to-fvey", "us-secret-to-public",
         "us-secret-to-fvey-yesforn"]
GOOD = ["U", "C", "S", "S//NF", "S//REL TO USA, FVEY", "S//REL TO USA, GBR",
        "C//REL TO USA, FVEY", "TS//SI//NF", "S//OC/NF", "U//FOUO", "S//REL TO USA, GBR, JPN"]
# non-ASCII look-alikes in marks and banners (Cyrillic, zero-width, no-break space) must
# be judged exactly as the parser judges them
BAD = ["SECRET", "X//Y", "s//nf", "", "S//REL", "\u0421//REL TO USA, FVEY", "S//N\u200bF",
       "S//NF\u00a0", "\u0405//NF"]
BANNERS = ["SECRET//REL TO USA, FVEY", "SECRET//NOFORN", "SECRET", "UNCLASSIFIED",
           "NOT A BANNER", "(S) mark", "SECRET\u00a0", "S\u0415CRET//NOFORN",
           "\u3000SECRET//NOFORN"]
# non-ASCII body text: accented, CJK, emoji, evasions of a term (homoglyph, zero-width,
# full-width), and the characters parse_message refuses (bidi override, NEL, BOM, U+2028)
WORDS = ["convoy", "port", "weather", "clear", "harbor", "DEEPWATER", "123-45-6789",
         "secret", "analysts", "the", "climate", "osint", "rainfall", "drought",
         "café", "東京", "\U0001f600", "D\u0415\u0415PWATER", "DEEP\u200bWATER",
         "\uff24\uff25\uff25\uff30WATER", "a\u202eb", "a\x85b", "\ufeff", "x\u2028y",
         "\u00a0", "\u0420ort"]
TEAR = ["-------- TEARLINE --------", "--- tearline ---", "-- TEARLINE --", "----TEARLINE----",
        "--- TEARL\u0130NE ---", "---\u00a0TEARLINE ---"]


def _rolled(marks: list[str]) -> str:
    ms = [parse(m, "portion").marking for m in marks]
    return render_banner(rollup([m for m in ms if m is not None])) if all(ms) else "SECRET"


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    true_banners = draw(st.integers(0, 3)) > 0

    def section() -> tuple[list[str], list[str]]:
        marks, lines = [], []
        for _ in range(draw(st.integers(1, 4))):
            mark = draw(st.sampled_from(GOOD)) if draw(st.integers(0, 15)) else \
                draw(st.sampled_from(BAD))
            text = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=5)))
            lead = " " if draw(st.integers(0, 30)) == 0 else ""
            line = f"{lead}({mark}) {text}".rstrip() if draw(st.integers(0, 30)) else text
            marks.append(mark)
            lines.append(line)
        return marks, lines

    all_marks, body = section()
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        marks, lines = section()
        sb = _rolled(marks) if true_banners else draw(st.sampled_from(BANNERS))
        body += [draw(st.sampled_from(TEAR)), sb, *lines]
        if draw(st.booleans()):
            body.append(sb)
        all_marks += marks
    banner = _rolled(all_marks) if true_banners else draw(st.sampled_from(BANNERS))
    if draw(st.integers(0, 15)) == 0:
        body.insert(draw(st.integers(0, len(body))), "")
    last = banner if draw(st.integers(0, 15)) else draw(st.sampled_from([" " + banner,
                                                                        BANNERS[0]]))
    out = eol.join([banner, *body, last]) + draw(st.sampled_from([eol, eol, "", eol + eol]))
    return out.encode()


PIPES = {name: Pipeline(load_policy(POLICIES / f"{name}.yaml"), watchdog=False)
         for name in NAMES}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=6), st.sampled_from(NAMES))
def test_batch_decisions_equal_the_reference(batch: list[bytes], name: str) -> None:
    pipe = PIPES[name]
    got = [decision_key(d) for d in pipe.decide_batch(batch)]
    assert got == [reference_key(pipe, m) for m in batch]


def _banner(text: str):  # type: ignore[no-untyped-def]
    r = parse_mark(text, "banner")
    return r.marking if not r.errors else None


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=6))
def test_index_rebuilds_the_parsed_message(batch: list[bytes]) -> None:
    ix = BatchIndex(batch, MarkIndex(portion_marking, _banner), 10_000)
    for k, data in enumerate(batch):
        ref = parse_message(data, 10_000)
        if not ix.fast(k):
            continue
        assert ref.ok, ref.findings  # the index never accepts what the parser refuses
        got = ix.message(k)
        assert (got.format, got.banner, got.marking, got.banner_spans) == \
            (ref.format, ref.banner, ref.marking, ref.banner_spans)
        assert [(s.index, s.tearline, s.banner, s.marking, s.banner_span, s.portions)
                for s in got.sections] == \
            [(s.index, s.tearline, s.banner, s.marking, s.banner_span, s.portions)
             for s in ref.sections]
        assert [(p.start, p.end, p.mark_end, p.mark, p.section, p.marking)
                for p in got.portions] == \
            [(p.start, p.end, p.mark_end, p.mark, p.section, p.marking) for p in ref.portions]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=6), st.sampled_from(NAMES),
       st.lists(st.booleans(), min_size=6, max_size=6))
def test_check_batch_equals_check(outs: list[bytes], name: str, quar: list[bool]) -> None:
    rc = PIPES[name].stages[-1].rechecker  # type: ignore[attr-defined]
    flags = quar[:len(outs)]
    got = rc.check_batch(outs, flags)
    want = [rc.check(o, allow_quarantine=q) for o, q in zip(outs, flags, strict=True)]
    assert [[f.to_dict() for f in x] for x in got] == [[f.to_dict() for f in x] for x in want]


def test_simple_shapes_take_the_index() -> None:
    """The common shapes are indexed (the fast path is really taken)."""
    msgs = [b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) a\n(U) b\nSECRET//REL TO USA, FVEY\n",
            b"SECRET//NOFORN\r\n(S//NF) a\r\n(U) b\r\nSECRET//NOFORN\r\n",
            b"SECRET\n(S) a\n---- TEARLINE ----\nUNCLASSIFIED\n(U) b\nUNCLASSIFIED\nSECRET",
            "SECRET\n(S) café Кл\u200bondike 東京 \U0001f600\nSECRET\n".encode()]
    ix = BatchIndex(msgs, MarkIndex(portion_marking, _banner), 100)
    assert [ix.fast(k) for k in range(4)] == [True, True, True, True]
    bad = [b"SECRET\n(S) a\n\n(U) b\nSECRET\n", b"SECRET\nunmarked\nSECRET\n",
           b"SECRET\n(S) caf\xc3\nSECRET\n", b"SECRET\n(S) a\x00\nSECRET\n",
           b"SECRET\n(S) a\rb\nSECRET\n", b"SECRET\n(S) a\nSECRET//NOFORN\n",
           "SECRET\n(S) a\u202eb\nSECRET\n".encode(), "SECRET\n(S) a\x85b\nSECRET\n".encode(),
           "SECRET\u00a0\n(S) a\nSECRET\u00a0\n".encode(), b"SECRET\n(S) \xed\xa0\x80\nSECRET\n",
           "SECRET\n(\u0421) a\nSECRET\n".encode()]
    ix = BatchIndex(bad, MarkIndex(portion_marking, _banner), 100)
    assert not any(ix.fast(k) for k in range(len(bad)))


@pytest.mark.parametrize("limit", [1, 2])
def test_portion_limit_is_not_bypassed(limit: int) -> None:
    msg = b"SECRET\n(S) a\n(S) b\nSECRET\n"
    ix = BatchIndex([msg], MarkIndex(portion_marking, _banner), limit)
    assert ix.fast(0) == (limit >= 2)


def test_threads_and_index_resets_do_not_mix_up_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several threads share one pipeline while its mark index keeps emptying itself
    (a tiny MAX forces new generations): every decision still equals the reference."""
    import random
    import threading

    from guard.messages import MarkIndex as MI

    monkeypatch.setattr(MI, "MAX", 3)
    pipe = Pipeline(load_policy(POLICIES / "us-secret-to-fvey.yaml"), watchdog=False)
    rng = random.Random(7)
    pool = []
    for _ in range(40):
        marks = [rng.choice(GOOD) for _ in range(rng.randint(1, 5))]
        pool.append(("\n".join([_rolled(marks), *(f"({m}) convoy {rng.randint(0, 9)}"
                                                  for m in marks), _rolled(marks)])
                     + "\n").encode())
    want = [reference_key(pipe, m) for m in pool]
    errors: list[str] = []

    def work(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(15):
            idx = [r.randrange(len(pool)) for _ in range(8)]
            got = [decision_key(d) for d in pipe.decide_batch([pool[i] for i in idx])]
            if got != [want[i] for i in idx]:
                errors.append(f"thread {seed}: mismatch")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pipe.stages[0].marks.generation > 0  # the resets really happened


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(GOOD[:4] + BAD[:3] + ["S//NF ", "S//N"]),
                         min_size=1, max_size=8), min_size=1, max_size=6),
       st.booleans())
def test_repeated_marks_get_the_ids_of_their_keys(bodies: list[list[str]], warm: bool) -> None:
    """Each portion row's id is its mark's id in the table, whether the index looked it
    up, took it from the portion before (the same bytes) or first saw it in this batch."""
    idx = MarkIndex(portion_marking, lambda t: parse_mark(t, "banner").marking)
    datas = [("SECRET\n" + "".join(f"({m}) text {k}.\n" for k, m in enumerate(b))
              + "SECRET\n").encode() for b in bodies]
    if warm:
        BatchIndex(datas[:1], idx, 1000)
    ix = BatchIndex(datas, idx, 1000)
    for k, data in enumerate(datas):
        if ix.status[k] == 1:
            continue
        lo, hi = int(ix.rowstart[k]), int(ix.rowstart[k + 1])
        for (s, me, _e, kind), i in zip(ix.rows[lo:hi].tolist(), ix.ids[lo:hi].tolist(),
                                        strict=True):
            if kind == 0:
                assert i == idx.table.get(data[s + 1:me - 1]), (data, s)


@pytest.mark.parametrize("inner", [0, 1, 510, 511, 512, 513, 514])
@pytest.mark.parametrize("tail", [b")", b") text", b"", b" text"])
def test_mark_length_limit_decides_as_the_reference(inner: int, tail: bytes) -> None:
    """A portion mark's closing ')' is looked for only within the parser's limit: marks
    just under, at and over it, closed at the line's end or before text, or not closed,
    decide in a batch exactly as alone (the index finds the same ')' the parser does)."""
    pipe = PIPES["us-secret-to-fvey"]
    line = b"(" + b"S" * inner + tail
    batch = [b"SECRET\n(S) Convoy.\n" + line + b"\nSECRET\n",
             b"SECRET\n" + line + b"\n(S) Convoy.\nSECRET\n"]
    want = [reference_key(pipe, m) for m in batch]
    assert [decision_key(d) for d in pipe.decide_batch(batch)] == want
