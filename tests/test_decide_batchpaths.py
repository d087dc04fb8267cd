"""The batch fast paths on realistic traffic, and the Cython index's byte pass.

The simulated domains' generator makes every category of message the guard meets
(clean, lanes, NOFORN, above accreditation, tearlines, dirty words, PII, evasions,
malformed...). ``Pipeline.decide_batch`` decides many of them on the batch index
(withheld portions dropped, tearline sections released alone, whole messages blocked,
matches that no outcome acts on ignored); the per-message reference path (every
stage's ``run``) must decide each exactly the same. The index's byte pass (sixteen
bytes at a time) must refuse every byte a simple report cannot carry, wherever it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.decide import Pipeline, _Ctx
from guard.domains.generators import CATEGORIES, FlowTarget, Generator, GeneratorConfig
from guard.messages import (
    _DECEPTIVE,
    BatchIndex,
    MarkIndex,
    parse_mark,
    parse_message,
    portion_marking,
)
from guard.policy import load_policy
from tests.decisions import decision_key, reference_key

REPO = Path(__file__).resolve().parents[1]
NAMES = ["us-secret-to-fvey", "us-secret-to-gbr", "us-secret-to-fvey-yesforn",
         "us-secret-to-public", "us-secret-to-nato", "us-secret-to-jpn"]
_PIPES: dict[str, Pipeline] = {}


def _pipe(name: str) -> Pipeline:
    if name not in _PIPES:
        _PIPES[name] = Pipeline(load_policy(REPO / "policies" / f"{name}.yaml"), watchdog=False)
    return _PIPES[name]


def _traffic(seed: int, n: int, dest: str) -> list[bytes]:
    flow = FlowTarget(f"us-secret-to-{dest.lower()}", dest, 3, "t")
    cats = {c: 1.0 for c in CATEGORIES if c != "oversize"}
    gen = Generator(flow, seed, REPO / "policies/terms/codewords.txt",
                    GeneratorConfig(weights=cats, sizes={512: 0.5, 4096: 0.5}))
    return [m.payload for m in gen.take(n)]


@pytest.mark.parametrize("name", NAMES)
def test_generated_traffic_batch_equals_reference(name: str) -> None:
    pipe = _pipe(name)
    dest = {"us-secret-to-public": "PUBLIC", "us-secret-to-gbr": "GBR",
            "us-secret-to-nato": "NATO", "us-secret-to-jpn": "JPN"}.get(name, "FVEY")
    msgs = _traffic(7, 160, dest)
    got = [decision_key(d) for d in pipe.decide_batch(msgs)]
    want = [reference_key(pipe, m) for m in msgs]
    assert got == want
    assert {g[0] for g in got} >= {"block", "release"}  # the traffic is really mixed


def test_non_ascii_evasions_take_the_index_and_decide_as_the_reference() -> None:
    """The generator's evasions (homoglyphs, zero-width and full-width characters in the
    text, a zero-width character in a mark) and its invalid UTF-8: the first pass and the
    re-check index the well-formed UTF-8 ones, and every decision equals the reference."""
    flow = FlowTarget("us-secret-to-fvey", "FVEY", 3, "t")
    gen = Generator(flow, 11, REPO / "policies/terms/codewords.txt",
                    GeneratorConfig(weights={"evasion": 3.0, "malformed": 1.0,
                                             "clean-finished": 1.0},
                                    sizes={512: 0.5, 4096: 0.5}))
    msgs = [m.payload for m in gen.take(120)]
    pipe = _pipe("us-secret-to-fvey")
    ix = BatchIndex(msgs, MarkIndex(portion_marking, _banner), 10_000)
    wide = [k for k, m in enumerate(msgs) if not m.isascii()]
    assert sum(ix.fast(k) for k in wide) > len(wide) // 3          # really indexed
    assert any(ix.status[k] == 2 for k in wide)                    # a look-alike in a mark
    assert not all(ix.fast(k) or ix.status[k] == 2 for k in wide)  # bad UTF-8: the parser
    got = [decision_key(d) for d in pipe.decide_batch(msgs)]
    assert got == [reference_key(pipe, m) for m in msgs]
    # the evasions are all withheld: the re-check is given them as outputs directly
    outs = [msgs[k] for k in wide]
    rc = pipe.stages[-1].rechecker  # type: ignore[attr-defined]
    assert sum(BatchIndex(outs, MarkIndex(portion_marking, _banner), 1 << 30,
                          closing=False).fast_list) > len(outs) // 3
    assert rc.check_batch(outs, [False] * len(outs)) == [rc.check(o) for o in outs]


_GOOD = (b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) Naval units were seen in the "
         b"strait on 3 June, moving north.\n(U) Weather was clear.\n"
         b"SECRET//REL TO USA, FVEY\n")


def _bad_byte(b: int, at: int, data: bytes) -> bool:
    """Would a byte b at ``at`` in data make it not a simple report (the byte rule)?"""
    if b in (9, 10):
        return False
    if b == 13:
        return not (at + 1 < len(data) and data[at + 1] == 10)
    return b < 0x20 or b >= 0x7F


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_GOOD) - 1), st.integers(0, 255), st.integers(0, 40))
def test_byte_pass_refuses_every_bad_byte_anywhere(at: int, byte: int, pad: int) -> None:
    """One byte replaced at any offset (and the message shifted by a padding of
    any length, so the byte falls at every position of a sixteen-byte step)."""
    base = _GOOD.replace(b"strait", b"strait" + b"x" * pad)
    at = min(at, len(base) - 1)
    data = base[:at] + bytes([byte]) + base[at + 1:]
    ix = BatchIndex([_GOOD, data], MarkIndex(portion_marking, _banner), 10_000)
    assert ix.fast(0)
    if _bad_byte(byte, at, data):
        assert not ix.fast(1)
    elif data == base:
        assert ix.fast(1)


def _utf8_ok(data: bytes) -> bool:
    """The model of the byte pass for non-ASCII bytes: well-formed UTF-8 (Python's strict
    decoder), no character parse_message refuses, no C1 control (the index leaves those
    to the parser)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not _DECEPTIVE.search(text) and not any(0x80 <= ord(c) <= 0x9F for c in text)


