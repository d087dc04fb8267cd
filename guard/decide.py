"""The decision pipeline: parse -> scan -> decide -> redact -> re-check, failing closed.

``Pipeline(policy)`` compiles the scanners once. Each message runs through an explicit,
linear chain of stages (``Pipeline.stages``, NIST AC-4(28)/(29)); a message may leave only
if every stage ran, in order, and completed. An exception, the per-message time budget
(``limits.time_budget_ms``: checked between stages, and a watchdog for a stage that hangs)
or a resource limit blocks the message with an ``internal-error`` finding. In a batch
of n messages, which advance stage by stage together, each message's budget is
budget x max(1, n/64), and the watchdog blocks the whole batch when no stage completes
on any message for one budget.

Batches (``decide_batch``) are fast for the common shapes: the parse stage indexes the
whole batch in one pass of the Cython core (``messages.BatchIndex``: banners, portion
lines, tearline sections, each distinct mark and banner interned once per pipeline), the
scan stage counts in the core the matches outside banners and marks, and a message with
a true banner and no match the decision would act on (none, or only matches of
``scope: released`` lists in withheld portions) is decided on the index without building
a ``Message``: released unchanged when the policy releases all its marks (judged once per
distinct mark), else its withheld portions dropped, its best releasable tearline section
released alone, or the whole message blocked (``nothing-releasable``,
``partial-release-disallowed``), with the findings built in the core (whether any
match matters is judged for the whole batch in one pass of the core, on the scan's rows).
Any other indexed message (a false banner, matches the decision acts on) is decided by
``DecideStage.run_indexed``: the steps of ``run`` on the index's rows and the per-mark
tables, its output written by ``redact.build_text``, still without a ``Message``. A
message whose only fault is invalid portion marks is blocked from the index with the
parser's findings. Every other message (JSON, bad or display-changing UTF-8, a non-ASCII
banner, malformed, or a lane indicator in a portion) takes the per-message path
(``Stage.run``), which explains what it finds; tests/test_decide_fastpath.py and
tests/test_decide_batchpaths.py check that the paths decide identically. The cyclic
garbage collector is paused while batches run.

Verdicts: ``release`` (the input leaves unchanged), ``redact`` (non-releasable portions,
PII or matched terms removed, banners recomputed, or a tearline section released on its
own), ``quarantine`` (held for two human reviewers; ``Decision.candidate`` is what would
leave) and ``block``. Every verdict but ``release`` carries at least one finding. Finding
spans are byte offsets in the message (for JSON: in its normalised text, see messages.py).
Findings never quote a matched term: they name the list and point at the span.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from guard._core import SlotMaker, msgidx_ignorable, msgidx_offsets, msgidx_real_matches
from guard.findings import Finding
from guard.markings import Marking, check_banner, classification_rank, releasable
from guard.messages import BatchIndex, MarkIndex, Message, parse_mark, parse_message
from guard.messages import portion_marking as _first_pass_mark
from guard.policy import Policy, TermListSpec
from guard.recheck import Rechecker, build_lists
from guard.redact import Plan, build_lines, build_output, build_text
from guard.scanner import Match, Scanner
from guard.selftest import check_scanner

__all__ = ["RULES", "STAGES", "Decision", "Pipeline", "Stage", "decide"]

STAGES = ("parse", "scan", "decide", "redact", "recheck")
_ALL_STAGES = list(STAGES)

#: Every rule id the decision engine can emit (besides scanner/markings findings it wraps).
RULES = (
    "message-encoding", "message-format", "message-size", "message-limit",
    "banner-missing", "banner-invalid", "banner-mismatch", "banner-rollup",
    "portion-unmarked", "portion-invalid", "tearline-format",
    "classification-exceeds", "sci-not-allowed", "sap-not-allowed", "not-releasable",
    "partial-release-disallowed", "nothing-releasable", "tearline-release",
    "dirty-term", "pii", "us-person", "encoded-content", "scan-error",
    "recheck-failed", "internal-error",
)


@dataclass(slots=True)
class Decision:
    """The outcome for one message."""

    verdict: str
    findings: list[Finding]
    output: bytes | None
    banner: str | None
    policy_sha256: str
    message_id: str = ""
    format: str = ""
    candidate: bytes | None = None        # quarantine: what would leave after approval
    lanes: tuple[str, ...] = ()           # lanes every released portion is in
    auto_release: bool = False            # quarantine: may release at the review deadline

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``guard inspect --json``)."""
        return {
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "output": None if self.output is None else self.output.decode("utf-8", "replace"),
            "banner": self.banner,
            "policy_sha256": self.policy_sha256,
            "message_id": self.message_id,
            "format": self.format,
            "lanes": list(self.lanes),
        }


class _Ctx:
    """Per-message state carried along the stage chain.

    Slots, each set in ``__init__``: a batch makes one per message and the stages read
    its fields dozens of times (a field left to a class default costs a failed instance
    lookup, then the class's, on every read)."""

    __slots__ = ("_matches", "_msg", "auto", "banner", "blocked", "candidate", "completed",
                 "data", "deadline", "findings", "ign", "ix", "keep", "lanes",
                 "message_id", "output", "plain", "plan", "quarantine", "real", "rewrite",
                 "scan", "scanned", "spans", "verdict")

    _msg: Message | None
    ix: tuple[BatchIndex, int] | None  # indexed by the batch parse
    real: int            # indexed: scan matches outside banners and marks
    plain: bool          # decided on the index: released unchanged
    keep: tuple[list[tuple[int, int]], int] | None  # index: lines kept, marks
    # decided on the index by ``run_indexed``: per portion its line start, end, mark id
    spans: tuple[list[int], list[int], list[int]] | None
    _matches: Sequence[Match] | None
    scan: tuple[Any, int] | None  # indexed: (BatchResult, row) holding its matches
    ign: bool | None  # indexed: no outcome acts on its matches (msgidx_ignorable)
    # (BatchResult, row) of a clean (unflagged) scan of exactly ``data``, for the re-check
    scanned: tuple[Any, int] | None
    blocked: bool
    quarantine: bool
    rewrite: bool
    plan: Plan | None
    verdict: str
    output: bytes | None
    candidate: bytes | None
    banner: str | None
    lanes: tuple[str, ...]
    auto: bool
    data: bytes
    message_id: str
    deadline: float
    completed: list[str]
    findings: list[Finding]

    def __init__(self, data: bytes, message_id: str, budget_s: float,
                 now: float | None = None) -> None:
        self.data = data
        self.message_id = message_id
        self.deadline = (time.perf_counter() if now is None else now) + budget_s
        self.completed = []
        self.findings = []
        self._msg = self.ix = self.keep = self.spans = self._matches = self.scan = None
        self.ign = self.scanned = self.plan = self.output = self.candidate = None
        self.banner = None
        self.real = -1
        self.plain = self.blocked = self.quarantine = self.rewrite = self.auto = False
        self.verdict = ""
        self.lanes = ()

    @property
    def msg(self) -> Message | None:
        """The parsed message; built from the batch index on first use when indexed."""
        if self._msg is None and self.ix is not None:
            self._msg = self.ix[0].message(self.ix[1])
        return self._msg

    @msg.setter
    def msg(self, value: Message | None) -> None:
        self._msg = value
        self.ix = None

    @property
    def matches(self) -> Sequence[Match]:
        """The scan's matches; built from the batch result on first use when indexed."""
        if self._matches is None:
            self._matches = () if self.scan is None else self.scan[0].matches_for(self.scan[1])
        return self._matches

    @matches.setter
    def matches(self, value: Sequence[Match]) -> None:
        self._matches = value
        self.scan = None

    @property
    def parsed(self) -> bool:
        """A parse result exists (indexed or parsed), without building it."""
        return self._msg is not None or self.ix is not None

    def block(self, findings: Sequence[Finding]) -> None:
        self.blocked = True
        self.findings.extend(findings)


