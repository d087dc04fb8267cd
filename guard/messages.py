"""Message formats, detected from the content only (never from a header's claim).

Two formats are accepted; anything else, or a message that is not well formed, gives
findings (and the pipeline blocks it).

**Plain-text report** (UTF-8, ``\\n`` or ``\\r\\n`` line ends)::

    SECRET//REL TO USA, GBR                      <- banner: first non-blank line
    (S//REL TO USA, GBR) Naval activity ...      <- one portion per line, mark at column 0
    (U) Weather in the area was clear.
    ------------------ TEARLINE ------------------   <- a line of dashes around TEARLINE
    SECRET//REL TO USA, FVEY                     <- each tearline section opens with its banner
    (S//REL TO USA, FVEY) Naval activity ...
    SECRET//REL TO USA, FVEY                     <- optional closing banner of the section
    SECRET//REL TO USA, GBR                      <- banner again: last non-blank line

Every non-blank line between the banners is a portion (a paragraph) and must start with
a portion mark ``(...)``; a wrapped or unmarked line is an unmarked paragraph and blocks.
Blank lines are allowed anywhere. The document banner covers all sections.

**JSON document** (first non-blank byte ``{``), ISM-style attributes::

    {"banner":   {"classification": "S", "releasableTo": ["USA", "GBR"],
                  "disseminationControls": ["REL"]},
     "portions": [{"text": "...", "classification": "S", "ownerProducer": ["USA"],
                   "releasableTo": ["USA", "GBR"], "disseminationControls": ["REL"],
                   "SCIcontrols": []}],
     "tearlines": [{"banner": {...}, "portions": [...]}]}

Attribute values are the CAPCO portion-mark tokens (``S``, ``NF``, ``OC``, ``SI``...);
``releasableTo`` requires ``REL`` in ``disseminationControls`` and ``displayOnlyTo``
requires ``DISPLAYONLY``. Unknown keys are refused (hidden metadata). A JSON document
is converted to the internal normalised form, which is exactly the plain-text report
above (``Message.text``); findings on JSON messages give byte spans in that text. A
portion's newlines become spaces there (same length, so spans map back one to one).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guard._core import (
    MsgIdxRows,
    MsgIdxTable,
    SlotMaker,
    msgidx_all_bytes,
    msgidx_index,
    msgidx_offsets,
    msgidx_pick,
)
from guard.findings import Finding
from guard.markings import Marking, ParseResult, parse, recognize_portions, render_banner

__all__ = [
    "TEARLINE",
    "BatchIndex",
    "MarkIndex",
    "Message",
    "Portion",
    "Section",
    "ism_to_mark",
    "marking_to_ism",
    "parse_mark",
    "parse_message",
    "portion_marking",
]

#: The tearline written by the guard; any line of >= 3 dashes around TEARLINE is accepted.
TEARLINE = b"-" * 28 + b" TEARLINE " + b"-" * 28
_TEARLINE = re.compile(rb"^[ \t]*-{3,}[ \t]*TEARLINE[ \t]*-{3,}[ \t]*\r?$", re.IGNORECASE)
# C0 controls other than tab/LF/CR, and DEL: never part of a report.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
# Characters that make text display differently from what it says: bidi overrides and
# isolates, the BOM, and Unicode line/paragraph separators and NEL (a viewer may show one
# portion line as two paragraphs, the second looking separately marked). Zero-width
# characters are folded away by the scanner.
_DECEPTIVE = re.compile("[\u202a-\u202e\u2066-\u2069\ufeff\u2028\u2029\u0085]")
_BARE_CR = re.compile(rb"\r(?!\n)")
_MAX_MARK = 512
# a message may have this many lines more than its policy's max_portions (banners, blank
# lines, tearlines) before it is refused: message-limit
_LINE_SLACK = 4 * 64 + 2
_CACHE_MAX = 65536
_cache: dict[tuple[str, str], ParseResult] = {}
_pcache: dict[bytes, ParseResult] = {}


def parse_mark(text: str, kind: str) -> ParseResult:
    """``markings.parse`` with a bounded cache (a message repeats few distinct marks)."""
    key = (text, kind)
    hit = _cache.get(key)
    if hit is None:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        hit = parse(text, kind)
        _cache[key] = hit
    return hit


def _portion_mark(raw: bytes) -> ParseResult:
    """Parse the bytes inside a portion mark's parentheses (cached by the raw bytes)."""
    hit = _pcache.get(raw)
    if hit is None:
        if len(_pcache) >= _CACHE_MAX:
            _pcache.clear()
        hit = parse(raw.decode("utf-8"), "portion")
        _pcache[raw] = hit
    return hit