# byte sequences around the edges of UTF-8: every lead byte class, bad and good
# continuations, surrogates, overlongs, beyond U+10FFFF, the refused characters
_EDGES = [bytes([b]) for b in (0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0,
                               0xF4, 0xF5, 0xFF)]
_EDGES += [b"\xc2\x80", b"\xc2\x85", b"\xc2\x9f", b"\xc2\xa0", b"\xdf\xbf", b"\xe0\x9f\xbf",
           b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80", b"\xee\x80\x80",
           b"\xe2\x80\xa7", b"\xe2\x80\xa8", b"\xe2\x80\xae", b"\xe2\x80\xaf", b"\xe2\x81\xa5",
           b"\xe2\x81\xa6", b"\xe2\x81\xa9", b"\xe2\x81\xaa", b"\xef\xbb\xbf", b"\xef\xbb\xbe",
           b"\xef\xbf\xbf", b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xe2\x80", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80"]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(_GOOD) - 1), st.lists(st.sampled_from(_EDGES), min_size=1,
                                                 max_size=3),
       st.integers(0, 40), st.booleans())
def test_byte_pass_reads_utf8_as_the_parser(at: int, pieces: list[bytes], pad: int,
                                            cut: bool) -> None:
    """Multi-byte sequences (well formed or not, refused or not) inserted at any offset
    and straddling every position of a sixteen-byte step: the message is indexed exactly
    when its bytes are UTF-8 the byte pass accepts and ``parse_message`` accepts it (an
    insertion into a mark or a banner makes it invalid for both)."""
    base = _GOOD.replace(b"strait", b"strait" + b"x" * pad)
    at = min(at, len(base) - 1)
    data = base[:at] + b"".join(pieces) + base[at + (1 if cut else 0):]
    ix = BatchIndex([_GOOD, data], MarkIndex(portion_marking, _banner), 10_000)
    assert ix.fast(0)
    assert ix.fast(1) == (_utf8_ok(data) and parse_message(data).ok)


def _banner(text: str):  # type: ignore[no-untyped-def]
    r = parse_mark(text, "banner")
    return r.marking if not r.errors else None


def test_released_decision_is_the_constructors() -> None:
    """The release fast path builds its Decision field by field: every field is set,
    and the object equals the one ``Decision(...)`` builds."""
    import dataclasses

    from guard.decide import Decision, _released

    d = _released(b"out", "SECRET", "sha", "m-1", None, ("osint",))
    assert d == Decision("release", [], b"out", "SECRET", "sha", "m-1", "text", None,
                         ("osint",), False)
    assert all(hasattr(d, f.name) for f in dataclasses.fields(Decision))


@pytest.mark.parametrize("enabled", [True, False])
def test_batches_restore_the_garbage_collector(enabled: bool) -> None:
    import gc

    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        _pipe("us-secret-to-fvey").decide_batch([_GOOD, b"garbage"])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


_MAIN = {"rel": "(S//REL TO USA, FVEY) Convoy left port{w}.",
         "nf": "(S//NF) Convoy left port{w}.",
         "u": "(U) Weather was clear{w}."}