#: ``Finding(rule, message, start, end)`` with the fields stored straight into the slots
#: (the frozen dataclass's ``__init__`` sets each through ``object.__setattr__``): the very
#: same object at a fraction of the cost, for the many per-portion findings of a batch.
_finding: Callable[[str, str, int, int], Finding] = SlotMaker(
    Finding, ("rule", "message", "start", "end")).make4
_DECISION_FIELDS = ("verdict", "findings", "output", "banner", "policy_sha256", "message_id",
                    "format", "candidate", "lanes", "auto_release")
_decision: Callable[..., Decision] = SlotMaker(Decision, _DECISION_FIELDS).make


#: ``_Ctx`` objects for a batch, made in the core (``_contexts``): every slot as
#: ``_Ctx.__init__`` sets it, without a Python ``__init__`` call per message.
_CTX_NAMES: tuple[str, ...] = _Ctx.__slots__
_ctx_maker = SlotMaker(_Ctx, _CTX_NAMES)
_CTX_PROTO = _Ctx(b"", "", 0.0, 0.0)
_CTX_FRESH = (_CTX_NAMES.index("completed"), _CTX_NAMES.index("findings"))
_CTX_DATA, _CTX_ID, _CTX_DEADLINE = (_CTX_NAMES.index(n) for n in ("data", "message_id",
                                                                    "deadline"))


def _contexts(datas: list[bytes], ids: list[str], deadline: float) -> list[_Ctx]:
    """``[_Ctx(d, i, budget, now) for d, i in zip(datas, ids)]`` with ``deadline = now +
    budget`` (the same fields, each fresh list its own)."""
    values = [None if k in _CTX_FRESH else getattr(_CTX_PROTO, n)
              for k, n in enumerate(_CTX_NAMES)]
    values[_CTX_DATA] = values[_CTX_ID] = None
    values[_CTX_DEADLINE] = deadline
    return _ctx_maker.many(tuple(values), ((_CTX_DATA, datas), (_CTX_ID, ids)), _CTX_FRESH)


def _released(output: bytes | None, banner: str | None, pid: str, message_id: str,
              candidate: bytes | None, lanes: tuple[str, ...]) -> Decision:
    """``Decision("release", [], output, banner, pid, message_id, "text", candidate,
    lanes)`` with its fields stored directly (a batch makes hundreds); every field is set
    (tests compare it with ``__init__``'s)."""
    return _decision("release", [], output, banner, pid, message_id, "text", candidate,
                     lanes, False)


def _internal(msg: str, n: int = 0) -> Finding:
    return Finding("internal-error", msg, 0, n)


class Stage:
    """One filter of the chain. ``run`` handles one message, ``run_batch`` many."""

    name = "stage"

    def run(self, ctx: _Ctx) -> None:
        raise NotImplementedError

    def run_batch(self, ctxs: Sequence[_Ctx], tick: Callable[[], None]) -> None:
        for ctx in ctxs:
            _guarded(self, ctx, self.run)
            tick()


def _guarded(stage: Stage, ctx: _Ctx, fn: Callable[[_Ctx], None]) -> None:
    """Run one stage on one message; an exception or an exhausted budget blocks it."""
    try:
        if not ctx.blocked and time.perf_counter() > ctx.deadline:
            ctx.block([_internal(f"the time budget ran out before stage '{stage.name}'")])
        fn(ctx)
    except Exception as exc:  # fail closed, whatever went wrong
        ctx.block([_internal(f"stage '{stage.name}' failed: {type(exc).__name__}: {exc}")])
    else:
        ctx.completed.append(stage.name)


# ---------------------------------------------------------------------------- stages

def _banner_marking(text: str) -> Marking | None:
    res = parse_mark(text, "banner")
    return res.marking if not res.errors else None


class ParseStage(Stage):
    name = "parse"

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # distinct portion marks of the first pass (the re-check keeps its own)
        self.marks = MarkIndex(_first_pass_mark, _banner_marking)

    def run(self, ctx: _Ctx) -> None:
        if len(ctx.data) > self.policy.max_message_bytes:
            ctx.block([Finding("message-size", f"the message is {len(ctx.data)} bytes, over "
                               f"the policy's limit of {self.policy.max_message_bytes}",
                               0, len(ctx.data))])
            return
        ctx.msg = parse_message(ctx.data, self.policy.max_portions)
        if ctx.msg.findings:
            ctx.block(ctx.msg.findings)

    def run_batch(self, ctxs: Sequence[_Ctx], tick: Callable[[], None]) -> None:
        """Index the whole batch in one pass of the Cython core; messages of the simple
        report shape are then parsed (``BatchIndex``), the others by ``run``."""
        limit = self.policy.max_message_bytes
        live = [c for c in ctxs if not c.blocked and len(c.data) <= limit]
        try:
            ix = BatchIndex([c.data for c in live], self.marks,
                            self.policy.max_portions) if live else None
        except Exception as exc:
            for c in ctxs:
                c.block([_internal(f"stage 'parse' failed: {type(exc).__name__}: {exc}")])
            tick()
            return
        fast = ix.fast_list if ix is not None else []
        now = time.perf_counter()  # the budget is checked between stages
        k = 0
        for c in ctxs:
            if k < len(live) and live[k] is c:
                bad = None if fast[k] else self._bad_marks(ix, k)  # type: ignore[arg-type]
                if fast[k] or bad:
                    if not c.blocked and now > c.deadline:
                        c.block([_internal("the time budget ran out before stage 'parse'")])
                    c.ix = (ix, k)  # type: ignore[assignment]
                    if bad:  # as parse_message explains it
                        c.block(bad)
                    c.completed.append(self.name)
                    k += 1
                    continue
                k += 1
            _guarded(self, c, self.run)
        tick()

    @staticmethod
    def _bad_marks(ix: BatchIndex, k: int) -> list[Finding] | None:
        """The findings of an indexed message whose only problem is invalid portion
        marks (None when ``run`` must parse it); its parse ends there (blocked)."""
        try:
            return ix.bad_mark_findings(k)
        except Exception:  # the parser decides and explains
            return None


class ScanStage(Stage):
    name = "scan"

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner

    def run(self, ctx: _Ctx) -> None:
        if ctx.blocked or ctx.msg is None:
            return
        res = self.scanner.scan(ctx.msg.text)
        ctx.matches = [*res.matches, *res.encoded]
        if res.findings:
            ctx.block([Finding("scan-error", f.message, f.start, f.end) for f in res.findings])

    def run_batch(self, ctxs: Sequence[_Ctx], tick: Callable[[], None]) -> None:
        live = [c for c in ctxs if not c.blocked and c.parsed]
        try:
            if live:
                # an indexed message's text is its data (plain text): no Message needed
                texts = [c.data if c.ix is not None else c.msg.text  # type: ignore[union-attr]
                         for c in live]
                batch = next((c.ix[0] for c in live if c.ix is not None), None)
                if (batch is not None and len(batch.datas) == len(texts)
                        and all(t is d for t, d in zip(texts, batch.datas, strict=True))):
                    buf, offsets = batch.buf, batch.offsets  # the same bytes: no second copy
                else:
                    offsets = msgidx_offsets(texts)
                    buf = b"".join(texts)
                res = self.scanner.scan_batch(buf, offsets)
                flags = res.flags.tolist()
                real = _real_matches(live, res)
                rows = None
                for i, c in enumerate(live):
                    if flags[i]:
                        self.run(c)  # rare: rescan alone for the precise findings
                        if not c.blocked:
                            c.block([Finding("scan-error", f"the scanner flagged the message "
                                             f"(flags {int(flags[i])})", 0, len(c.data))])
                        continue
                    if texts[i] is c.data:  # a clean scan of exactly the input bytes
                        c.scanned = (res, i)
                    if real[i] >= 0:  # indexed: matches outside banners and marks
                        c.real = real[i]
                        if real[i]:
                            c.scan = (res, i)  # Match objects only if a stage asks
                    else:
                        rows = rows or _Rows(res, len(live))
                        if rows.outside(i, c.msg.banner_spans):  # type: ignore[union-attr]
                            c.matches = res.matches_for(i)
        except Exception as exc:
            for c in ctxs:
                c.block([_internal(f"stage 'scan' failed: {type(exc).__name__}: {exc}")])
            return
        for c in ctxs:
            c.completed.append(self.name)
        tick()


