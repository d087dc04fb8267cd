"""The guard daemon: one or more workers carrying the configured flows.

``run(config, workers=N)`` with N == 1 runs the worker in this process; with N > 1 it
starts N worker processes (``guard run --worker I``) and supervises them: SIGTERM and
SIGINT are passed on for a clean drain, and a worker that dies is started again with
backoff. Workers share each flow through the MQTT 5 shared subscription
``$share/<shared_group>/<inbound topic>``; one worker subscribes to the plain topic,
because mosquitto 2.0.11 does not restore shared subscriptions from its persistence
file after a restart (measured), and drops the other form so that changing N never
leaves a stale subscription behind. Each worker has its own persistent session
(``<client_id>-<I>-in-<domain>``) and its own audit log ``<state_dir>/worker-<I>/audit``.

A worker opens its audit log, rebuilds the index of decided and delivered messages
from every worker's log and delivery journal under ``state_dir`` (so a message that
moves to another worker after a crash is still recognised), starts the metrics
endpoint and runs ``guard.relay.Relay`` until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.audit.keys import Signer, load_signer
from guard.audit.log import AuditLog
from guard.daemon_config import DaemonConfig
from guard.decide import Pipeline
from guard.delivery import JOURNAL_NAME, DecidedIndex, DeliveryJournal
from guard.domains.topology import Topology, load_topology
from guard.metrics import LatencyTrace, Metrics, serve_metrics
from guard.policy import load_policy
from guard.relay import Connector, Relay, RelayFailed, Route

SWITCH_INTERVAL_S = 0.0005
GC_THRESHOLD_0 = 20_000


class DaemonError(RuntimeError):
    """The daemon cannot start (bad topology, policy, flow or key)."""


def load_routes(
    topology_dir: Path | None, policies_dir: Path, flows: Sequence[str] | None
) -> tuple[Topology, list[Route]]:
    """The topology and a compiled ``Route`` for each carried flow."""
    from guard.domains.topology import DEFAULT_DIR, TopologyError
    from guard.policy import PolicyError

    try:
        topo = load_topology(topology_dir or DEFAULT_DIR, policies_dir=policies_dir)
    except TopologyError as exc:
        raise DaemonError(str(exc)) from None
    names = list(flows) if flows is not None else [f.name for f in topo.flows]
    routes = []
    for name in names:
        try:
            f = topo.flow(name)
        except KeyError:
            raise DaemonError(f"flow {name!r} is not in the topology") from None
        try:
            policy = load_policy(policies_dir / f.policy)
        except PolicyError as exc:
            raise DaemonError(str(exc)) from None
        # no watchdog thread in the pipeline: the relay watches its decide thread
        # itself (guard.relay), which saves a thread hand-over per batch
        routes.append(Route(f.name, f.source, f.destination, f.inbound_topic,
                            f.released_topic, policy, Pipeline(policy, watchdog=False)))
    return topo, routes


def status_topics(topo: Topology, routes: Sequence[Route]) -> dict[str, str]:
    """The status topic of every domain the routes touch."""
    domains = {r.source for r in routes} | {r.destination for r in routes}
    return {d: topo.domains[d].topics.status for d in sorted(domains)}


def mqtt_connector(config: DaemonConfig) -> Connector:
    """Connections to the configured mosquitto (or any MQTT 5) brokers, via paho."""
    from guard.domains.mqtt_client import MqttConnection

    async def connect(domain: str, client_id: str, inbound: bool) -> Any:
        ep = config.brokers.get(domain)
        if ep is None:
            raise DaemonError(f"no broker configured for domain {domain!r}")
        return await MqttConnection.connect(
            ep.host, ep.port, ep.username, ep.password, client_id=client_id,
            clean_start=not inbound,
            session_expiry_s=config.session_expiry_s if inbound else 0,
            receive_maximum=config.receive_maximum if inbound else None,
            max_waiting=config.receive_maximum if inbound else None,
        )

    return connect


@dataclass
class WorkerState:
    """The durable state of one worker: its audit log, index and journal."""

    audit: AuditLog
    index: DecidedIndex
    journal: DeliveryJournal
    loaded_decisions: int
    loaded_deliveries: int

    def close(self) -> None:
        """Close the journal and the audit log (which signs its last head)."""
        self.journal.close()
        self.audit.close()


def open_worker_state(
    state_dir: Path, worker: int, signer: Signer, *, max_delay_s: float = 0.02,
    fsync: str = "batch", window: int = 1_000_000,
) -> WorkerState:
    """Open ``state_dir/worker-<worker>`` and rebuild the index from every worker dir."""
    wdir = state_dir / f"worker-{worker}"
    wdir.mkdir(parents=True, exist_ok=True, mode=0o750)
    audit = AuditLog(wdir / "audit", signer, max_delay_s=max_delay_s, fsync=fsync)
    index = DecidedIndex(window)
    n_dec = n_del = 0
    others = sorted(p for p in state_dir.glob("worker-*") if p.is_dir() and p != wdir)
    for d in [*others, wdir]:  # this worker's own log last: its entries win
        n_dec += index.load_audit(d / "audit" / "records.jsonl")
    for d in [*others, wdir]:
        n_del += index.load_journal(d / JOURNAL_NAME)
    return WorkerState(audit, index, DeliveryJournal(wdir / JOURNAL_NAME), n_dec, n_del)


async def serve(
    config: DaemonConfig, worker: int, *, connect: Connector | None = None,
    stop: asyncio.Event | None = None, log: Any = None, workers: int = 1,
) -> int:
    """Run one worker until SIGTERM/SIGINT (or ``stop``); returns an exit status."""
    topo, routes = load_routes(config.topology, config.policies, config.flows)
    # A batch crosses several threads (decide, audit committer; the MQTT transport
    # runs on the event loop); with the default 5 ms GIL switch interval each hand-over
    # can wait that long behind a busy thread, which set the latency (p50 ~11 ms at
    # half rate, measured). A shorter interval trades a little throughput for latency
    # (0.1 ms measured no better than 0.5 ms on the loaded 2-vCPU machine).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if connect is None:
        missing = sorted({d for r in routes for d in (r.source, r.destination)}
                         - set(config.brokers))
        if missing:
            raise DaemonError(f"{config.path}: brokers: no entry for domain(s) "
                              f"{', '.join(missing)} used by the carried flows")
    signer = load_signer(config.signing_key)
    state = open_worker_state(config.state_dir, worker, signer,
                              max_delay_s=config.audit_max_delay_s, fsync=config.audit_fsync)
    _tune_gc()
    metrics = Metrics(worker)
    review = None
    if config.review_dir is not None:
        from guard.review import ReviewStore

        review = ReviewStore(config.review_dir)
    trace = None
    if config.latency_trace is not None:
        # one file per worker: the workers' batches would interleave otherwise
        trace = LatencyTrace(f"{config.latency_trace}.{worker}")
    relay = Relay(
        routes, connect or mqtt_connector(config), state.audit, signer, state.index,
        state.journal, metrics, client_id=f"{config.client_id}-{worker}",
        shared_group=config.shared_group if workers > 1 else None,
        shared_group_fallback=config.shared_group, batch_max=config.batch_max,
        max_batches_in_flight=config.max_batches_in_flight,
        reconnect_initial_s=config.reconnect_initial_s, reconnect_max_s=config.reconnect_max_s,
        status_topics=status_topics(topo, routes), status_interval_s=config.status_interval_s,
        drain_timeout_s=config.drain_timeout_s, review=review, trace=trace,
    )
    loop = asyncio.get_running_loop()
    with contextlib.suppress(AttributeError, ValueError, RuntimeError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on demand (ops)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, relay.stop)
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
    server = None
    if config.metrics_port:
        server = await serve_metrics(metrics, config.metrics_host, config.metrics_port + worker)
    watcher = None
    if stop is not None:
        async def watch() -> None:
            await stop.wait()
            relay.stop()

        watcher = asyncio.create_task(watch())
    out = log or sys.stderr
    print(f"guard: worker {worker}: {len(routes)} flows, {state.loaded_decisions} earlier "
          f"decisions ({state.loaded_deliveries} deliveries) loaded, audit "
          f"{state.audit.directory}" + (f", metrics http://{config.metrics_host}:"
                                        f"{config.metrics_port + worker}/metrics"
                                        if server else ""), file=out, flush=True)
    status = 0
    try:
        await relay.run()
    except RelayFailed as exc:
        print(f"guard: worker {worker}: stopped, nothing more acknowledged: {exc}", file=out,
              flush=True)
        status = 1
    finally:
        if watcher is not None:
            watcher.cancel()
        if server is not None:
            server.close()
        if trace is not None:
            trace.close()
        try:
            state.close()
        except Exception as exc:  # the records are durable already; report the failure
            print(f"guard: worker {worker}: closing the audit log failed: {exc}", file=out)
            status = 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    print(f"guard: worker {worker}: {metrics.state}: decided "
          f"{sum(metrics.verdicts.values())}, redelivered {sum(metrics.redelivered.values())}, "
          f"republished {sum(metrics.republished.values())}, delivered "
          f"{sum(metrics.delivered.values())}", file=out, flush=True)
    return status


def _tune_gc() -> None:
    """Fewer and shorter garbage-collector pauses (they set the p99 latency).

    The decided-message index loaded at start is frozen (never scanned again), and
    the young generation is collected every 20,000 net allocations instead of 700:
    most per-message objects are freed by reference counting well before that, so
    far fewer survive into the old generations, whose full passes took 15-40 ms
    during a run (measured with ``gc.callbacks``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, 20, 20)