_WORDS = {"": "", "pii": " near 123-45-6789", "code": " under KLONDIKE",
          "usper": " with a US person", "lane": " as sea level rose",
          # non-ASCII text: the index takes it too (evasions of a code word, plain UTF-8)
          "glyph": " under KL\u041eNDIK\u0415 at the caf\u00e9",
          "zw": " under KLON\u200bDIKE near \u6771\u4eac"}


def _report(banner: str, main: list[tuple[str, str]],
            sections: list[tuple[str, list[tuple[str, str]]]]) -> bytes:
    lines = [banner, *(_MAIN[m].format(w=_WORDS[w]) for m, w in main)]
    for sb, ps in sections:
        lines += ["-------- TEARLINE --------", sb, *(_MAIN[m].format(w=_WORDS[w]) for m, w in ps)]
    return ("\n".join([*lines, banner]) + "\n").encode()


def _indexed_cases() -> list[bytes]:
    rel, nf = "SECRET//REL TO USA, FVEY", "SECRET//NOFORN"
    out = []
    for w1 in _WORDS:
        for w2 in _WORDS:
            out += [
                _report(nf, [("nf", w1), ("rel", w2)], []),                # portion release
                _report(nf, [("nf", w1)], [(rel, [("rel", w2)])]),         # tearline release
                _report(nf, [("nf", w1), ("rel", "")], [(rel, [("rel", w2), ("u", w1)]),
                                                        (rel, [("u", w2)])]),
                _report(nf, [("nf", w1)], [(nf, [("nf", w2)])]),           # nothing releasable
                _report(rel, [("rel", w1), ("u", w2)], []),                # release / redact
                _report("UNCLASSIFIED", [("rel", w1), ("u", w2)], []),     # banner mismatch
                _report(rel, [("rel", w1)], [("UNCLASSIFIED", [("rel", w2)])]),
            ]
    return out


@pytest.mark.parametrize("changes", [{}, {"portion_release": False}, {"tearline_release": False},
                                     {"banner_mismatch": "block"},
                                     {"banner_mismatch": "quarantine"}])