def _real_matches(live: Sequence[_Ctx], res: Any) -> list[int]:
    """Per scanned message, the number of matches outside its banner lines and portion
    marks when it is indexed (counted in the Cython core), else -1."""
    sel = [-1] * len(live)
    batch: BatchIndex | None = None
    for i, c in enumerate(live):
        if c.ix is not None and (batch is None or c.ix[0] is batch):
            batch, sel[i] = c.ix
    if batch is None:
        return sel
    counts = msgidx_real_matches(np.array(sel, dtype=np.int64), batch.status, batch.info,
                                 batch.rowstart, batch.rows,
                                 np.ascontiguousarray(res.msg, dtype=np.int32),
                                 np.ascontiguousarray(res.start, dtype=np.int64),
                                 np.ascontiguousarray(res.end, dtype=np.int64)).tolist()
    # one count per indexed message (the core checked every sel[i] < len(counts)); -1
    # for a message not selected: counts[-1] after the append
    counts.append(-1)
    return [counts[k] for k in sel]


class _Rows:
    """Per-message match rows of a BatchResult, to skip building Match objects for
    messages whose only matches lie inside their banner lines (marking vocabulary such
    as SECRET, which every banner holds)."""

    def __init__(self, res: Any, n: int) -> None:
        self.bounds = np.searchsorted(res.msg, np.arange(n + 1)).tolist()
        self.start = res.start.tolist()
        self.end = res.end.tolist()

    def outside(self, i: int, spans: Sequence[tuple[int, int]]) -> bool:
        """True when message i has a match not wholly inside one of ``spans``."""
        start, end = self.start, self.end
        for k in range(self.bounds[i], self.bounds[i + 1]):
            s, e = start[k], end[k]
            if not any(a <= s and e <= b for a, b in spans):
                return True
        return False


def _choose_sections(pol: Policy, secs: Sequence[tuple[Sequence[int], bool, tuple[int, int]]],
                     withheld: Container[int], size: int, findings: list[Finding],
                     blockf: list[Finding]) -> list[list[int]]:
    """Step 4 of a decision once some portions are withheld: the sections that would leave.

    ``secs`` holds, per section in order, its portion indices, whether it is a tearline
    section and its banner's span; one releasable tearline section goes alone when the
    policy allows it, otherwise every portion not withheld (portion release) or nothing.
    Shared by ``DecideStage.run`` and ``run_indexed`` so that both decide alike."""
    tear = [s for s in secs if s[1] and not any(i in withheld for i in s[0])]
    if pol.tearline_release and tear:
        best = max(tear, key=lambda s: len(s[0]))
        findings.append(Finding("tearline-release", "only the releasable tearline section "
                                "is released, on its own; the rest of the report is withheld",
                                *best[2]))
        return [list(best[0])]
    if pol.portion_release:
        sections = [[i for i in s[0] if i not in withheld] for s in secs]
        if not any(sections):
            blockf.append(Finding("nothing-releasable", "no portion of the message may be "
                                  "released to the destination", 0, size))
        return sections
    blockf.append(Finding("partial-release-disallowed", "some portions may not be released "
                          "and the policy does not allow releasing part of a message", 0, size))
    return []


def _term_actions(hits: Sequence[tuple[int, TermListSpec, Match]], kept: Container[int],
                  bounds: Callable[[int], tuple[int, int]], findings: list[Finding],
                  blockf: list[Finding], quarf: list[Finding]) -> dict[int, list[tuple[int, int]]]:
    """Step 5 of a decision: each term match's action (block, quarantine, or a cut inside
    a released portion, whose text lies between ``bounds(i)`` = (end of mark, end));
    returns the cuts per portion. Shared by ``DecideStage.run`` and ``run_indexed``."""
    cuts: dict[int, list[tuple[int, int]]] = {}
    for i, spec, mt in hits:
        released = i in kept
        if spec.scope == "released" and not released:
            continue
        what = (f"pattern '{mt.term}'" if mt.kind == "pattern" else
                "an encoded run the guard cannot inspect" if mt.kind == "encoded" else
                f"a term of list '{spec.name}'")
        if spec.action == "block":
            blockf.append(_finding(spec.rule, f"{what} was found; the policy blocks the "
                                  "message", mt.start, mt.end))
        elif spec.action == "quarantine":
            quarf.append(_finding(spec.rule, f"{what} was found; the message needs human "
                                 "review", mt.start, mt.end))
        elif released:
            mark_end, end = bounds(i)
            s, e = max(mt.start, mark_end), min(mt.end, end)
            if s >= e:
                blockf.append(_finding(spec.rule, f"{what} cannot be cut out cleanly",
                                      mt.start, mt.end))
                continue
            cuts.setdefault(i, []).append((s, e))
            findings.append(_finding(spec.rule, f"{what} was redacted", mt.start, mt.end))
    return cuts


