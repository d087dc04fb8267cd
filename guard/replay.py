"""Replay a capture under policies: what-if comparison and audit reproduction.

``replay(capture, new, baseline)`` decides every captured message under NEW (and,
with a baseline, under OLD) on all cores: the capture's blocks are split into
chunks (shrinking towards the end, so that the workers finish together); the
parent compiles one ``Pipeline`` per policy and warms it (``Pipeline.warm``)
before forking, then decides chunks itself alongside its forked children, which
inherit the pipelines; all take the next chunk from one shared counter and decide
it with ``decide_batch`` in full batches (what a chunk leaves short of one waits for
the worker's next chunk). Workers read their blocks from the file themselves, so
payloads never cross a pipe, and send back only aggregates plus the messages whose
outcome changed. The result feeds ``guard.report``.

``audit_replay(capture, audit_dirs)`` re-decides every captured message that an
audit log has a record of, under the policy the record names (found by its
bundle SHA-256, ``Policy.sha256``, among the policy files), and lists each record
whose verdict is not reproduced.

A message counts as *released* when something of it leaves now (``release`` or
``redact``); ``quarantine`` and ``block`` withhold it. A message is *changed* when
its verdict differs between the two policies or, released under both, what
leaves differs.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import mmap
import multiprocessing
import os
import pickle
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard._core import shared_fetch_add
from guard.capture import (
    BlockInfo,
    BlockReader,
    CaptureError,
    CaptureIndex,
    scan_capture,
)
from guard.decide import Decision, Pipeline
from guard.policy import Policy, PolicyError, load_policy

__all__ = [
    "RELEASED",
    "VERDICTS",
    "AuditMismatch",
    "AuditReplay",
    "Change",
    "PolicyInfo",
    "ReplayError",
    "ReplayResult",
    "Side",
    "audit_replay",
    "find_policy",
    "replay",
]

VERDICTS = ("release", "redact", "quarantine", "block")
RELEASED = frozenset({"release", "redact"})
# messages per decide_batch call: a batch's fixed costs (thread hand-off, batch index,
# scanner and re-check set-up, stage code and tables reloaded into the caches) were
# ~0.75 us/msg more at 256 than at 512; at 1024 the batch's buffers outgrow the caches
BATCH = 512
POLICIES_DIR = Path(__file__).resolve().parents[1] / "policies"


class ReplayError(Exception):
    """The replay cannot be run (bad capture, unknown policy ...); the message says why."""


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """What the report says about a policy."""

    path: str
    sha256: str
    flow: str
    destination: str          # e.g. "FVEY" or "PUBLIC"
    members: tuple[str, ...]  # countries every released message reaches

    @classmethod
    def of(cls, p: Policy) -> PolicyInfo:
        return cls(str(p.path), p.sha256, p.flow, ", ".join(p.destination),
                   tuple(sorted(p.members)))


@dataclass(frozen=True, slots=True)
class Side:
    """One policy's decision about one message, as the report needs it."""

    verdict: str
    out_bytes: int                                 # bytes released now (0 if withheld)
    findings: tuple[tuple[str, str, int, int], ...]  # (rule, message, start, end)

    @classmethod
    def of(cls, d: Decision) -> Side:
        out = len(d.output) if d.output is not None and d.verdict in RELEASED else 0
        return cls(d.verdict, out, tuple((f.rule, f.message, f.start, f.end)
                                         for f in d.findings))

    @property
    def released(self) -> bool:
        return self.verdict in RELEASED


@dataclass(frozen=True, slots=True)
class Change:
    """A message whose outcome differs between the baseline and the new policy."""

    index: int
    message_id: str
    flow: str
    size: int
    before: Side
    after: Side


