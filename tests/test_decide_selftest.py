"""A scanner that does not find what its lists require must never decide (fail closed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import guard.decide as decide_mod
import guard.recheck as recheck_mod
from guard.decide import Pipeline
from guard.policy import load_policy
from guard.recheck import build_lists
from guard.scanner import Scanner, ScanResult
from guard.selftest import SelfTestError, canaries, check_scanner

POLICIES = sorted(Path(__file__).resolve().parents[1].joinpath("policies").glob("*.yaml"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_every_shipped_policy_passes_its_self_test(path: Path) -> None:
    policy = load_policy(path)
    lists = build_lists(policy)
    cases = canaries(lists)
    # one canary per dirty list and one per pattern: all of them are checked
    dirty = [tl for tl in lists if tl.kind == "dirty" and tl.terms]
    patterns = sum(len(tl.terms) for tl in lists if tl.kind == "pattern")
    assert len(cases) == len(dirty) + patterns
    scanner = Scanner(lists, leet=policy.leet, encoded_min_len=policy.encoded_min_length)
    assert check_scanner(scanner, lists) == len(cases)


class _Blind(Scanner):
    """A scanner whose single-message scan finds nothing (a stale or broken core)."""

    def scan(self, data: bytes) -> ScanResult:
        result = super().scan(data)
        return ScanResult(matches=[], encoded=result.encoded, findings=result.findings)


class _BlindBatch(Scanner):
    """A scanner whose batch scan finds nothing while its single scan works."""

    def scan_batch(self, buf, offsets):
        result = super().scan_batch(buf, offsets)
        result.matches_for = lambda i: []
        return result


@pytest.mark.parametrize("blind", [_Blind, _BlindBatch])
def test_a_blind_scanner_stops_the_pipeline_from_being_built(
    blind: type[Scanner], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = load_policy(POLICIES[0])
    monkeypatch.setattr(decide_mod, "Scanner", blind)
    with pytest.raises(SelfTestError, match="self-test failed"):
        Pipeline(policy)


def test_a_blind_recheck_scanner_stops_the_pipeline_too(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(POLICIES[0])
    monkeypatch.setattr(recheck_mod, "Scanner", _Blind)
    with pytest.raises(SelfTestError):
        Pipeline(policy)
