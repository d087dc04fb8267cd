"""Signed audit: per-record Ed25519 signing vs decisions covered by Merkle-batched signed heads.

Both figures come from the same run, interleaved over ``--repeat`` rounds (median kept):
``per_record_ed25519_per_s`` signs every record line alone; ``covered_decisions_per_s``
appends the same records to an ``AuditLog`` (in calls of ``--chunk``, as a daemon
would after a batch decision) and stops the clock when ``close()`` returns, i.e.
when every record is written, synced as configured and covered by a signed head.
Record objects are built before the clock starts (the decision engine makes them).
The log uses the compiled encoder, chain and Merkle hashing (``guard.audit.accel``)
unless ``--no-accel``; ``profile_*`` splits one thread's CPU time per record on the
same path, without I/O.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time

from guard.audit import AuditLog, DecisionRecord, Signer, accel
from guard.audit.merkle import Frontier
from guard.audit.records import RecordEncoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=200_000, help="decisions per round")
    parser.add_argument("--chunk", type=int, default=256, help="records per append_many call")
    parser.add_argument("--batch-max", type=int, default=4096)
    parser.add_argument("--max-delay", type=float, default=0.1, help="signature delay bound (s)")
    parser.add_argument("--fsync", choices=("always", "batch", "none"), default="batch")
    parser.add_argument("--findings-fraction", type=float, default=0.05,
                        help="share of decisions that carry findings (blocks/redactions)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="interleaved rounds; medians are reported (robust to load spikes)")
    parser.add_argument("--dir", default=None, help="where to write the logs (default: a temp dir)")
    parser.add_argument("--no-accel", action="store_true",
                        help="the pure-Python writer (no compiled encoder and hashing)")


def make_records(n: int, findings_fraction: float) -> list[DecisionRecord]:
    """Synthetic but realistic decisions: distinct ids and hashes, a few flows and policies."""
    policy = [hashlib.sha256(f"policy-{i}".encode()).hexdigest() for i in range(2)]
    flows = ["high-to-fvey", "high-to-nato", "high-to-public"]
    every = int(1 / findings_fraction) if findings_fraction > 0 else 0
    t0 = time.time()
    out = []
    for i in range(n):
        digest = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
        blocked = every and i % every == 0
        out.append(DecisionRecord(
            decision_id=f"w0-{i:012d}", time=t0 + i * 1e-6, flow=flows[i % 3],
            message_id=f"msg-{i:010d}", input_sha256=digest,
            output_sha256=None if blocked else digest, policy_sha256=policy[i & 1],
            verdict="block" if blocked else "release",
            findings=[{"rule": "dirty-word", "message": "term 'NOFORN' in body",
                       "start": 120, "end": 126}] if blocked else [],
        ))
    return out


def _per_record(signer: Signer, lines: list[bytes], budget_s: float = 0.5) -> float:
    sign = signer.sign
    n = 0
    t = time.perf_counter()
    while True:
        for line in lines[:2000]:
            sign(line)
        n += min(2000, len(lines))
        el = time.perf_counter() - t
        if el >= budget_s:
            return n / el


def _covered(signer: Signer, records: list[DecisionRecord], args: argparse.Namespace,
             base: str) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(dir=base) as d:
        t = time.perf_counter()
        log = AuditLog(d, signer, batch_max=args.batch_max, max_delay_s=args.max_delay,
                       fsync=args.fsync, accel=not args.no_accel and accel.AVAILABLE)
        append = log.append_many
        c = args.chunk
        for i in range(0, len(records), c):
            append(records[i:i + c])
        log.close()
        el = time.perf_counter() - t
        return len(records) / el, log.max_observed_delay_s, log.heads_signed


def _profile(signer: Signer, records: list[DecisionRecord], fast: bool) -> dict[str, float]:
    """Where the append path's CPU time goes, per record (single thread, no I/O)."""
    enc = RecordEncoder(signer.key_id)
    clock = time.thread_time  # CPU time: other processes on a loaded machine do not count
    t = clock()
    leaves: list[bytes] = []
    prev = bytes(32)
    for i in range(0, len(records), 256):
        _, lv = enc.encode_packed(records[i:i + 256], i, prev, fast=fast)
        prev = lv[-32:]
        leaves.append(lv)
    t1 = clock()
    f: Frontier | accel.FastFrontier = accel.FastFrontier() if fast else Frontier()
    for i in range(0, len(leaves), 16):
        f.extend_packed(b"".join(leaves[i:i + 16]))
        f.root()
    t2 = clock()
    n = len(records)
    return {"encode_chain_us": round((t1 - t) / n * 1e6, 3),
            "merkle_nodes_us": round((t2 - t1) / n * 1e6, 3)}


def _sha256_impl() -> str:
    from guard._core import audit_sha256_impl  # type: ignore[attr-defined]

    return str(audit_sha256_impl())


def run(args: argparse.Namespace) -> dict[str, object]:
    signer = Signer.generate()
    records = make_records(args.records, args.findings_fraction)
    lines, _, _ = RecordEncoder(signer.key_id).encode(records[:2000], 0, "0" * 64)
    per, cov, delays, heads = [], [], [], []
    for _ in range(args.repeat):
        per.append(_per_record(signer, lines))
        rate, delay, h = _covered(signer, records, args, args.dir or tempfile.gettempdir())
        cov.append(rate)
        delays.append(delay)
        heads.append(h)
    p, c = statistics.median(per), statistics.median(cov)
    fast = not args.no_accel and accel.AVAILABLE
    prof = _profile(signer, records[:50_000], fast)
    return {
        "per_record_ed25519_per_s": round(p),
        "covered_decisions_per_s": round(c),
        "ratio": round(c / p, 2),
        "fsync": args.fsync,
        "accel": fast,
        "sha256": _sha256_impl() if fast else "hashlib",
        "max_signature_delay_s": round(max(delays), 4),  # worst round (the bound)
        "median_round_signature_delay_s": round(statistics.median(delays), 4),
        "max_delay_s": args.max_delay,
        "batch_max": args.batch_max,
        "chunk": args.chunk,
        "records": args.records,
        "repeat": args.repeat,
        "heads_per_round": heads[-1],
        "record_bytes_avg": round(sum(map(len, lines)) / len(lines)),
        "findings_fraction": args.findings_fraction,
        "append_us_per_record": round(1e6 / c, 3),
        **{f"profile_{k}": v for k, v in prof.items()},
    }