class DecideStage(Stage):
    """Apply the policy to the parsed, scanned message and make a redaction plan."""

    name = "decide"

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.specs: dict[str, TermListSpec] = {s.name: s for s in policy.term_lists}
        self.lanes = {ln.name: ln for ln in policy.lanes}
        self.auto_lanes = {ln.name for ln in policy.lanes if ln.auto_release}
        enc_scope = "message" if policy.encoded_action == "block" else "released"
        self.encoded = TermListSpec("encoded", policy.path, "encoded", "encoded-content",
                                    policy.encoded_action, enc_scope)
        # caches keyed by the marking TEXT (cheap to hash; a Marking hashes all its fields)
        self._reasons: dict[str, tuple[tuple[str, str], ...]] = {}
        # the same, as the (rule, message) pairs of the findings of a withheld portion
        self._withheld_msgs: dict[str, tuple[tuple[str, str], ...]] = {}
        self._banner: dict[tuple[str, frozenset[str]], tuple[str, ...]] = {}
        # indexed messages: (generation, ids evaluated, bit set of ids with reasons)
        self._withheld: tuple[int, int, int] = (-1, 0, 0)
        self._wtables: tuple[int, bytes, list[Any]] = (-1, b"", [])
        self._banner_ok: dict[tuple[int, str, int], bool] = {}
        self._rollup: dict[tuple[int, str, int], tuple[str, ...]] = {}
        self._codes: tuple[Scanner, np.ndarray] | None = None

    def withheld_mask(self, ix: BatchIndex) -> int:
        """Bit set of the mark ids of ``ix`` whose portions ``reasons`` withholds; each
        distinct mark is judged once per policy (and again only if the index resets)."""
        gen, done, mask = self._withheld
        if gen != ix.generation:
            done, mask = 0, 0
        texts, markings = ix.texts, ix.markings
        n = len(texts)
        if done < n:
            for i in range(done, n):
                if self.reasons(texts[i], markings[i]):
                    mask |= 1 << i
            self._withheld = (ix.generation, n, mask)
        return mask

    def banner_ok(self, ix: BatchIndex, k: int) -> bool:
        """Message k's banner, and each tearline section's, is the roll-up of its
        portions (cached by banner text + mark set)."""
        if not self._fits(ix, ix.banners[k] or "", ix.banner_marks[k], ix.masks[k]):
            return False
        if ix.sections and ix.sections[k]:
            return all(self._fits(ix, text, m, mask) for text, m, _sp, mask, _ps
                       in ix.sections[k])
        return True

    def _fits(self, ix: BatchIndex, banner: str, bm: Marking | None, mask: int) -> bool:
        # run_batch reads this cache inline with the same key (a call per message less):
        # a change to the key must be made there too
        key = (ix.generation, banner, mask)
        ok = self._banner_ok.get(key)
        if ok is None:
            ids = ix.marks.members(mask)
            ok = bm is not None and bool(ids) and not self.banner_findings(
                banner, bm, [ix.texts[i] for i in ids], [ix.markings[i] for i in ids])
            if len(self._banner_ok) > 65536:
                self._banner_ok.clear()
            self._banner_ok[key] = ok
        return ok

    def _withhold(self, ctx: _Ctx, ix: BatchIndex, k: int, withheld: int) -> bool:
        """The ``run`` outcome for indexed message k (true banners, no match) whose
        portions with marks in ``withheld`` may not go: keep the rest of a one-section
        message (portion release), release the best whole tearline section on its own
        (tearline release), or block when nothing may be released or the policy does not
        release part of a message. False when ``run`` must decide instead (several
        sections each keeping portions)."""
        pol = self.policy
        secs = ix.sections[k] if ix.sections else None
        flags, why = self._withheld_tables(ix)
        # the findings of the withheld portions; the indices of the others (line spans
        # are taken only for the portions a redaction keeps)
        rows = ix.row_index
        findings, kept = rows.split(k, flags, why, Finding)
        if not findings:
            return False
        keep: list[int] | None = None
        tear = [sec for sec in secs if not sec[3] & withheld] if secs else []
        if pol.tearline_release and tear:
            best = max(tear, key=lambda sec: len(sec[4]))
            keep = best[4]
            findings.append(_finding("tearline-release", "only the releasable tearline "
                                     "section is released, on its own; the rest of the "
                                     "report is withheld", *best[2]))
        elif pol.portion_release:
            if kept and secs:
                return False  # portions kept in several sections: run writes them
            if kept:
                keep = kept
            else:
                findings.insert(0, _finding("nothing-releasable", "no portion of the "
                                            "message may be released to the destination",
                                            0, len(ctx.data)))
                ctx.block(findings)
                return True
        else:
            findings.insert(0, _finding("partial-release-disallowed", "some portions may not "
                                        "be released and the policy does not allow "
                                        "releasing part of a message", 0, len(ctx.data)))
            ctx.block(findings)
            return True
        ctx.findings = findings
        ctx.keep = rows.spans(k, keep)  # (kept lines, bit set of their mark ids)
        ctx.rewrite = True
        return True

    def _ignorable(self, ix: BatchIndex, k: int, matches: Sequence[Match],
                   withheld: int) -> bool:
        """Every match of indexed message k is one ``run`` ignores whatever it releases:
        inside a banner line or a portion mark, or a match of a term list whose action
        applies only to released text (scope ``released``) lying outside every portion
        or in a portion whose mark is withheld (never released). Lane and encoded
        matches, and any other, make ``run`` decide."""
        lo, hi = int(ix.rowstart[k]), int(ix.rowstart[k + 1])
        rows = ix.rows[lo:hi].tolist()
        ids = ix.ids[lo:hi].tolist()
        top, b0, b1 = ix.info[k, :3].tolist()
        starts = [r[0] for r in rows]
        specs = self.specs
        for mt in matches:
            if mt.kind == "encoded" or mt.list_name in self.lanes:
                return False
            s, e = mt.start, mt.end
            j = bisect_right(starts, s) - 1
            if j >= 0 and rows[j][3] == 0 and s < rows[j][2]:
                if e <= rows[j][1]:
                    continue  # inside the portion mark
                if not withheld >> ids[j] & 1:
                    return False  # in a portion that may be released
            elif (e <= top or (b0 <= s and e <= b1)
                  or (j >= 0 and rows[j][3] >= 2 and e <= rows[j][2])):
                continue  # inside a banner line
            spec = specs.get(mt.list_name)
            if spec is None or spec.kind == "clean":
                continue
            if spec.scope != "released":
                return False
        return True

    def _list_codes(self, scanner: Scanner) -> np.ndarray:
        """Per list id of ``scanner``, how a match of it counts for ``_ignorable``: 0
        ignored (no term list of the policy, or a clean list), 1 acts only on released
        text (scope ``released``), 2 acts, 3 a lane indicator."""
        got = self._codes
        if got is None or got[0] is not scanner:
            codes = []
            for tl in scanner.lists:
                spec = self.specs.get(tl.name)
                codes.append(3 if tl.name in self.lanes else
                             0 if spec is None or spec.kind == "clean" else
                             1 if spec.scope == "released" else 2)
            got = self._codes = (scanner, np.array(codes or [0], dtype=np.uint8))
        return got[1]

    def _judge_matches(self, ctxs: Sequence[_Ctx]) -> None:
        """``ctx.ign`` for the indexed messages with matches: ``_ignorable`` for the
        whole batch in one pass of the core, on the scan's rows (no Match objects)."""
        group = [c for c in ctxs if c.scan is not None and c.ix is not None and not c.blocked]
        if not group:
            return
        res, batch = group[0].scan[0], group[0].ix[0]  # type: ignore[index]
        if batch.generation != batch.marks.generation:
            return
        group = [c for c in group if c.scan[0] is res and c.ix[0] is batch]  # type: ignore[index]
        flags, _why = self._withheld_tables(batch)
        sel = np.full(len(res.sizes), -1, dtype=np.int64)
        for c in group:
            sel[c.scan[1]] = c.ix[1]  # type: ignore[index]
        out = msgidx_ignorable(sel, batch.status, batch.info, batch.rowstart, batch.rows,
                               batch.ids, np.ascontiguousarray(res.msg, dtype=np.int32),
                               np.ascontiguousarray(res.list_id, dtype=np.int16),
                               np.ascontiguousarray(res.start, dtype=np.int64),
                               np.ascontiguousarray(res.end, dtype=np.int64),
                               self._list_codes(res.scanner), flags).tolist()
        for c in group:
            got = out[c.ix[1]]  # type: ignore[index]
            c.ign = None if got < 0 else got == 1

    def run_batch(self, ctxs: Sequence[_Ctx], tick: Callable[[], None]) -> None:
        """Indexed messages with a true banner and no match ``run`` would act on are
        decided on the index without building a Message: released unchanged when every
        portion may go, else withheld portions are dropped, a tearline section released
        alone or the message blocked (``_withhold``); every other message takes ``run``,
        which explains what it finds."""
        now = time.perf_counter()  # the budget is checked between stages
        name, banner_ok, fitted = self.name, self.banner_ok, self._banner_ok
        last: BatchIndex | None = None  # the batch of the previous message, and ...
        w = 0                           # ... the bit set of its withheld mark ids
        try:
            self._judge_matches(ctxs)
        except Exception as exc:  # fail closed, as any stage
            for ctx in ctxs:
                ctx.block([_internal(f"stage 'decide' failed: {type(exc).__name__}: {exc}")])
            tick()
            return
        for ctx in ctxs:
            ix = ctx.ix
            if (ix is not None and not ctx.blocked
                    and (ctx.real == 0) == (ctx.scan is None and not ctx._matches)):
                try:
                    if now > ctx.deadline:
                        raise TimeoutError("the time budget ran out before stage 'decide'")
                    batch, k = ix
                    gen = batch.generation
                    # banner_ok's verdict, looked up here first for the common message:
                    # one section, a banner already judged with the same marks
                    ok = (None if batch.sections and batch.sections[k] else
                          fitted.get((gen, batch.banners[k] or "", batch.masks[k])))
                    if gen == batch.marks.generation and (ok or (ok is None
                                                                 and banner_ok(batch, k))):
                        if batch is not last:
                            last, w = batch, self.withheld_mask(batch)
                        withheld = batch.masks[k] & w
                        # matches that no outcome would act on do not need ``run``
                        if ctx.real == 0 or (ctx.ign if ctx.ign is not None else
                                             self._ignorable(batch, k, ctx.matches, withheld)):
                            if not withheld:
                                ctx.plain = True
                                ctx.banner = batch.banners[k]
                            if withheld == 0 or self._withhold(ctx, batch, k, withheld):
                                ctx.completed.append(name)
                                continue
                    if (batch.generation == batch.marks.generation
                            and self.run_indexed(ctx, batch, k)):
                        ctx.completed.append(name)
                        continue
                except Exception as exc:
                    ctx.block([_internal(f"stage 'decide' failed: {type(exc).__name__}: "
                                         f"{exc}")])
                    continue
            if ctx.blocked:  # ``run`` does nothing for a blocked message
                ctx.completed.append(name)
            else:
                _guarded(self, ctx, self.run)
            tick()
        tick()

    # -- per marking, cached: why a portion with this marking may not go
    def reasons(self, mark: str, m: Marking) -> tuple[tuple[str, str], ...]:
        """Why a portion marked ``mark`` (parsed: ``m``) may not go; cached by text."""
        got = self._reasons.get(mark)
        if got is None:
            got = self._reasons_uncached(m)
            if len(self._reasons) > 65536:
                self._reasons.clear()
            self._reasons[mark] = got
        return got

    def _withheld_tables(self, ix: BatchIndex) -> tuple[bytes, list[Any]]:
        """Per mark id of ``ix``: a byte, 1 when its portions are withheld, and then
        the (rule, message) pairs of their findings (extended as the index grows)."""
        gen, flags, why = self._wtables
        n = len(ix.texts)
        if gen != ix.generation:
            flags, why = b"", []
        if len(why) < n:
            texts, markings = ix.texts, ix.markings
            why = why[:]  # another thread may be reading the old list
            for i in range(len(why), n):
                why.append(self.withheld_findings(texts[i], markings[i]))
            flags = bytes(1 if w else 0 for w in why)
            self._wtables = (ix.generation, flags, why)
        return flags, why

    def withheld_findings(self, mark: str, m: Marking) -> tuple[tuple[str, str], ...]:
        """``reasons`` as the (rule, message) of each finding of a withheld portion."""
        got = self._withheld_msgs.get(mark)
        if got is None:
            got = tuple((r, f"portion withheld: {t}") for r, t in self.reasons(mark, m))
            if len(self._withheld_msgs) > 65536:
                self._withheld_msgs.clear()
            self._withheld_msgs[mark] = got
        return got

    def _reasons_uncached(self, m: Marking) -> tuple[tuple[str, str], ...]:
        pol = self.policy
        out: list[tuple[str, str]] = []
        rank = classification_rank(m)
        if rank > pol.accreditation_rank:
            out.append(("classification-exceeds", f"the portion is classified {m.classification}"
                        f", above the destination's accreditation ({pol.accreditation})"))
        bad_sci = [c.name for c in m.sci if c.name not in pol.allowed_sci]
        if bad_sci:
            out.append(("sci-not-allowed", f"the portion carries SCI ({'/'.join(bad_sci)}) the "
                        "destination may not receive"))
        bad_sap = [c.name for c in m.sap if c.name not in pol.allowed_sap]
        if bad_sap:
            out.append(("sap-not-allowed", "the portion carries a special access programme "
                        "the destination may not receive"))
        if pol.public:
            controls = (m.dissem or m.non_ic or m.sci or m.sap or m.aea or m.fgi or m.fgi_marked
                        or m.rel_to or m.rel_abbrev or m.display_only or m.eyes
                        or m.origin != "US")
            if rank == 0 and controls:
                out.append(("not-releasable", "the portion carries control markings; only "
                            "plain (U) portions may be released to the public"))
            return tuple(out)
        missing: list[str] = []
        why: list[str] = []
        for code in sorted(pol.members):
            r = releasable(m, code)
            if not r.releasable:
                missing.append(code)
                why.extend(x for x in r.reasons if x not in why)
        if missing and not (pol.uncaveated_release and self.policy.uncaveated(m)):
            out.append(("not-releasable", "the portion is not releasable to "
                        f"{', '.join(missing)} (every member of {', '.join(pol.release_to)} "
                        f"must be covered): {'; '.join(why[:3]) or 'no release marking'}"))
        return tuple(out)

    def _rollup_msgs(self, ix: BatchIndex, k: int) -> tuple[str, ...]:
        """``banner_findings`` for indexed message k's banner and marks, cached by the
        index generation, banner text and mark bit set (as ``banner_ok``): no mark
        list or set to build for a banner already judged with the same marks."""
        banner, mask = ix.banners[k] or "", ix.masks[k]
        key = (ix.generation, banner, mask)
        got = self._rollup.get(key)
        if got is None:
            ids = ix.marks.members(mask)
            got = self.banner_findings(banner, ix.banner_marks[k],  # type: ignore[arg-type]
                                       [ix.texts[i] for i in ids], [ix.markings[i] for i in ids])
            if len(self._rollup) > 65536:
                self._rollup.clear()
            self._rollup[key] = got
        return got

    def banner_findings(self, banner: str, bm: Marking, marks: list[str],
                        ms: list[Marking]) -> tuple[str, ...]:
        """Messages of ``check_banner``, cached by the banner text and the set of marks."""
        key = (banner, frozenset(marks))
        got = self._banner.get(key)
        if got is None:
            got = tuple(f.message for f in check_banner(bm, ms))
            if len(self._banner) > 65536:
                self._banner.clear()
            self._banner[key] = got
        return got

    def _locate(self, matches: Sequence[Match], starts: Sequence[int], ends: Sequence[int],
                mark_ends: Sequence[int], other: Sequence[tuple[int, int]]
                ) -> tuple[list[tuple[int, TermListSpec, Match]], dict[int, set[str]]]:
        """Term matches by portion (-1: outside every portion), and the lanes matched in
        each portion. Matches inside a portion mark or a banner line (``other``) are
        markings, not content, and are ignored; clean-word matches too."""
        hits: list[tuple[int, TermListSpec, Match]] = []
        lane_hits: dict[int, set[str]] = {}
        lanes, specs, encoded = self.lanes, self.specs, self.encoded
        for mt in matches:
            ms, me = mt.start, mt.end
            i = bisect_right(starts, ms) - 1
            if i >= 0 and ms < ends[i]:
                if me <= mark_ends[i]:
                    continue
            else:
                i = -1
                # inside a banner line? (a loop: a generator per match cost more; most
                # matches outside portions are banner words)
                inside = False
                for s, e in other:
                    if s <= ms and me <= e:
                        inside = True
                        break
                if inside:
                    continue
            if mt.kind == "encoded":
                hits.append((i, encoded, mt))
                continue
            if mt.list_name in lanes:
                if i >= 0:
                    lane_hits.setdefault(i, set()).add(mt.list_name)
                continue
            spec = specs.get(mt.list_name)
            if spec is None or spec.kind == "clean":
                continue
            hits.append((i, spec, mt))
        return hits, lane_hits

    def run_indexed(self, ctx: _Ctx, ix: BatchIndex, k: int) -> bool:
        """``run`` for indexed message k, on the index's rows and the per-mark-id tables
        instead of a ``Message`` (same steps, same findings in the same order). False,
        having changed nothing, when ``run`` must decide (a lane indicator matched)."""
        pol = self.policy
        flags, why = self._withheld_tables(ix)
        (starts, mark_ends, ends, pids, by_sec, withheld, closing,
         sec_spans) = ix.row_index.layout(k, flags)
        texts, markings = ix.texts, ix.markings
        top, b0, b1 = ix.info[k, :3].tolist()
        secs = ix.sections[k] if ix.sections else []
        findings: list[Finding] = []
        blockf: list[Finding] = []
        quarf: list[Finding] = []

        # 2 (first: lanes send the message to ``run``). term matches, located in portions
        hits: list[tuple[int, TermListSpec, Match]] = []
        if ctx.matches:
            hits, lane_hits = self._locate(ctx.matches, starts, ends, mark_ends,
                                           [(0, top), (b0, b1), *closing, *sec_spans])
            if lane_hits:
                return False  # a lane may release a portion: ``run`` decides

        # 1. banners against the roll-up of their portions (cached by banner and marks)
        if not self.banner_ok(ix, k):
            bad_banner: list[Finding] = []
            got = self._rollup_msgs(ix, k)
            bad_banner += [_finding("banner-rollup", f"the banner does not match its "
                                    f"portions: {t}", 0, top) for t in got]
            for text, m, span, mask, _ps in secs:
                ids = ix.marks.members(mask)
                got = self.banner_findings(text, m, [texts[i] for i in ids],
                                           [markings[i] for i in ids])
                bad_banner += [_finding("banner-rollup", "the tearline banner does not "
                                        f"match its portions: {t}", *span) for t in got]
            if bad_banner:
                ctx.rewrite = True
                _file(pol.banner_mismatch, bad_banner, blockf, quarf, findings)

        # 3. per-portion release check: per mark id (no lane matched), ``withheld`` above
        nsec = len(by_sec)
        if nsec != len(secs) + 1:
            raise ValueError("the index's sections do not match its rows")

        # 4. choose what would leave
        sections: list[list[int]]
        if not withheld:
            sections = by_sec
        else:
            mk = _finding
            for i in withheld:
                s, e = starts[i], ends[i]
                findings += [mk(r, t, s, e) for r, t in why[pids[i]]]
            shape = [(by_sec[0], False, (0, 0)),
                     *((by_sec[x], True, secs[x - 1][2]) for x in range(1, nsec))]
            sections = _choose_sections(pol, shape, set(withheld), len(ctx.data), findings,
                                        blockf)
        # 5. term actions (none without hits: the kept set is not needed then)
        # kept: every portion when none is withheld (``by_sec`` holds each portion once)
        kept = range(len(starts)) if not withheld else {i for s in sections for i in s}
        cuts = _term_actions(hits, kept, lambda i: (mark_ends[i], ends[i]), findings, blockf,
                             quarf) if hits else {}

        # 6. verdict (no lane matched: no lanes, no automatic release)
        if blockf:
            ctx.block(blockf + findings)
            return True
        ctx.plan = Plan(sections, cuts)
        ctx.findings = quarf + findings
        ctx.quarantine = bool(quarf)
        ctx.rewrite = ctx.rewrite or bool(withheld) or bool(cuts)
        ctx.spans = (starts, ends, pids)
        return True

    def run(self, ctx: _Ctx) -> None:
        if ctx.blocked or ctx.msg is None:
            return
        msg, pol = ctx.msg, self.policy
        portions = msg.portions
        n = len(portions)
        marks: list[Marking] = [p.marking for p in portions]  # type: ignore[misc]
        findings: list[Finding] = []
        blockf: list[Finding] = []
        quarf: list[Finding] = []

        # 1. banners against the roll-up of their portions
        bad_banner: list[Finding] = []
        texts = [p.mark for p in portions]
        doc_msgs = self.banner_findings(msg.banner, msg.marking, texts, marks)  # type: ignore[arg-type]
        bad_banner += [Finding("banner-rollup", f"the banner does not match its portions: {t}",
                               *msg.banner_spans[0]) for t in doc_msgs]
        for sec in msg.sections:
            if sec.tearline and sec.marking is not None:
                got = self.banner_findings(sec.banner or "", sec.marking,
                                           [texts[i] for i in sec.portions],
                                           [marks[i] for i in sec.portions])
                bad_banner += [Finding("banner-rollup", "the tearline banner does not match "
                                       f"its portions: {t}", *sec.banner_span) for t in got]
        if bad_banner:
            ctx.rewrite = True  # whatever leaves (now or after review) carries a true banner
            _file(pol.banner_mismatch, bad_banner, blockf, quarf, findings)

        # 2. term matches, located in portions (matches inside marks/banners are ignored)
        hits: list[tuple[int, TermListSpec, Match]] = []
        lane_hits: dict[int, set[str]] = {}
        if ctx.matches:
            hits, lane_hits = self._locate(
                ctx.matches, [p.start for p in portions], [p.end for p in portions],
                [p.mark_end for p in portions],
                msg.banner_spans + [s.banner_span for s in msg.sections if s.tearline])

        # 3. per-portion release check (lanes may release uncaveated portions)
        withheld: dict[int, tuple[tuple[str, str], ...]] = {}
        in_lane: dict[int, set[str]] = {}
        reasons = self.reasons
        for i in range(n):
            rs = reasons(texts[i], marks[i])
            if i in lane_hits:
                m = marks[i]
                for name in lane_hits[i]:
                    lane = self.lanes[name]
                    if classification_rank(m) <= lane.max_rank and self.policy.uncaveated(m):
                        in_lane.setdefault(i, set()).add(name)
                        if lane.uncaveated and rs and all(r == "not-releasable" for r, _ in rs):
                            rs = ()
            if rs:
                withheld[i] = rs

        # 4. choose what would leave
        sections: list[list[int]]
        if not withheld:
            sections = [list(s.portions) for s in msg.sections]
        else:
            why = self.withheld_findings
            for i in withheld:
                p = portions[i]
                if withheld[i] is self.reasons(texts[i], marks[i]):
                    findings += [_finding(r, t, p.start, p.end) for r, t in why(texts[i], marks[i])]
                else:
                    findings += [Finding(r, f"portion withheld: {t}", p.start, p.end)
                                 for r, t in withheld[i]]
            shape = [(sec.portions, sec.tearline, sec.banner_span) for sec in msg.sections]
            sections = _choose_sections(pol, shape, withheld, len(msg.text), findings, blockf)
        kept = {i for s in sections for i in s}

        # 5. term actions
        cuts = _term_actions(hits, kept, lambda i: (portions[i].mark_end, portions[i].end),
                             findings, blockf, quarf)

        # 6. verdict
        if blockf:
            ctx.block(blockf + findings)
            return
        ctx.plan = Plan(sections, cuts)
        ctx.findings = quarf + findings
        ctx.quarantine = bool(quarf)
        ctx.rewrite = ctx.rewrite or bool(withheld) or bool(cuts)
        if in_lane and kept:
            empty: set[str] = set()
            lanes = set.intersection(*(in_lane.get(i, empty) for i in kept))
            ctx.lanes = tuple(sorted(lanes))
            # "without additional code words": no SCI/SAP anywhere, even in withheld portions
            ctx.auto = (pol.on_deadline == "release-lanes"
                        and all(in_lane.get(i, empty) & self.auto_lanes for i in kept)
                        and not any(m.sci or m.sap for m in marks))


