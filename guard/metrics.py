"""The daemon's counters: a JSON status document and the Prometheus text format.

Served on localhost by a tiny asyncio HTTP endpoint (``GET /metrics`` for Prometheus,
``GET /status`` for JSON; anything else is 404) and published on each domain's status
topic. Counters only grow; gauges are set.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from typing import Any

VERDICTS = ("release", "redact", "quarantine", "block")
LATENCY_WINDOW = 2048  # the latest messages the latency quantiles are taken over


class Metrics:
    """Counters of one guard worker."""

    def __init__(self, worker: int = 0) -> None:
        self.worker = worker
        self.started = time.time()
        self.verdicts: Counter[tuple[str, str]] = Counter()  # (flow, verdict)
        self.received: Counter[str] = Counter()  # inbound messages per flow (incl. redelivered)
        self.delivered: Counter[str] = Counter()  # releases acknowledged by the low side
        self.redelivered: Counter[str] = Counter()  # already decided: acked or re-published
        self.republished: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # kind -> count
        self.reconnects: Counter[str] = Counter()  # domain -> count
        self.connected: dict[str, bool] = {}
        self.inflight = 0  # messages taken from the broker, not yet acknowledged
        self.waiting = 0  # delivered by the broker, not yet taken (sampled)
        self.batches = 0
        self.state = "starting"  # starting | running | draining | stopped | failed
        # read from the high side -> acknowledged to it, seconds, latest messages
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def latency_quantiles(self) -> dict[str, float]:
        """p50, p99 and max (ms) of the in-guard latency over the latest messages."""
        if not self.latencies:
            return {}
        v = sorted(self.latencies)
        return {"p50_ms": round(v[len(v) // 2] * 1e3, 2),
                "p99_ms": round(v[min(len(v) - 1, int(0.99 * len(v)))] * 1e3, 2),
                "max_ms": round(v[-1] * 1e3, 2), "count": len(v)}

    def status(self) -> dict[str, Any]:
        """The JSON status document (health and per-flow counts)."""
        flows: dict[str, dict[str, int]] = {}
        for (flow, verdict), n in self.verdicts.items():
            flows.setdefault(flow, {v: 0 for v in VERDICTS})[verdict] = n
        for flow, n in self.received.items():
            f = flows.setdefault(flow, {v: 0 for v in VERDICTS})
            f["received"] = n
            f["delivered"] = self.delivered[flow]
            f["redelivered"] = self.redelivered[flow]
        healthy = self.state == "running" and all(self.connected.values())
        return {
            "worker": self.worker, "state": self.state, "healthy": healthy,
            "time": round(time.time(), 3), "uptime_s": round(time.time() - self.started, 3),
            "inflight": self.inflight, "waiting": self.waiting,
            "held": self.inflight + self.waiting, "batches": self.batches, "flows": flows,
            "connected": dict(self.connected), "reconnects": dict(self.reconnects),
            "errors": dict(self.errors), "latency": self.latency_quantiles(),
        }

    def prometheus(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        w = f'worker="{self.worker}"'
        out = [
            "# HELP guard_decisions_total Decisions recorded, by flow and verdict.",
            "# TYPE guard_decisions_total counter",
        ]
        out += [f'guard_decisions_total{{{w},flow="{f}",verdict="{v}"}} {n}'
                for (f, v), n in sorted(self.verdicts.items())]
        for name, help_, counter in (
            ("guard_received_total", "Inbound messages taken from the high side.", self.received),
            ("guard_delivered_total", "Releases acknowledged by the low side.", self.delivered),
            ("guard_redelivered_total", "Inbound messages already decided earlier.",
             self.redelivered),
            ("guard_republished_total", "Earlier releases published again.", self.republished),
        ):
            out += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
            out += [f'{name}{{{w},flow="{f}"}} {n}' for f, n in sorted(counter.items())]
        out += ["# HELP guard_errors_total Errors by kind (every one failed closed).",
                "# TYPE guard_errors_total counter"]
        out += [f'guard_errors_total{{{w},kind="{k}"}} {n}' for k, n in sorted(self.errors.items())]
        out += ["# HELP guard_reconnects_total Broker reconnections by domain.",
                "# TYPE guard_reconnects_total counter"]
        out += [f'guard_reconnects_total{{{w},domain="{d}"}} {n}'
                for d, n in sorted(self.reconnects.items())]
        out += ["# HELP guard_connected Broker connection up (1) or down (0).",
                "# TYPE guard_connected gauge"]
        out += [f'guard_connected{{{w},domain="{d}"}} {int(c)}'
                for d, c in sorted(self.connected.items())]
        lat = self.latency_quantiles()
        if lat:
            out += ["# HELP guard_latency_seconds Read from the high side to acknowledged "
                    f"there, latest {LATENCY_WINDOW} messages.",
                    "# TYPE guard_latency_seconds summary"]
            out += [f'guard_latency_seconds{{{w},quantile="{q}"}} {lat[k] / 1e3}'
                    for q, k in (("0.5", "p50_ms"), ("0.99", "p99_ms"))]
        out += ["# HELP guard_inflight Messages held, not yet acknowledged.",
                "# TYPE guard_inflight gauge", f"guard_inflight{{{w}}} {self.inflight}",
                "# HELP guard_up 1 while the worker runs and every broker is connected.",
                "# TYPE guard_up gauge", f"guard_up{{{w}}} {int(self.status()['healthy'])}"]
        return "\n".join(out) + "\n"


async def serve_metrics(metrics: Metrics, host: str, port: int) -> asyncio.AbstractServer:
    """Serve ``/metrics`` (Prometheus) and ``/status`` (JSON) over HTTP/1.0."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/metrics":
                body, ctype, code = metrics.prometheus(), "text/plain; version=0.0.4", "200 OK"
            elif path in ("/status", "/health", "/"):
                body, ctype, code = json.dumps(metrics.status()), "application/json", "200 OK"
            else:
                body, ctype, code = "not found\n", "text/plain", "404 Not Found"
            data = body.encode()
            writer.write(f"HTTP/1.0 {code}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
        except (OSError, TimeoutError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


class LatencyTrace:
    """Per-message stage times of the relay, one JSON line per batch (``latency_trace``).

    Wall-clock nanoseconds (comparable with a send time another process put in the
    message id): ``recv`` (read from the high-side socket), ``taken`` (batch formed),
    ``decided`` (decided, stamped and appended to the audit log), ``durable`` (records
    synced, a head covering them signed and written), ``puback`` (the low side
    acknowledged the release; null when nothing was published), ``acked`` (inbound
    PUBACK written).
    For measurement only: it costs a few clock reads per message and a write per batch.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="ascii", buffering=1 << 16)  # noqa: SIM115

    def batch(self, mids: list[str], recv: list[int], taken: int, decided: int, durable: int,
              puback: list[int | None], acked: int) -> None:
        """Record one batch."""
        self._fh.write(json.dumps({"mid": mids, "recv": recv, "taken": taken,
                                   "decided": decided, "durable": durable, "puback": puback,
                                   "acked": acked}) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()
