"""Micro-benchmarks of the core's hot functions (pytest-benchmark; few rounds so they stay
quick in the normal suite, and each also checks the result it timed)."""

from __future__ import annotations

import numpy as np
import pytest

from guard.bench.core import make_corpus, make_terms
from guard.normalize import fold
from guard.scanner import Scanner
from guard.terms import TermList

TERMS = make_terms(2000)
MSGS = make_corpus(4096, 64, TERMS)
BUF = b"".join(MSGS)
OFFSETS = np.concatenate([[0], np.cumsum([len(m) for m in MSGS])]).astype(np.int64)
UNICODE = ("Ｎ.О.F.О.R.Ν the naval report\u200b " * 120).encode()


@pytest.fixture(scope="module")
def sc() -> Scanner:
    return Scanner([TermList("bench", "dirty", TERMS)], leet=True)


def test_bench_scan_batch_4k(benchmark, sc: Scanner) -> None:
    res = benchmark.pedantic(sc.scan_batch, args=(BUF, OFFSETS), rounds=5, iterations=1)
    assert len(res.msg) > 0 and not res.flags.any()


def test_bench_scan_one_4k(benchmark, sc: Scanner) -> None:
    res = benchmark.pedantic(sc.scan, args=(MSGS[0],), rounds=20, iterations=5)
    assert res.findings == []


def test_bench_core_ascii_path(benchmark, sc: Scanner) -> None:
    hits, _runs = benchmark.pedantic(sc._core.scan, args=(BUF,), rounds=5, iterations=1)
    assert len(hits[0]) > 0


def test_bench_fold_unicode(benchmark) -> None:
    f = benchmark.pedantic(fold, args=(UNICODE,), rounds=5, iterations=1)
    assert f.text.lower().startswith(b"n.o.f.o.r.n")


def test_bench_scan_unicode(benchmark, sc: Scanner) -> None:
    res = benchmark.pedantic(sc.scan, args=(UNICODE,), rounds=5, iterations=1)
    assert res.findings == []


def test_bench_compile_2k(benchmark) -> None:
    sc = benchmark.pedantic(Scanner, args=([TermList("b", "dirty", TERMS)],), rounds=2,
                            iterations=1)
    assert sc.nbytes > 0