class RedactStage(Stage):
    name = "redact"

    def run_batch(self, ctxs: Sequence[_Ctx], tick: Callable[[], None]) -> None:
        """Messages decided on the index to leave unchanged need no work here."""
        now = time.perf_counter()  # the budget is checked between stages
        for ctx in ctxs:
            if ctx.blocked:  # ``run`` does nothing for a blocked message
                ctx.completed.append(self.name)
            elif ctx.plain and now <= ctx.deadline:
                ctx.output, ctx.verdict = ctx.data, "release"
                ctx.completed.append(self.name)
            else:
                _guarded(self, ctx, self.run)
        tick()

    def run(self, ctx: _Ctx) -> None:
        if ctx.plain and not ctx.blocked:  # decided on the index: the input leaves as is
            ctx.output, ctx.verdict = ctx.data, "release"
            return
        if ctx.keep is not None and not ctx.blocked and ctx.ix is not None:
            ix = ctx.ix[0]   # decided on the index: kept lines under a recomputed banner
            ids = ix.marks.members(ctx.keep[1])
            ctx.output, ctx.banner = build_lines(ctx.data, ctx.keep[0],
                                                 [ix.texts[i] for i in ids],
                                                 [ix.markings[i] for i in ids])
            ctx.verdict = "redact"
            return
        if ctx.blocked or ctx.plan is None:
            return
        if ctx.spans is not None and ctx.ix is not None and ctx._msg is None:
            ix, k = ctx.ix  # decided on the index: the plan's portions are its rows
            if ctx.rewrite:
                starts, ends, pids = ctx.spans
                out, banner = build_text(ctx.data, ctx.plan, starts, ends,
                                         [ix.texts[i] for i in pids],
                                         [ix.markings[i] for i in pids])
            else:
                out, banner = ctx.data, ix.banners[k] or ""
        elif ctx.msg is None:
            return
        elif ctx.rewrite:
            out, banner = build_output(ctx.msg, ctx.plan)
        else:
            out, banner = ctx.data, ctx.msg.banner
        ctx.banner = banner
        if ctx.quarantine:
            ctx.candidate = out
        else:
            ctx.output = out
        ctx.verdict = "quarantine" if ctx.quarantine else "redact" if ctx.rewrite else "release"