@dataclass(slots=True)
class ReplayResult:
    """Everything a replay measured (see ``guard.report`` for the views)."""

    capture: str
    new: PolicyInfo
    baseline: PolicyInfo | None
    messages: int = 0
    bytes: int = 0
    torn: str | None = None
    seconds: float = 0.0
    workers: int = 1
    # (flow, destination, verdict) -> messages; "before" is empty without a baseline
    counts_after: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    counts_before: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    released_bytes_after: Counter[str] = field(default_factory=Counter)   # per flow
    released_bytes_before: Counter[str] = field(default_factory=Counter)
    rules_after: Counter[str] = field(default_factory=Counter)   # finding rule -> messages
    rules_before: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)

    @property
    def msgs_per_s(self) -> float:
        """Messages replayed per second of wall time (both policies per message)."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def by_verdict(self, after: bool = True) -> dict[str, int]:
        """Messages per verdict (all flows)."""
        c = self.counts_after if after else self.counts_before
        out = dict.fromkeys(VERDICTS, 0)
        for (_, _, v), n in c.items():
            out[v] = out.get(v, 0) + n
        return out

    def newly_released(self) -> list[Change]:
        """Changes where NEW releases what OLD withheld."""
        return [c for c in self.changes if c.after.released and not c.before.released]

    def newly_withheld(self) -> list[Change]:
        """Changes where NEW withholds what OLD released."""
        return [c for c in self.changes if c.before.released and not c.after.released]

    def sharing_gained(self) -> dict[str, dict[str, Any]]:
        """Per partner (NEW's destination): messages and bytes newly released, and
        extra bytes released in messages both policies release."""
        dest = self.new.destination
        gained = self.newly_released()
        more = [c for c in self.changes if c.before.released and c.after.released]
        return {dest: {
            "members": list(self.new.members),
            "messages": len(gained),
            "bytes": sum(c.after.out_bytes for c in gained),
            "more_bytes_in_released": sum(max(0, c.after.out_bytes - c.before.out_bytes)
                                          for c in more),
            "messages_withdrawn": len(self.newly_withheld()),
        }}

    def risk_added(self) -> dict[str, dict[str, Any]]:
        """Messages NEW releases that OLD withheld, grouped by the finding rule OLD had
        (each message counted once per distinct rule), with the commonest reasons."""
        groups: dict[str, dict[str, Any]] = {}
        for c in self.newly_released():
            reasons: dict[str, Counter[str]] = {}
            for rule, msg, _, _ in c.before.findings:
                reasons.setdefault(rule, Counter())[msg] += 1
            for rule, msgs in reasons.items():
                g = groups.setdefault(rule, {"messages": 0, "bytes": 0, "reasons": Counter()})
                g["messages"] += 1
                g["bytes"] += c.after.out_bytes
                g["reasons"].update(msgs.keys())
        for g in groups.values():
            g["reasons"] = [{"reason": r, "messages": n}
                            for r, n in g["reasons"].most_common(5)]
        return dict(sorted(groups.items(), key=lambda kv: -kv[1]["messages"]))


# ---------------------------------------------------------------------------- workers

_STATE: dict[str, Any] = {}
# pipelines the parent compiled and warmed for the workers it is about to fork (fork
# context: each child inherits them copy-on-write instead of compiling its own)
_FORKED: dict[str, Pipeline] = {}


def _load(path: str, sha: str) -> Policy:
    pol = load_policy(path)
    if pol.sha256 != sha:  # the file changed between the parent's load and ours
        raise ReplayError(f"{path} changed while the replay started (sha256 {pol.sha256})")
    return pol


def _init(policies: dict[str, str], wanted: dict[str, list[str]] | None,
          slot: Any = None) -> None:
    """Worker initializer: in a child, pin it to a core of its own (``slot``: the core,
    or a shared counter handing out core numbers; None in the calling process) and let
    it keep its heap; then take the pipelines compiled before forking (``_FORKED``) or compile one
    per policy (sha256 -> path) and, in a child, freeze what it holds out of the
    garbage collector's sight.

    Never raises (a raising initializer makes a process pool restart workers for
    ever): the failure is kept and raised by the first task instead."""
    _STATE.clear()
    if slot is not None:
        _pin(slot)
        _keep_heap()
    try:
        if _FORKED and policies.keys() <= _FORKED.keys():  # compiled before forking
            _STATE["pipes"] = {sha: _FORKED[sha] for sha in policies}
        else:
            _STATE["pipes"] = _compile(policies)
    except Exception as exc:
        _STATE["error"] = f"a worker could not compile the policy: {type(exc).__name__}: {exc}"
    _STATE["wanted"] = wanted
    if slot is not None:  # a worker process: what it built lives as long as it does
        gc.freeze()


# policies the caller has just loaded (sha256 -> Policy), compiled as they are instead of
# being loaded again from their files (in this process, and in children forked from it)
_LOADED: dict[str, Policy] = {}


def _compile(policies: dict[str, str]) -> dict[str, Pipeline]:
    """One pipeline per policy (sha256 -> path); raises when one cannot be built."""
    return {sha: Pipeline(_LOADED.get(sha) or _load(path, sha))
            for sha, path in policies.items()}


def _keep_heap() -> None:
    """Let this worker's malloc keep freed memory for reuse (glibc; elsewhere a no-op).

    A worker allocates and frees a few 1 MB buffers per batch (the batch's joined
    messages, the re-check's, inflated blocks): left to glibc's defaults, these may be
    mapped afresh and returned to the kernel again and again, every new page faulting
    and being zeroed (system time was ~10% of a worker's CPU time). A worker lives for
    one replay: holding on to its peak heap costs nothing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)   # blocks up to 32 MB from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)    # never trim the heap's top


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def _pin(slot: Any) -> None:
    """Pin this process to core ``slot`` (an int) or to the next core of its allowed set
    (``slot``: a shared counter): one worker per core, so that a worker's caches stay
    warm and two never share a core while one idles."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if isinstance(slot, int):  # -1: no core to take
            if slot >= 0:
                os.sched_setaffinity(0, {slot})
            return
        cpus = sorted(os.sched_getaffinity(0))
        with slot.get_lock():
            k = slot.value
            slot.value += 1
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[k % len(cpus)]})


def _cores() -> tuple[int | None, list[int]]:
    """The core this process is to keep while it decides and, in order, those left to
    its children: the core it runs on now (pinned there, it is not moved: a move to a
    busy core waited there for a time slice, 3-6 ms on a loaded machine), else the
    first of its allowed set. (None, []) where cores cannot be chosen."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, []
    me = cpus[0]
    with contextlib.suppress(AttributeError, OSError, ValueError):
        now = ctypes.CDLL(None).sched_getcpu()
        if now in cpus:
            me = now
    return me, [c for c in cpus if c != me]


def _pin_self(core: int | None = None) -> set[int] | None:
    """Pin this process to ``core`` (default: the first of its allowed set; its children
    take the others) while it decides; returns the set to restore (None: nothing
    changed).

    Unpinned, the thread that runs a batch (the pipeline's watchdog worker) and the one
    that hands it over and collects the decisions were moved between cores, each move
    cold in the caches (~1 us/msg)."""
    try:
        cpus = os.sched_getaffinity(0)
        if len(cpus) > 1:
            os.sched_setaffinity(0, {min(cpus) if core is None else core})
            return cpus
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _unpin_self(old: set[int] | None) -> None:
    if old is not None:
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, old)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk is decided: decisions build no
    cycles, and its passes over the many short-lived objects cost ~5% of the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _pipes() -> dict[str, Pipeline]:
    if "error" in _STATE:
        raise ReplayError(_STATE["error"])
    return _STATE["pipes"]


def _decide(pipe: Pipeline, payloads: list[bytes], ids: list[str]) -> list[Decision]:
    """Decide in batches of about ``BATCH`` (a multiple of it: exactly; otherwise equal
    batches of BATCH / 2 to 3 * BATCH / 2, never a small one left at the end)."""
    n = len(payloads)
    if not n:
        return []
    size = -(-n // max(1, round(n / BATCH)))
    out: list[Decision] = []
    for i in range(0, n, size):
        out += pipe.decide_batch(payloads[i:i + size], ids[i:i + size])
    return out


def _compare_chunk(task: tuple[str, list[BlockInfo], str, str | None,
                               frozenset[str] | None]) -> dict[str, Any]:
    """Decide one chunk under NEW (and OLD); aggregates and the changed messages of
    what was decided. In forked workers, fewer than ``BATCH`` selected messages left at
    the chunk's end are carried over to the worker's next chunk (``_compare_flush``
    decides what is left at the end); in a process pool each chunk is decided in full.

    Block by block: a worker holds at most one block's messages plus fewer than
    ``BATCH`` carried over from the blocks (and chunks) before."""
    with _no_gc():
        return _compare(*task)


def _compare_flush() -> dict[str, Any] | None:
    """Decide the messages this worker carried over from its last chunk (None if it took
    no chunk)."""
    carry: _Carry | None = _STATE.get("carry")
    if carry is None:
        return None
    carry.close()
    with _no_gc():
        carry.decide(final=True)
        return carry.take()


def _new_agg() -> dict[str, Any]:
    return {"messages": 0, "bytes": 0, "read": 0, "queued": 0, "ca": Counter(), "cb": Counter(),
            "ra": Counter(), "rb": Counter(), "fa": Counter(), "fb": Counter(),
            "changes": []}


class _Carry:
    """A worker's messages not decided yet, and the aggregates of those decided since the
    last ``take``.

    Messages are decided in full batches of BATCH across block and chunk boundaries: a
    block rarely holds a multiple of BATCH records (~257 at 4 KB), and the short batch
    left at each block's (or chunk's) end cost as much as a few hundred messages (a
    batch's fixed cost: thread hand-off, batch index, scanner set-up)."""

    __slots__ = ("agg", "flows_of", "ids", "index", "new_sha", "old_sha", "payloads",
                 "pipes", "reader")

    def __init__(self, pipes: dict[str, Pipeline], new_sha: str, old_sha: str | None) -> None:
        self.pipes, self.new_sha, self.old_sha = pipes, new_sha, old_sha
        self.payloads: list[bytes] = []
        self.ids: list[str] = []
        self.flows_of: list[str] = []
        self.index: list[int] = []
        self.agg = _new_agg()
        self.reader: BlockReader | None = None  # the capture, open while chunks come

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def add(self, path: str, block: BlockInfo, flows: frozenset[str] | None) -> None:
        """Read ``block`` and queue its messages (those of ``flows``)."""
        if self.reader is None or self.reader.path != path:
            self.close()
            self.reader = BlockReader(path)
        recs = self.reader.read(block)
        had = len(self.payloads)
        if flows is None:
            self.payloads += recs.payloads
            self.ids += recs.ids
            self.flows_of += recs.flows
            self.index += range(block.first, block.first + len(recs.ids))
        else:
            for k, f in enumerate(recs.flows):
                if f in flows:
                    self.payloads.append(recs.payloads[k])
                    self.ids.append(recs.ids[k])
                    self.flows_of.append(f)
                    self.index.append(block.first + k)
        self.agg["read"] += len(recs.ids)
        self.agg["queued"] += len(self.payloads) - had

    def decide(self, final: bool = False) -> None:
        """Decide the queued messages in full batches (all of them when ``final``)."""
        n = len(self.payloads) if final else len(self.payloads) // BATCH * BATCH
        if n:
            _compare_batch(self.pipes, self.new_sha, self.old_sha, self.payloads[:n],
                           self.ids[:n], self.flows_of[:n], self.index[:n], self.agg)
            del self.payloads[:n], self.ids[:n], self.flows_of[:n], self.index[:n]

    def take(self) -> dict[str, Any]:
        """The aggregates since the last ``take`` (then reset)."""
        agg, self.agg = self.agg, _new_agg()
        return agg


def _compare(path: str, blocks: list[BlockInfo], new_sha: str, old_sha: str | None,
             flows: frozenset[str] | None) -> dict[str, Any]:
    carry: _Carry | None = _STATE.get("carry")
    if carry is None or (carry.new_sha, carry.old_sha) != (new_sha, old_sha):
        if carry is not None:  # never mixes policies (one replay per worker's life)
            raise ReplayError("a replay worker was handed chunks of two replays")
        carry = _STATE["carry"] = _Carry(_pipes(), new_sha, old_sha)
    for block in blocks:
        carry.add(path, block, flows)
        carry.decide()
    # the end's single blocks leave nothing behind: when the chunks run out, what a
    # worker still had to do would be unseen by the shared counter that balances them
    # (up to BATCH - 1 messages, ~8 ms of one core). Without a flush (a process pool's
    # worker), nothing may be left behind at all.
    if len(blocks) == 1 or not _STATE.get("carry_over"):
        carry.decide(final=True)
    if not _STATE.get("carry_over"):
        carry.close()
    return carry.take()


def _compare_batch(pipes: dict[str, Pipeline], new_sha: str, old_sha: str | None,
                   payloads: list[bytes], ids: list[str], flows_of: list[str],
                   index: list[int], agg: dict[str, Any]) -> None:
    """Decide messages under NEW (and OLD) and add them to the aggregates ``agg``."""
    after = _decide(pipes[new_sha], payloads, ids)
    before = _decide(pipes[old_sha], payloads, ids) if old_sha else None
    agg["messages"] += len(payloads)
    agg["bytes"] += sum(map(len, payloads))
    _tally(after, flows_of, agg["ca"], agg["ra"], agg["fa"])
    if before is None:
        return
    _tally(before, flows_of, agg["cb"], agg["rb"], agg["fb"])
    changes = agg["changes"]
    for k, (a, b) in enumerate(zip(after, before, strict=True)):
        if a.verdict != b.verdict or (a.verdict in RELEASED and a.output != b.output):
            changes.append(Change(index[k], ids[k], flows_of[k], len(payloads[k]),
                                  Side.of(b), Side.of(a)))


def _tally(ds: Sequence[Decision], flows: Sequence[str], counts: Counter[tuple[str, str]],
           released: Counter[str], rules: Counter[str]) -> None:
    """Add decisions to the per-(flow, verdict) counts, released bytes per flow and
    messages per finding rule (each rule once per message).

    Column-wise, so that the counting runs in Counter's C loop rather than one Python
    statement per message per counter."""
    kinds = set(flows)
    if len(kinds) == 1:  # the common case: one flow per capture
        flow = next(iter(kinds))
        per = Counter([d.verdict for d in ds])  # (same key order as counting the pairs)
        counts.update({(flow, v): n for v, n in per.items()})
        out = [len(d.output) for d in ds if d.verdict in RELEASED and d.output is not None]
        if out:
            released[flow] += sum(out)
    else:
        counts.update(zip(flows, [d.verdict for d in ds], strict=True))
        rel: dict[str, int] = {}
        for flow, d in zip(flows, ds, strict=True):
            if d.verdict in RELEASED and d.output is not None:
                rel[flow] = rel.get(flow, 0) + len(d.output)
        released.update(rel)
    got: list[str] = []
    for d in ds:
        fs = d.findings
        if fs:  # most have one finding: no set of its rules to build
            if len(fs) == 1:
                got.append(fs[0].rule)
            else:
                got += {f.rule for f in fs}
    rules.update(got)


def _chunks(blocks: Sequence[BlockInfo], workers: int) -> list[list[BlockInfo]]:
    """Contiguous runs of blocks in file order, shrinking as the file is handed out
    (each a share of what is left, ending with single blocks): few tasks, and the
    workers finish within about one block of each other."""
    out: list[list[BlockInfo]] = []
    i, n = 0, len(blocks)
    while i < n:
        size = max(1, (n - i) // (2 * workers))
        out.append(list(blocks[i:i + size]))
        i += size
    return out


def _run_pool(fn: Any, tasks: list[Any], policies: dict[str, str], workers: int,
              wanted: dict[str, list[str]] | None = None, flush: Any = None) -> list[Any]:
    """``fn`` over ``tasks`` on ``workers`` processes (in this process for one), then, in
    each process that ran some, ``flush()`` (when given: what ``fn`` left for it; its
    results follow the tasks', None left out); ``ReplayError`` if a worker fails or
    dies: nothing is reported from a partial run."""
    if workers <= 1 or len(tasks) <= 1:
        _init(policies, wanted)
        try:
            _STATE["carry_over"] = flush is not None
            out = [fn(t) for t in tasks]
            last = flush() if flush is not None else None
            return out if last is None else [*out, last]
        finally:
            _STATE.clear()
    # fork: workers start at once, and the parent (the CLI) holds no lock a child needs
    fork = os.name == "posix"
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    if fork:
        # compiled once here and warmed (lazy imports, first calls) on built-in samples:
        # every child inherits them instead of compiling and warming up its own
        try:
            _FORKED.update(_compile(policies))
        except Exception as exc:
            raise ReplayError(f"a worker could not compile the policy: "
                              f"{type(exc).__name__}: {exc}") from None
        for pipe in _FORKED.values():
            pipe.warm()
    try:
        if not fork:
            slot = ctx.Value("i", 0)
            with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx,
                                     initializer=_init, initargs=(policies, wanted, slot)) as pool:
                return list(pool.map(fn, tasks))
        return _run_forked(fn, tasks, policies, workers, wanted, flush)
    except BrokenProcessPool as exc:
        raise ReplayError(f"a replay worker died: {exc}") from None
    finally:
        _FORKED.clear()
        _DRAIN.clear()


# fork only: the function, the tasks and the shared next-task counter, inherited by the
# children (set before they are forked)
_DRAIN: dict[str, Any] = {}


def _drain() -> list[tuple[int, Any]]:
    """Take the next task (each exactly once, in order) until none is left; returns
    (index, result) of each task done here, then (-1, result of ``flush``) when there is
    a flush that has a result."""
    fn, tasks, nxt, flush = _DRAIN["fn"], _DRAIN["tasks"], _DRAIN["next"], _DRAIN["flush"]
    _STATE["carry_over"] = flush is not None
    out: list[tuple[int, Any]] = []
    while (k := shared_fetch_add(nxt)) < len(tasks):
        out.append((k, fn(tasks[k])))
    last = flush() if flush is not None else None
    if last is not None:
        out.append((-1, last))
    return out


def _run_forked(fn: Any, tasks: list[Any], policies: dict[str, str], workers: int,
                wanted: dict[str, list[str]] | None, flush: Any = None) -> list[Any]:
    """``fn`` over ``tasks`` on this process and ``workers - 1`` forked children, all
    taking tasks from one shared counter. This process works too: it is warm (its
    heap, and the pipelines it compiled and warmed), where a child starts cold (its
    first batches pay for copy-on-write faults and a fresh heap), and one process
    fewer is started.

    The children are plain forks, each sending back its pickled results through a pipe
    of its own: a process pool took ~7 ms to start them and ~3 ms to shut down (its
    queues, feeder and manager threads), with the other core idle."""
    nxt = mmap.mmap(-1, 8)  # the next task: an integer shared with the children
    _DRAIN.update(fn=fn, tasks=tasks, next=nxt, flush=flush)

    def stop() -> None:  # the others end after their current task
        shared_fetch_add(nxt, len(tasks))

    me, others = _cores()  # this process keeps its core; each child takes another
    got: list[tuple[int, Any]] = []
    children: list[tuple[int, int]] = []   # (pid, read end of its pipe)
    try:
        for i in range(min(workers, len(tasks)) - 1):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns into the caller's code
                os.close(r)
                _child(w, policies, wanted, others[i % len(others)] if others else -1)
            os.close(w)
            children.append((pid, r))
        _init(policies, wanted)
        # after the forks: no child inherits the pin, each still sees every core
        old = _pin_self(me) if others else None
        try:
            got += _drain()
        finally:
            _STATE.clear()
            _unpin_self(old)
    except BaseException:
        stop()
        _collect(children)
        raise
    for res in _collect(children):
        got += res
    if sorted(k for k, _ in got if k >= 0) != list(range(len(tasks))):
        raise ReplayError("the replay workers did not decide every chunk exactly once")
    return [r for _, r in sorted(got, key=lambda kr: kr[0])]


def _child(w: int, policies: dict[str, str], wanted: dict[str, list[str]] | None,
           core: int) -> None:
    """A forked worker pinned to ``core`` (-1: none): decide tasks until none is left,
    write ``("ok", results)`` or ``("error", exception)`` pickled to ``w``, and exit
    (never returns)."""
    code = 1
    try:
        try:
            _init(policies, wanted, core)
            out: tuple[str, Any] = ("ok", _drain())
        except BaseException as exc:  # the parent raises it (a worker died: ReplayError)
            out = ("error", exc)
        try:
            data = pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle: its text
            data = pickle.dumps(("error", ReplayError(f"a replay worker failed: "
                                                      f"{type(out[1]).__name__}: {out[1]}")))
        with open(w, "wb") as f:
            f.write(data)
        code = 0
    finally:
        os._exit(code)  # no atexit handlers, no flushing the parent's buffers twice


def _collect(children: list[tuple[int, int]]) -> list[Any]:
    """Each child's results (read to the end of its pipe, then reaped); raises the
    first failure: the exception a child sent, or ``ReplayError`` for one that died."""
    results: list[Any] = []
    failure: BaseException | None = None
    for pid, r in children:
        with open(r, "rb") as f:
            data = f.read()
        try:
            kind, value = pickle.loads(data) if data else ("died", None)
        except Exception:
            kind, value = "died", None
        if kind == "ok":
            # its results are whole: reaped in the background (a child's exit, its
            # address space torn down, took ~1-2 ms)
            threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
            if failure is None:
                results.append(value)
            continue
        _, status = os.waitpid(pid, 0)
        if failure is not None:
            continue
        if kind == "error":
            failure = value
        else:
            failure = ReplayError(f"a replay worker died (exit status "
                                  f"{os.waitstatus_to_exitcode(status)})")
    if failure is not None:
        raise failure
    return results


def _scan(capture: str | os.PathLike[str]) -> CaptureIndex:
    try:
        return scan_capture(capture)
    except CaptureError as exc:
        raise ReplayError(str(exc)) from None


def _policy(path: str | os.PathLike[str]) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise ReplayError(f"invalid policy:\n{exc}") from None
    except OSError as exc:
        raise ReplayError(f"cannot read policy {path}: {exc.strerror or exc}") from None


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def replay(capture: str | os.PathLike[str], new: str | os.PathLike[str],
           baseline: str | os.PathLike[str] | None = None, *, workers: int | None = None,
           flows: Iterable[str] | None = None) -> ReplayResult:
    """Decide every message of ``capture`` under ``new`` (and ``baseline``).

    ``flows`` limits the replay to messages of those flows. Raises ``ReplayError``.
    """
    idx = _scan(capture)
    pn = _policy(new)
    po = _policy(baseline) if baseline is not None else None
    workers = workers or default_workers()
    policies = {pn.sha256: str(pn.path)}
    if po is not None:
        policies[po.sha256] = str(po.path)
    res = ReplayResult(str(capture), PolicyInfo.of(pn), PolicyInfo.of(po) if po else None,
                       torn=idx.torn, workers=workers)
    fl = frozenset(flows) if flows is not None else None
    tasks = [(str(idx.path), c, pn.sha256, po.sha256 if po else None, fl)
             for c in _chunks(idx.blocks, workers)]
    t0 = time.perf_counter()
    _LOADED.update({p.sha256: p for p in (pn, po) if p is not None})
    try:
        parts = _run_pool(_compare_chunk, tasks, policies, workers, flush=_compare_flush)
    except CaptureError as exc:
        raise ReplayError(str(exc)) from None
    finally:
        _LOADED.clear()
    res.seconds = time.perf_counter() - t0
    dn = res.new.destination
    do = res.baseline.destination if res.baseline else ""
    for part in parts:
        res.messages += part["messages"]
        res.bytes += part["bytes"]
        for (flow, v), n in part["ca"].items():
            res.counts_after[(flow, dn, v)] += n
        for (flow, v), n in part["cb"].items():
            res.counts_before[(flow, do, v)] += n
        res.released_bytes_after.update(part["ra"])
        res.released_bytes_before.update(part["rb"])
        res.rules_after.update(part["fa"])
        res.rules_before.update(part["fb"])
        res.changes += part["changes"]
    # every message read exactly once, and every one queued decided (none left carried)
    if (sum(p["read"] for p in parts) != idx.messages
            or sum(p["queued"] for p in parts) != res.messages):
        raise ReplayError("the replay workers did not decide every message exactly once")
    res.changes.sort(key=lambda c: c.index)
    return res


# ---------------------------------------------------------------------------- audit

@dataclass(frozen=True, slots=True)
class AuditMismatch:
    """A recorded decision the replay did not reproduce."""

    message_id: str
    recorded: str
    reproduced: str
    policy_sha256: str
    why: str = ""            # e.g. the captured payload is not the recorded input

    def to_dict(self) -> dict[str, str]:
        return {"message_id": self.message_id, "recorded": self.recorded,
                "reproduced": self.reproduced, "policy_sha256": self.policy_sha256,
                "why": self.why}


@dataclass(slots=True)
class AuditReplay:
    """Outcome of ``audit_replay``."""

    capture: str
    records: int = 0              # records about captured messages
    reproduced: int = 0
    mismatches: list[AuditMismatch] = field(default_factory=list)
    not_in_capture: int = 0       # records about messages the capture does not hold
    unaudited: int = 0            # captured messages with no record
    policies: dict[str, str] = field(default_factory=dict)   # sha256 -> policy file
    problems: list[str] = field(default_factory=list)        # damaged logs, torn capture
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.records > 0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "capture": self.capture, "records": self.records,
                "reproduced": self.reproduced,
                "mismatches": [m.to_dict() for m in self.mismatches],
                "not_in_capture": self.not_in_capture, "unaudited": self.unaudited,
                "policies": self.policies, "problems": self.problems,
                "seconds": round(self.seconds, 3)}


def find_policy(sha256: str, candidates: Iterable[str | os.PathLike[str]]) -> Path | None:
    """The first policy file among ``candidates`` (files, or directories of *.yaml) whose
    ``Policy.sha256`` (the bundle hash: the YAML and every list it references) is
    ``sha256``. Files that do not load as policies are skipped."""
    for c in candidates:
        p = Path(c)
        files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
        for f in files:
            try:
                if load_policy(f).sha256 == sha256:
                    return f
            except (PolicyError, OSError):
                continue
    return None


def _audit_chunk(task: tuple[str, list[BlockInfo]]) -> list[tuple[str, str, str, str]]:
    """(message_id, input sha256, policy sha256, verdict) for every recorded message.

    Per policy, messages are decided in full batches across blocks (as ``_compare``
    does); at most one block plus fewer than ``BATCH`` per policy are held."""
    path, blocks = task
    wanted: dict[str, list[str]] = _STATE["wanted"]
    out: list[tuple[str, str, str, str]] = []
    pending: dict[str, list[tuple[str, bytes]]] = {}

    def run(sha: str, items: list[tuple[str, bytes]]) -> None:
        ds = _decide(_pipes()[sha], [p for _, p in items], [i for i, _ in items])
        out.extend((mid, hashlib.sha256(p).hexdigest(), sha, d.verdict)
                   for (mid, p), d in zip(items, ds, strict=True))

    with BlockReader(path) as reader:
        for block in blocks:
            recs = reader.read(block)
            for mid, payload in zip(recs.ids, recs.payloads, strict=True):
                for sha in wanted.get(mid, ()):
                    pending.setdefault(sha, []).append((mid, payload))
            for sha, items in pending.items():
                full = len(items) // BATCH * BATCH
                if full:
                    run(sha, items[:full])
                    del items[:full]
    for sha, items in pending.items():
        if items:
            run(sha, items)
    return out


def audit_replay(capture: str | os.PathLike[str], audit_dirs: Sequence[str | os.PathLike[str]],
                 *, policies: Sequence[str | os.PathLike[str]] = (),
                 workers: int | None = None) -> AuditReplay:
    """Re-decide every recorded, captured message under its recorded policy.

    Policies are looked up by SHA-256 among ``policies`` (files or directories),
    then the shipped policies/ directory. ``ReplayError`` if a needed policy is
    found nowhere or the capture or a log cannot be read.
    """
    from guard.audit.verify import analyse  # audit is only needed for this mode

    idx = _scan(capture)
    out = AuditReplay(str(capture))
    if idx.torn:
        out.problems.append(f"capture: {idx.torn}")
    # message ids in the capture, without decoding payload twice later
    captured: set[str] = set()
    try:
        with BlockReader(idx.path) as reader:
            for b in idx.blocks:
                captured.update(reader.read(b).ids)
    except CaptureError as exc:
        raise ReplayError(str(exc)) from None
    records: dict[str, list[tuple[str, str, str]]] = {}   # mid -> [(policy, input, verdict)]
    for d in audit_dirs:
        rep = analyse(d, None, allow_tail=True)
        if not rep.ok:
            out.problems += [f"{d}: {p}" for p in rep.problems]
        if not rep.parsed and rep.problems:
            raise ReplayError(f"{d}: cannot read the audit log: {rep.problems[0]}")
        for s in rep.parsed:
            if s is None:
                continue
            r = s.record
            if r.message_id not in captured:
                out.not_in_capture += 1
                continue
            records.setdefault(r.message_id, []).append(
                (r.policy_sha256, r.input_sha256, r.verdict))
    out.records = sum(map(len, records.values()))
    out.unaudited = len(captured - records.keys())
    if not out.records:
        return out
    shas = sorted({p for recs in records.values() for p, _, _ in recs})
    unknown = []
    for sha in shas:
        f = find_policy(sha, [*policies, POLICIES_DIR])
        if f is None:
            unknown.append(sha)
        else:
            out.policies[sha] = str(f)
    if unknown:
        where = ", ".join([*(str(p) for p in policies), str(POLICIES_DIR)])
        raise ReplayError("the recorded policy is not available: no policy file has SHA-256 "
                          f"{', '.join(unknown)} (searched {where}); give it with --policy")
    for path in out.policies.values():
        _policy(path)  # validate before forking workers
    wanted = {mid: sorted({p for p, _, _ in recs}) for mid, recs in records.items()}
    workers = workers or default_workers()
    tasks = [(str(idx.path), c) for c in _chunks(idx.blocks, workers)]
    t0 = time.perf_counter()
    parts = _run_pool(_audit_chunk, tasks, out.policies, workers, wanted)
    out.seconds = time.perf_counter() - t0
    got: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for part in parts:
        for mid, inp, sha, verdict in part:
            got.setdefault((mid, sha), []).append((inp, verdict))
    for mid, recs in records.items():
        for sha, inp, verdict in recs:
            cands = got.get((mid, sha), [])
            same = [v for i, v in cands if i == inp]
            if not same:
                seen = cands[0][1] if cands else "-"
                out.mismatches.append(AuditMismatch(
                    mid, verdict, seen, sha, "the captured payload is not the recorded input "
                    "(SHA-256 differs)"))
            elif verdict not in same:
                out.mismatches.append(AuditMismatch(mid, verdict, same[0], sha))
            else:
                out.reproduced += 1
    out.mismatches.sort(key=lambda m: m.message_id)
    return out
