"""The independent second check of the bytes that are about to leave (NIST AC-4(27)).

It shares no code with the first pass beyond the markings engine (the marking authority),
the ISM-to-mark mapping of the JSON format and the scanner's matching engine: it re-parses
the released BYTES with its own strict line parser, scans them with its own scanner
instance, and re-checks every portion's classification, SCI/SAP and releasability to every
destination member, every section banner and the document banner against a fresh roll-up,
and that no term whose action is block or redact, no PII pattern and no encoded run
remains. Any finding means the output may not leave: the pipeline blocks.

``check_batch`` does the same for a batch: the outputs are indexed by the Cython core
(``messages.BatchIndex``) and scanned together; an output of the simple report shape with
no match outside its banners and marks that ``finish`` would report (counted in the core:
encoded runs, block and redact lists, quarantine lists unless the output is a quarantine
candidate), no mark this policy refuses and a banner equal to the roll-up of its marks
passes there; anything else goes through ``prepare``/``finish``.

How independence from the first pass is kept: the re-check receives only the output
BYTES. It indexes and parses them again itself, interns their marks in its own
``MarkIndex`` (parsed by its own ``_pmark``), judges each distinct mark with its own
``_portion_problem`` and banners with its own roll-up check, and scans with its own
``Scanner`` instance. What it shares with the first pass is code and compiled tables
(the Cython indexer and scanner, the markings engine), never a result: no parse, mark
id, verdict cache or scan match of the first pass reaches it, with one exception: an
output that is the very bytes object the first pass scanned clean may take that scan's rows
instead of being scanned again, when the first pass's scanner is the same matcher as this
check's own (``trust_scans_of``: the same term lists and options, from which ``Scanner``
compiles identical tables). That is the same check on the same bytes; the rows are still
judged here, by this check's own list codes, parse and mark and banner checks.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from guard._core import msgidx_acting_matches, msgidx_offsets
from guard.findings import Finding
from guard.markings import (
    Marking,
    classification_rank,
    parse,
    recognize_portions,
    releasable,
    render_banner,
    rollup,
)
from guard.messages import BatchIndex, MarkIndex, ism_to_mark
from guard.policy import Policy, load_list
from guard.scanner import BatchResult, Match, Scanner
from guard.selftest import check_scanner
from guard.terms import TermList

__all__ = ["Prepared", "Rechecker", "build_lists"]

# ASCII case folding only, as the first pass: "TEARL\u0130NE" (dotted capital I) is no tearline
_TEAR = re.compile(r"^[ \t]*-{3,}[ \t]*TEARLINE[ \t]*-{3,}[ \t]*$", re.IGNORECASE | re.ASCII)
RULE = "recheck-failed"
# What no released report may carry (the re-check's own copy of the rule, so that it is at
# least as strict as the first pass): C0 controls other than tab/LF/CR and DEL, a CR that
# does not end a line, and characters that make text display other than it reads (bidi
# overrides and isolates, BOM, Unicode line/paragraph separators, NEL).
_UNSHOWABLE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
_MISLEADING = re.compile("[\u202a-\u202e\u2066-\u2069\ufeff\u2028\u2029\u0085]")
# the only attributes a released JSON portion may carry (anything else could hide content)
_PORTION_KEYS = frozenset({
    "text", "classification", "ownerProducer", "releasableTo", "disseminationControls",
    "SCIcontrols", "SARIdentifier", "atomicEnergyMarkings", "FGIsourceOpen",
    "nonICmarkings", "displayOnlyTo",
})


def build_lists(policy: Policy) -> list[TermList]:
    """The TermLists of a policy, term lists first, then one list per lane (in order).

    Every file must still hold the bytes the policy's bundle hash covers (``load_list``
    raises ``PolicyError`` otherwise), so decisions never run on unpinned lists."""
    lists = [load_list(policy, spec.path, spec.name, spec.kind) for spec in policy.term_lists]
    lists += [load_list(policy, lane.indicators, lane.name, "dirty") for lane in policy.lanes]
    return lists


@dataclass(slots=True)
class Prepared:
    """An output parsed by the recheck's own parser (before scanning)."""

    text: bytes
    findings: list[Finding] = field(default_factory=list)
    # per portion: (line start, mark end, line end, marking, section, mark bytes)
    portions: list[tuple[int, int, int, Marking, int, bytes]] = field(default_factory=list)
    # per banner: (section or -1 for the document, marking, start, end, banner text)
    banners: list[tuple[int, Marking, int, int, str]] = field(default_factory=list)
    skip: list[tuple[int, int]] = field(default_factory=list)   # banner lines