class RecheckStage(Stage):
    name = "recheck"

    def __init__(self, rechecker: Rechecker) -> None:
        self.rechecker = rechecker

    def _finish(self, ctx: _Ctx, got: list[Finding]) -> None:
        if got:
            ctx.output = ctx.candidate = None
            ctx.block(got)

    def run(self, ctx: _Ctx) -> None:
        if ctx.blocked:
            return
        out = ctx.output if ctx.output is not None else ctx.candidate
        if out is None:
            raise RuntimeError("no output to re-check")
        self._finish(ctx, self.rechecker.check(out, allow_quarantine=ctx.quarantine))

    def run_batch(self, ctxs: Sequence[_Ctx], tick: Callable[[], None]) -> None:
        """Re-check every output of the batch in one ``Rechecker.check_batch`` call (it
        sees only the output bytes, see recheck.py for how it stays independent; an
        output that is its input object comes with the scan stage's clean scan of it)."""
        live: list[_Ctx] = []
        outs: list[bytes] = []
        prior: list[tuple[Any, int] | None] = []
        for c in ctxs:
            if c.blocked:
                continue
            out = c.output if c.output is not None else c.candidate
            if out is None:
                c.block([_internal("stage 'recheck' failed: RuntimeError: no output to "
                                   "re-check")])
                continue
            live.append(c)
            outs.append(out)
            # an output that is the very input object the scan stage scanned clean
            prior.append(c.scanned if out is c.data else None)
        try:
            if live:
                got = self.rechecker.check_batch(outs, [c.quarantine for c in live], prior)
                if len(got) != len(live):
                    raise RuntimeError("the re-check lost outputs")
                for c, found in zip(live, got, strict=True):
                    self._finish(c, found)
        except Exception as exc:
            for c in live:
                c.output = c.candidate = None
                c.block([_internal(f"stage 'recheck' failed: {type(exc).__name__}: {exc}")])
        for c in ctxs:
            c.completed.append(self.name)
        tick()


