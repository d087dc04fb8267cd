"""Decisions per second through the whole decision pipeline (no transport, no signing).

Messages are realistic plain-text reports (banner, portion-marked paragraphs of English
prose drawn from a fixed vocabulary, 1 in 8 with a NOFORN portion that must be redacted,
1 in 16 with a tearline) of about 512 B, 4 KB and 64 KB, decided in batches through
``Pipeline.decide_batch`` (which scans with ``Scanner.scan_batch``) under
policies/us-secret-to-fvey.yaml. Reported per size: decisions/s on one core, MB/s, and
for 4 KB the share of time spent in each stage (measured by timing the stages alone, best
of five) and ``split_us_4k``: the scanner's time (first scan + the re-check's own scan)
against the rest of the pipeline.
``decisions_per_cpu_s_*`` divides by the CPU time of this process (all its threads): on a
shared, noisy machine it is the steadier per-core figure; ``decisions_per_s_*`` is wall time.
The process is pinned to one CPU while measuring (``pinned_cpu``; ``--no-pin`` to skip): a
per-core rate, and the pipeline's worker thread does not bounce between cores (which costs
about 2 us per 4 KB message in cache misses on a two-core machine).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from guard.decide import Pipeline
from guard.policy import load_policy

POLICY = Path(__file__).resolve().parents[1] / "policies" / "us-secret-to-fvey.yaml"
_VOCABULARY = (
    "the of and to in a is that for on with as was by at from it an be this were are "
    "vessel naval port strait activity increased reported observed units near coast "
    "convoy aircraft exercise border ministry officials statement logistics supply fuel "
    "harbor patrol radar movement command regional forces deployment analysts assess "
    "likely during week month satellite imagery shows construction airfield runway "
    "missile battery brigade battalion headquarters communications weather clear "
    "economic sanctions shipping cargo tanker route inspection customs"
)
WORDS = tuple(_VOCABULARY.split())
MARKS = ("(S//REL TO USA, FVEY)", "(C//REL TO USA, FVEY)", "(U)", "(S//REL TO USA, FVEY)")


def _paragraph(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def make_message(rng: random.Random, size: int) -> bytes:
    """One report of about ``size`` bytes."""
    banner = "SECRET//REL TO USA, FVEY"
    lines = [banner]
    nf = rng.random() < 1 / 8
    body = 0
    target = size - 2 * len(banner) - 4
    while body < target:
        words = max(3, min(45, (target - body) // 7))
        line = rng.choice(MARKS) + " " + _paragraph(rng, words)
        lines.append(line)
        body += len(line) + 1
    if nf:
        lines.insert(2, "(S//NF) " + _paragraph(rng, 12))
        lines[0] = "SECRET//NOFORN"
    elif rng.random() < 1 / 16:
        lines += ["-" * 20 + " TEARLINE " + "-" * 20, banner, "(S//REL TO USA, FVEY) "
                  + _paragraph(rng, 10)]
    lines.append(lines[0])
    if lines[0] == "SECRET//REL TO USA, FVEY" and all(not x.startswith("(S") and
                                                      not x.startswith("(C")
                                                      for x in lines[1:-1]):
        lines[1] = "(S//REL TO USA, FVEY) " + lines[1].split(") ", 1)[1]
    return ("\n".join(lines) + "\n").encode()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``guard bench decide``."""
    parser.add_argument("--seconds", type=float, default=1.5, help="time per size")
    parser.add_argument("--batch", type=int, default=512, help="messages per batch")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the process to one CPU while measuring")