class Rechecker:
    """Checks released bytes against a policy, independently of the first pass."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        lists = build_lists(policy)
        self.scanner = Scanner(lists, leet=policy.leet, encoded_min_len=policy.encoded_min_length)
        check_scanner(self.scanner, lists)  # its own scanner is tested on its own
        self.actions = {s.name: s.action for s in policy.term_lists if s.kind != "clean"}
        self.lanes = {ln.name: ln for ln in policy.lanes}
        self._marks: dict[str, Marking | None] = {}
        self._rel: dict[bytes, str] = {}
        self._pmarks: dict[bytes, Marking | None] = {}
        self._rollup_ok: dict[tuple[str, frozenset[bytes]], bool] = {}
        # this check's own mark and banner ids
        self.index = MarkIndex(self._pmark, lambda t: self._mark(t, "banner"))
        self._bad: tuple[int, int, int] = (-1, 0, 0)  # (generation, ids judged, bit set)
        self._banner_mask: dict[tuple[int, str, int], bool] = {}
        self._codes: np.ndarray | None = None
        self._twin: Scanner | None = None  # a scanner whose clean scans this check may take

    def trust_scans_of(self, scanner: Scanner) -> bool:
        """Let ``check_batch`` take ``scanner``'s rows for an output that is the very
        bytes it scanned (``prior``), when ``scanner`` is the same matcher as this check's
        own: the same class, the same term lists (names, kinds and terms, in order, so
        that list ids agree) and the same options. ``Scanner`` compiles its tables from
        exactly these, deterministically, so both would find the same rows on the same
        bytes: scanning them again would repeat the same check. False (nothing trusted)
        otherwise."""
        own = self.scanner
        same = (type(scanner) is type(own) and tuple(scanner.lists) == tuple(own.lists)
                and (scanner.leet, scanner.encoded_min_len, scanner.max_bytes)
                == (own.leet, own.encoded_min_len, own.max_bytes))
        self._twin = scanner if same else None
        return same

    # ------------------------------------------------------------ batch
    def _list_codes(self) -> np.ndarray:
        """Per list id of this check's scanner, whether ``finish`` turns a match of it
        (outside banners and marks) into a finding: 0 never (a lane or clean list, no
        action), 1 unless the output is a quarantine candidate, 2 always."""
        if self._codes is None:
            codes = []
            for tl in self.scanner.lists:
                action = None if tl.name in self.lanes else self.actions.get(tl.name)
                codes.append(0 if action is None else 1 if action == "quarantine" else 2)
            self._codes = np.array(codes or [0], dtype=np.uint8)
        return self._codes

    def _bad_mask(self, ix: BatchIndex) -> int:
        """Bit set of the ids of marks this policy refuses (judged once per mark)."""
        gen, done, mask = self._bad
        if gen != ix.generation:
            done, mask = 0, 0
        n = len(ix.texts)
        if done < n:
            for i in range(done, n):
                if self._portion_problem(ix.texts[i].encode("utf-8"), ix.markings[i], set()):
                    mask |= 1 << i
            self._bad = (ix.generation, n, mask)
        return mask

    def _banner_fits(self, ix: BatchIndex, k: int) -> bool:
        """Every banner of output k renders as the roll-up of its portions."""
        if not self._fits(ix, ix.banners[k] or "", ix.banner_marks[k], ix.masks[k]):
            return False
        if ix.sections and ix.sections[k]:
            return all(self._fits(ix, text, m, mask) for text, m, _sp, mask, _ps
                       in ix.sections[k])
        return True

    def _fits(self, ix: BatchIndex, banner: str, bm: Marking | None, mask: int) -> bool:
        key = (ix.generation, banner, mask)
        ok = self._banner_mask.get(key)
        if ok is None:
            ms = [ix.markings[i] for i in self.index.members(mask)]
            ok = (bm is not None and bool(ms)
                  and render_banner(rollup(ms)) == render_banner(bm))
            if len(self._banner_mask) > 65536:
                self._banner_mask.clear()
            self._banner_mask[key] = ok
        return ok

    def _reusable(self, outputs: Sequence[bytes],
                  prior: Sequence[tuple[BatchResult, int] | None] | None,
                  ) -> tuple[BatchResult | None, dict[int, int]]:
        """The one prior ``BatchResult`` whose rows this check may take instead of
        scanning again, and output k -> its row there: only the scan of a trusted twin
        scanner (``trust_scans_of``), clean (no flag), of a message of the output's
        length, which the caller vouches was made of exactly the bytes ``outputs[k]``."""
        twin = self._twin
        if prior is None or twin is None:
            return None, {}
        res = next((p[0] for p in prior if p is not None), None)
        if res is None or res.scanner is not twin:
            return None, {}
        flags, sizes = res.flags.tolist(), res.sizes.tolist()  # (numpy scalars cost more)
        out: dict[int, int] = {}
        for k, p in enumerate(prior):
            if p is not None and p[0] is res:
                i = p[1]
                if not flags[i] and sizes[i] == len(outputs[k]):
                    out[k] = i
        return res, out

    def check_batch(self, outputs: Sequence[bytes], allow_quarantine: Sequence[bool],
                    prior: Sequence[tuple[BatchResult, int] | None] | None = None,
                    ) -> list[list[Finding]]:
        """``check`` for many outputs; one index pass and one scan for the batch.

        ``prior[k]``, when given, is (BatchResult, row) of a scan the caller made of
        exactly the bytes ``outputs[k]`` (the same object). Such an output is the same
        bytes for the same matcher (``trust_scans_of``): the scan would find the same
        rows, so its rows are taken from there and only the other outputs are scanned
        (every other step, its parse, mark and banner checks and the judging of the
        rows, runs here as for any output)."""
        old, reuse = self._reusable(outputs, prior)
        n = len(outputs)
        if not reuse:
            return self._check_batch(outputs, allow_quarantine, None, [])
        # the outputs to scan first, then the reused ones in the order of their rows in
        # ``old``: the rows of both then concatenate in message order, without a sort
        order = [k for k in range(n) if k not in reuse] + sorted(reuse, key=reuse.__getitem__)
        got = self._check_batch([outputs[k] for k in order],
                                [allow_quarantine[k] for k in order], old,
                                [reuse[k] for k in order[n - len(reuse):]])
        results: list[list[Finding]] = [[] for _ in range(n)]
        for j, k in enumerate(order):
            results[k] = got[j]
        return results

    def _scan_rest(self, texts: Sequence[bytes], fast: Sequence[bool], ix: BatchIndex,
                   old: BatchResult, rows: Sequence[int]) -> BatchResult:
        """The scan of ``texts`` whose last ``len(rows)`` are taken from ``old`` (at
        ``rows``, ascending): the others joined and scanned here (the index read the
        outputs in place: only these are copied)."""
        n, m = len(texts), len(texts) - len(rows)
        new = self.scanner.scan_batch(b"".join(texts[:m]), msgidx_offsets(texts[:m]))
        where = np.full(len(old.sizes), -1, dtype=np.int32)
        where[np.asarray(rows, dtype=np.int64)] = np.arange(m, n, dtype=np.int32)
        to = where[old.msg]
        take = to >= 0
        flags = np.zeros(n, dtype=new.flags.dtype)
        flags[:m] = new.flags[:m]
        sizes = np.fromiter(map(len, texts), np.int64, n)
        return BatchResult(np.concatenate((new.msg, to[take])),
                           np.concatenate((new.list_id, old.list_id[take])),
                           np.concatenate((new.term_id, old.term_id[take])),
                           np.concatenate((new.start, old.start[take])),
                           np.concatenate((new.end, old.end[take])),
                           np.concatenate((new.kind, old.kind[take])),
                           flags, sizes, self.scanner)

    def _check_batch(self, outputs: Sequence[bytes], allow_quarantine: Sequence[bool],
                     old: BatchResult | None, rows: Sequence[int]) -> list[list[Finding]]:
        """``check_batch``, the rows of the last ``len(rows)`` outputs taken from ``old``
        at ``rows`` (ascending) when what this check scans is the output itself."""
        n = len(outputs)
        ix = BatchIndex(outputs, self.index, 1 << 30, closing=False)
        preps: list[Prepared | None] = [None] * n
        results: list[list[Finding] | None] = [None] * n
        fast = ix.fast_list
        texts: list[bytes] = list(outputs)
        for k in [k for k in range(n) if not fast[k]]:
            prep = preps[k] = self.prepare(outputs[k])
            if prep.findings:
                results[k] = prep.findings
            texts[k] = prep.text
        m = n - len(rows)
        if old is not None and all(texts[k] is outputs[k] for k in range(m, n)):
            res = self._scan_rest(texts, fast, ix, old, rows)
        else:
            if all(fast):  # every text is its output: scan the index's copy
                buf, offsets = ix.buf, ix.offsets
            else:
                offsets = msgidx_offsets(texts)
                buf = b"".join(texts)
            res = self.scanner.scan_batch(buf, offsets)
        flags = res.flags.tolist()
        sel = np.where(ix.status == 0, np.arange(n, dtype=np.int64), -1)
        # matches that would give a finding (a quarantine list's may stay in a candidate)
        real = msgidx_acting_matches(sel, ix.status, ix.info, ix.rowstart, ix.rows,
                                     np.ascontiguousarray(res.msg, dtype=np.int32),
                                     np.ascontiguousarray(res.list_id, dtype=np.int16),
                                     np.ascontiguousarray(res.start, dtype=np.int64),
                                     np.ascontiguousarray(res.end, dtype=np.int64),
                                     self._list_codes(),
                                     np.fromiter(allow_quarantine, dtype=np.uint8,
                                                 count=n)).tolist()
        same_gen = ix.generation == self.index.generation
        bad = self._bad_mask(ix) if same_gen else -1
        masks, fits = ix.masks, self._banner_fits
        # the banner roll-up verdicts this check cached, looked up here first (the
        # common output: one section, a banner already judged with the same marks)
        fitted, gen, banners, secs = self._banner_mask, ix.generation, ix.banners, ix.sections
        for k in range(n):
            if results[k] is not None:
                continue
            if flags[k]:
                results[k] = self.check(outputs[k], allow_quarantine=allow_quarantine[k]) or [
                    Finding(RULE, "the scanner flagged the output", 0, len(texts[k]))]
                continue
            if fast[k] and real[k] == 0 and same_gen and not masks[k] & bad:
                ok = fitted.get((gen, banners[k], masks[k]))
                if ok is None or (secs and secs[k]):
                    ok = fits(ix, k)
                if ok:
                    results[k] = []
                    continue
            prep = preps[k] or self.prepare(outputs[k])
            if prep.findings:
                results[k] = prep.findings
                continue
            results[k] = self.finish(prep, res.matches_for(k), [],
                                     allow_quarantine=allow_quarantine[k])
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------ parse
    def _mark(self, text: str, kind: str) -> Marking | None:
        key = kind + "\x00" + text
        if key not in self._marks:
            if len(self._marks) > 65536:
                self._marks.clear()
            r = parse(text, kind)
            self._marks[key] = r.marking if r.valid else None
        return self._marks[key]

    def _pmark(self, raw: bytes) -> Marking | None:
        """A portion mark's bytes -> Marking (None if invalid); cached by the bytes."""
        got = self._pmarks.get(raw, False)
        if got is False:
            if len(self._pmarks) > 65536:
                self._pmarks.clear()
            try:
                got = self._mark(raw.decode("utf-8"), "portion")
            except UnicodeDecodeError:
                got = None
            self._pmarks[raw] = got
        return got  # type: ignore[return-value]

    @staticmethod
    def _hidden(text: bytes) -> Finding | None:
        """A finding when the output carries a byte or character that hides or reorders
        text on display (the first pass refuses such input, so released bytes never
        legitimately carry one)."""
        m = _UNSHOWABLE.search(text)
        if m is not None:
            return Finding(RULE, f"the output contains control byte 0x{text[m.start()]:02x}",
                           m.start(), m.start() + 1)
        if text.isascii():
            return None
        d = _MISLEADING.search(text.decode("utf-8", "replace"))
        if d is None:
            return None
        at = len(text.decode("utf-8", "replace")[: d.start()].encode("utf-8"))
        return Finding(RULE, f"the output contains U+{ord(d.group()):04X}, which changes how "
                       "text is displayed", at, at + len(d.group().encode("utf-8")))

    def prepare(self, output: bytes) -> Prepared:
        """Parse the released bytes (plain text or JSON) with this module's own parser."""
        if not output.isascii():
            try:
                output.decode("utf-8")
            except UnicodeDecodeError:
                return Prepared(output, [Finding(RULE, "the output is not valid UTF-8", 0, 0)])
        text = output
        head = output[:1]
        if head == b"{" or (head.isspace() and output.lstrip()[:1] == b"{"):
            try:
                text = self._json_to_text(json.loads(output)).encode("utf-8")
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                return Prepared(output, [Finding(RULE, f"the JSON output is not valid: {exc}",
                                                 0, len(output))])
        hidden = self._hidden(text)
        if hidden is not None:
            return Prepared(text, [hidden])
        fast = self._fast(text)
        if fast is not None:
            return fast
        prep = Prepared(text)
        bad = prep.findings.append
        lines: list[tuple[int, int]] = []
        pos = 0
        for raw in text.split(b"\n"):
            n = len(raw)
            if raw[:1] == b"(" or raw.strip():
                lines.append((pos, pos + n - 1 if raw[-1:] == b"\r" else pos + n))
            pos += n + 1
        if len(lines) < 3:
            bad(Finding(RULE, "the output is not a complete report", 0, len(text)))
            return prep
        (a0, a1), (z0, z1) = lines[0], lines[-1]
        top = text[a0:a1].strip()
        if top != text[z0:z1].strip():
            bad(Finding(RULE, "the output's first and last banners differ", z0, z1))
            return prep
        doc = None if top[:1] == b"(" else self._mark(top.decode(), "banner")
        if doc is None:
            bad(Finding(RULE, "the output's banner is not a valid banner", a0, a1))
            return prep
        prep.banners.append((-1, doc, a0, a1, top.decode()))
        skip = prep.skip
        skip += [(a0, a1), (z0, z1)]
        portions = prep.portions
        sec, want_banner = 0, False
        for s0, s1 in lines[1:-1]:
            line = text[s0:s1]
            if line[:1] == b"(" and not want_banner:
                close = line.find(b")")
                m = self._pmark(line[1:close]) if close > 1 else None
                if m is None:
                    bad(Finding(RULE, "an output line has an invalid portion mark", s0, s1))
                    continue
                portions.append((s0, s0 + close + 1, s1, m, sec, line[1:close]))
                continue
            sline = line.decode()
            if _TEAR.match(sline):
                sec += 1
                want_banner = True
                continue
            if want_banner:
                m = None if sline.startswith("(") else self._mark(sline.strip(), "banner")
                if m is None:
                    bad(Finding(RULE, "a tearline section has no valid banner", s0, s1))
                    return prep
                prep.banners.append((sec, m, s0, s1, sline.strip()))
                skip.append((s0, s1))
                want_banner = False
                continue
            bad(Finding(RULE, "an output line is not a portion-marked paragraph", s0, s1))
        if want_banner:
            bad(Finding(RULE, "the output ends in an empty tearline section", z0, z1))
        return prep

    def _fast(self, text: bytes) -> Prepared | None:
        """Banner, portion lines only, banner, in one pass of the markings engine's
        recogniser; None when anything else is there (the line parser then decides)."""
        first_nl = text.find(b"\n")
        if first_nl <= 0:
            return None
        body_end = len(text) - 1 if text.endswith(b"\n") else len(text)
        last_nl = text.rfind(b"\n", 0, body_end)
        if last_nl <= first_nl:
            return None
        hits = recognize_portions(text)
        if (not hits or len(hits) != text.count(b"\n", first_nl + 1, last_nl + 1)
                or hits[0].start != first_nl + 1 or hits[-1].start > last_nl):
            return None
        top_line = text[:first_nl].rstrip(b"\r")
        top = top_line.strip()
        bottom_end = body_end - (text[body_end - 1:body_end] == b"\r")
        if top[:1] == b"(" or top != text[last_nl + 1:bottom_end].strip():
            return None
        doc = self._mark(top.decode(), "banner")
        if doc is None:
            return None
        prep = Prepared(text)
        prep.banners.append((-1, doc, 0, len(top_line), top.decode()))
        prep.skip += [(0, len(top_line)), (last_nl + 1, bottom_end)]
        portions = prep.portions
        ends = [h.start - 1 for h in hits[1:]]
        ends.append(last_nl)
        for k, (s0, mark_end, r) in enumerate(hits):
            if text[s0 - 1] != 10 or r.errors or r.marking is None:
                return None
            e = ends[k] - (text[ends[k] - 1] == 13)
            portions.append((s0, mark_end, e, r.marking, 0, text[s0 + 1:mark_end - 1]))
        return prep

    def _json_to_text(self, doc: dict) -> str:
        if not isinstance(doc, dict) or set(doc) - {"banner", "portions", "tearlines"}:
            raise ValueError("unexpected top-level keys")
        secs = [doc, *doc.get("tearlines", [])]
        lines = []
        main = self._mark(ism_to_mark(doc["banner"]), "portion")
        if main is None:
            raise ValueError("invalid banner attributes")
        lines.append(render_banner(main))
        for k, sec in enumerate(secs):
            if k:
                m = self._mark(ism_to_mark(sec["banner"]), "portion")
                if m is None:
                    raise ValueError("invalid tearline banner attributes")
                lines += ["-" * 10 + " TEARLINE " + "-" * 10, render_banner(m)]
            if k and set(sec) - {"banner", "portions"}:
                raise ValueError("unexpected tearline keys")
            for p in sec["portions"]:
                if not isinstance(p, dict) or set(p) - _PORTION_KEYS:
                    raise ValueError("unexpected portion keys")
                t = p["text"]
                if not isinstance(t, str) or any(c in t for c in "\n\r"):
                    t = str(t).replace("\n", " ").replace("\r", " ")
                lines.append("(" + ism_to_mark(p) + ") " + t)
        lines.append(lines[0])
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ checks
    def _portion_problem(self, mark: bytes, m: Marking, lanes: set[str]) -> str:
        """Why marking ``m`` may not go to the destination ("" if it may)."""
        key_lanes = frozenset(lanes)
        pol = self.policy
        rank = classification_rank(m)
        if rank > pol.accreditation_rank:
            return f"a portion is above the destination's accreditation ({pol.accreditation})"
        if any(c.name not in pol.allowed_sci for c in m.sci):
            return "a portion carries SCI the destination may not receive"
        if any(c.name not in pol.allowed_sap for c in m.sap):
            return "a portion carries a SAP the destination may not receive"
        if pol.public:
            plain = (rank == 0 and m.origin == "US" and not (m.dissem or m.non_ic or m.sci or m.sap
                     or m.aea or m.fgi or m.fgi_marked or m.rel_to or m.rel_abbrev
                     or m.display_only or m.eyes))
            return "" if plain else "a portion is not a plain (U) portion"
        cached = self._rel.get(mark) if not key_lanes else None
        if cached is not None:
            return cached
        missing = [c for c in sorted(pol.members) if not releasable(m, c).releasable]
        why = ""
        if missing:
            unc = self.policy.uncaveated(m)
            ok = unc and pol.uncaveated_release
            for name in key_lanes:
                lane = self.lanes[name]
                ok = ok or (unc and lane.uncaveated and rank <= lane.max_rank)
            if not ok:
                why = "a portion is not releasable to " + ", ".join(missing)
        if not key_lanes:
            if len(self._rel) > 65536:
                self._rel.clear()
            self._rel[mark] = why
        return why

    def finish(self, prep: Prepared, matches: Sequence[Match], scan_findings: Sequence[Finding],
               *, allow_quarantine: bool = False) -> list[Finding]:
        """Findings for a prepared output given its scan; empty = it may leave."""
        out = list(prep.findings)
        if out:
            return out
        out += [Finding(RULE, f"scan of the output failed: {f.message}", f.start, f.end)
                for f in scan_findings]
        portions = prep.portions
        starts = [p[0] for p in portions] if matches else []
        lanes_of: dict[int, set[str]] = {}
        for mt in matches:
            i = bisect_right(starts, mt.start) - 1
            if i >= 0 and mt.start < portions[i][2]:
                if mt.end <= portions[i][1]:
                    continue  # inside a portion mark: marking vocabulary
            elif any(s <= mt.start and mt.end <= e for s, e in prep.skip):
                continue  # inside a banner line
            if mt.kind == "encoded":
                out.append(Finding(RULE, "the output carries an encoded run the guard cannot "
                                   "inspect", mt.start, mt.end))
                continue
            if mt.list_name in self.lanes:
                if i >= 0:
                    lanes_of.setdefault(i, set()).add(mt.list_name)
                continue
            action = self.actions.get(mt.list_name)
            if action is None:
                continue
            if action == "quarantine" and allow_quarantine:
                continue
            out.append(Finding(RULE, f"the output still holds a match of list "
                               f"'{mt.list_name}' ({action})", mt.start, mt.end))
        members: list[Marking] = []
        per_sec: dict[int, list[int]] = {}
        for i, (s0, _me, s1, m, sec, mark) in enumerate(portions):
            lanes = set()
            for name in lanes_of.get(i, ()):
                lane = self.lanes[name]
                if classification_rank(m) <= lane.max_rank:
                    lanes.add(name)
            why = self._rel.get(mark) if not lanes else None
            if why is None:
                why = self._portion_problem(mark, m, lanes)
            if why:
                out.append(Finding(RULE, why, s0, s1))
            members.append(m)
            per_sec.setdefault(sec, []).append(i)
        if not members:
            out.append(Finding(RULE, "the output has no portions", 0, len(prep.text)))
            return out
        for sec, bm, s0, s1, btext in prep.banners:
            idx = range(len(members)) if sec < 0 else per_sec.get(sec, [])
            if not idx or not self._banner_ok(btext, bm, [portions[i] for i in idx]):
                out.append(Finding(RULE, "a banner of the output is not the roll-up of its "
                                   "portions", s0, s1))
        return out

    def _banner_ok(self, btext: str, bm: Marking, ps: list[tuple]) -> bool:
        """The banner renders exactly as the roll-up of the portions (cached by text)."""
        key = (btext, frozenset(p[5] for p in ps))
        ok = self._rollup_ok.get(key)
        if ok is None:
            ok = render_banner(rollup([p[3] for p in ps])) == render_banner(bm)
            if len(self._rollup_ok) > 65536:
                self._rollup_ok.clear()
            self._rollup_ok[key] = ok
        return ok

    def check(self, output: bytes, *, allow_quarantine: bool = False) -> list[Finding]:
        """Parse, scan and check ``output``; empty = it may leave."""
        prep = self.prepare(output)
        if prep.findings:
            return prep.findings
        res = self.scanner.scan(prep.text)
        return self.finish(prep, list(res.matches) + list(res.encoded), res.findings,
                           allow_quarantine=allow_quarantine)