# ---------------------------------------------------------------------------- watchdog

class _Worker:
    """One daemon thread running jobs; abandoned (and replaced) when a job hangs, and
    ending by itself after ``IDLE_S`` without work (pipelines come and go)."""

    IDLE_S = 30.0

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.alive = True
        self.pid = os.getpid()  # a forked child inherits this object, never the thread
        threading.Thread(target=self._loop, daemon=True, name="guard-pipeline").start()

    def submit(self, job: Any) -> bool:
        """Queue ``(fn, done_event)``; False when the thread has already ended (or was
        started by the parent of this forked process: it does not run here)."""
        if self.pid != os.getpid():
            return False
        with self.lock:
            if not self.alive:
                return False
            self.jobs.put(job)
            return True

    def _loop(self) -> None:
        while True:
            try:
                fn, done = self.jobs.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self.lock:
                    if self.jobs.empty():
                        self.alive = False
                        return
                continue
            # the job records its own failure; keep the thread alive whatever happens
            with contextlib.suppress(BaseException):
                fn()
            done.set()



def _file(action: str, found: list[Finding], block: list[Finding], quarantine: list[Finding],
          other: list[Finding]) -> None:
    """Add ``found`` to the findings of its policy action (block, quarantine, or neither)."""
    if action == "block":
        block += found
    elif action == "quarantine":
        quarantine += found
    else:
        other += found

# ---------------------------------------------------------------------------- GC