def _rate(pipe: Pipeline, msgs: list[bytes], seconds: float,
          batch: int) -> tuple[float, float, dict]:
    """(decisions per wall second, per CPU second of this process, verdict counts)."""
    verdicts: dict[str, int] = {}
    for d in pipe.decide_batch(msgs[:batch]):  # warm caches
        verdicts[d.verdict] = verdicts.get(d.verdict, 0) + 1
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        k = (n // batch) % max(1, len(msgs) // batch)
        pipe.decide_batch(msgs[k * batch:(k + 1) * batch])
        n += batch
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / max(cpu, 1e-9), verdicts


def _stage_profile(pipe: Pipeline, msgs: list[bytes],
                   repeat: int = 5) -> tuple[dict[str, float], float]:
    """Seconds per message spent in each stage, timing the stages alone (no watchdog),
    the best of ``repeat`` runs; and the seconds per message of the re-check's own scan
    (``Scanner.scan_batch`` over the outputs), so that the scanner's share can be split
    from the rest of the pipeline."""
    from guard.decide import _Ctx

    out: dict[str, float] = {}
    outputs: list[bytes] = []
    for _ in range(repeat):
        ctxs = [_Ctx(m, "", 60.0) for m in msgs]
        for stage in pipe.stages:
            t0 = time.perf_counter()
            stage.run_batch(ctxs, lambda: None)
            took = (time.perf_counter() - t0) / len(msgs)
            out[stage.name] = min(out.get(stage.name, took), took)
        outputs = [c.output or c.candidate or b"" for c in ctxs]
    scanner = pipe.stages[-1].rechecker.scanner  # type: ignore[attr-defined]
    offsets = np.zeros(len(outputs) + 1, dtype=np.int64)
    np.cumsum([len(o) for o in outputs], out=offsets[1:])
    buf = b"".join(outputs)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        scanner.scan_batch(buf, offsets)
        best = min(best, (time.perf_counter() - t0) / len(msgs))
    return out, best


def _pin() -> tuple[set[int] | None, int | None]:
    """Pin this thread (and the pipeline's worker thread, started later) to one CPU, so
    that a per-core rate is measured on one core; (previous affinity, cpu)."""
    if not hasattr(os, "sched_setaffinity"):
        return None, None
    old = os.sched_getaffinity(0)
    cpu = max(old)
    os.sched_setaffinity(0, {cpu})
    return old, cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and return the figures."""
    old, cpu = (None, None) if args.no_pin else _pin()
    try:
        result = _measure(args)
    finally:
        if old is not None:
            os.sched_setaffinity(0, old)
    result["pinned_cpu"] = cpu
    return result


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(4)
    pipe = Pipeline(load_policy(POLICY))
    result: dict[str, Any] = {}
    for label, size, count in (("512", 512, 4096), ("4k", 4096, 4096), ("64k", 65536, 256)):
        msgs = [make_message(rng, size) for _ in range(count)]
        batch = min(args.batch, count) if size <= 4096 else 32
        rate, cpu_rate, verdicts = _rate(pipe, msgs, args.seconds, batch)
        mean = float(np.mean([len(m) for m in msgs]))
        result[f"decisions_per_s_{label}"] = round(rate)
        result[f"decisions_per_cpu_s_{label}"] = round(cpu_rate)
        result[f"mb_per_s_{label}"] = round(rate * mean / 1e6, 1)
        if label == "4k":
            result["verdicts_4k_sample"] = verdicts
            prof, rescan = _stage_profile(pipe, msgs[:batch])
            total = sum(prof.values())
            result["stage_us_4k"] = {k: round(v * 1e6, 2) for k, v in prof.items()}
            result["stage_share_4k"] = {k: round(v / total, 3) for k, v in prof.items()}
            scans = prof["scan"] + rescan
            result["split_us_4k"] = {"scanner": round(scans * 1e6, 2),
                                     "recheck_scan": round(rescan * 1e6, 2),
                                     "rest": round((total - scans) * 1e6, 2)}
    t0, n = time.perf_counter(), 0
    single = [make_message(rng, 4096) for _ in range(200)]
    while time.perf_counter() - t0 < min(args.seconds, 1.0):
        pipe.decide(single[n % 200])
        n += 1
    result["single_decide_per_s_4k"] = round(n / (time.perf_counter() - t0))
    result["target_decisions_per_s_4k"] = 50000
    return result