@pytest.mark.parametrize("name", ["us-secret-to-fvey", "us-secret-to-nato"])
def test_indexed_decisions_with_matches_equal_the_reference(
        name: str, changes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexed messages whose matches the decision acts on (PII cut, code words, US-person
    terms, lane indicators) with withheld portions, tearline sections and false banners,
    under policy variants: ``DecideStage.run_indexed`` decides (or hands a lane match to
    ``run``) exactly as the reference path."""
    import dataclasses

    from guard.decide import DecideStage

    pol = dataclasses.replace(load_policy(REPO / "policies" / f"{name}.yaml"), **changes)
    pipe = Pipeline(pol, watchdog=False)
    used: list[bool] = []
    real = DecideStage.run_indexed

    def counted(self, ctx, ix, k):  # type: ignore[no-untyped-def]
        got = real(self, ctx, ix, k)
        used.append(got)
        return got

    def never(*args: object) -> bool:
        raise AssertionError("the core judges the batch's matches (msgidx_ignorable)")

    monkeypatch.setattr(DecideStage, "run_indexed", counted)
    monkeypatch.setattr(DecideStage, "_ignorable", never)
    msgs = _indexed_cases()
    got = [decision_key(d) for d in pipe.decide_batch(msgs)]
    assert got == [reference_key(pipe, m) for m in msgs]
    assert used.count(True) > len(msgs) // 4  # the indexed path really decided many
    verdicts = {g[0] for g in got}
    assert {"block", "redact"} <= verdicts
    if not changes and name == "us-secret-to-fvey":
        assert {"quarantine", "release"} <= verdicts


def test_row_split_and_spans_follow_the_rows() -> None:
    """``MsgIdxRows.split`` / ``spans`` (the withheld-portion outcome's core helpers):
    findings per withheld portion with its line span, kept indices, and the kept lines
    and mark bit set in the order asked for; an index that is not a portion raises."""
    from guard.findings import Finding

    msg = (b"SECRET//NOFORN\n(S//NF) a\n(U) b\n(S//REL TO USA, FVEY) c\n(S//NF) d\n"
           b"SECRET//NOFORN\n")
    ix = BatchIndex([msg], MarkIndex(portion_marking, _banner), 100)
    assert ix.fast(0)
    rows, texts = ix.row_index, ix.texts
    held = bytes(1 if t == "S//NF" else 0 for t in texts)
    why = [(("not-releasable", f"no {t}"),) if t == "S//NF" else () for t in texts]
    findings, kept = rows.split(0, held, why, Finding)
    lines = [(s, e) for s, _me, e, kind in ix.rows[:4].tolist() if kind == 0]
    assert findings == [Finding("not-releasable", "no S//NF", *lines[0]),
                        Finding("not-releasable", "no S//NF", *lines[3])]
    assert kept == [1, 2]
    ids = ix.ids[:4].tolist()
    got, mask = rows.spans(0, [2, 1])
    assert got == [lines[2], lines[1]] and mask == (1 << ids[1]) | (1 << ids[2])
    with pytest.raises(IndexError):
        rows.spans(0, [4])
    with pytest.raises(ValueError):
        rows.split(0, held[:1], why, Finding)  # a mark id that was not judged


@given(st.text(max_size=20), st.text(max_size=60), st.integers(0, 1 << 40),
       st.integers(0, 1 << 40))
def test_slot_built_findings_are_the_constructors(rule: str, message: str, start: int,
                                                  end: int) -> None:
    """The findings the decision and the parser build straight into their slots are the
    objects ``Finding(...)`` gives: equal, same type, hash, repr and dict."""
    from guard import decide, messages
    from guard.findings import Finding

    ref = Finding(rule, message, start, end)
    for make in (decide._finding, messages._finding):
        got = make(rule, message, start, end)
        assert type(got) is Finding
        assert got == ref and hash(got) == hash(ref) and repr(got) == repr(ref)
        assert got.to_dict() == ref.to_dict()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["bytes", "bytearray", "memoryview"]), min_size=1,
                max_size=6), st.integers(0, 3))
def test_index_reads_messages_in_place_as_a_joined_batch(kinds: list[str], bad: int) -> None:
    """The core reads each message where it lies: any mix of bytes-like inputs (copied
    into bytes) indexes as the same bytes would, ``buf`` is their join (made on use) and
    ``offsets`` index it; bytes inputs are kept as the very same objects."""
    base = [_GOOD, _GOOD.replace(b"(U)", b"(QQ)"), b"no report\n", b"", _GOOD + b"x"]
    msgs = [base[(i + bad) % len(base)] for i in range(len(kinds))]
    conv = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}
    given_ = [conv[k](m) for k, m in zip(kinds, msgs, strict=True)]
    ref = BatchIndex(list(msgs), MarkIndex(portion_marking, _banner), 10_000)
    got = BatchIndex(given_, MarkIndex(portion_marking, _banner), 10_000)
    assert got.status.tolist() == ref.status.tolist()
    assert got.rows[:int(got.rowstart[-1])].tolist() == ref.rows[:int(ref.rowstart[-1])].tolist()
    assert got.masks == ref.masks and got.banners == ref.banners
    assert got.buf == b"".join(msgs)
    assert all(got.buf[got.offsets[k]:got.offsets[k + 1]] == m for k, m in enumerate(msgs))
    assert all(d is m for d, m, k in zip(got.datas, given_, kinds, strict=True) if k == "bytes")


@given(st.lists(st.binary(max_size=8), max_size=5), st.floats(0, 1e6))
def test_batch_contexts_are_init_s(datas: list[bytes], deadline: float) -> None:
    """The contexts ``decide_batch`` makes in the core hold what ``_Ctx.__init__`` sets,
    every slot, with fresh lists of their own."""
    from guard import decide

    ids = [f"m{k}" for k in range(len(datas))]
    got = decide._contexts(datas, ids, deadline) if datas else []
    want = [_Ctx(d, i, deadline, 0.0) for d, i in zip(datas, ids, strict=True)]
    assert len(got) == len(want)
    lists = set()
    for g, w in zip(got, want, strict=True):
        assert type(g) is _Ctx
        for name in _Ctx.__slots__:
            a, b = getattr(g, name), getattr(w, name)
            assert type(a) is type(b) and a == b, name
        lists |= {id(g.completed), id(g.findings)}
    assert len(lists) == 2 * len(got)


def test_message_ids_shorter_or_longer_than_the_batch() -> None:
    """Ids beyond the batch are ignored; a missing id blocks the batch as bad input."""
    pipe = Pipeline(load_policy(REPO / "policies" / "us-secret-to-fvey.yaml"), watchdog=False)
    longer = pipe.decide_batch([_GOOD], ["a", "b"])
    assert [d.message_id for d in longer] == ["a"] and longer[0].verdict == "release"
    shorter = pipe.decide_batch([_GOOD, _GOOD], ["a"])
    assert [d.verdict for d in shorter] == ["block", "block"]
    assert shorter[0].findings[0].message == "bad input: IndexError"
