"""Replay workers: pipelines compiled and warmed in the parent, inherited over fork.

The parent compiles each policy's pipeline once and warms it on built-in samples
before forking its workers; a child must decide with it exactly as with a pipeline of
its own, and never wait on the parent's watchdog thread (threads do not survive a fork).
The chunks of a capture cover every block once, in file order, ending in single blocks.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.decide import _SAMPLES, Pipeline
from guard.domains.generators import CATEGORIES, FlowTarget, Generator, GeneratorConfig
from guard.policy import load_policy
from guard.replay import _chunks, _compare_chunk
from tests.decisions import decision_key, reference_key

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "us-secret-to-fvey.yaml"


def _traffic(n: int) -> list[bytes]:
    flow = FlowTarget("us-secret-to-fvey", "FVEY", 3, "t")
    cats = {c: 1.0 for c in CATEGORIES if c != "oversize"}
    gen = Generator(flow, 9, REPO / "policies/terms/codewords.txt",
                    GeneratorConfig(weights=cats, sizes={512: 0.5, 4096: 0.5}))
    return [m.payload for m in gen.take(n)]


def test_warm_changes_no_decision() -> None:
    msgs = _traffic(200)
    cold = Pipeline(load_policy(POLICY))
    warm = Pipeline(load_policy(POLICY))
    warm.warm()
    assert [decision_key(d) for d in warm.decide_batch(msgs)] == [decision_key(d) for d in
                                                          cold.decide_batch(msgs)]


def test_samples_cover_every_verdict() -> None:
    got = {d.verdict for d in Pipeline(load_policy(POLICY)).decide_batch(list(_SAMPLES))}
    assert got == {"release", "redact", "quarantine", "block"}


_INHERITED: list[Pipeline] = []


def _child(q: multiprocessing.Queue, msgs: list[bytes]) -> None:  # type: ignore[type-arg]
    q.put((os.getpid(), [decision_key(d) for d in _INHERITED[0].decide_batch(msgs)]))


@pytest.mark.skipif(os.name != "posix", reason="fork")
def test_a_forked_child_decides_with_the_inherited_pipeline() -> None:
    """The parent's pipeline ran on its watchdog thread; the child gets a thread of its
    own (a job queued for the parent's thread would never run: the batch would block
    after the time budget) and decides as the parent does."""
    pipe = Pipeline(load_policy(POLICY))
    pipe.warm()  # the parent's watchdog thread now exists, idle
    msgs = _traffic(40)
    want = [decision_key(d) for d in pipe.decide_batch(msgs)]
    _INHERITED[:] = [pipe]
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, msgs))
    p.start()
    try:
        pid, got = q.get(timeout=pipe.policy.time_budget_ms / 1000 - 0.5)
    finally:
        p.join(10)
        _INHERITED.clear()
    assert pid != os.getpid()
    assert got == want


@given(n=st.integers(0, 300), workers=st.integers(1, 8))
def test_chunks_cover_the_blocks_in_order(n: int, workers: int) -> None:
    blocks = list(range(n))
    chunks = _chunks(blocks, workers)  # type: ignore[arg-type]
    assert [b for c in chunks for b in c] == blocks
    assert all(chunks)
    sizes = [len(c) for c in chunks]
    assert sizes == sorted(sizes, reverse=True)  # shrinking: the last are the smallest
    if n >= 2 * workers:
        assert sizes[-1] == 1 and len(chunks) <= 2 * workers * (1 + n.bit_length())


def _capture(tmp_path: Path, n: int) -> Path:
    from guard.capture import CapturedMessage, CaptureWriter

    tmp_path.mkdir(exist_ok=True)
    cap = tmp_path / "c.gcap"
    with CaptureWriter(cap, {"source": "test"}, block_records=16) as w:
        for k, data in enumerate(_traffic(n)):
            w.write(CapturedMessage(f"m{k}", "us-secret-to-fvey", "t", 0.0, (), data))
    return cap


def test_parent_and_children_decide_every_chunk_once(tmp_path: Path) -> None:
    from guard.replay import replay

    cap = _capture(tmp_path, 160)
    one, two, three = (replay(cap, POLICY, workers=w) for w in (1, 2, 3))
    assert one.messages == two.messages == three.messages == 160
    few = _capture(tmp_path / "few", 40)  # 3 blocks, more workers than chunks
    assert replay(few, POLICY, workers=6).counts_after == replay(few, POLICY,
                                                                 workers=1).counts_after
    for res in (two, three):
        assert res.counts_after == one.counts_after
        assert res.rules_after == one.rules_after
        assert res.released_bytes_after == one.released_bytes_after


def _die(task):  # type: ignore[no-untyped-def]
    if os.getpid() != _PARENT[0]:
        os._exit(3)  # a child dies mid-replay
    time.sleep(0.15)  # the parent is slow: the child surely takes a chunk
    return _compare_chunk(task)


def _fail(task):  # type: ignore[no-untyped-def]
    from guard.capture import CaptureError

    if os.getpid() != _PARENT[0]:
        raise CaptureError("damaged block (test)")
    time.sleep(0.15)
    return _compare_chunk(task)


_PARENT = [0]


@pytest.mark.skipif(os.name != "posix", reason="fork")
def test_a_dead_or_failing_child_fails_the_replay(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is reported from a partial run: a child that dies or raises fails it."""
    from guard.replay import ReplayError, replay

    cap = _capture(tmp_path, 160)
    _PARENT[0] = os.getpid()
    monkeypatch.setattr("guard.replay._compare_chunk", _die)
    with pytest.raises(ReplayError, match="died"):
        replay(cap, POLICY, workers=2)
    monkeypatch.setattr("guard.replay._compare_chunk", _fail)
    with pytest.raises(ReplayError, match="damaged block"):
        replay(cap, POLICY, workers=2)


