"""The scanner: compiles term lists and patterns into the Cython core, and scans bodies.

``Scanner(lists).scan(data)`` finds dirty words (after normalisation, see guard.normalize),
applies clean words, finds PII patterns and inspects encoded runs. Every match is a span in
the ORIGINAL bytes. Bad input (invalid UTF-8, NUL bytes, over-size bodies) never raises: it
yields findings, which fail closed. ``scan_batch`` scans many bodies in one call with the
GIL released (pure-ASCII bodies; others are folded in Python first, then scanned).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from guard import _core
from guard.findings import Finding
from guard.normalize import class_table, fold, fold_table, squeeze
from guard.terms import TermList, parse_pattern, split_pattern_line

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_DECODE_DEPTH = 3
ENCODED_NAMES = ("base64", "hex")
KIND_CODES = {"dirty": 0, "pattern": 1, "encoded": 2}

FLAG_INVALID_UTF8 = _core.SCAN_FLAG_INVALID_UTF8
FLAG_NUL = _core.SCAN_FLAG_NUL
FLAG_OVERSIZE = _core.SCAN_FLAG_OVERSIZE
FLAG_ERROR = _core.SCAN_FLAG_ERROR
FLAG_ENCODED_BINARY = 16  # only inside decoded content: not text, so not inspectable

_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
_HEX_CHARS = b"0123456789abcdefABCDEF"
# MIME wraps base64 at 76 columns: a run continues across single line breaks.
_CONTINUATION = re.compile(rb"(?:\r?\n[A-Za-z0-9+/=_-]+)+")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_tuple_new = tuple.__new__  # builds a Match from one tuple without the keyword machinery


class Match(NamedTuple):
    """One match; ``start``/``end`` are byte offsets in the original data (half-open).

    A NamedTuple rather than a frozen dataclass: immutable and hashable alike, but about
    5x cheaper to build, and a batch builds one per match."""

    list_name: str
    kind: str  # "dirty" | "pattern" | "encoded"
    term: str
    start: int
    end: int


@dataclass(slots=True)
class ScanResult:
    """Matches (clean words applied), uninspectable encoded runs, and fail-closed findings."""

    matches: list[Match] = field(default_factory=list)
    encoded: list[Match] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _flag_findings(flags: int, size: int) -> list[Finding]:
    out = []
    if flags & FLAG_INVALID_UTF8:
        out.append(Finding("core.invalid-utf8", "body is not valid UTF-8", 0, size))
    if flags & FLAG_NUL:
        out.append(Finding("core.nul-byte", "body contains NUL bytes", 0, size))
    if flags & FLAG_OVERSIZE:
        out.append(Finding("core.oversize", "body is larger than the scanner's limit", 0, size))
    if flags & FLAG_ERROR:
        out.append(Finding("core.error", "the scanner failed on this body", 0, size))
    return out


@dataclass
class BatchResult:
    """Results of ``Scanner.scan_batch`` as numpy arrays (one row per match).

    ``list_id`` is -1 for an uninspectable encoded run (``term_id`` 0 base64, 1 hex);
    ``kind`` holds 0 dirty, 1 pattern, 2 encoded. ``flags`` has one entry per message.
    """

    msg: np.ndarray
    list_id: np.ndarray
    term_id: np.ndarray
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    sizes: np.ndarray
    scanner: Scanner
    _view: _core._MatchView | None = field(default=None, repr=False, compare=False)

    def _rows(self) -> _core._MatchView:
        # one reader per batch (the Match objects are built in the core: ~0.1 us each)
        if self._view is None:
            self._view = self.scanner._mtable.view(self.msg, self.list_id, self.term_id,
                                                   self.start, self.end, len(self.sizes))
        return self._view

    def matches_for(self, i: int) -> list[Match]:
        """All matches of message i (encoded runs included, kind "encoded")."""
        return self._rows().for_message(i)

    def matches_by_message(self) -> list[list[Match]]:
        """``[matches_for(i) for i in range(n)]`` in one pass over the rows; messages
        without matches get an empty list (a new one each)."""
        return self._rows().by_message()

    def message_bounds(self) -> np.ndarray:
        """Row range of every message: its rows are ``[bounds[i], bounds[i + 1])`` of the
        arrays (``msg`` is sorted), so callers can read matches without Match objects."""
        return np.searchsorted(self.msg, np.arange(len(self.sizes) + 1))

    def result_for(self, i: int) -> ScanResult:
        """Message i as a ScanResult (same content as ``Scanner.scan`` on it)."""
        res = ScanResult(findings=_flag_findings(int(self.flags[i]), int(self.sizes[i])))
        for m in self.matches_for(i):
            (res.encoded if m.kind == "encoded" else res.matches).append(m)
        return res


class Scanner:
    """A compiled policy filter: dirty/clean term lists and pattern lists.

    ``leet`` folds leetspeak digits/symbols to letters; ``encoded_min_len`` is the shortest
    base64/hex run that is decoded and inspected (None: encoded content is not looked for);
    ``max_bytes`` is the largest body accepted without an over-size finding.
    """

    def __init__(self, lists: Sequence[TermList], *, leet: bool = False,
                 encoded_min_len: int | None = 64, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.lists = list(lists)
        self.leet = leet
        self.encoded_min_len = encoded_min_len
        self.max_bytes = max_bytes
        self._terms: list[list[str]] = []  # per list: canonical term / pattern name
        self._compile()

    # ---- compilation ------------------------------------------------------------------
    def _compile(self) -> None:
        recs = []  # (chars, tgap, list_id, term_id, clean, substring)
        pats = []  # (list_id, term_id, atoms)
        for li, tl in enumerate(self.lists):
            names: list[str] = []
            seen: set[tuple[bytes, bool]] = set()
            for raw in tl.terms:
                if tl.kind == "pattern":
                    pname, pattern = split_pattern_line(raw)
                    pats.append((li, len(names), parse_pattern(pattern)))
                    names.append(pname)
                    continue
                sub = raw.startswith("~")
                text = raw[1:].strip() if sub else raw.strip()
                sq = squeeze(fold(text.encode("utf-8")).text, self.leet)
                if not sq.chars:
                    raise ValueError(f"list {tl.name!r}: term {raw!r} has no letters or digits")
                if len(sq.chars) > _core.SCAN_MAX_TERM:
                    raise ValueError(f"list {tl.name!r}: term {raw!r} is too long")
                names.append(text)
                if (sq.chars, sub) in seen:
                    continue
                seen.add((sq.chars, sub))
                tgap = bytes([0]) + bytes(1 if g else 0 for g in sq.gaps[1:])
                recs.append((sq.chars, tgap, li, len(names) - 1, tl.kind == "clean", sub))
            self._terms.append(names)
        nt = len(recs)
        self._code_list = np.array([r[2] for r in recs] + [p[0] for p in pats], dtype=np.int16)
        self._code_term = np.array([r[3] for r in recs] + [p[1] for p in pats], dtype=np.int32)
        # (list name, kind, term) of every (list_id, term_id), then of the encoded kinds
        self._prefix = [
            [(tl.name, "pattern" if tl.kind == "pattern" else "dirty", t) for t in names]
            for tl, names in zip(self.lists, self._terms, strict=True)
        ] + [[("", "encoded", name) for name in ENCODED_NAMES]]
        self._mtable = _core.MatchTable(Match, self._prefix)
        self._code_list_py = self._code_list.tolist()
        self._kind_of_list = np.array(
            [1 if tl.kind == "pattern" else 0 for tl in self.lists] or [0], dtype=np.uint8)
        self._code_term_py = self._code_term.tolist()
        toff = np.zeros(nt + 1, dtype=np.int32)
        toff[1:] = np.cumsum([len(r[0]) for r in recs]) if nt else []
        tchars = b"".join(r[0] for r in recs)
        tgap = b"".join(r[1] for r in recs)
        tlen = np.array([len(r[0]) for r in recs], dtype=np.int32)
        tclean = np.array([r[4] for r in recs], dtype=np.uint8)
        k8 = [_core.scan_key8(r[0]) for r in recs]
        tkey8 = np.array([k for k, _m in k8], dtype=np.uint64)
        tmask8 = np.array([m for _k, m in k8], dtype=np.uint64)
        ww_ids = [i for i, r in enumerate(recs) if not r[5]]
        ss_ids = [i for i, r in enumerate(recs) if r[5]]
        ww, ww_ord = _build_table(recs, ww_ids)
        ss, ss_ord = _build_table(recs, ss_ids, offset=len(ww_ord))
        tord = np.array(ww_ord + ss_ord, dtype=np.int32)
        pcm, popt, pnrun, pstart, plen, pcan = _compile_patterns([p[2] for p in pats])
        alnum = np.zeros(256, dtype=np.uint8)
        for b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789":
            alnum[b] = 1
        alnum[0x80:] = 1
        b64 = np.zeros(256, dtype=np.uint8)
        for b in _B64_CHARS:
            b64[b] = 1
        for b in _HEX_CHARS:
            b64[b] = 2
        self._core = _core.ScanCore(
            ww, ss, np.frombuffer(tchars, np.uint8), toff, tlen, np.frombuffer(tgap, np.uint8),
            tord, tclean, tkey8, tmask8, fold_table(self.leet), class_table(), pcm, popt, pnrun,
            pstart, plen, pcan,
            alnum, b64, int(self.encoded_min_len or 0))

    @property
    def nbytes(self) -> int:
        """Memory held by the compiled tables."""
        return int(self._core.nbytes())

    # ---- results ----------------------------------------------------------------------
    def _match_from(self, list_id: int, term_id: int, start: int, end: int) -> Match:
        # list_id -1 (encoded run) indexes the last entry of _prefix: the encoded names
        return _tuple_new(Match, (*self._prefix[list_id][term_id], start, end))

    def _hits(self, hits: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
        cl, ct = self._code_list_py, self._code_term_py
        return [(cl[c], ct[c], s, e) for c, s, e in hits]

    # ---- scanning ---------------------------------------------------------------------
    def scan(self, data: bytes) -> ScanResult:
        """Scan one body. Never raises on content; problems become findings (fail closed)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        elif type(data) is not bytes:
            data = bytes(data)
        rows, flags = self._scan_rows(data, 0)
        matches: list[Match] = []
        encoded: list[Match] = []
        prefix = self._prefix
        for li, ti, s, e in rows:  # list_id -1: an encoded run (see _match_from)
            (encoded if li < 0 else matches).append(
                _tuple_new(Match, (*prefix[li][ti], s, e)))
        return ScanResult(matches, encoded, _flag_findings(flags, len(data)) if flags else [])

    def _scan_rows(self, data: bytes, depth: int) -> tuple[list[tuple[int, int, int, int]], int]:
        """(list_id, term_id, start, end) rows and the flags of one body."""
        flags = 0
        if len(data) > self.max_bytes:
            flags |= FLAG_OVERSIZE
        if b"\x00" in data:
            flags |= FLAG_NUL
        try:
            if data.isascii():
                hits, runs = self._core.scan(data, as_lists=True)
            else:
                if flags & FLAG_OVERSIZE:
                    # Folding costs Python time and memory per character: an over-size
                    # non-ASCII body is refused (the finding fails it closed) unscanned.
                    return [], flags
                f = fold(data)
                if f.invalid_utf8:
                    flags |= FLAG_INVALID_UTF8
                hits, runs = self._core.scan(f.text, f.start, f.end, as_lists=True)
        except MemoryError:
            return [], flags | FLAG_ERROR
        rows = self._hits(hits)
        if runs:
            rows += self._inspect_runs(data, runs, depth)
        return rows, flags

    def _inspect_runs(self, data: bytes, runs: list[tuple[int, int, int]],
                      depth: int) -> list[tuple[int, int, int, int]]:
        """Decode each base64/hex run (kind, start, end) and scan it; dirty content is
        reported on the whole run, content that cannot be decoded or shown to be clean
        text is uninspectable."""
        out: list[tuple[int, int, int, int]] = []
        covered = -1
        for k, s, e in runs:
            if s < covered:
                continue
            m = _CONTINUATION.match(data, e)
            if m:
                e = m.end()
            covered = e
            raw = data[s:e]
            found = self._inspect_one(raw, k, depth)
            if found is None:
                out.append((-1, k, s, e))
            else:
                out.extend((li, ti, s, e) for li, ti in found)
        return out

    def _inspect_one(self, raw: bytes, kind: int, depth: int) -> list[tuple[int, int]] | None:
        """Terms found in the decoded run, or None when it is uninspectable."""
        if not raw.isascii() or depth >= MAX_DECODE_DEPTH:
            return None
        compact = raw.replace(b"\r", b"").replace(b"\n", b"")
        decoded = _decode(compact, kind)
        if decoded is None or _CONTROL.search(decoded):
            return None
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            return None  # binary: cannot be shown clean
        rows, flags = self._scan_rows(decoded, depth + 1)
        if flags:
            return None
        found: list[tuple[int, int]] = []
        for li, ti, _s, _e in rows:
            if li < 0:
                return None  # nested content that could not be inspected
            if (li, ti) not in found:
                found.append((li, ti))
        return found

    def scan_batch(self, buf: bytes, offsets: np.ndarray) -> BatchResult:
        """Scan messages ``buf[offsets[i]:offsets[i+1]]``; the GIL is released while the
        pure-ASCII messages are scanned, so threads scanning batches scale across cores."""
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        hits, runs, flags, slow = self._core.scan_batch(buf, offsets, self.max_bytes)
        msg, code, start, end = hits
        parts_msg = [msg]
        # (ndarray.take: half the cost of fancy indexing, and out-of-range codes still raise)
        parts_list = [self._code_list.take(code) if len(code) else np.zeros(0, np.int16)]
        parts_term = [self._code_term.take(code) if len(code) else np.zeros(0, np.int32)]
        parts_start = [start]
        parts_end = [end]
        extra: list[tuple[int, int, int, int, int]] = []
        rmsg, rkind, rstart, rend = runs
        if len(rmsg):
            for i in np.unique(rmsg).tolist():
                sel = rmsg == i
                body = buf[offsets[i]:offsets[i + 1]]
                sub = list(zip(rkind[sel].tolist(), rstart[sel].tolist(), rend[sel].tolist(),
                               strict=True))
                extra += [(i, *r) for r in self._inspect_runs(bytes(body), sub, 0)]
        # (slow.any() first: flatnonzero costs ~4 us of Python-level numpy per call even
        # when empty, and the daemon decides many batches of one message)
        for i in (np.flatnonzero(slow).tolist() if slow.any() else ()):
            body = bytes(buf[offsets[i]:offsets[i + 1]])
            rows, fl = self._scan_rows(body, 0)
            flags[i] |= fl
            extra += [(i, *r) for r in rows]
        if extra:
            ex = np.array(extra, dtype=np.int64).reshape(-1, 5)
            parts_msg.append(ex[:, 0].astype(np.int32))
            parts_list.append(ex[:, 1].astype(np.int16))
            parts_term.append(ex[:, 2].astype(np.int32))
            parts_start.append(ex[:, 3])
            parts_end.append(ex[:, 4])
        if extra:
            msg = np.concatenate(parts_msg)
            order = np.argsort(msg, kind="stable")
            msg = msg[order]
            list_id = np.concatenate(parts_list)[order]
            term_id = np.concatenate(parts_term)[order]
            start = np.concatenate(parts_start)[order]
            end = np.concatenate(parts_end)[order]
        else:
            # the common case: every row came from the core, already in message order
            list_id, term_id = parts_list[0], parts_term[0]
        if not len(list_id):
            kind = np.zeros(0, dtype=np.uint8)
        elif list_id.min() >= 0:
            kind = self._kind_of_list.take(list_id)
        else:
            kind = np.full(len(list_id), 2, dtype=np.uint8)
            pos = list_id >= 0
            kind[pos] = self._kind_of_list[list_id[pos]]
        return BatchResult(msg, list_id, term_id, start, end, kind, flags,
                           offsets[1:] - offsets[:-1], self)