def _dump_tasks() -> None:
    """SIGUSR2: print every asyncio task's stack and the relay's status (ops debugging)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def supervise(config_path: Path, workers: int, *, restart_delay_s: float = 0.5) -> int:
    """Start ``workers`` worker processes, pass on SIGTERM/SIGINT, restart crashed ones."""
    stopping = False
    procs: dict[int, subprocess.Popen[bytes]] = {}
    delays = dict.fromkeys(range(workers), restart_delay_s)

    def start(i: int) -> None:
        procs[i] = subprocess.Popen([sys.executable, "-m", "guard", "run", "--config",
                                     str(config_path), "--worker", str(i),
                                     "--workers", str(workers)])

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(workers):
            start(i)
        status = 0
        while procs:
            time.sleep(0.1)
            for i, p in list(procs.items()):
                rc = p.poll()
                if rc is None:
                    continue
                if stopping:
                    del procs[i]
                    status = max(status, rc if rc > 0 else 0)
                    continue
                print(f"guard: worker {i} exited with status {rc}; restarting in "
                      f"{delays[i]:.1f} s", file=sys.stderr, flush=True)
                time.sleep(delays[i])
                delays[i] = min(delays[i] * 2, 30.0)
                start(i)
        return status
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(config: DaemonConfig, *, workers: int = 1, worker: int | None = None) -> int:
    """``guard run``: one worker here, or ``workers`` supervised worker processes."""
    if worker is not None or workers == 1:
        return asyncio.run(serve(config, worker or 0, workers=workers))
    if config.path is None:
        raise DaemonError("several workers need a configuration file")
    return supervise(config.path, workers)

