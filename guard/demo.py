"""Simulated domains around a real guard: the demo, and the harness of the daemon tests.

``MosquittoEnv`` starts one mosquitto per domain of the topology (free ports, generated
users and ACL), creates a signing key and writes a daemon configuration; the guard
runs as a separate process (``guard run``), so it can be killed and restarted.
``InProcessEnv`` does the same on the in-process transport, with the guard's worker
running in this event loop. Both offer ``connect(domain, user)`` for producers and
sinks, and read back the guard's decisions and verify its audit logs.

``run_demo`` drives a timed run: seeded generators publish every flow's traffic at a
fixed rate (ledger written before each publish), independent sinks check everything
the low sides receive, progress is printed once a second, and at the end the sinks
reconcile against the ledger and the guard's audit records.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from guard.audit.keys import init_key, load_public_keys
from guard.audit.verify import verify_logs
from guard.domains.broker import mosquitto_binary
from guard.domains.generators import (
    GeneratedMessage,
    Generator,
    GeneratorConfig,
    Ledger,
    targets_from_topology,
)
from guard.domains.sinks import FlowSummary, Sink, consume, merge_summaries, totals
from guard.domains.topology import DEFAULT_DIR, Topology, load_topology

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
TERMS = POLICIES / "terms" / "codewords.txt"


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class _Env:
    """What both environments share: topology, key, state, decisions, audit checks."""

    transport = ""

    def __init__(self, workdir: Path | None = None, *, topology: Topology | None = None,
                 flows: Sequence[str] | None = None, policies: Path = POLICIES,
                 topology_dir: Path | None = None, config: dict[str, Any] | None = None) -> None:
        self._own = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="guard-demo-"))
        self.topology_dir = topology_dir
        self.topology = topology or load_topology(topology_dir or DEFAULT_DIR,
                                                  policies_dir=policies)
        self.flows = list(flows) if flows else [f.name for f in self.topology.flows]
        self.policies = policies
        self.key_dir = self.workdir / "keys"
        self.state_dir = self.workdir / "state"
        self.extra_config = dict(config or {})
        if not (self.key_dir / "signing.key").exists():
            init_key(self.key_dir)
        self.public_keys = load_public_keys(self.key_dir)

    def config_dict(self, brokers: dict[str, Any]) -> dict[str, Any]:
        """The daemon configuration for this environment."""
        cfg: dict[str, Any] = {
            "policies": str(self.policies), "flows": self.flows, "brokers": brokers,
            "signing_key": str(self.key_dir), "state_dir": str(self.state_dir),
            "reconnect": {"initial_s": 0.05, "max_s": 1.0}, "status_interval_s": 0.5,
            "drain_timeout_s": 10,
        }
        if self.topology_dir is not None:
            cfg["topology"] = str(self.topology_dir)
        cfg.update(self.extra_config)
        return cfg

    def audit_dirs(self) -> list[Path]:
        """The audit log directory of every worker that ran."""
        return sorted(p / "audit" for p in self.state_dir.glob("worker-*")
                      if (p / "audit").is_dir())

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision record of every worker (message_id, verdict, decision_id...)."""
        out = []
        for d in self.audit_dirs():
            path = d / "records.jsonl"
            if not path.exists():
                continue
            for line in path.read_bytes().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def verify_audit(self) -> tuple[bool, list[str]]:
        """``guard audit verify`` over every worker's log: (all ok, problems)."""
        dirs = self.audit_dirs()
        if not dirs:
            return False, ["no audit log"]
        reports = verify_logs([str(d) for d in dirs], self.public_keys)
        problems = [f"{d}: {p}" for d, r in zip(dirs, reports, strict=True) for p in r.problems]
        return all(r.ok for r in reports), problems

    def sinks(self) -> dict[str, Sink]:
        """A fresh sink for every destination domain of the carried flows."""
        dests = sorted({self.topology.flow(f).destination for f in self.flows})
        return {d: Sink.for_domain(self.topology, d, self.public_keys) for d in dests}

    def close(self) -> None:
        """Remove the working directory if this environment made it."""
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)


