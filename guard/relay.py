"""The guard's message loop: high side in, decide, record, release, acknowledge.

Transport-agnostic: it talks to brokers through ``guard.domains.transport.Connection``
objects made by a ``connect(domain, client_id, inbound)`` coroutine (mosquitto via
paho, or the in-process transport), so the daemon and the in-process demo run the
same code.

QoS 1 end to end, in this order for every batch of inbound messages:

1. decide (``Pipeline.decide_batch`` per flow), stamp each release and append one
   audit record per decision, in the decide thread (stage A); batches that queued up
   while it was busy are decided together, so batches grow with the load;
2. wait until the audit log has made those records durable and signed (group commit;
   the audit committer wakes the event loop itself: ``AuditLog.flush_future``);
3. publish each release (with its stamp as MQTT 5 user properties) to the low side
   and wait for every PUBACK, reconnecting with backoff as long as it takes;
4. acknowledge the inbound messages to the high side, then note the deliveries
   (``delivery.DeliveryJournal``; after the acks are on the socket: the journal only
   matters for a message the broker delivers again, which an acknowledged one is not,
   and its write can wait behind the audit log's syncs on the same disk).

Every batch is a task (at most ``max_batches_in_flight``), so the next batch is taken
while earlier ones are decided, committed and published. A kill at any moment leaves every
unacknowledged message queued at the high-side broker (persistent session), and
``delivery.DecidedIndex`` turns its redelivery into an ack or a re-publish of the
same decision, never a second decision. Any error in deciding blocks the message
with a finding; an audit log that cannot record stops the relay (nothing more is
acknowledged, so nothing is lost).

Hang protection is the relay's: a group of batches the decide thread has not
decided well after their time budget (``limits.time_budget_ms`` x max(1, n/64) per
flow, plus one budget) is blocked and recorded as such, the thread is abandoned and
a new one takes over, with the batches queued behind (the pipelines run without
their own watchdog thread, which cost two more thread hand-overs per batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import queue
import re
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guard.audit.accel import sha256_hex_many
from guard.audit.log import AuditLog
from guard.audit.records import AuditError, DecisionRecord
from guard.audit.stamp import Release, make_stamps
from guard.decide import Decision, Pipeline
from guard.delivery import Decided, DecidedIndex, DeliveryJournal
from guard.domains.transport import ConnectionLost, Message, NotAuthorized, TransportError
from guard.findings import Finding
from guard.metrics import LatencyTrace, Metrics
from guard.policy import Policy

Connector = Callable[[str, str, bool], Awaitable[Any]]
ZERO_SHA = "0" * 64
MAX_ID_CHARS = 256
PUBLISH_TIMEOUT_S = 30.0
HUNG = "the pipeline did not finish within the time budget (a filter hung)"
WATCH_INTERVAL_S = 0.1  # how often the hang watchdog looks at the decide thread
# releases of one flow under one stamp signature: a path of at most 8 hashes (344
# base64 characters) per message, one Ed25519 signature (~27 us) per up to 256 releases
STAMP_BATCH = 256
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass
class Route:
    """One flow as the relay carries it."""

    name: str
    source: str
    destination: str
    inbound_topic: str
    released_topic: str
    policy: Policy
    pipeline: Pipeline


@dataclass(eq=False)
class _Item:
    conn: Any
    msg: Message
    route: Route | None
    message_id: str
    input_sha256: str
    prior: Decided | None = None  # an earlier decision to honour (redelivery)
    decision_id: str = ""
    verdict: str = ""
    output: bytes | None = None  # what to publish (None: nothing)
    props: list[tuple[str, str]] = field(default_factory=list)
    record: DecisionRecord | None = None
    decision: Decision | None = None
    findings: list[dict[str, object]] = field(default_factory=list)
    policy_sha256: str = ""  # the policy its output is stamped under
    output_sha256: str | None = None
    fresh: bool = False  # a new decision (recorded), not an earlier release published again
    waiters: list[tuple[Any, Message]] = field(default_factory=list)
    recv_ns: int = 0  # latency trace only: when the transport read it
    puback_ns: int | None = None  # latency trace only: the low side's PUBACK

    @property
    def key(self) -> tuple[str, str]:
        return (self.route.name if self.route else "(unrouted)", self.message_id)


class _DecideJob:
    """One batch's items for the decide thread, and who owns them once decided: the
    thread (``claimed``) or, after a hang, the watchdog (``abandoned``)."""

    __slots__ = ("abandoned", "block", "claimed", "decided_ns", "fut", "items", "lock",
                 "loop")

    def __init__(self, items: list[_Item], fut: asyncio.Future[None],
                 loop: asyncio.AbstractEventLoop, block: str = "") -> None:
        self.items, self.fut, self.loop, self.block = items, fut, loop, block
        self.lock = threading.Lock()
        self.claimed = self.abandoned = False
        self.decided_ns = 0  # latency trace: when the thread had decided


class _DecideLane:
    """The decide thread: takes batches in order; the batches that queued up while it
    was busy are decided together (one ``decide_batch`` per flow, one audit append),
    so the batches grow with the load, and each is answered once its records are
    durable: one wake-up of the event loop per group, from the audit committer.

    A daemon thread, unlike a ``ThreadPoolExecutor``'s: a call abandoned by the hang
    watchdog must not keep the process from exiting.
    """

    def __init__(self, relay: Relay, name: str, merge_max: int) -> None:
        self._relay = relay
        self.merge_max = merge_max
        self._jobs: queue.SimpleQueue[_DecideJob | None] = queue.SimpleQueue()
        self.current: list[_DecideJob] = []  # the group being decided now
        self.deadline = 0.0  # monotonic time after which that group counts as hung
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, job: _DecideJob) -> None:
        """Queue a batch."""
        self._jobs.put(job)

    def close(self) -> None:
        """End the thread once the batches already queued are done."""
        self._jobs.put(None)

    def take_queued(self) -> list[_DecideJob]:
        """The batches not started yet (to hand them to another thread)."""
        out = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return out
            if job is not None:
                out.append(job)

    def _run(self) -> None:
        closing = False
        while not closing:
            job = self._jobs.get()
            if job is None:
                return
            jobs, n = [job], len(job.items)
            while n < self.merge_max:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                jobs.append(more)
                n += len(more.items)
            # written before ``current``: a watchdog that sees this group sees its deadline
            self.deadline = time.monotonic() + _hang_timeout_s(
                [it for j in jobs if not j.block for it in j.items])
            self.current = jobs
            try:
                self._relay._decide_jobs(jobs)
            except BaseException as exc:  # a bug: the batches' tasks stop the relay
                _answer([j for j in jobs if not j.abandoned], exc)
            finally:
                self.current = []


def _answer(jobs: list[_DecideJob], exc: BaseException | None) -> None:
    """Wake the event loop once for every job of a group (from any thread)."""
    if not jobs:
        return
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
        jobs[0].loop.call_soon_threadsafe(_resolve_all, [j.fut for j in jobs], exc)


def _resolve_all(futs: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for fut in futs:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(None)


class RelayFailed(RuntimeError):
    """The relay cannot go on safely (the audit log refused a record)."""


def _finding(rule: str, message: str) -> dict[str, object]:
    return Finding(rule, message).to_dict()


class Relay:
    """Carries every given flow for one guard worker (see the module docstring)."""

    def __init__(
        self,
        routes: Sequence[Route],
        connect: Connector,
        audit: AuditLog,
        signer: Any,
        index: DecidedIndex,
        journal: DeliveryJournal,
        metrics: Metrics | None = None,
        *,
        client_id: str = "guard-0",
        shared_group: str | None = None,
        shared_group_fallback: str = "guard",
        batch_max: int = 128,
        max_batches_in_flight: int = 8,
        reconnect_initial_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        status_topics: dict[str, str] | None = None,
        status_interval_s: float = 1.0,
        drain_timeout_s: float = 10.0,
        review: Any = None,
        trace: LatencyTrace | None = None,
    ) -> None:
        self.routes = {r.inbound_topic: r for r in routes}
        self.connect = connect
        self.audit = audit
        self.signer = signer
        self.index = index
        self.journal = journal
        self.metrics = metrics or Metrics()
        self.client_id = client_id
        self.shared_group = shared_group
        self.shared_group_other = shared_group_fallback
        self.batch_max = batch_max
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.status_topics = status_topics or {}
        self.status_interval_s = status_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.review = review
        self.trace = trace
        self.failure: BaseException | None = None
        self._slots = asyncio.Semaphore(max_batches_in_flight)
        self._stop = asyncio.Event()
        self._pending: dict[tuple[str, str], _Item] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outs: dict[str, Any] = {}
        self._out_locks: dict[str, asyncio.Lock] = {}
        self._inbound: dict[str, Any] = {}
        self._seen_out: set[str] = set()
        self._lane = _DecideLane(self, "guard-decide", max(batch_max * 4, 512))
        self._ids = itertools.count(1)
        self._id_prefix = f"{client_id}-{secrets.token_hex(4)}-"
        for r in routes:
            self.metrics.received.setdefault(r.name, 0)
            self.metrics.connected.setdefault(r.source, False)
            self.metrics.connected.setdefault(r.destination, False)

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a clean drain: no new batches, finish those in flight."""
        self._stop.set()

    async def run(self) -> None:
        """Carry the flows until ``stop()``; then drain and disconnect."""
        self.metrics.state = "running"
        sources = sorted({r.source for r in self.routes.values()})
        consumers = [asyncio.create_task(self._consume(s)) for s in sources]
        # connect the low sides at once: health then means "ready", not "will try"
        consumers += [asyncio.create_task(self._output(d))
                      for d in sorted({r.destination for r in self.routes.values()})]
        status = asyncio.create_task(self._status_loop())
        watch = asyncio.create_task(self._watch_lane())
        try:
            await self._stop.wait()
        finally:
            self.metrics.state = "draining" if self.failure is None else "failed"
            for t in consumers:
                t.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
            if self._tasks and self.failure is None:
                await asyncio.wait(self._tasks, timeout=self.drain_timeout_s or None)
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._publish_status()
            status.cancel()
            watch.cancel()
            await asyncio.gather(status, watch, return_exceptions=True)
            for conn in [*self._inbound.values(), *self._outs.values()]:
                with contextlib.suppress(Exception):
                    await conn.close()
            self._lane.close()
            if self.metrics.state == "draining":
                self.metrics.state = "stopped"
        if self.failure is not None:
            raise RelayFailed(str(self.failure)) from self.failure

    def _crash(self, exc: BaseException) -> None:
        traceback.print_exception(exc, file=sys.stderr)
        self.metrics.errors[f"bug-{type(exc).__name__}"] += 1
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            self.metrics.errors["fatal"] += 1
        self._stop.set()

    async def _backoff(self, delay: float) -> float:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return min(delay * 2, self.reconnect_max_s)

    # -- inbound -----------------------------------------------------------------------

    def _filters(self, source: str) -> list[str]:
        topics = [t for t, r in self.routes.items() if r.source == source]
        if self.shared_group:
            return [f"$share/{self.shared_group}/{t}" for t in topics]
        return topics

    async def _consume(self, source: str) -> None:
        delay = self.reconnect_initial_s
        first = True
        while not self._stop.is_set():
            try:
                conn = await self.connect(source, f"{self.client_id}-in-{source}", True)
            except Exception as exc:  # any connect failure is retried with backoff
                self.metrics.errors[f"connect-{type(exc).__name__}"] += 1
                delay = await self._backoff(delay)
                continue
            if not first:
                self.metrics.reconnects[source] += 1
            first = False
            self._inbound[source] = conn
            self.metrics.connected[source] = True
            delay = self.reconnect_initial_s
            # subscribe while already taking messages: a resumed session delivers at once,
            # and the SUBACK may queue behind deliveries that wait for room
            subs = asyncio.create_task(self._subscribe(conn, source))
            try:
                await self._pump(conn, subs)
            except (ConnectionLost, TransportError, OSError, TimeoutError):
                self.metrics.errors["inbound-lost"] += 1
            except RelayFailed:
                return
            except Exception as exc:  # a bug: stop (fail closed) rather than stall silently
                self._crash(exc)
                return
            finally:
                subs.cancel()
                if self._stop.is_set() and self.failure is None and \
                        getattr(conn, "connected", True):
                    # a clean drain: the batches in flight still acknowledge on this
                    # connection; run() closes it once they are done
                    pass
                else:
                    self.metrics.connected[source] = False
                    if self._inbound.get(source) is conn:
                        del self._inbound[source]
                    with contextlib.suppress(Exception):
                        await conn.close()
            if not self._stop.is_set():
                delay = await self._backoff(delay)

    async def _subscribe(self, conn: Any, source: str) -> None:
        for f in self._filters(source):
            await conn.subscribe(f)
        # drop the other form (plain vs shared) a run with another worker count left
        unsubscribe = getattr(conn, "unsubscribe", None)
        if unsubscribe is not None:
            topics = [t for t, r in self.routes.items() if r.source == source]
            stale = ([f"$share/{self.shared_group_other}/{t}" for t in topics]
                     if not self.shared_group else topics)
            for f in stale:
                with contextlib.suppress(TransportError, OSError):
                    await unsubscribe(f)

    async def _pump(self, conn: Any, subs: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            if subs.done():
                subs.result()  # a refused or timed-out subscription: reconnect
            await self._slots.acquire()
            try:
                msg = None
                while msg is None and not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        msg = await conn.get(timeout=0.25)
                    if subs.done():
                        subs.result()
                if msg is None:
                    self._slots.release()
                    return
                batch = [msg]
                # the transport's read time if it keeps one (0 if not): for the latency
                # metrics and trace
                recv = [getattr(conn, "last_received_ns", 0)]
                while len(batch) < self.batch_max:
                    more = conn.get_nowait()
                    if more is None:
                        break
                    batch.append(more)
                    recv.append(getattr(conn, "last_received_ns", 0))
                marks = [time.time_ns()] if self.trace else None
                items, todo = self._prepare(conn, batch, recv)
            except BaseException:
                self._slots.release()
                raise
            job = None
            if todo:  # not awaited here: the next batch is taken while this one is decided
                job = _DecideJob(todo, loop.create_future(), loop)
                self._lane.submit(job)
            task = asyncio.create_task(self._stage_b(items, job, marks))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- stage A: decide, stamp, append (in the decide thread) ---------------------------

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    def _prepare(self, conn: Any, batch: list[Message], recv: list[int] | None = None
                 ) -> tuple[list[_Item], list[_Item]]:
        """A batch's items, and those of them to decide (the rest are redeliveries of
        messages decided earlier or in flight: acknowledged, or settled with them)."""
        m = self.metrics
        m.batches += 1
        m.inflight += len(batch)
        todo: list[_Item] = []
        quick: list[_Item] = []  # already decided and settled: acknowledge only
        in_batch: dict[tuple[str, str], _Item] = {}
        shas = sha256_hex_many([msg.payload for msg in batch])
        for n, msg in enumerate(batch):
            route = self.routes.get(msg.topic)
            in_sha = shas[n]
            raw_id = msg.property("message-id")
            mid = raw_id if raw_id is not None else f"sha256:{in_sha}"
            it = _Item(conn, msg, route, mid, in_sha)
            if recv is not None:
                it.recv_ns = recv[n]
            if route is not None:
                m.received[route.name] += 1
            pending = self._pending.get(it.key) or in_batch.get(it.key)
            if pending is not None and pending.input_sha256 == in_sha:
                pending.waiters.append((conn, msg))  # settles with the first copy
                m.redelivered[route.name if route else "(unrouted)"] += 1
                continue
            if pending is not None:  # same id, other content, not yet recorded: never release
                it.prior = Decided("(in flight)", "pending", pending.input_sha256, None, "")
                todo.append(it)
                continue
            in_batch[it.key] = it
            prior = self.index.get(*it.key)
            if prior is not None and prior.input_sha256 == in_sha:
                m.redelivered[it.key[0]] += 1
                if prior.releasing and not prior.delivered:
                    it.prior = prior  # publish the same decision again
                else:
                    quick.append(it)
                    continue
            elif prior is not None:
                it.prior = prior  # same id, other content: decided afresh, never released
            todo.append(it)
        for it in todo:  # in flight from now on: a redelivery waits for this decision
            self._pending[it.key] = it
        return [*quick, *todo], todo

    def _decide_jobs(self, jobs: list[_DecideJob]) -> None:
        """Runs in the decide thread: decisions, stamps and audit records for a group
        of batches, answered once the records are durable (``_answer``).

        Every decision is made before any item is touched, so that a batch the
        watchdog gave up on (``abandoned``) is left to it untouched. The records are
        committed at once (``commit_many``), and the commit wakes the event loop
        itself: no wake-up in between.
        """
        groups: dict[str, list[_Item]] = {}
        failed: dict[int, str] = {}  # id(item) -> why it is blocked without a decision
        for job in jobs:
            for it in job.items:
                why = job.block
                if not why and it.route is None:
                    why = f"topic {it.msg.topic!r} feeds no flow of this guard"
                if not why:
                    why = _bad_id(it.message_id)
                if why:
                    failed[id(it)] = why
                else:
                    groups.setdefault(it.route.name, []).append(it)  # type: ignore[union-attr]
        decided: dict[int, Decision] = {}
        for group in groups.values():
            pipe = group[0].route.pipeline  # type: ignore[union-attr]
            try:
                decisions = pipe.decide_batch([it.msg.payload for it in group],
                                              [it.message_id for it in group])
                if len(decisions) != len(group):
                    raise RuntimeError("decide_batch returned the wrong number of decisions")
            except Exception as exc:  # fail closed: every message of the batch blocks
                self.metrics.errors["decide"] += 1
                err = f"the decision pipeline failed: {type(exc).__name__}: {exc}"
                failed.update((id(it), err) for it in group)
                continue
            decided.update((id(it), d) for it, d in zip(group, decisions, strict=True))
        claimed = []
        for job in jobs:
            with job.lock:
                if job.abandoned:
                    continue
                job.claimed = True
            claimed.append(job)
        if not claimed:
            return
        settled = [it for job in claimed for it in job.items]
        for it in settled:
            why = failed.get(id(it))
            if why is not None:
                self._settle(it, None, [_finding("internal-error", why)])
            else:
                self._settle(it, decided[id(it)], None)
        to_hash = []
        for it in settled:  # an output equal to its input (most releases) has its hash
            if it.fresh and it.output is not None:
                if it.output == it.msg.payload:
                    it.output_sha256 = it.input_sha256
                else:
                    to_hash.append(it)
        for it, sha in zip(to_hash, sha256_hex_many([it.output for it in to_hash]),
                           strict=True):
            it.output_sha256 = sha
        self._stamp_all([it for it in settled if it.output is not None])
        records = [self._record(it) for it in settled if it.fresh]
        if self.trace is not None:
            now = time.time_ns()
            for job in claimed:
                job.decided_ns = now
        try:
            durable = self.audit.commit_many(records)
        except BaseException as exc:  # AuditError: the relay stops
            _answer(claimed, exc)
            return
        durable.add_done_callback(lambda f: _answer(claimed, f.exception()))

    async def _watch_lane(self) -> None:
        """The hang watchdog: a group the decide thread has worked on past its deadline
        is blocked (on a new decide thread, which also takes the batches queued behind
        it); the hung thread is abandoned."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            lane = self._lane
            jobs = lane.current
            if not jobs or time.monotonic() <= lane.deadline:
                continue
            hung = []
            for job in jobs:
                with job.lock:
                    if not job.claimed:
                        job.abandoned = True
                        hung.append(job)
            if not hung:
                continue  # it finished just now
            self.metrics.errors["decide-hung"] += 1
            self._lane = _DecideLane(self, "guard-decide", lane.merge_max)
            for job in hung:
                self._lane.submit(_DecideJob(job.items, job.fut, job.loop, HUNG))
            for job in lane.take_queued():
                self._lane.submit(job)
            lane.close()

    def _settle(self, it: _Item, d: Decision | None, fail: list[dict[str, object]] | None) -> None:
        """Turn a decision (or a failure) into what to record and what to publish; the
        stamps come after, for the whole group at once (``_stamp_all``)."""
        route = it.route
        policy_sha = route.policy.sha256 if route else ZERO_SHA
        prior = it.prior
        if prior is not None and prior.input_sha256 == it.input_sha256:
            # a redelivered release not known to have arrived: the same decision again
            out = d.output if d is not None and d.verdict in ("release", "redact") else None
            if out is not None and hashlib.sha256(out).hexdigest() == prior.output_sha256:
                it.decision_id, it.verdict, it.output = prior.decision_id, prior.verdict, out
                it.policy_sha256, it.output_sha256 = prior.policy_sha256, prior.output_sha256
                self.metrics.republished[it.key[0]] += 1
                return
            # the output cannot be reproduced (policy changed?): record that, release nothing
            fail = [_finding("internal-error", "redelivered message: its earlier release "
                             f"{prior.decision_id} could not be reproduced, not released again")]
            d = None
        verdict, findings, out = "block", fail or [], None
        if d is not None:
            verdict, out = d.verdict, d.output
            findings = [_finding_dict(f) for f in d.findings]
            if verdict in ("release", "redact") and out is None:
                verdict = "block"
                findings.append(_finding("internal-error", "a release without output"))
            if prior is not None and verdict in ("release", "redact"):
                verdict, out = "block", None
                findings.append(_finding("internal-error", f"message id {it.message_id!r} was "
                                         "already decided for different content"))
            if verdict not in ("release", "redact"):
                out = None
        it.decision_id, it.verdict, it.decision = self._new_id(), verdict, d
        # the output's SHA-256 follows for the whole group (``sha256_hex_many``)
        it.output, it.findings, it.policy_sha256, it.fresh = out, findings, policy_sha, True

    def _stamp_all(self, items: list[_Item]) -> None:
        """Stamp every output: one signature per flow and batch (``make_stamps``).

        A new release whose stamp cannot be made is blocked (cannot sign: cannot
        release); an earlier release published again cannot be re-decided, so that
        failure stops the relay and the message is redelivered after a restart.
        """
        flows: dict[str, list[_Item]] = {}
        for it in items:
            flows.setdefault(it.key[0], []).append(it)
        for flow, group in flows.items():
            for k in range(0, len(group), STAMP_BATCH):
                part = group[k:k + STAMP_BATCH]
                try:
                    stamps = make_stamps([Release(
                        _output_hash(it), it.decision_id, flow, it.message_id,
                        it.policy_sha256) for it in part], self.signer)
                except Exception as exc:
                    if not all(it.fresh for it in part):
                        raise
                    for it in part:
                        it.verdict, it.output, it.output_sha256 = "block", None, None
                        it.findings.append(_finding("internal-error", "release stamp failed: "
                                                    f"{type(exc).__name__}"))
                    continue
                for it, stamp in zip(part, stamps, strict=True):
                    it.props = [("message-id", it.message_id), ("flow", flow), *stamp]

    def _record(self, it: _Item) -> DecisionRecord:
        """The audit record of a new decision, once its stamp is made (or refused)."""
        it.record = DecisionRecord(
            decision_id=it.decision_id, time=time.time(), flow=it.key[0],
            message_id=it.message_id, input_sha256=it.input_sha256,
            output_sha256=it.output_sha256, policy_sha256=it.policy_sha256,
            verdict=it.verdict, findings=it.findings)
        return it.record

    # -- stage B: commit, publish, acknowledge ------------------------------------------

    async def _stage_b(self, items: list[_Item], job: _DecideJob | None,
                       marks: list[int] | None = None) -> None:
        m = self.metrics
        try:
            if job is not None:
                try:
                    await job.fut  # decided, stamped, recorded, durable and signed
                except AuditError as exc:
                    self._fail(exc)
                    return
                for it in job.items:
                    if it.record is not None:
                        self.index.add(*it.key, Decided(
                            it.decision_id, it.verdict, it.input_sha256,
                            it.record.output_sha256, it.record.policy_sha256))
                        m.verdicts[(it.key[0], it.verdict)] += 1
            if marks is not None:
                marks += [job.decided_ns if job is not None else marks[0], time.time_ns()]
            self._queue_reviews(items)
            sends = [it for it in items if it.output is not None]
            keys = [it.key for it in sends]
            if sends:
                await self._deliver_batch(sends)
                self.index.mark_delivered(keys)
                for it in sends:
                    self.metrics.delivered[it.key[0]] += 1
            conns = set()
            for it in items:
                for conn, msg in [(it.conn, it.msg), *it.waiters]:
                    with contextlib.suppress(Exception):  # a dead connection: redelivered
                        await conn.ack(msg)
                    conns.add(conn)
                    self.metrics.inflight -= 1
            for conn in conns:  # the acks on the socket now, not after the journal write
                flush = getattr(conn, "flush_writes", None)
                if flush is not None:
                    with contextlib.suppress(Exception):
                        flush()
            now = time.time_ns()
            m.latencies.extend((now - it.recv_ns) / 1e9 for it in items if it.recv_ns)
            if keys:
                self.journal.record(keys)
            if marks is not None and self.trace is not None:
                self.trace.batch([it.message_id for it in items], [it.recv_ns for it in items],
                                 *marks, [it.puback_ns for it in items], time.time_ns())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: nothing of this batch is acknowledged
            self._crash(exc)
        finally:
            for it in items:
                if self._pending.get(it.key) is it:
                    del self._pending[it.key]
            self._slots.release()

    def _queue_reviews(self, items: list[_Item]) -> None:
        if self.review is None:
            return
        for it in items:
            d = it.decision
            if it.verdict == "quarantine" and d is not None and d.candidate is not None \
                    and it.route is not None:
                try:
                    self.review.submit(d, it.msg.payload, it.route.policy)
                except Exception:  # the decision is recorded; review is best effort
                    self.metrics.errors["review-submit"] += 1

    async def _deliver_batch(self, sends: list[_Item]) -> None:
        """Publish every release of a batch and wait for every PUBACK.

        On a connection that can queue publishes together (``publish_batch``), all of
        them are written at once and awaited as one (the PUBACKs settle the batch as
        they are read: the task wakes once); whatever fails or times out goes through
        ``_deliver`` (retry with backoff), as does everything on a connection without
        it (the in-process transport).
        """
        retry: list[_Item] = []
        by_dest: dict[str, list[_Item]] = {}
        for it in sends:
            by_dest.setdefault(it.route.destination, []).append(it)  # type: ignore[union-attr]
        for dest, group in by_dest.items():
            out = await self._output(dest)
            start = getattr(out, "publish_batch", None)
            if start is None:
                retry += group
                continue
            batch = start([(it.route.released_topic, it.output, it.props)  # type: ignore[union-attr]
                           for it in group], PUBLISH_TIMEOUT_S)
            await batch.done
            lost = False
            for it, exc, t in zip(group, batch.errors, batch.acked_ns, strict=True):
                it.puback_ns = t
                if exc is None:
                    continue
                retry.append(it)
                if isinstance(exc, NotAuthorized):
                    self.metrics.errors["publish-refused"] += 1
                else:  # lost, refused otherwise, or no PUBACK in time
                    self.metrics.errors["publish-lost"] += 1
                    lost = True
            if lost and self._outs.get(dest) is out:
                del self._outs[dest]  # reconnect: a timed-out connection is not trusted
                self.metrics.connected[dest] = False
                with contextlib.suppress(Exception):
                    await out.close()
        if retry:
            await asyncio.gather(*(self._deliver(it) for it in retry))

    async def _deliver(self, it: _Item) -> None:
        route = it.route
        assert route is not None and it.output is not None
        delay = self.reconnect_initial_s
        while True:
            out = await self._output(route.destination)
            try:
                await asyncio.wait_for(out.publish(route.released_topic, it.output, it.props),
                                       PUBLISH_TIMEOUT_S)
                return
            except NotAuthorized:
                self.metrics.errors["publish-refused"] += 1
            except (ConnectionLost, TransportError, OSError, TimeoutError):
                self.metrics.errors["publish-lost"] += 1
                if self._outs.get(route.destination) is out:
                    del self._outs[route.destination]
                    self.metrics.connected[route.destination] = False
                    with contextlib.suppress(Exception):
                        await out.close()
            await asyncio.sleep(delay)  # not cut short by stop(): the drain waits for it
            delay = min(delay * 2, self.reconnect_max_s)

    async def _output(self, domain: str) -> Any:
        out = self._outs.get(domain)
        if out is not None and getattr(out, "connected", True):
            return out
        lock = self._out_locks.setdefault(domain, asyncio.Lock())
        async with lock:
            out = self._outs.get(domain)
            if out is not None and getattr(out, "connected", True):
                return out
            delay = self.reconnect_initial_s
            while True:
                try:
                    out = await self.connect(domain, f"{self.client_id}-out-{domain}", False)
                    break
                except Exception as exc:  # any connect failure is retried with backoff
                    self.metrics.errors[f"connect-{type(exc).__name__}"] += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.reconnect_max_s)
            if domain in self.metrics.connected and self.metrics.connected.get(domain) is False \
                    and domain in self._seen_out:
                self.metrics.reconnects[domain] += 1
            self._seen_out.add(domain)
            self._outs[domain] = out
            self.metrics.connected[domain] = True
            return out

    # -- status ------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        if not self.status_interval_s:
            return
        while True:
            await asyncio.sleep(self.status_interval_s)
            await self._publish_status()

    async def _publish_status(self) -> None:
        self.metrics.waiting = sum(getattr(c, "waiting", 0) for c in self._inbound.values())
        if not self.status_interval_s or not self.status_topics:
            return
        body = json.dumps(self.metrics.status(), sort_keys=True).encode()
        conns = {**self._outs, **self._inbound}
        for domain, topic in self.status_topics.items():
            conn = conns.get(domain)
            if conn is None or not getattr(conn, "connected", True):
                continue
            try:
                await asyncio.wait_for(conn.publish(topic, body, [("guard-status", "1")]), 2)
            except (TransportError, OSError, TimeoutError):
                self.metrics.errors["status-publish"] += 1


def _hang_timeout_s(items: list[_Item]) -> float:
    """How long a batch's decisions may take before the watchdog calls it hung: past
    its time budget every decision would be a block anyway, so this only catches a
    pipeline that never returns."""
    per_flow: dict[str, tuple[float, int]] = {}
    for it in items:
        if it.route is not None:
            budget = it.route.policy.time_budget_ms / 1000.0
            per_flow[it.route.name] = (budget, per_flow.get(it.route.name, (0.0, 0))[1] + 1)
    total = sum(b * max(1.0, n / 64) for b, n in per_flow.values())
    return total + max((b for b, _ in per_flow.values()), default=1.0)


def _finding_dict(f: Finding) -> dict[str, object]:
    """``f.to_dict()`` without ``dataclasses.asdict``'s recursive copy (~10 us each)."""
    if type(f) is Finding:
        return {"rule": f.rule, "message": f.message, "start": f.start, "end": f.end}
    return f.to_dict()


def _output_hash(it: _Item) -> str:
    if it.output_sha256 is None:  # a bug: fail closed (the release is blocked)
        raise RuntimeError("an output without its SHA-256")
    return it.output_sha256


def _bad_id(mid: str) -> str:
    """Why a message id cannot be used to recognise redeliveries ('' if it can)."""
    if not mid or len(mid) > MAX_ID_CHARS:
        return f"message id must be 1-{MAX_ID_CHARS} characters"
    if _CONTROL.search(mid):
        return "message id holds control characters"
    return ""