def test_the_bench_replay_mix_decides_as_the_reference() -> None:
    """The replay benchmark's traffic (4 KB, us-secret-to-fvey, its whole category mix):
    every batched decision (index paths, re-check taking first-scan rows) equals the
    per-message reference path (each stage's ``run``), findings included."""
    from bench.replay import _messages

    msgs = [m.payload for m in _messages(256)]
    pipe = Pipeline(load_policy(POLICY), watchdog=False)
    pipe.warm()
    got = [decision_key(d) for d in pipe.decide_batch(msgs)]
    assert got == [reference_key(pipe, data) for data in msgs]
    assert {g[0] for g in got} == {"release", "redact", "quarantine", "block"}


def _where(task):  # type: ignore[no-untyped-def]
    got = _compare_chunk(task)
    got["changes"] = [(os.getpid(), tuple(sorted(os.sched_getaffinity(0))))]
    if os.getpid() == _PARENT[0]:
        time.sleep(0.15)  # the parent is slow: the child surely takes a chunk
    return got


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores")
def test_each_worker_decides_on_a_core_of_its_own(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent keeps one core while it decides, each child is pinned to another; the
    parent's affinity is given back afterwards."""
    import guard.replay as replay_mod

    cap = _capture(tmp_path, 160)
    _PARENT[0] = os.getpid()
    before = os.sched_getaffinity(0)
    seen: set[tuple[int, tuple[int, ...]]] = set()
    run_pool = replay_mod._run_pool

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        parts = run_pool(*args, **kwargs)
        for p in parts:
            seen.update(p["changes"])
            p["changes"] = []
        return parts

    monkeypatch.setattr("guard.replay._compare_chunk", _where)
    monkeypatch.setattr("guard.replay._run_pool", spy)
    replay_mod.replay(cap, POLICY, workers=2)
    assert os.sched_getaffinity(0) == before
    cores = dict(seen)
    assert len(cores) == 2 and os.getpid() in cores
    assert all(len(c) == 1 for c in cores.values())
    assert len(set(cores.values())) == 2


@pytest.mark.skipif(os.name != "posix", reason="fork")
def test_the_shared_task_counter_hands_out_each_number_once() -> None:
    """Forked processes taking numbers from one shared counter concurrently: every number
    is taken exactly once; a buffer too short or not aligned is refused."""
    import mmap

    from guard._core import shared_fetch_add

    counter = mmap.mmap(-1, 8)
    pipes = []
    for _ in range(3):
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(r)
            taken = [shared_fetch_add(counter) for _ in range(2000)]
            os.write(w, b",".join(str(k).encode() for k in taken))
            os._exit(0)
        os.close(w)
        pipes.append(r)
    mine = [shared_fetch_add(counter) for _ in range(2000)]
    for r in pipes:
        with open(r, "rb") as f:
            mine += [int(k) for k in f.read().split(b",")]
        os.wait()
    assert sorted(mine) == list(range(8000))
    assert shared_fetch_add(counter, 5) == 8000 and shared_fetch_add(counter, 0) == 8005
    with pytest.raises(ValueError):
        shared_fetch_add(bytearray(4))
    with pytest.raises(ValueError):
        shared_fetch_add(memoryview(bytearray(24))[1:9])