class MosquittoEnv(_Env):
    """One mosquitto per domain; the guard as a ``guard run`` subprocess."""

    transport = "mosquitto"

    def __init__(self, workdir: Path | None = None, *, broker_kwargs: dict[str, Any] | None = None,
                 **kw: Any) -> None:
        super().__init__(workdir, **kw)
        self.brokers = self.topology.build_brokers(**(broker_kwargs or {}))
        self.guard: subprocess.Popen[bytes] | None = None
        self.guard_log = self.workdir / "guard.log"
        self.config_path = self.workdir / "guard.yaml"

    def start(self) -> MosquittoEnv:
        """Start every broker and write the daemon configuration (passwords in 0600 files)."""
        pw = self.workdir / "passwords"
        pw.mkdir(mode=0o700, exist_ok=True)
        brokers = {}
        for name, b in self.brokers.items():
            b.start()
            user, password = b.credentials("guard")
            _write_secret(pw / name, password)
            brokers[name] = {"host": b.host, "port": b.port, "username": user,
                             "password_file": str(pw / name)}
        self.config_path.write_text(yaml.safe_dump(self.config_dict(brokers), sort_keys=False))
        return self

    async def connect(self, domain: str, user: str, **kw: Any) -> Any:
        """A paho-backed ``Connection`` to ``domain``'s broker as ``user``."""
        from guard.domains.mqtt_client import MqttConnection

        b = self.brokers[domain]
        name, password = b.credentials(user)
        return await MqttConnection.connect(b.host, b.port, name, password, **kw)

    def start_guard(self, workers: int = 1) -> subprocess.Popen[bytes]:
        """Start ``guard run`` (output appended to ``guard.log``)."""
        log = open(self.guard_log, "ab")  # noqa: SIM115 - owned by the child from now on
        self.guard = subprocess.Popen(
            [sys.executable, "-m", "guard", "run", "--config", str(self.config_path),
             "--workers", str(workers)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        return self.guard

    def stop_guard(self, *, kill: bool = False, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (clean drain) or SIGKILL the guard; returns its exit status."""
        g, self.guard = self.guard, None
        if g is None:
            return None
        if g.poll() is None:
            g.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                return g.wait(timeout_s)
            except subprocess.TimeoutExpired:
                g.kill()
                g.wait()
                return -9
        return g.returncode

    def check_guard(self) -> None:
        """Raise if the guard process exited (it must run until stopped)."""
        if self.guard is not None and self.guard.poll() is not None:
            log = self.guard_log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the guard exited with status {self.guard.returncode}:\n{log}")

    def close(self) -> None:
        """Stop the guard and every broker; remove the working directory if ours."""
        with contextlib.suppress(Exception):
            self.stop_guard(timeout_s=10)
        for b in self.brokers.values():
            b.close()
        super().close()


class InProcessEnv(_Env):
    """The same domains on the in-process transport; the guard runs in this event loop."""

    transport = "in-process"

    def __init__(self, workdir: Path | None = None, **kw: Any) -> None:
        super().__init__(workdir, **kw)
        self.brokers = self.topology.build_inprocess()
        self._guard: asyncio.Task[int] | None = None
        self._stop: asyncio.Event | None = None
        self.metrics: Any = None

    def start(self) -> InProcessEnv:
        """Nothing to start: the brokers live in memory."""
        return self

    async def connect(self, domain: str, user: str, **kw: Any) -> Any:
        """An in-process ``Connection`` to ``domain`` as ``user``."""
        b = self.brokers[domain]
        kw.pop("session_expiry_s", None)
        kw.pop("receive_maximum", None)
        return await b.connect(*b.credentials(user), **kw)

    def start_guard(self, workers: int = 1) -> None:
        """Run ``workers`` guard workers as tasks of the running loop."""
        from guard.daemon import serve
        from guard.daemon_config import parse_config

        brokers = {n: {"host": "in-process", "port": 1, "username": "guard",
                       "password": self.brokers[n].credentials("guard")[1]}
                   for n in self.brokers}
        config = parse_config(self.config_dict(brokers), base=self.workdir)

        async def connect(domain: str, client_id: str, inbound: bool) -> Any:
            b = self.brokers[domain]
            return await b.connect(*b.credentials("guard"), client_id=client_id,
                                   clean_start=not inbound)

        self._stop = asyncio.Event()
        self._guards = [asyncio.create_task(serve(config, i, connect=connect, stop=self._stop,
                                                  log=_Null(), workers=workers))
                        for i in range(workers)]
        self._guard = self._guards[0]

    def check_guard(self) -> None:
        """Raise if a guard task ended (they must run until stopped)."""
        for task in getattr(self, "_guards", []):
            if task.done():
                task.result()
                raise RuntimeError("the guard stopped by itself")

    async def stop_guard_async(self) -> int | None:
        """Drain and stop the guard tasks; returns the worst exit status."""
        if self._guard is None or self._stop is None:
            return None
        self._stop.set()
        statuses = await asyncio.gather(*self._guards)
        self._guard = None
        return max(statuses)


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


# -- traffic -----------------------------------------------------------------------------


def traffic(topology: Topology, flows: Sequence[str], *, seed: int, rate_per_flow: float,
            seconds: float, sizes: dict[int, float] | None = None,
            weights: dict[str, float] | None = None) -> Iterator[GeneratedMessage]:
    """Every flow's seeded stream, merged by send time, generated lazily."""
    targets = [t for t in targets_from_topology(topology) if t.name in flows]
    kw: dict[str, Any] = {"rate_per_s": rate_per_flow}
    if sizes:
        kw["sizes"] = sizes
    if weights:
        kw["weights"] = weights
    n = max(1, int(rate_per_flow * seconds))
    gens = [Generator(t, seed, TERMS, GeneratorConfig(**kw)) for t in targets]
    return heapq.merge(*(itertools.islice(g, n) for g in gens), key=lambda m: m.at)


def summarise(env: _Env, sinks: dict[str, Sink], ledger: Iterable[Any]
              ) -> tuple[dict[str, FlowSummary], list[Any]]:
    """Per-flow reconciliation of the sinks against the ledger and the audit records."""
    entries = list(ledger)
    decisions = env.decisions()
    parts = [s.reconcile(entries, decisions) for s in sinks.values()]
    incidents = [i for s in sinks.values() for i in s.incidents]
    return merge_summaries(parts), incidents


# -- the demo --------------------------------------------------------------------------------


def choose_transport(requested: str) -> str:
    """``mosquitto`` when the binary exists (or is asked for), else ``in-process``."""
    if requested == "auto":
        return "mosquitto" if mosquitto_binary() else "in-process"
    return requested


async def _watch_status(env: _Env, status: dict[int, dict[str, Any]]) -> Any:
    """Keep ``status`` (worker -> latest status document) up to date; returns the conn."""
    high = next(iter({env.topology.flow(f).source for f in env.flows}))
    conn = await env.connect(high, _client_user(env, high))
    await conn.subscribe(env.topology.domains[high].topics.status)

    async def loop() -> None:
        async for msg in conn.messages():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(msg.payload)
                status[int(doc["worker"])] = doc
            await conn.ack(msg)

    return conn, asyncio.create_task(loop())


def _client_user(env: _Env, domain: str) -> str:
    for u in env.topology.domains[domain].users:
        if u.role == "client":
            return u.name
    raise RuntimeError(f"domain {domain} has no client user to read the guard's status")


def _decided(status: dict[int, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in status.values():
        for flow, c in doc.get("flows", {}).items():
            out[flow] = out.get(flow, 0) + sum(c.get(v, 0) for v in
                                               ("release", "redact", "quarantine", "block"))
    return out


async def run_demo(*, seconds: float = 10.0, rate: float = 50.0, seed: int = 1,
                   transport: str = "auto", workers: int = 1, out: TextIO | None = None,
                   workdir: Path | None = None) -> dict[str, Any]:
    """Run the demo; returns the summary (see ``guard demo --json``)."""
    out = out or sys.stdout
    transport = choose_transport(transport)
    env: MosquittoEnv | InProcessEnv = (MosquittoEnv(workdir) if transport == "mosquitto"
                                        else InProcessEnv(workdir))
    status: dict[int, dict[str, Any]] = {}
    tasks: list[asyncio.Task[Any]] = []
    conns: list[Any] = []
    try:
        env.start()
        print(f"guard demo: {len(env.flows)} flows on the {transport} transport"
              + (" (mosquitto brokers on 127.0.0.1)" if transport == "mosquitto"
                 else " (mosquitto not installed)"), file=out, flush=True)
        env.start_guard(workers)
        sinks = env.sinks()
        for dest, sink in sinks.items():
            conn = await env.connect(dest, "sink", client_id=f"demo-sink-{dest}")
            conns.append(conn)
            tasks.append(asyncio.create_task(consume(conn, sink, ["released/#"])))
        sconn, stask = await _watch_status(env, status)
        conns.append(sconn)
        tasks.append(stask)
        deadline = time.monotonic() + 30
        while len(status) < workers or not all(d.get("healthy") for d in status.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the guard did not come up within 30 s")
            env.check_guard()
            await asyncio.sleep(0.05)
        high = env.topology.flow(env.flows[0]).source
        producer = await env.connect(high, "producer", client_id="demo-producer")
        conns.append(producer)
        ledger = Ledger(env.workdir / "ledger.jsonl")
        stream = traffic(env.topology, env.flows, seed=seed, rate_per_flow=rate, seconds=seconds)
        sent: list[Any] = []
        t0 = time.monotonic()

        async def produce() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for m in stream:
                delay = start + m.at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                ledger.append(m.entry)
                sent.append(m.entry)
                await producer.publish(m.topic, m.payload, m.properties)

        prod = asyncio.create_task(produce())
        last: dict[str, int] = {}
        last_t = t0
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            now = time.monotonic()
            dec = _decided(status)
            rates = {f: (dec.get(f, 0) - last.get(f, 0)) / (now - last_t) for f in env.flows}
            last, last_t = dec, now
            verdicts = {v: sum(d["flows"].get(f, {}).get(v, 0) for d in status.values()
                               for f in env.flows)
                        for v in ("release", "redact", "quarantine", "block")}
            received = sum(s.received for sk in sinks.values() for s in sk._summary.values())
            print(f"[{tick:3d}s] " + " ".join(f"{_short(f)} {r:.0f}/s" for f, r in rates.items())
                  + f" | sent {len(sent)} decided {sum(dec.values())} | "
                  + " ".join(f"{k} {n}" for k, n in verdicts.items())
                  + f" | low sides received {received}", file=out, flush=True)
            if prod.done():
                prod.result()
                if sum(dec.values()) >= len(sent) or now - t0 > seconds + 60:
                    break
        elapsed = max(1e-9, time.monotonic() - t0)
        ledger.close()
        # let the last releases reach the sinks, then stop the guard cleanly
        delivered = sum(c.get("delivered", 0) for d in status.values()
                        for c in d["flows"].values())
        settle = time.monotonic() + 10
        while time.monotonic() < settle:
            received = sum(s.received for sk in sinks.values() for s in sk._summary.values())
            if received >= delivered:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        if isinstance(env, InProcessEnv):
            code = await env.stop_guard_async()
        else:
            code = await asyncio.get_running_loop().run_in_executor(None, env.stop_guard)
        for c in conns:
            with contextlib.suppress(Exception):
                await c.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        summaries, incidents = summarise(env, sinks, sent)
        ok, problems = env.verify_audit()
        t = totals(summaries)
        result = {
            "transport": transport, "seconds": seconds, "workers": workers,
            "flows": {f: s.to_dict() for f, s in sorted(summaries.items())},
            "sent": t.get("sent", 0), "spillage": t.get("spillage", 0),
            "lost": t.get("lost", 0), "duplicates": t.get("duplicates", 0),
            "stamp_failures": t.get("stamp_failures", 0), "unexpected": t.get("unexpected", 0),
            "audit_verified": ok, "audit_problems": problems[:5],
            "msgs_per_s": round(t.get("sent", 0) / elapsed, 1),
            "guard_exit_status": code,
            "incidents": [f"{i.kind} {i.flow} {i.message_id}: {i.detail}" for i in incidents][:10],
        }
        return result
    finally:
        for task in tasks:
            task.cancel()
        if isinstance(env, InProcessEnv) and env._guard is not None:
            with contextlib.suppress(Exception):
                await env.stop_guard_async()
        env.close()


def _short(flow: str) -> str:
    return flow.rsplit("-to-", 1)[-1]


def failed(result: dict[str, Any]) -> bool:
    """True when the run showed spillage, loss, a bad stamp or an unverified audit log."""
    return bool(result["spillage"] or result["lost"] or result["stamp_failures"]
                or result["unexpected"] or not result["audit_verified"])


def print_summary(result: dict[str, Any], out: TextIO) -> None:
    """The per-flow summary table."""
    cols = ("sent", "released", "redacted", "quarantined", "blocked", "spillage", "lost",
            "duplicates")
    print(f"{'flow':<22}" + "".join(f"{c:>12}" for c in cols), file=out)
    for flow, s in result["flows"].items():
        print(f"{flow:<22}" + "".join(f"{s[c]:>12}" for c in cols), file=out)
    print(f"audit verified: {'yes' if result['audit_verified'] else 'NO'}   "
          f"messages/s: {result['msgs_per_s']}   transport: {result['transport']}", file=out)
    for line in result["audit_problems"] + result["incidents"]:
        print(f"  ! {line}", file=out)
