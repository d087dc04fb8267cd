"""Hostile input never crashes the pipeline, and what it releases always passes re-check.

Valid reports are mutated (bytes flipped, inserted or deleted; look-alike characters,
zero-width and bidi characters; CRLF; truncation) and decided under every shipped policy.
The decision must be one of the four verdicts, every non-release must be explained, and
any output must be valid UTF-8 that an independent Rechecker accepts.
"""

from __future__ import annotations

import functools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.decide import Pipeline
from guard.policy import load_policy
from guard.recheck import Rechecker

POLICIES = Path(__file__).resolve().parents[1] / "policies"
NAMES = sorted(p.stem for p in POLICIES.glob("*.yaml"))


@functools.cache
def _compiled(name: str) -> tuple[Pipeline, Rechecker]:
    pol = load_policy(POLICIES / f"{name}.yaml")
    return Pipeline(pol), Rechecker(pol)


SEEDS = [
    b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) Convoy seen near the port.\n"
    b"(U) Weather clear; drought continues.\nSECRET//REL TO USA, FVEY\n",
    b"SECRET//NOFORN\n(S//REL TO USA, GBR) Naval activity.\n(S//NF) From NIGHTJAR.\n"
    b"(U) SSN 123-45-6789 seen.\n------ TEARLINE ------\nUNCLASSIFIED\n(U) OSINT summary.\n"
    b"SECRET//NOFORN\n",
    b'{"banner": {"classification": "S", "releasableTo": ["USA", "GBR"], '
    b'"disseminationControls": ["REL"]}, "portions": [{"text": "Radar seen.", '
    b'"classification": "S", "releasableTo": ["USA", "GBR"], '
    b'"disseminationControls": ["REL"]}]}',
]
ODD = ["\u0410", "\u0435", "\u200b", "\u202e", "\u00ad", "\r", "\n", "(", ")", "//", "\x00",
       "\ufeff", "N\u200bIGHTJAR", "NIGHT JAR", "n.i.g.h.t.j.a.r", "\xff"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(data)))
        if op == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            odd = draw(st.sampled_from(ODD))
            data[at:at] = odd.encode("utf-8", "surrogatepass") if odd != "\xff" else b"\xff"
        elif op == 2:
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data = data[:at]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), mutated())
def test_mutations_fail_closed(name: str, data: bytes) -> None:
    pipe, check = _compiled(name)
    d = pipe.decide(data)
    assert d.verdict in ("release", "redact", "quarantine", "block")
    if d.verdict != "release":
        assert d.findings and all(f.rule and f.message for f in d.findings)
    out = d.output if d.output is not None else d.candidate
    if d.verdict == "block":
        assert out is None
    else:
        assert out is not None
        out.decode("utf-8")
        assert check.check(out, allow_quarantine=d.verdict == "quarantine") == []
    if d.verdict == "release":
        assert d.output == data
