"""Replay throughput: 4 KB messages from a capture decided on all cores (no transport, no signing).

Traffic: the seeded generator's us-secret-to-fvey stream at a fixed 4 KB target size
(its default category mix without the oversize category), ``--distinct`` messages
written ``--repeat`` times (distinct ids) into a compressed capture in a temporary
directory. ``guard.replay.replay`` then decides it under policies/us-secret-to-fvey.yaml
with one worker per core; ``msgs_per_s_4k`` is messages / wall time of its decision
phase (pool start, per-worker pipeline compile, reading and decompressing the capture
included; best of ``--runs``). To show where the time goes it also reports the same
replay on one worker, the decision pipeline alone on one core (``Pipeline.decide_batch``
over the same payloads in memory, runs interleaved with the one-worker replay; the CPU
time difference is ``replay_overhead_cpu_us_per_msg_4k``), reading the capture alone, the
per-stage cost per message, and with ``--profile`` the functions that take the most time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from guard.capture import (
    CapturedMessage,
    CaptureWriter,
    read_block_records,
    read_blocks,
    scan_capture,
)
from guard.decide import Pipeline, _Ctx
from guard.policy import load_policy
from guard.replay import BATCH, default_workers, replay

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "us-secret-to-fvey.yaml"
TARGET, STRETCH = 100_000, 200_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``guard bench replay``."""
    parser.add_argument("--distinct", type=int, default=2048, help="distinct messages")
    parser.add_argument("--repeat", type=int, default=8, help="times each is in the capture")
    parser.add_argument("--runs", type=int, default=3, help="replays; the best is reported")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--profile", action="store_true",
                        help="add the top functions of a cProfile run of the pipeline")


def _messages(n: int) -> list[CapturedMessage]:
    from guard.domains.generators import (
        DEFAULT_WEIGHTS,
        Generator,
        GeneratorConfig,
        targets_from_topology,
    )
    from guard.domains.topology import load_topology

    target = {t.name: t for t in targets_from_topology(load_topology())}["us-secret-to-fvey"]
    weights = {k: v for k, v in DEFAULT_WEIGHTS.items() if k != "oversize"}
    gen = Generator(target, 4096, REPO / "policies/terms/codewords.txt",
                    GeneratorConfig(weights=weights, sizes={4096: 1.0}))
    return [CapturedMessage(m.message_id, m.flow, m.topic, 0.0, tuple(m.properties),
                            m.payload) for m in gen.take(n)]


def _profile(pipe: Pipeline, payloads: list[bytes]) -> list[dict[str, Any]]:
    prof = cProfile.Profile()
    prof.enable()
    for i in range(0, len(payloads), BATCH):
        pipe.decide_batch(payloads[i:i + BATCH])
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
    return [{"function": f"{Path(f).name}:{line}({name})",
             "self_share": round(v[2] / total, 3),
             "cumulative_share": round(v[3] / total, 3), "calls": v[1]}
            for (f, line, name), v in rows]


