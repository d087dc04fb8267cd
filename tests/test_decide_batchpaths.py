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

from guard.decide import Pipeline, Stage, _Ctx
from guard.domains.generators import CATEGORIES, FlowTarget, Generator, GeneratorConfig
from guard.messages import BatchIndex, MarkIndex, parse_mark, portion_marking
from guard.policy import load_policy

REPO = Path(__file__).resolve().parents[1]
NAMES = ["us-secret-to-fvey", "us-secret-to-gbr", "us-secret-to-fvey-yesforn",
         "us-secret-to-public", "us-secret-to-nato", "us-secret-to-jpn"]
_PIPES: dict[str, Pipeline] = {}


def _pipe(name: str) -> Pipeline:
    if name not in _PIPES:
        _PIPES[name] = Pipeline(load_policy(REPO / "policies" / f"{name}.yaml"), watchdog=False)
    return _PIPES[name]


def _key(d) -> tuple:  # type: ignore[no-untyped-def]
    return (d.verdict, [f.to_dict() for f in d.findings], d.output, d.banner, d.lanes,
            d.candidate, d.format, d.auto_release)


def _reference(pipe: Pipeline, data: bytes) -> tuple:
    ctx = _Ctx(data, "", 60.0)
    for stage in pipe.stages:
        Stage.run_batch(stage, [ctx], lambda: None)  # the per-message path of every stage
    return _key(pipe._finish(ctx, True, pipe.policy.sha256))


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
    got = [_key(d) for d in pipe.decide_batch(msgs)]
    want = [_reference(pipe, m) for m in msgs]
    assert got == want
    assert {g[0] for g in got} >= {"block", "release"}  # the traffic is really mixed


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
          "usper": " with a US person", "lane": " as sea level rose"}


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
    got = [_key(d) for d in pipe.decide_batch(msgs)]
    assert got == [_reference(pipe, m) for m in msgs]
    assert used.count(True) > len(msgs) // 4  # the indexed path really decided many
    verdicts = {g[0] for g in got}
    assert {"block", "redact"} <= verdicts
    if not changes and name == "us-secret-to-fvey":
        assert {"quarantine", "release"} <= verdicts
