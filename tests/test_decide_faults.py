"""Fault injection: a filter that raises, hangs, skips itself or lies yields block.

Also covers the rule ids only a fault can produce: internal-error, recheck-failed and
scan-error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from guard.decide import STAGES, DecideStage, Pipeline, Stage
from guard.policy import load_policy

POLICY = Path(__file__).resolve().parents[1] / "policies" / "us-secret-to-gbr.yaml"
GOOD = (b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) Convoy seen.\n"
        b"SECRET//REL TO USA, GBR\n")
MIXED = (b"SECRET//NOFORN\n(S//REL TO USA, GBR) Convoy seen.\n(S//NF) Source detail.\n"
         b"SECRET//NOFORN\n")


class Raising(Stage):
    def __init__(self, inner: Stage) -> None:
        self.inner = inner
        self.name = inner.name

    def run(self, ctx) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("injected fault")

    def run_batch(self, ctxs: Sequence, tick: Callable[[], None]) -> None:
        raise RuntimeError("injected fault")


class RaisingPerMessage(Stage):
    """Raises inside ``run`` only, so the default per-message batch loop catches it."""

    def __init__(self, inner: Stage) -> None:
        self.inner = inner
        self.name = inner.name

    def run(self, ctx) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("injected fault")


class Hanging(Stage):
    def __init__(self, inner: Stage, seconds: float) -> None:
        self.inner, self.seconds, self.name = inner, seconds, inner.name

    def run(self, ctx) -> None:  # type: ignore[no-untyped-def]
        time.sleep(self.seconds)
        self.inner.run(ctx)

    def run_batch(self, ctxs: Sequence, tick: Callable[[], None]) -> None:
        time.sleep(self.seconds)
        self.inner.run_batch(ctxs, tick)


class Skipping(Stage):
    """Does nothing and marks nothing complete: the chain must notice."""

    def __init__(self, inner: Stage) -> None:
        self.name = inner.name

    def run_batch(self, ctxs: Sequence, tick: Callable[[], None]) -> None:
        tick()


class Permissive(DecideStage):
    """A faulty decide filter that releases everything (the re-check must stop it)."""

    def reasons(self, mark, m):  # type: ignore[no-untyped-def]
        return ()


def _pipe(**changes: object) -> Pipeline:
    pol = load_policy(POLICY)
    if changes:
        pol = dataclasses.replace(pol, **changes)
    return Pipeline(pol)


def _assert_blocked(decisions: list, rule: str = "internal-error") -> None:
    for d in decisions:
        assert d.verdict == "block" and d.output is None and d.candidate is None
        assert rule in [f.rule for f in d.findings], d.findings


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("fault", [Raising, RaisingPerMessage, Skipping])
def test_faulty_stage_blocks(stage: str, fault: type) -> None:
    p = _pipe()
    assert p.decide(GOOD).verdict == "release"  # the same message passes without the fault
    k = STAGES.index(stage)
    p.stages[k] = fault(p.stages[k])
    _assert_blocked([p.decide(GOOD)])
    _assert_blocked(p.decide_batch([GOOD, MIXED, GOOD]))


@pytest.mark.parametrize("stage", ["parse", "decide", "recheck"])
def test_hanging_stage_blocks_within_budget(stage: str) -> None:
    p = _pipe(time_budget_ms=100)
    k = STAGES.index(stage)
    p.stages[k] = Hanging(p.stages[k], 1.5)
    t0 = time.perf_counter()
    _assert_blocked([p.decide(GOOD)])
    assert time.perf_counter() - t0 < 1.0  # the watchdog did not wait for the hung filter


def test_pipeline_recovers_after_a_hang() -> None:
    p = _pipe(time_budget_ms=100)
    k = STAGES.index("decide")
    inner = p.stages[k]
    p.stages[k] = Hanging(inner, 1.0)
    _assert_blocked([p.decide(GOOD)])
    p.stages[k] = inner
    assert p.decide(GOOD).verdict == "release"


def test_slow_stage_over_budget_blocks_without_watchdog() -> None:
    p = Pipeline(dataclasses.replace(load_policy(POLICY), time_budget_ms=50), watchdog=False)
    k = STAGES.index("parse")
    p.stages[k] = Hanging(p.stages[k], 0.12)
    d = p.decide(GOOD)
    _assert_blocked([d])
    assert "time budget" in d.findings[0].message


def test_recheck_stops_a_permissive_decide_filter() -> None:
    p = _pipe()
    p.stages[STAGES.index("decide")] = Permissive(p.policy)
    for d in (p.decide(MIXED), *p.decide_batch([MIXED, MIXED])):
        _assert_blocked([d], "recheck-failed")
        assert any("not releasable to GBR" in f.message for f in d.findings)


def test_scanner_flag_blocks() -> None:
    p = _pipe()
    scan = p.stages[STAGES.index("scan")]

    class Flagging:
        def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
            self.real = real

        def scan_batch(self, buf, offsets):  # type: ignore[no-untyped-def]
            res = self.real.scan_batch(buf, offsets)
            res.flags[:] = 8
            return res

        def scan(self, data):  # type: ignore[no-untyped-def]
            res = self.real.scan(data)
            from guard.findings import Finding
            res.findings.append(Finding("core.error", "injected", 0, 1))
            return res

    scan.scanner = Flagging(scan.scanner)  # type: ignore[attr-defined]
    _assert_blocked(p.decide_batch([GOOD, GOOD]), "scan-error")


def test_one_bad_message_does_not_block_the_batch() -> None:
    p = _pipe()
    out = p.decide_batch([GOOD, b"\xff\xfe", GOOD, MIXED])
    assert [d.verdict for d in out] == ["release", "block", "release", "redact"]


def test_non_bytes_input_blocks() -> None:
    p = _pipe()
    d = p.decide("a str, not bytes")  # type: ignore[arg-type]
    assert d.verdict == "block" and d.findings