def _read_rate(cap: Path, objects: bool = False) -> float:
    """Messages per second reading and decoding a capture on one core (best of 3), as
    the replay does (``read_block_records``) or, with ``objects``, into one
    ``CapturedMessage`` per record (``read_blocks``)."""
    idx = scan_capture(cap)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        if objects:
            read_blocks(cap, idx.blocks)
        else:
            for b in idx.blocks:
                read_block_records(cap, b)
        best = max(best, idx.messages / (time.perf_counter() - t0))
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and return the figures."""
    distinct = _messages(args.distinct)
    payloads = [m.payload for m in distinct]
    workers = args.workers or default_workers()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="guard-bench-replay-") as tmp:
        cap = Path(tmp) / "bench.gcap"
        with CaptureWriter(cap, {"source": "bench"}) as w:
            for r in range(args.repeat):
                for m in distinct:
                    w.write(CapturedMessage(f"{m.message_id}-r{r}", m.flow, m.topic, m.time,
                                            m.properties, m.payload))
        n = args.distinct * args.repeat
        best, res = 0.0, None
        for _ in range(max(1, args.runs)):
            res = replay(cap, POLICY, workers=workers)
            t = res.seconds
            best = max(best, n / t)
        if res is None or res.messages != n:
            raise RuntimeError("the replay did not decide every message")
        # one worker runs in this process: its CPU time is the engine's cost per message
        # (robust on a shared machine, where wall-clock rates swing with other load).
        # Interleaved with the pipeline alone on the same payloads, best of each: the
        # difference is the replay's own cost (read, decompress, tally, compile).
        pipe = Pipeline(load_policy(POLICY))
        pipe.decide_batch(payloads[:BATCH])  # warm caches
        replay_cpu = pipeline_cpu = float("inf")
        pipeline_1core = 0.0
        one = None
        for _ in range(3):
            c0 = time.process_time()
            one = replay(cap, POLICY, workers=1)
            replay_cpu = min(replay_cpu, (time.process_time() - c0) / n)
            # with the cyclic collector paused throughout, as the replay decides a chunk
            # (guard.replay._no_gc): resumed between batches (decide_batch pauses it only
            # while a batch runs), its collections added ~1.3 us/msg here (measured with
            # the watchdog thread, pinned) that the replay's workers do not pay
            was = gc.isenabled()
            gc.disable()
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.repeat):
                    for i in range(0, len(payloads), BATCH):
                        pipe.decide_batch(payloads[i:i + BATCH])
                pipeline_1core = max(pipeline_1core, n / (time.perf_counter() - t0))
                pipeline_cpu = min(pipeline_cpu, (time.process_time() - c0) / n)
            finally:
                if was:
                    gc.enable()
        assert one is not None
        file_bytes = cap.stat().st_size
        decode = _read_rate(cap)
        decode_objects = _read_rate(cap, objects=True)
        stored = Path(tmp) / "stored.gcap"
        with CaptureWriter(stored, {"source": "bench"}, compress=False) as w:
            w.write_many(distinct)
        decode_stored = _read_rate(stored)
    ctxs = [_Ctx(p, "", 60.0) for p in payloads[:1024]]
    stage_us: dict[str, float] = {}
    # with the cyclic collector paused, as decide_batch runs the stages (a collection
    # landing in one stage made it look several times its cost)
    was = gc.isenabled()
    gc.disable()
    try:
        for stage in pipe.stages:
            t0 = time.perf_counter()
            stage.run_batch(ctxs, lambda: None)
            stage_us[stage.name] = round((time.perf_counter() - t0) / len(ctxs) * 1e6, 1)
    finally:
        if was:
            gc.enable()
    total_us = sum(stage_us.values())
    out["msgs_per_s_4k"] = round(best)
    out["mb_per_s_4k"] = round(best * sum(map(len, payloads)) / len(payloads) / 1e6, 1)
    out["workers"] = workers
    out["messages"] = n
    out["verdicts"] = res.by_verdict()
    out["replay_1worker_msgs_per_s_4k"] = round(one.msgs_per_s)
    out["scaling"] = round(best / one.msgs_per_s, 2) if one.msgs_per_s else None
    out["pipeline_only_1core_msgs_per_s_4k"] = round(pipeline_1core)
    out["capture_read_us_per_msg"] = round(1e6 / decode, 1)
    out["capture_read_us_per_msg_uncompressed"] = round(1e6 / decode_stored, 1)
    out["capture_read_objects_us_per_msg"] = round(1e6 / decode_objects, 1)
    out["capture_bytes_per_msg"] = round(file_bytes / n)
    out["stage_us_4k"] = stage_us
    out["stage_share_4k"] = {k: round(v / total_us, 3) for k, v in stage_us.items()}
    # what the pipeline would have to cost per message, per core, to reach the target
    out["replay_1worker_cpu_us_per_msg_4k"] = round(replay_cpu * 1e6, 1)
    out["pipeline_cpu_us_per_msg_4k"] = round(pipeline_cpu * 1e6, 1)
    out["replay_overhead_cpu_us_per_msg_4k"] = round((replay_cpu - pipeline_cpu) * 1e6, 1)
    out["cpu_us_per_msg_needed_for_target"] = round(workers / TARGET * 1e6, 1)
    out["target_msgs_per_s_4k"] = TARGET
    out["stretch_msgs_per_s_4k"] = STRETCH
    if args.profile:  # in the calling thread: the watchdog thread would hide the work
        out["profile_top"] = _profile(Pipeline(load_policy(POLICY), watchdog=False),
                                      payloads)
    return out
