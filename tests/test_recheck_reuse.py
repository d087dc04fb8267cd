"""The re-check takes the first scan's rows only for the very bytes of a trusted twin.

``Rechecker.check_batch`` may be given, per output, the (BatchResult, row) of a scan
made of exactly that output's bytes; it takes those rows instead of scanning again only
when the scan came from a scanner ``trust_scans_of`` accepted (the same lists, in the
same order, with the same options), was clean, and covers as many bytes. Whatever is
given, the findings must equal those of a check that scans everything itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.decide import Pipeline
from guard.domains.generators import CATEGORIES, FlowTarget, Generator, GeneratorConfig
from guard.policy import load_policy
from guard.recheck import Rechecker, build_lists
from guard.scanner import Scanner
from guard.terms import TermList

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "us-secret-to-fvey.yaml"
_GOOD = (b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) Naval units were seen in the "
         b"strait on 3 June, moving north.\n(U) Weather was clear.\n"
         b"SECRET//REL TO USA, FVEY\n")


def _traffic(seed: int, n: int) -> list[bytes]:
    flow = FlowTarget("us-secret-to-fvey", "FVEY", 3, "t")
    cats = {c: 1.0 for c in CATEGORIES if c != "oversize"}
    gen = Generator(flow, seed, REPO / "policies/terms/codewords.txt",
                    GeneratorConfig(weights=cats, sizes={512: 0.5, 4096: 0.5}))
    return [m.payload for m in gen.take(n)]


def _twin(rc: Rechecker) -> Scanner:
    pol = rc.policy
    return Scanner(build_lists(pol), leet=pol.leet, encoded_min_len=pol.encoded_min_length)


def _key(d) -> tuple:  # type: ignore[no-untyped-def]
    return (d.verdict, [f.to_dict() for f in d.findings], d.output, d.banner, d.lanes,
            d.candidate, d.format, d.auto_release)


@pytest.fixture(scope="module")
def rc() -> Rechecker:
    return Rechecker(load_policy(POLICY))


@pytest.fixture(scope="module")
def outs() -> list[bytes]:
    return _traffic(5, 120)


def _prior(scanner: Scanner, outs: list[bytes], pick: list[bool]):  # type: ignore[no-untyped-def]
    offsets = np.zeros(len(outs) + 1, dtype=np.int64)
    np.cumsum([len(o) for o in outs], out=offsets[1:])
    res = scanner.scan_batch(b"".join(outs), offsets)
    return [(res, k) if p else None for k, p in enumerate(pick)]


def test_pipeline_decides_alike_with_and_without_reuse() -> None:
    """On mixed traffic (many outputs are their input) reuse happens and changes nothing."""
    msgs = _traffic(3, 300)
    pipe = Pipeline(load_policy(POLICY), watchdog=False)
    rc = pipe.stages[-1].rechecker  # type: ignore[attr-defined]
    assert rc._twin is pipe.stages[1].scanner  # type: ignore[attr-defined]
    taken: list[int] = []
    real = rc._reusable

    def spy(outputs, prior):  # type: ignore[no-untyped-def]
        got = real(outputs, prior)
        taken.append(len(got[1]))
        return got

    rc._reusable = spy
    got = [_key(d) for d in pipe.decide_batch(msgs)]
    del rc._reusable
    assert sum(taken) > 50
    rc._twin = None  # every output scanned by the re-check itself
    try:
        want = [_key(d) for d in pipe.decide_batch(msgs)]
    finally:
        rc.trust_scans_of(pipe.stages[1].scanner)  # type: ignore[attr-defined]
    assert got == want


@settings(max_examples=40, deadline=None)
@given(pick=st.lists(st.booleans(), min_size=120, max_size=120),
       quar=st.lists(st.booleans(), min_size=120, max_size=120))
def test_check_batch_with_prior_equals_without(rc: Rechecker, outs: list[bytes],
                                               pick: list[bool], quar: list[bool]) -> None:
    twin = _twin(rc)
    assert rc.trust_scans_of(twin)
    assert rc.check_batch(outs, quar, _prior(twin, outs, pick)) == rc.check_batch(outs, quar)


def test_an_untrusted_scanner_is_never_taken(rc: Rechecker) -> None:
    """A scan by a scanner of other lists (here: one that finds no dirty word) or other
    options is ignored: the re-check scans and still finds the term."""
    dirty = _GOOD.replace(b"Weather was clear", b"Weather was clear TALENT KEYHOLE")
    want = rc.check_batch([dirty], [False])
    assert want and want[0]  # the re-check refuses it on its own
    pol = rc.policy
    blind = Scanner([TermList("nothing", "dirty", ["zzqx"])])
    other_opts = Scanner(build_lists(pol), leet=not pol.leet,
                         encoded_min_len=pol.encoded_min_length)
    for sc in (blind, other_opts):
        assert not rc.trust_scans_of(sc)
        assert rc.check_batch([dirty], [False], _prior(sc, [dirty], [True])) == want
    # trusted, but a scan of other bytes of another length, or a flagged scan: scanned here
    twin = _twin(rc)
    assert rc.trust_scans_of(twin)
    assert rc.check_batch([dirty], [False], _prior(twin, [_GOOD], [True])) == want
    bad = dirty + b"\x00"
    flagged = _prior(twin, [bad], [True])
    assert flagged[0][0].flags[0]
    assert rc.check_batch([bad], [False], flagged) == rc.check_batch([bad], [False])
    # a result of the twin is taken: the rows it holds are the ones judged
    assert rc.check_batch([dirty], [False], _prior(twin, [dirty], [True])) == want