_gc_lock = threading.Lock()
_gc_users = [0, False]   # batches running, whether the collector was on when they began


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while batches run (in any thread), resumed
    when the last one ends. A batch builds many short-lived objects and no cycles that
    matter: the collector's passes over them cost ~4% of a batch for nothing."""
    with _gc_lock:
        if _gc_users[0] == 0:
            _gc_users[1] = gc.isenabled()
            gc.disable()
        _gc_users[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users[0] -= 1
            if _gc_users[0] == 0 and _gc_users[1]:
                gc.enable()


# ---------------------------------------------------------------------------- pipeline

class Pipeline:
    """The compiled decision pipeline for one policy.

    ``stages`` is the explicit chain (a list of ``Stage``); tests may replace an entry to
    inject a fault. ``watchdog=False`` runs in the calling thread (no hang protection).
    """

    def __init__(self, policy: Policy, *, watchdog: bool = True) -> None:
        self.policy = policy
        lists = build_lists(policy)
        scanner = Scanner(lists, leet=policy.leet, encoded_min_len=policy.encoded_min_length)
        check_scanner(scanner, lists)  # a scanner that finds nothing must not decide (fail closed)
        self.stages: list[Stage] = [
            ParseStage(policy), ScanStage(scanner), DecideStage(policy), RedactStage(),
            RecheckStage(Rechecker(policy)),
        ]
        # the re-check may take the first scan's rows of an output that IS a scanned input
        # only when its own scanner is the same matcher (see Rechecker.trust_scans_of)
        self.stages[-1].rechecker.trust_scans_of(scanner)  # type: ignore[attr-defined]
        self.watchdog = watchdog
        # one worker thread per calling thread, so that callers in several threads still
        # run in parallel (the scanner releases the GIL) and a hang stalls only its caller
        self._local = threading.local()

    def warm(self) -> None:
        """Decide a few built-in sample reports (``_SAMPLES``) and drop the decisions:
        the lazy imports, regular expressions and first-call set-up of every stage
        happen now, in this process (a replay does this before forking its workers, so
        that each does not pay for them again). Caches it fills hold no verdict: the
        same input decides the same with or without it."""
        self.decide_batch(list(_SAMPLES))
        for data in _SAMPLES[:2]:
            self.decide(data)

    # -- running the chain
    def _chain(self, ctxs: list[_Ctx], progress: list[int]) -> None:
        def tick() -> None:
            progress[0] += 1

        for stage in self.stages:
            stage.run_batch(ctxs, tick)

    def _run(self, ctxs: list[_Ctx]) -> bool:
        """Run the chain over ``ctxs``; False when it hung past the budget."""
        if not self.watchdog:
            self._chain(ctxs, [0])
            return True
        budget = self.policy.time_budget_ms / 1000.0
        progress = [0]
        done = threading.Event()
        job = (lambda: self._chain(ctxs, progress), done)
        worker = getattr(self._local, "worker", None)
        if worker is None or not worker.submit(job):
            worker = self._local.worker = _Worker()
            worker.submit(job)
        last = -1
        while not done.wait(budget):
            if progress[0] == last:  # no stage finished on any message for a whole budget
                self._local.worker = None  # abandon the hung thread; the next call gets a new one
                return False
            last = progress[0]
        return True

    def _finish(self, ctx: _Ctx, ok: bool, pid: str, now: float | None = None) -> Decision:
        if (ok and ctx.verdict == "release" and not ctx.blocked and not ctx.findings
                and ctx.ix is not None and ctx._msg is None and now is not None
                and now <= ctx.deadline and ctx.completed == _ALL_STAGES):
            # the common case, decided on the index (what the general path gives it)
            return _released(ctx.output, ctx.banner, pid, ctx.message_id, ctx.candidate,
                             ctx.lanes)
        msg = ctx._msg  # never built here just for its format
        fmt = msg.format if msg is not None else "text" if ctx.ix is not None else ""
        if now is None:
            now = time.perf_counter()
        if not ok:
            return Decision("block", [_internal("the pipeline did not finish within the time "
                                                "budget (a filter hung)", len(ctx.data))],
                            None, None, pid, ctx.message_id, fmt)
        if not ctx.blocked and now > ctx.deadline:
            ctx.block([_internal("the time budget ran out while the filters ran",
                                 len(ctx.data))])
        if ctx.blocked or ctx.completed != _ALL_STAGES or not ctx.verdict:
            findings = list(ctx.findings)
            if not ctx.blocked or not findings:
                findings.append(_internal("not every filter ran in order and completed "
                                          f"(ran: {', '.join(ctx.completed) or 'none'})",
                                          len(ctx.data)))
            return _decision("block", findings, None, None, pid, ctx.message_id, fmt, None,
                             (), False)
        if ctx.verdict != "release" and not ctx.findings:
            return Decision("block", [_internal("a non-release decision without a finding",
                                                len(ctx.data))], None, None, pid,
                            ctx.message_id, fmt)
        return _decision(ctx.verdict, list(ctx.findings), ctx.output, ctx.banner, pid,
                         ctx.message_id, fmt, ctx.candidate, ctx.lanes,
                         ctx.auto and ctx.verdict == "quarantine")

    def decide(self, data: bytes, message_id: str = "") -> Decision:
        """Decide one message. Never raises: any failure is a ``block``."""
        return self.decide_batch([data], [message_id])[0]

    def decide_batch(self, messages: Sequence[bytes],
                     message_ids: Sequence[str] | None = None) -> list[Decision]:
        """Decide many messages; the scans run through ``Scanner.scan_batch``."""
        with _gc_paused():
            return self._decide_batch(messages, message_ids)

    def _decide_batch(self, messages: Sequence[bytes],
                      message_ids: Sequence[str] | None) -> list[Decision]:
        pid = self.policy.sha256
        budget = self.policy.time_budget_ms / 1000.0
        ids = list(message_ids) if message_ids is not None else [""] * len(messages)
        try:
            each = budget * max(1.0, len(messages) / 64)
            now = time.perf_counter()
            if len(ids) >= len(messages):
                datas = [d if type(d) is bytes else bytes(d) for d in messages]
                ctxs = _contexts(datas, ids[:len(datas)], now + each) if datas else []
            else:  # the first missing id fails as before (IndexError)
                ctxs = [_Ctx(d if type(d) is bytes else bytes(d), ids[k], each, now)
                        for k, d in enumerate(messages)]
        except Exception as exc:
            return [Decision("block", [_internal(f"bad input: {type(exc).__name__}")], None,
                             None, pid) for _ in messages]
        try:
            ok = self._run(ctxs)
        except Exception as exc:
            return [Decision("block", [_internal(f"pipeline failed: {type(exc).__name__}: "
                                                 f"{exc}")], None, None, pid, c.message_id)
                    for c in ctxs]
        now = time.perf_counter()
        return [self._finish(c, ok, pid, now) for c in ctxs]


#: ``Pipeline.warm``'s sample reports: a releasable one, withheld portions, a tearline
#: section, a term and a PII pattern in released text, a phrase for review, an encoded
#: run, an invalid portion mark, a banner that is not the roll-up, JSON, and a message
#: that is no report at all.
_REPORT = (b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) Naval units were seen in the "
           b"strait on 3 June, moving north.\n(U) Weather was clear.\nSECRET//REL TO USA, FVEY\n")
_SAMPLES: tuple[bytes, ...] = (
    _REPORT,
    _REPORT.replace(b"(U) Weather", b"(S//NF) Source reporting").replace(
        b"\nSECRET//REL TO USA, FVEY\n", b"\nSECRET//NOFORN\n").replace(
        b"SECRET//REL TO USA, FVEY\n(S", b"SECRET//NOFORN\n(S"),
    b"TOP SECRET//SI//NOFORN\n(TS//SI//NF) Intercepts of the fleet.\n"
    b"----- TEARLINE -----\nSECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) A fleet "
    b"sailed.\nTOP SECRET//SI//NOFORN\n",
    _REPORT.replace(b"Weather was clear.", b"Weather was clear; call 555-12-3456 re TALENT "
                    b"KEYHOLE, climate OSINT."),
    _REPORT.replace(b"Weather was clear.", b"Weather was clear per a sensitive technical "
                    b"source."),
    _REPORT.replace(b"Weather was clear.", b"Weather: V2VhdGhlciB3YXMgY2xlYXIgb3ZlciB0aGUg"
                    b"c3RyYWl0IGFuZCB0aGUgZmxlZXQgc2FpbGVkIG5vcnRoLg=="),
    _REPORT.replace(b"(U) Weather", b"(QQ) Weather"),
    _REPORT.replace(b"SECRET//REL TO USA, FVEY\n(S", b"TOP SECRET//NOFORN\n(S"),
    b'{"banner": {"classification": "U"}, "portions": [{"classification": "U", '
    b'"text": "Weather was clear."}]}',
    b"<html>no report</html>",
)


def decide(policy: Policy, data: bytes, message_id: str = "") -> Decision:
    """One-shot convenience: compile a pipeline for ``policy`` and decide ``data``."""
    return Pipeline(policy).decide(data, message_id)