def portion_marking(raw: bytes) -> Marking | None:
    """The marking of a portion mark's inner bytes, None when not valid (as parse_text)."""
    try:
        res = _pcache.get(raw) or _portion_mark(raw)
    except UnicodeDecodeError:
        return None
    return None if res.errors or res.marking is None else res.marking


@dataclass(slots=True)
class Portion:
    """One portion-marked paragraph: byte offsets in ``Message.text``."""

    start: int          # the "(" of the mark
    end: int            # end of the line (before "\r\n" / "\n")
    mark_end: int       # just after ")"
    mark: str           # the text inside the parentheses
    section: int
    marking: Marking | None = None


@dataclass(slots=True)
class Section:
    """The main body (index 0) or one tearline section."""

    index: int
    tearline: bool
    banner: str | None = None
    marking: Marking | None = None
    banner_span: tuple[int, int] = (0, 0)
    portions: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Message:
    """A parsed message; ``findings`` non-empty means not well formed (block)."""

    format: str                       # "text" | "json" | "unknown"
    data: bytes                       # the bytes as received
    text: bytes                       # the internal normalised form that is scanned
    banner: str = ""
    marking: Marking | None = None
    banner_spans: list[tuple[int, int]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    portions: list[Portion] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    json_portions: list[dict[str, Any]] | None = None   # JSON only, aligned with portions

    @property
    def ok(self) -> bool:
        """Well formed: no findings."""
        return not self.findings

    def skip_spans(self) -> list[tuple[int, int]]:
        """Spans of banners and portion marks (marking vocabulary, not body text)."""
        spans = list(self.banner_spans)
        spans.extend(s.banner_span for s in self.sections if s.tearline)
        spans.extend((p.start, p.mark_end) for p in self.portions)
        return spans


def parse_message(data: bytes, max_portions: int = 100_000) -> Message:
    """Detect the format of ``data`` from its content and parse it; never raises on input."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return Message("unknown", b"", b"", findings=[
            Finding("message-format", "the message is not a byte string", 0, 0)])
    data = bytes(data)
    bad = None if len(data.translate(None, _CONTROL_BYTES)) == len(data) else _CONTROL.search(data)
    if bad is not None:
        return Message("unknown", data, data, findings=[Finding(
            "message-encoding",
            f"the message contains control byte 0x{data[bad.start()]:02x}, "
            "which no marked report carries", bad.start(), bad.start() + 1)])
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        at = _BARE_CR.search(data).start()  # type: ignore[union-attr]
        return Message("unknown", data, data, findings=[Finding(
            "message-encoding", "the message contains a carriage return that is not part of "
            "a line end (it can hide text on display)", at, at + 1)])
    if not data.isascii():
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Message("unknown", data, data, findings=[Finding(
                "message-encoding", f"the message is not valid UTF-8 ({exc.reason})",
                exc.start, exc.end)])
        dec = _DECEPTIVE.search(decoded)
        if dec is not None:
            at = len(decoded[: dec.start()].encode("utf-8"))
            return Message("unknown", data, data, findings=[Finding(
                "message-encoding",
                f"the message contains U+{ord(dec.group()):04X}, a character that changes "
                "how text is displayed", at, at + len(dec.group().encode("utf-8")))])
    head = data[:1]
    if head.isspace():  # rare: avoid copying the message in the common case
        head = data.lstrip()[:1]
    if head == b"{":
        return _parse_json(data, max_portions)
    if head in (b"<", b"[", b""):
        what = {b"<": "XML/HTML", b"[": "a JSON array", b"": "empty"}[head]
        return Message("unknown", data, data, findings=[Finding(
            "message-format", f"the message is {what}, not a marked report or JSON document",
            0, min(len(data), 1))])
    return parse_text(data, data, max_portions)


# ------------------------------------------------------------------ plain text

def _fast_text(data: bytes, text: bytes, max_portions: int, fmt: str) -> Message | None:
    """The common case in one pass of the Cython recogniser: banner, portion lines only,
    banner. Returns None whenever anything else is there (blank or unmarked lines,
    tearlines, indentation, an invalid mark...): the full parser then decides and explains.
    """
    first_nl = text.find(b"\n")
    if first_nl <= 0:
        return None
    body_end = len(text) - 1 if text.endswith(b"\n") else len(text)
    last_nl = text.rfind(b"\n", 0, body_end)
    if last_nl <= first_nl:
        return None
    # the banners first: a report whose last line does not repeat its banner (or that
    # has none) is sent to the full parser before its portions are recognised for nothing
    top = text[:first_nl]
    bottom = text[last_nl + 1:body_end]
    if top.endswith(b"\r"):
        top = top[:-1]
    if bottom.endswith(b"\r"):
        bottom = bottom[:-1]
    if top[:1] == b"(" or top.strip() != bottom.strip():
        return None
    nmid = text.count(b"\n", first_nl + 1, last_nl + 1)  # lines between the banners
    if nmid > max_portions:
        return None
    hits = recognize_portions(text)
    if len(hits) != nmid or hits[0].start != first_nl + 1 or hits[-1].start > last_nl:
        return None
    top_s = top.decode("utf-8").strip()
    res = parse_mark(top_s, "banner")
    if res.errors or res.marking is None:
        return None
    msg = Message(fmt, data, text, top_s, res.marking,
                  [(0, len(top)), (last_nl + 1, last_nl + 1 + len(bottom))])
    section = Section(0, False, top_s, res.marking, (0, len(top)))
    msg.sections.append(section)
    portions = msg.portions
    nxt_starts = [h.start for h in hits[1:]]
    nxt_starts.append(last_nl + 1)
    for k, h in enumerate(hits):
        s, mark_end, r = h
        if text[s - 1] != 10 or r.errors or r.marking is None:  # indented, or invalid
            return None
        e = nxt_starts[k] - 1
        if text[e - 1] == 13:
            e -= 1
        mark = r.input[1:-1] if r.input[:1] == "(" else r.input  # text inside the "(...)"
        portions.append(Portion(s, e, mark_end, mark, 0, r.marking))
    section.portions = list(range(len(portions)))
    return msg


#: ``Finding(rule, message, start, end)`` built straight into its slots (the same object,
#: ~10x cheaper than the frozen dataclass's ``__init__``)
_finding: Callable[[str, str, int, int], Finding] = SlotMaker(
    Finding, ("rule", "message", "start", "end")).make4


def _invalid_mark(pres: ParseResult, start: int, end: int) -> Finding:
    """The finding for a portion mark that is not valid (``pres``: its parse)."""
    why = "; ".join(x.message for x in pres.errors) or "not a portion mark"
    return _finding("portion-invalid", f"the portion mark ({pres.input}) is not valid: {why}",
                    start, end)


def parse_text(data: bytes, text: bytes, max_portions: int, fmt: str = "text") -> Message:
    """Parse a plain-text report held in ``text`` (``data`` is the original bytes)."""
    fast = _fast_text(data, text, max_portions, fmt)
    if fast is not None:
        return fast
    msg = Message(fmt, data, text)
    find = msg.findings.append
    raw_lines = text.split(b"\n")
    if len(raw_lines) > max_portions + _LINE_SLACK:
        find(Finding("message-limit", f"the message has {len(raw_lines)} lines, more than the "
                     f"policy's limit of {max_portions} portions allows", 0, len(text)))
        return msg
    # first and last non-blank lines: the banners (usually the first and second-to-last)
    first = next((k for k, r in enumerate(raw_lines) if r.strip()), -1)
    last = next((k for k in range(len(raw_lines) - 1, -1, -1) if raw_lines[k].strip()), -1)
    if first < 0 or last - first < 2 or not any(r.strip() for r in raw_lines[first + 1:last]):
        find(Finding("banner-missing", "a report needs a banner line, at least one "
                     "portion-marked paragraph and the banner again as its last line",
                     0, len(text)))
        return msg
    top, bottom = raw_lines[first].rstrip(b"\r"), raw_lines[last].rstrip(b"\r")
    b0 = sum(len(r) + 1 for r in raw_lines[:first])
    z0 = len(text) - sum(len(r) + 1 for r in raw_lines[last:]) + 1
    b1, z1 = b0 + len(top), z0 + len(bottom)
    if top.startswith(b"("):
        find(Finding("banner-missing", "the first line is a portion mark, not a banner line",
                     b0, b1))
        return msg
    top_s = top.decode("utf-8").strip()
    res = parse_mark(top_s, "banner")
    if not res.valid or res.marking is None:
        why = "; ".join(e.message for e in res.errors) or "not a banner"
        find(Finding("banner-invalid", f"the first line is not a valid banner: {why}", b0, b1))
        return msg
    if bottom.strip() != top.strip():
        find(Finding("banner-mismatch", "the last line must repeat the banner of the first "
                     "line exactly", z0, z1))
        return msg
    msg.banner, msg.marking = top_s, res.marking
    msg.banner_spans = [(b0, b1), (z0, z1)]
    section = Section(0, False, top_s, res.marking, (b0, b1))
    msg.sections.append(section)
    portions = msg.portions
    sec_portions = section.portions
    sec_index = 0
    expect_banner = False
    pcache = _pcache
    pos = b0 + len(raw_lines[first]) + 1
    for k in range(first + 1, last):
        line = raw_lines[k]
        s = pos
        pos += len(line) + 1
        if line and line[0] == 40 and not expect_banner:  # "(": the common case
            e = s + len(line) - (line[-1] == 13)
            close = line.find(b")", 1, _MAX_MARK + 2)
            if close < 0:
                find(Finding("portion-invalid", "the portion mark is not closed by ')'", s, e))
                continue
            raw_mark = line[1:close]
            pres = pcache.get(raw_mark) or _portion_mark(raw_mark)
            if pres.errors or pres.marking is None:
                find(_invalid_mark(pres, s, s + close + 1))
                continue
            sec_portions.append(len(portions))
            portions.append(Portion(s, e, s + close + 1, pres.input, sec_index, pres.marking))
            continue
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        e = s + len(line)
        if _TEARLINE.match(line):
            if expect_banner or not sec_portions:
                find(Finding("tearline-format", "a tearline section has no portions", s, e))
                return msg
            section = Section(len(msg.sections), True)
            sec_portions = section.portions
            sec_index = section.index
            msg.sections.append(section)
            expect_banner = True
            continue
        if expect_banner:
            if line.startswith(b"("):
                find(Finding("tearline-format", "a tearline section must start with its own "
                             "banner line", s, e))
                return msg
            sb = line.decode("utf-8").strip()
            sres = parse_mark(sb, "banner")
            if not sres.valid or sres.marking is None:
                why = "; ".join(x.message for x in sres.errors) or "not a banner"
                find(Finding("banner-invalid", f"the tearline banner is not valid: {why}", s, e))
                return msg
            section.banner, section.marking, section.banner_span = sb, sres.marking, (s, e)
            expect_banner = False
            continue
        nxt = next((raw_lines[j] for j in range(k + 1, last) if raw_lines[j].strip()), None)
        closing = (section.tearline and sec_portions
                   and line.strip() == text[section.banner_span[0]:section.banner_span[1]].strip()
                   and (nxt is None or _TEARLINE.match(nxt.rstrip(b"\r"))))
        if closing:
            msg.banner_spans.append((s, e))
            continue
        find(Finding("portion-unmarked", "this paragraph has no portion mark at the start "
                     "of its line", s, e))
    if len(portions) > max_portions:
        find(Finding("message-limit", f"the message has {len(portions)} portions, more than "
                     f"the policy's limit of {max_portions}", 0, len(text)))
    if expect_banner or not sec_portions:
        find(Finding("tearline-format" if section.tearline else "banner-missing",
                     "a section has no portion-marked paragraphs", z0, z1))
    return msg


# ------------------------------------------------------------------ batch index

class MarkIndex:
    """Interns distinct portion marks (the bytes inside the parentheses) and banners
    (stripped) to small ids, so that whatever depends only on a mark or a banner is
    decided once per distinct string.

    ``parse_raw(raw) -> Marking | None`` and ``parse_banner(text) -> Marking | None``
    (None: not valid, id -1) are the owner's own parsers: the first pass and the re-check
    each keep their own index. ``generation`` changes whenever the index is emptied (ids
    are then reused), so caches keyed by id must be dropped when it does.
    """

    MAX = 4096

    def __init__(self, parse_raw: Callable[[bytes], Marking | None],
                 parse_banner: Callable[[str], Marking | None]) -> None:
        self._parse = parse_raw
        self._parse_banner = parse_banner
        self.lock = threading.Lock()   # one batch indexes (and may reset) at a time
        self.generation = 0
        self._empty()

    def _empty(self) -> None:
        self.table = MsgIdxTable()
        self.btable = MsgIdxTable()
        self.texts: list[str] = []
        self.markings: list[Marking] = []
        self.btexts: list[str] = []
        self.bmarkings: list[Marking] = []

    def reset_if_full(self) -> None:
        """Empty the index when it holds more than MAX keys (called between batches)."""
        if len(self.table) > self.MAX or len(self.btable) > self.MAX:
            self._empty()
            self.generation += 1

    def miss(self, raw: bytes) -> int:
        """Parse a mark not seen before; its new id, or -1 when it is not valid."""
        m = self._parse(raw)
        if m is None:
            return -1
        # raw lies between ASCII '(' and ')' of a message the index found well-formed
        # UTF-8: it decodes (the owner's parser saw the same text)
        self.texts.append(raw.decode("utf-8"))
        self.markings.append(m)
        return len(self.texts) - 1

    def banner_miss(self, raw: bytes) -> int:
        """Parse a banner not seen before; its new id, or -1 when it is not valid.

        A banner with a non-ASCII byte is -1 here: its message goes to the parser, which
        strips Unicode white space (``str.strip``) where the index strips ASCII blanks."""
        if not raw.isascii():
            return -1
        text = raw.decode("ascii")
        m = self._parse_banner(text)
        if m is None:
            return -1
        self.btexts.append(text)
        self.bmarkings.append(m)
        return len(self.btexts) - 1

    def members(self, mask: int) -> list[int]:
        """The ids in a bit set, ascending."""
        out = []
        while mask:  # one step per member (ids run into the hundreds, a set holds a few)
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out


class BatchIndex:
    """Messages of a batch indexed in one pass of the Cython core (``_message.pxi``).

    A message is ``fast(k)`` when it has the simple report shape (UTF-8 text without the
    characters ``parse_message`` refuses, an ASCII banner, portion lines with valid marks
    at column 0, optional tearline sections each opened by a valid
    banner, the banner again); only then are its rows, mark ids, mark bit set
    (``masks[k]``) and ``sections[k]`` meaningful. Any other message must go through
    ``parse_message`` (or, in the re-check, its own parser).
    """

    def __init__(self, datas: Sequence[bytes], marks: MarkIndex, max_portions: int, *,
                 closing: bool = True) -> None:
        # the core reads a list of bytes objects in place (the same objects: callers
        # compare them by identity); anything else is copied once into bytes
        if type(datas) is not list or not msgidx_all_bytes(datas):
            datas = [d if type(d) is bytes else bytes(d) for d in datas]
        self.datas = datas
        self.marks = marks
        self.offsets = msgidx_offsets(datas)
        self._buf: bytes | None = None
        with marks.lock:
            marks.reset_if_full()
            (self.status, self.info, self.rowstart, self.rows, self.ids, bids,
             self.masks) = msgidx_index(datas, max_portions, closing,
                                        marks.table, marks.miss, marks.btable,
                                        marks.banner_miss)
            # the lists only grow within a generation: ids of this batch stay valid in them
            self.generation = marks.generation
            self.texts, self.markings = marks.texts, marks.markings
            btexts, bmarks = marks.btexts, marks.bmarkings
        self.fast_list: list[bool] = (self.status == 0).tolist()
        self._rows: MsgIdxRows | None = None
        # per message its banner's text and marking by id (None: no valid banner)
        self.banners: list[str | None] = msgidx_pick(btexts, bids)
        self.banner_marks: list[Marking | None] = msgidx_pick(bmarks, bids)
        # per message with tearlines: [(banner, marking, (start, end), mask, [portion k])]
        self.sections: list[list[tuple[str, Marking, tuple[int, int], int, list[int]]]] = []
        if self.info[:, 4].any():
            self.sections = [[] for _ in datas]
            rows = self.row_index
            for k in np.flatnonzero(self.info[:, 4]).tolist():
                if self.fast_list[k]:
                    self.sections[k] = rows.sections(k, btexts, bmarks)

    @property
    def buf(self) -> bytes:
        """The messages joined (``offsets`` index it), made on first use: the index reads
        each message in place, and a scan of only some of them joins just those."""
        if self._buf is None:
            self._buf = b"".join(self.datas)
        return self._buf

    @property
    def row_index(self) -> MsgIdxRows:
        """The rows, ids and row starts held by the core for per-message questions."""
        if self._rows is None:
            self._rows = MsgIdxRows(self.rowstart, self.rows, self.ids)
        return self._rows

    def bad_mark_findings(self, k: int) -> list[Finding] | None:
        """What ``parse_message`` finds in message k when the index saw the simple shape
        with valid banners and some portion marks not valid or not closed, each section
        keeping a valid one (status 2): one ``portion-invalid`` finding per such mark, in
        order; or, where the parser stops at one ``banner-*`` finding: its first banner
        valid and its last line another (status 3), its first line a portion mark (4), or
        fewer than three lines of text (5). None for any other message. (The index must
        have been made with the parser's ``max_portions``: it bounds the lines of a
        message the parser reads.)"""
        status = int(self.status[k])
        if status == 3:
            z0, z1 = self.info[k, 1:3].tolist()
            return [_finding("banner-mismatch", "the last line must repeat the banner of "
                             "the first line exactly", z0, z1)]
        if status == 4:
            return [_finding("banner-missing", "the first line is a portion mark, not a "
                             "banner line", 0, int(self.info[k, 0]))]
        if status == 5:
            return [_finding("banner-missing", "a report needs a banner line, at least one "
                             "portion-marked paragraph and the banner again as its last "
                             "line", 0, len(self.datas[k]))]
        if status != 2:
            return None
        data = self.datas[k]
        lo, hi = self.rowstart[k:k + 2].tolist()
        rows = self.rows
        out = []
        # only the rows of invalid marks (negative ids, few) are read out of the array
        for j, i in enumerate(self.ids[lo:hi].tolist(), lo):
            if i < 0:
                s, me, e, kind = rows[j].tolist()
                if kind == 0:
                    raw = data[s + 1:me - 1]
                    out.append(_invalid_mark(_pcache.get(raw) or _portion_mark(raw), s, me))
                elif kind == 4:  # no ')' to close the mark
                    out.append(_finding("portion-invalid", "the portion mark is not closed "
                                        "by ')'", s, e))
        return out

    def fast(self, k: int) -> bool:
        """Message k has the simple shape and valid banners."""
        return self.fast_list[k]

    def message(self, k: int) -> Message:
        """Message k as ``parse_message`` gives it (fast messages only)."""
        if not self.fast_list[k]:
            raise ValueError("message is not indexed")
        data = self.datas[k]
        top, b0, b1 = self.info[k, :3].tolist()
        banner, bm = self.banners[k], self.banner_marks[k]
        msg = Message("text", data, data, banner or "", bm, [(0, top), (b0, b1)])
        main = Section(0, False, banner, bm, (0, top))
        msg.sections.append(main)
        # the Portion objects are built in the core (a message may have thousands)
        msg.portions, other = self.row_index.portions(k, self.texts, self.markings, Portion)
        if not other:
            main.portions = list(range(len(msg.portions)))
            return msg
        sec = main
        for kind, s, e in other:
            if kind == 1:
                sec = Section(len(msg.sections), True)
                msg.sections.append(sec)
            elif kind == 2:
                text, m, span, _mask, _ps = self.sections[k][sec.index - 1]
                sec.banner, sec.marking, sec.banner_span = text, m, span
            else:
                msg.banner_spans.append((s, e))
        for i, p in enumerate(msg.portions):
            msg.sections[p.section].portions.append(i)
        return msg


# ------------------------------------------------------------------ JSON

_PORTION_KEYS = frozenset({
    "text", "classification", "ownerProducer", "releasableTo", "disseminationControls",
    "SCIcontrols", "SARIdentifier", "atomicEnergyMarkings", "FGIsourceOpen",
    "nonICmarkings", "displayOnlyTo",
})
_BANNER_KEYS = _PORTION_KEYS - {"text"}
_TOKEN = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,63}$")
_JSON_WS = str.maketrans({"\n": " ", "\r": " "})


class _Bad(ValueError):
    pass


def _tokens(obj: dict[str, Any], key: str) -> list[str]:
    v = obj.get(key, [])
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and _TOKEN.match(x) for x in v):
        raise _Bad(f"{key} must be a list of marking tokens")
    return v


def ism_to_mark(obj: Any) -> str:
    """The CAPCO portion-mark text (without parentheses) for ISM-style attributes."""
    if not isinstance(obj, dict):
        raise _Bad("a banner or portion must be an object")
    cls = obj.get("classification")
    if not isinstance(cls, str) or not _TOKEN.match(cls):
        raise _Bad("classification is missing or not a marking token")
    owners = _tokens(obj, "ownerProducer") or ["USA"]
    if owners == ["USA"]:
        head = cls
    elif "USA" in owners:
        head = "//JOINT " + cls + " " + " ".join(owners)
    else:
        head = "//" + " ".join(owners) + " " + cls
    dissem = _tokens(obj, "disseminationControls")
    rel, disp = _tokens(obj, "releasableTo"), _tokens(obj, "displayOnlyTo")
    if rel and "REL" not in dissem:
        raise _Bad("releasableTo needs REL in disseminationControls")
    if disp and "DISPLAYONLY" not in dissem:
        raise _Bad("displayOnlyTo needs DISPLAYONLY in disseminationControls")
    out_dissem = []
    for d in dissem:
        if d == "REL":
            if not rel:
                raise _Bad("REL needs a releasableTo list")
            out_dissem.append("REL TO " + ", ".join(rel))
        elif d == "DISPLAYONLY":
            if not disp:
                raise _Bad("DISPLAYONLY needs a displayOnlyTo list")
            out_dissem.append("DISPLAY ONLY " + ", ".join(disp))
        else:
            out_dissem.append(d)
    parts = [head]
    sci = _tokens(obj, "SCIcontrols")
    sap = _tokens(obj, "SARIdentifier")
    aea = _tokens(obj, "atomicEnergyMarkings")
    fgi = _tokens(obj, "FGIsourceOpen")
    nonic = _tokens(obj, "nonICmarkings")
    if sci:
        parts.append("/".join(sci))
    if sap:
        parts.append("SAR-" + "/".join(sap))
    if aea:
        parts.append("/".join(aea))
    if fgi:
        parts.append("FGI " + " ".join(fgi))
    if out_dissem:
        parts.append("/".join(out_dissem))
    if nonic:
        parts.append("/".join(nonic))
    return "//".join(parts)


def marking_to_ism(m: Marking) -> dict[str, Any]:
    """ISM-style attributes for a marking (the inverse of ``ism_to_mark`` for output)."""
    out: dict[str, Any] = {"classification": m.classification}
    if (m.origin != "US" and m.owners) or m.origin == "JOINT":
        out["ownerProducer"] = list(m.owners)
    if m.sci:
        out["SCIcontrols"] = [c.text() for c in m.sci]
    if m.sap:
        out["SARIdentifier"] = [c.text() for c in m.sap]
    if m.aea:
        out["atomicEnergyMarkings"] = list(m.aea)
    if m.fgi:
        out["FGIsourceOpen"] = list(m.fgi)
    dissem = list(m.dissem)
    if m.rel_to:
        dissem = [d for d in dissem if d != "REL"]
        dissem.append("REL")
        out["releasableTo"] = list(m.rel_to)
    if m.display_only:
        dissem = [d for d in dissem if d != "DISPLAYONLY"]
        dissem.append("DISPLAYONLY")
        out["displayOnlyTo"] = list(m.display_only)
    if dissem:
        out["disseminationControls"] = dissem
    if m.non_ic:
        out["nonICmarkings"] = list(m.non_ic)
    return out


def _parse_json(data: bytes, max_portions: int) -> Message:
    fail = Message("json", data, data)
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        fail.findings.append(Finding("message-format", "the JSON document is nested too deeply",
                                     0, len(data)))
        return fail
    except ValueError as exc:
        at = getattr(exc, "pos", 0) or 0
        fail.findings.append(Finding("message-format",
                                     f"the JSON document is not well formed: {exc}", at, at))
        return fail
    try:
        text, objs = _render_json(doc, max_portions)
    except _Bad as exc:
        fail.findings.append(Finding("message-format", f"the JSON document does not have the "
                                     f"expected shape: {exc}", 0, len(data)))
        return fail
    # JSON escapes (\u0000, \u202e ...) can carry what the raw bytes did not: check again.
    bad = _CONTROL.search(text)
    dec = None if text.isascii() else _DECEPTIVE.search(text.decode("utf-8"))
    if bad is not None or dec is not None:
        fail.findings.append(Finding("message-encoding", "a JSON string carries a control or "
                                     "display-changing character", 0, len(data)))
        return fail
    msg = parse_text(data, text, max_portions, fmt="json")
    if msg.ok:
        if len(objs) != len(msg.portions):  # a mark text hid a line break or similar
            msg.findings.append(Finding("message-format", "the JSON portions do not map one to "
                                        "one onto portion-marked paragraphs", 0, len(text)))
        msg.json_portions = objs
    return msg


def _render_json(doc: Any, max_portions: int) -> tuple[bytes, list[dict[str, Any]]]:
    if not isinstance(doc, dict):
        raise _Bad("the top level must be an object")
    extra = set(doc) - {"banner", "portions", "tearlines"}
    if extra:
        raise _Bad(f"unknown top-level keys {sorted(extra)}")
    sections = [doc, *_list(doc.get("tearlines", []), "tearlines")]
    out: list[str] = []
    objs: list[dict[str, Any]] = []
    banner = _banner_line(doc.get("banner"))
    out.append(banner)
    for i, sec in enumerate(sections):
        if i:
            if not isinstance(sec, dict) or set(sec) - {"banner", "portions"}:
                raise _Bad("a tearline must be an object with banner and portions only")
            out.append(TEARLINE.decode())
            out.append(_banner_line(sec.get("banner")))
        portions = _list(sec.get("portions"), "portions")
        if not portions:
            raise _Bad("every section needs at least one portion")
        for p in portions:
            if not isinstance(p, dict):
                raise _Bad("a portion must be an object")
            extra = set(p) - _PORTION_KEYS
            if extra:
                raise _Bad(f"unknown portion keys {sorted(extra)}")
            text = p.get("text")
            if not isinstance(text, str):
                raise _Bad("every portion needs a text string")
            if "\r" in text and text.count("\r") != text.count("\r\n"):
                raise _Bad("a portion text holds a bare carriage return (it can hide text)")
            objs.append(p)
            if len(objs) > max_portions:
                raise _Bad(f"more than {max_portions} portions")
            out.append("(" + ism_to_mark(p) + ") " + text.translate(_JSON_WS))
    out.append(banner)
    return ("\n".join(out) + "\n").encode("utf-8"), objs


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise _Bad(f"{what} must be a list")
    return v


def _banner_line(obj: Any) -> str:
    if isinstance(obj, dict) and set(obj) - _BANNER_KEYS:
        raise _Bad(f"unknown banner keys {sorted(set(obj) - _BANNER_KEYS)}")
    mark = ism_to_mark(obj)
    res = parse_mark(mark, "portion")
    if not res.valid or res.marking is None:
        why = "; ".join(e.message for e in res.errors) or "invalid"
        raise _Bad(f"the banner attributes ({mark}) are not a valid marking: {why}")
    return render_banner(res.marking)
