"""End to end: high broker -> guard (full inspection, QoS 1, signed audit) -> low broker.

Two mosquitto brokers (the US SECRET high side and the GBR low side, generated users
and ACL) with ``guard run`` between them, and in the same run the same traffic through
two mosquitto brokers joined by a mosquitto bridge (no filtering): the baseline.

Traffic: seeded generator messages of the releasable kinds (finished intelligence,
OSINT, climate, portion-marked reports that get redacted, tearline reports) at a fixed
size (512 B, 4 KB, 64 KB), so that every message crosses and the two paths carry the
same count; each one is still parsed, scanned, decided, redacted where needed,
re-checked, recorded in the signed audit log and stamped. Producer processes (two
by default: one Python producer limits the bridge) publish QoS 1 as fast as they
can (throughput: first to last arrival at a QoS-1 subscriber on the low side), then
again at half the rate just measured (latency: p50 and p99 from the send time carried
in the message id to the arrival). The guard runs with its latency trace on
(``latency_trace``), so the half-rate run also reports where the time went, leg by
leg (``leg_<leg>_ms_<size>``: see ``_legs`` and bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from guard.bench._mqttload import Endpoint, bridge_pair, endpoint, paho_client
from guard.domains.mqtt_client import _UserProperties

FLOW = "us-secret-to-gbr"
RELEASABLE = {"clean-finished": 0.35, "clean-osint": 0.15, "clean-climate": 0.15,
              "mixed-portions": 0.2, "tearline": 0.15}
SIZES = (512, 4096, 65536)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=5000,
                        help="messages per throughput run at 512 B and 4 KB (64 KB: a fifth)")
    parser.add_argument("--workers", type=int, default=1, help="guard worker processes")
    parser.add_argument("--sizes", default="512,4096,65536", help="message sizes to measure")
    parser.add_argument("--producers", type=int, default=2,
                        help="producer processes feeding each path (the same for both)")
    parser.add_argument("--keep-trace", metavar="DIR", default=None,
                        help="copy the guard's per-message latency trace (JSON lines) here")


# -- producer (its own process, so that it does not compete for the GIL) -----------------


def _produce(job: dict[str, Any]) -> None:
    ep = Endpoint(**job["ep"])
    payloads = _read_payloads(Path(job["payloads"]))
    c = paho_client(ep, f"e2e-producer-{os.getpid()}")
    interval = 1.0 / job["rate"] if job["rate"] else 0.0
    tag = job["tag"]
    start = time.perf_counter()
    infos = []
    first, step = job.get("first", 0), job.get("step", 1)
    for n, i in enumerate(range(first, job["count"], step)):
        if interval:
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        # pre-encoded user properties (paho's generic encoder costs ~20 us each): the
        # producer must not be what limits the bridge
        props = _UserProperties([("message-id", f"{tag}-{i}-{time.time_ns()}"), ("flow", FLOW)])
        infos.append(c.publish(job["topic"], payloads[i % len(payloads)], qos=1,
                               properties=props))
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def _write_payloads(path: Path, payloads: list[bytes]) -> None:
    with open(path, "wb") as f:
        for p in payloads:
            f.write(struct.pack("<I", len(p)) + p)


def _read_payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, k = [], 0
    while k < len(data):
        (n,) = struct.unpack_from("<I", data, k)
        out.append(data[k + 4:k + 4 + n])
        k += 4 + n
    return out


def _start_producers(ep: Endpoint, topic: str, payloads: Path, count: int, rate: float | None,
                     tag: str, producers: int) -> list[subprocess.Popen[bytes]]:
    """``producers`` processes publishing message i = k, k + n, ... of the run each."""
    procs = []
    for k in range(producers):
        proc = subprocess.Popen([sys.executable, "-m", "guard.bench.e2e"], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        job = {"ep": ep.__dict__, "topic": topic, "payloads": str(payloads), "count": count,
               "rate": rate / producers if rate else None, "tag": tag, "first": k,
               "step": producers}
        proc.stdin.write(json.dumps(job).encode())  # the password goes over stdin
        proc.stdin.close()
        procs.append(proc)
    return procs


# -- consumer ------------------------------------------------------------------------------


class _Arrivals:
    """A QoS-1 subscriber recording arrival times and latencies of one tagged run."""

    def __init__(self, ep: Endpoint, topic: str) -> None:
        self.lock = threading.Lock()
        self.tag = ""
        self.times: list[float] = []
        self.latencies: list[float] = []
        self.arrived: dict[str, int] = {}  # message id -> arrival (wall-clock ns)
        self.client = paho_client(ep, f"e2e-sink-{os.getpid()}-{time.monotonic_ns()}",
                                  fast=True)
        self.client.on_publish_received = self._on_publish  # type: ignore[attr-defined]
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        if not done.wait(10):
            raise RuntimeError("no SUBACK")

    def _on_publish(self, topic: str, payload: bytes, properties: Any, qos: int, dup: bool,
                    packet_id: int) -> None:
        now = time.time_ns()
        self.client.ack(packet_id, qos)
        props = dict(properties)
        mid = props.get("guard-message-id") or props.get("message-id") or ""
        tag, _, rest = mid.partition("-")
        with self.lock:
            if tag != self.tag:
                return
            self.times.append(time.perf_counter())
            self.arrived[mid] = now
            sent = rest.rpartition("-")[2]
            if sent.isdigit():
                self.latencies.append((now - int(sent)) / 1e6)

    def reset(self, tag: str) -> None:
        with self.lock:
            self.tag, self.times, self.latencies, self.arrived = tag, [], [], {}

    def wait(self, count: int, timeout_s: float, idle_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        last_n, last_t = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = len(self.times)
            if n >= count:
                return
            if n != last_n:
                last_n, last_t = n, time.monotonic()
            elif time.monotonic() - last_t > idle_s:
                return  # nothing more is coming (blocked messages do not arrive)
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def _measure(ep: Endpoint, topic: str, arrivals: _Arrivals, payloads: Path, count: int,
             tag: str, rate: float | None, producers: int = 1) -> dict[str, Any]:
    arrivals.reset(tag)
    procs = _start_producers(ep, topic, payloads, count, rate, tag, producers)
    arrivals.wait(count, timeout_s=max(60.0, count / 100))
    for proc in procs:
        proc.wait(60)
    times, lat = arrivals.times, arrivals.latencies
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {"msgs_s": round((len(times) - 1) / span, 1) if span > 0 else 0.0,
            "arrived": len(times), "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
            "arrivals": dict(arrivals.arrived)}


# -- the two paths ---------------------------------------------------------------------------


def _topology(directory: Path) -> Path:
    """A two-domain topology (US SECRET -> GBR) copied from the packaged domain files."""
    from guard.domains.topology import DEFAULT_DIR

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEFAULT_DIR / "gbr.yaml", directory / "gbr.yaml")
    text = (DEFAULT_DIR / "us-secret.yaml").read_text()
    head, _, _ = text.partition("flows:")
    (directory / "us-secret.yaml").write_text(
        head + f"flows:\n  - {{name: {FLOW}, to: gbr, policy: {FLOW}.yaml}}\n")
    return directory


def _payloads(workdir: Path, size: int) -> Path:
    from guard.demo import TERMS
    from guard.domains.generators import FlowTarget, Generator, GeneratorConfig

    target = FlowTarget(FLOW, "GBR", 3, f"flows/{FLOW}/in")
    gen = Generator(target, 7, TERMS, GeneratorConfig(weights=RELEASABLE, sizes={size: 1.0}))
    path = workdir / f"payloads-{size}.bin"
    _write_payloads(path, [m.payload for m in gen.take(200 if size < 65536 else 60)])
    return path


def run(args: argparse.Namespace) -> dict[str, object]:
    from guard.demo import MosquittoEnv

    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="guard-e2e-"))
    result: dict[str, object] = {"workers": args.workers, "count": args.count,
                                 "producers": args.producers}
    env = None
    try:
        payloads = {s: _payloads(workdir, s) for s in sizes}
        counts = {s: args.count if s < 65536 else max(200, args.count // 5) for s in sizes}
        # the baseline: a mosquitto bridge, no filtering
        high, low, src, dst = bridge_pair(f"flows/{FLOW}/in", f"released/{FLOW}/in")
        try:
            time.sleep(0.5)  # the bridge connects asynchronously
            arr = _Arrivals(dst, f"released/{FLOW}/in")
            for s in sizes:
                full = _measure(src, f"flows/{FLOW}/in", arr, payloads[s], counts[s],
                                f"b{s}", None, args.producers)
                half = _measure(src, f"flows/{FLOW}/in", arr, payloads[s], counts[s] // 2,
                                f"bh{s}", full["msgs_s"] / 2 or None, args.producers)
                _store(result, "bridge", s, full, half)
            arr.close()
        finally:
            high.close()
            low.close()
        # the guard
        trace = workdir / "trace"
        env = MosquittoEnv(workdir / "guard", topology_dir=_topology(workdir / "topology"),
                           flows=[FLOW], config={"status_interval_s": 1.0,
                                                 "audit": {"max_delay_s": 0.01},
                                                 "latency_trace": str(trace)})
        env.start()
        env.start_guard(args.workers)
        _wait_for_guard(env)
        gbr = env.brokers["gbr"]
        arr = _Arrivals(endpoint(gbr, "sink"), f"released/{FLOW}")
        src = endpoint(env.brokers["us-secret"], "producer")
        arrivals: dict[int, dict[str, int]] = {}
        for s in sizes:
            full = _measure(src, f"flows/{FLOW}/in", arr, payloads[s], counts[s], f"g{s}", None,
                            args.producers)
            half = _measure(src, f"flows/{FLOW}/in", arr, payloads[s], counts[s] // 2,
                            f"gh{s}", full["msgs_s"] / 2 or None, args.producers)
            _store(result, "guard", s, full, half)
            arrivals[s] = half["arrivals"]
        arr.close()
        status = env.stop_guard()
        traced = _read_trace(workdir, trace)
        if args.keep_trace:
            Path(args.keep_trace).mkdir(parents=True, exist_ok=True)
            for path in workdir.glob(trace.name + ".*"):
                shutil.copy(path, Path(args.keep_trace) / path.name)
        for s in sizes:
            result.update(_legs(_key(s), f"gh{s}", traced, arrivals[s]))
        ok, problems = env.verify_audit()
        result["audit_verified"] = ok and status == 0
        result["audit_problems"] = problems[:3]
        result["audit_records"] = len(env.decisions())
    finally:
        if env is not None:
            env.close()
        shutil.rmtree(workdir, ignore_errors=True)
    for s in sizes:
        k = _key(s)
        g, b = result.get(f"guard_msgs_s_{k}"), result.get(f"bridge_msgs_s_{k}")
        if isinstance(g, float) and isinstance(b, float) and b:
            result[f"ratio_vs_bridge_{k}"] = round(g / b, 3)
    return result


def _read_trace(workdir: Path, trace: Path) -> dict[str, tuple[int, ...]]:
    """message id -> (recv, taken, decided, durable, puback, acked) from every worker."""
    out: dict[str, tuple[int, ...]] = {}
    for path in sorted(workdir.glob(trace.name + ".*")):
        for line in path.read_text().splitlines():
            b = json.loads(line)
            for mid, recv, pub in zip(b["mid"], b["recv"], b["puback"], strict=True):
                out[mid] = (recv, b["taken"], b["decided"], b["durable"], pub or b["durable"],
                            b["acked"])
    return out


LEGS = ("in", "queue", "decide", "durable", "publish", "ack", "out")


def _legs(k: str, tag: str, traced: dict[str, tuple[int, ...]],
          arrived: dict[str, int]) -> dict[str, object]:
    """Where the half-rate latency went, per leg (ms): p50, p99 and the mean over the
    slowest 1% of messages (what makes the p99).

    in: producer's send -> read by the guard (high broker, guard's socket); queue:
    -> batch formed; decide: -> decided, stamped, appended; durable: -> audit synced
    and signed; publish: -> the low side's PUBACK; ack: -> inbound PUBACK queued;
    out: PUBACK -> arrival at the sink (can be negative: the broker forwards first).
    """
    rows = []
    for mid, t_arr in arrived.items():
        t = traced.get(mid)
        sent = mid.rpartition("-")[2]
        if t is None or not sent.isdigit():
            continue
        marks = (int(sent), *t)
        legs = [(marks[i + 1] - marks[i]) / 1e6 for i in range(len(marks) - 1)]
        legs.append((t_arr - t[4]) / 1e6)
        rows.append(((t_arr - int(sent)) / 1e6, legs))
    if not rows:
        return {}
    rows.sort(key=lambda r: r[0])
    tail = rows[min(len(rows) - 1, int(0.99 * len(rows))):]
    out: dict[str, object] = {}
    for i, name in enumerate(LEGS):
        col = [r[1][i] for r in rows]
        out[f"leg_{name}_ms_{k}"] = [_pct(col, 0.5), _pct(col, 0.99),
                                     round(sum(r[1][i] for r in tail) / len(tail), 2)]
    out[f"traced_{k}"] = len(rows)
    return out


def _key(size: int) -> str:
    return {512: "512", 4096: "4k", 65536: "64k"}.get(size, str(size))


def _store(result: dict[str, object], name: str, size: int, full: dict[str, float],
           half: dict[str, float]) -> None:
    k = _key(size)
    result[f"{name}_msgs_s_{k}"] = full["msgs_s"]
    result[f"{name}_arrived_{k}"] = full["arrived"]
    result[f"{name}_p50_ms_full_{k}"] = full["p50_ms"]
    if name == "guard":
        result[f"p50_ms_{k}"] = half["p50_ms"]
        result[f"p99_ms_{k}"] = half["p99_ms"]
    else:
        result[f"bridge_p50_ms_{k}"] = half["p50_ms"]
        result[f"bridge_p99_ms_{k}"] = half["p99_ms"]


def _wait_for_guard(env: Any, timeout_s: float = 60) -> None:
    """Until the guard publishes a healthy status on the high side."""
    b = env.brokers["us-secret"]
    ep = endpoint(b, "analyst")
    healthy = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        try:
            if json.loads(msg.payload).get("healthy"):
                healthy.set()
        except ValueError:
            pass

    c = paho_client(ep, f"e2e-status-{os.getpid()}")
    c.on_message = on_message
    c.subscribe("guard/status", qos=1)
    deadline = time.monotonic() + timeout_s
    while not healthy.wait(0.2):
        env.check_guard()
        if time.monotonic() > deadline:
            raise RuntimeError("the guard did not become healthy")
    c.disconnect()
    c.loop_stop()


if __name__ == "__main__":
    _produce(json.loads(sys.stdin.read()))