def _decode(compact: bytes, kind: int) -> bytes | None:
    """Decode a hex (kind 1) or base64 (kind 0) run; None when it is not valid."""
    try:
        if kind == 1 and len(compact) % 2 == 0:
            return binascii.unhexlify(compact)
        body = compact.rstrip(b"=")
        if b"=" in body:
            return None
        if b"-" in body or b"_" in body:
            if b"+" in body or b"/" in body:
                return None
            body = body.replace(b"-", b"+").replace(b"_", b"/")
        if len(body) % 4 == 1:
            return None
        return base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _build_table(recs, ids: list[int], offset: int = 0):
    """Prefix table for the terms ``ids``: a blocked Bloom filter of hashed prefix-class
    keys (two bits in one 64-bit word per key: the cache-resident prefilter) + an exact
    open-addressing hash of key -> range of ``tord``
    (terms grouped by key), plus the substring bigram bitset and one-letter flags."""
    keys: dict[int, list[int]] = {}
    classes = 0
    big = np.zeros(1024, dtype=np.uint64)
    single = np.zeros(256, dtype=np.uint8)
    long5: set[int] = set()
    breaks: set[int] = set()
    for i in ids:
        chars = recs[i][0]
        if 5 <= len(chars) < 8:
            # a 5..7-character term is still a candidate after a first word of z letters
            # and a loose gap when it has z characters or a word break after z of them
            # (sc_zkey, tested in sc_cand_cut: first 5 characters, z in byte 5, tag 1)
            k5 = _core.scan_prefix_key(chars[:5]) & ((1 << 40) - 1)
            breaks.update(k5 | (z << 40) | (1 << 56) for z in range(2, 8)
                          if z == len(chars) or (z < len(chars) and recs[i][1][z]))
        keys.setdefault(_core.scan_prefix_key(chars), []).append(i)
        if len(chars) >= 8:
            classes |= 32
            long5.add(_core.scan_prefix_key(chars[:5]))
            # the 8+ candidate's next letters (sc_cand_cut's tail test): bit 8 + t of
            # classes says some term goes on for t = 3 (11+ characters) or t = 0 more
            classes |= 1 << (8 + (3 if len(chars) >= 11 else 0))
            breaks.add(_core.scan_tail_key(chars))
        else:
            classes |= 1 << (min(5, len(chars)) - 1)
        if len(chars) == 1:
            single[chars[0]] = 1
        else:
            k2 = (chars[0] << 8) | chars[1]
            big[k2 >> 6] |= np.uint64(1) << np.uint64(k2 & 63)
    nk = len(keys)
    bits_log = max(15, min(21, (max(nk + len(long5), 1) * 64 - 1).bit_length()))
    shift = 32 - bits_log
    if nk + len(long5) <= 8192:
        shift |= 256  # SC_SHARED_WORDS: one Bloom word per 4-letter prefix (see _scan.pxi)
    bits = np.zeros((1 << bits_log) // 64, dtype=np.uint64)
    bitsl = np.zeros((1 << bits_log) // 64, dtype=np.uint64)
    for k in long5:
        # first stage of the terms of 8+ characters: their class-5 key retagged 0x15,
        # in the same bitset (its word is that of the first 4 characters, see sc_bloom_word)
        w, m = _core.scan_bloom((k & ((1 << 56) - 1)) | (0x15 << 56), shift)
        bits[w] |= np.uint64(m)
    for k in breaks:
        w, m = _core.scan_bloom(k, shift)
        bits[w] |= np.uint64(m)
    hsize = 16
    while hsize < 2 * nk:
        hsize *= 2
    hkeys = np.zeros(hsize, dtype=np.uint64)
    hlo = np.zeros(hsize, dtype=np.int32)
    hhi = np.zeros(hsize, dtype=np.int32)
    hmax = np.zeros(hsize, dtype=np.int32)
    order: list[int] = []
    for k, members in keys.items():
        w, m = _core.scan_bloom(k, shift)
        bits[w] |= np.uint64(m)
        slot = _core.scan_hash(k, True) & (hsize - 1)
        while hkeys[slot] != 0:
            slot = (slot + 1) & (hsize - 1)
        hkeys[slot] = k
        hlo[slot] = offset + len(order)
        order.extend(members)
        hhi[slot] = offset + len(order)
        hmax[slot] = max(len(recs[i][0]) for i in members)
    table = _core._ScanTable(shift, classes, len(ids), bits, bitsl, hkeys, hlo, hhi, hmax, big,
                             single)
    return table, order


def _class_bytes(cls: str, lit: bool) -> list[list[int]]:
    """The byte positions of one repetition of an atom (a list of accepted-byte sets)."""
    if lit:
        enc = cls.encode("utf-8")
        if len(enc) == 1 and cls.isascii() and cls.isalpha():
            return [[ord(cls.lower()), ord(cls.upper())]]
        return [[b] for b in enc]
    digits = list(range(0x30, 0x3A))
    letters = list(range(0x41, 0x5B)) + list(range(0x61, 0x7B))
    if cls == "d":
        return [digits]
    if cls == "a":
        return [letters]
    return [digits + letters + list(range(0x80, 0x100))]


def _compile_patterns(patterns):
    """Bit-parallel NFA tables: per pattern 256 masks, the runs of optional positions
    (closure without a loop in the core), the start closure and the bytes that can start."""
    n = len(patterns)
    pcm = np.zeros((max(n, 1), 256), dtype=np.uint64)
    popt = np.zeros((max(n, 1), 16), dtype=np.uint64)
    pnrun = np.zeros(max(n, 1), dtype=np.int32)
    pstart = np.zeros(max(n, 1), dtype=np.uint64)
    plen = np.zeros(n, dtype=np.int32)
    pcan = np.zeros(256, dtype=np.uint8)
    for p, atoms in enumerate(patterns):
        pos = 0
        opt = 0
        bound = 0  # first byte of each optional repetition: only there may a run be skipped
        for a in atoms:
            for r in range(a.hi):
                if r >= a.lo:
                    bound |= 1 << pos
                for accepted in _class_bytes(a.cls, a.lit):
                    for b in accepted:
                        pcm[p, b] |= np.uint64(1 << pos)
                    if r >= a.lo:
                        opt |= 1 << pos
                    pos += 1
        runs = []
        k = 0
        while k < pos:
            if opt >> k & 1:
                j = k
                while j + 1 < pos and opt >> (j + 1) & 1:
                    j += 1
                runs.append((k, j))
                k = j + 1
            else:
                k += 1
        if len(runs) > 8:
            raise ValueError("pattern has more than 8 bounded repetitions")
        # (trigger, fill) per run: a state bit on a repetition boundary may skip to any
        # later boundary of the run or past it; a bit inside a multi-byte literal's
        # repetition ("é" is 2 bytes) may not, so é{0,2} never matches half an "é"
        pairs = []
        for r, (a0, a1) in enumerate(runs):
            trig = (((1 << (a1 + 1)) - 1) ^ ((1 << a0) - 1)) & bound
            pairs.append((trig, trig | (1 << (a1 + 1))))
            popt[p, 2 * r] = np.uint64(pairs[-1][0])
            popt[p, 2 * r + 1] = np.uint64(pairs[-1][1])
        pnrun[p] = len(runs)
        st = 1  # the start state's closure, by the core's own rule
        while True:
            ns = st
            for trig, fill in pairs:
                x = ns & trig
                if x:
                    ns |= fill & ~((x & -x) - 1)
            if ns == st:
                break
            st = ns
        plen[p] = pos
        pstart[p] = np.uint64(st & ((1 << 64) - 1))
        for b in range(256):
            if int(pcm[p, b]) & st:
                pcan[b] = 1
    return pcm.reshape(-1), popt.reshape(-1), pnrun, pstart, plen, pcan
