"""Redaction: build the bytes that may be released from a parsed message and a plan.

The plan says which portions remain (grouped by section) and which byte spans inside them
are cut. Banners are recomputed from what remains through the markings roll-up, for the
document and for every tearline section; a lone tearline section is released as a report of
its own. JSON documents are written back as JSON with the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guard._core import msgidx_join_lines, msgidx_join_parts
from guard.markings import Marking, render_banner, rollup
from guard.messages import TEARLINE, Message, marking_to_ism

__all__ = ["PLACEHOLDER", "Plan", "build_lines", "build_output", "build_text"]

#: What replaces a cut span: no letter run that a term list is likely to hold.
PLACEHOLDER = b"[REDACTED]"


@dataclass(slots=True)
class Plan:
    """Portions to keep, per output section, and the spans to cut inside them."""

    sections: list[list[int]]                      # portion indices, one list per section
    cuts: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


def _cut(line: bytes, base: int, cuts: Sequence[tuple[int, int]]) -> bytes:
    """``line`` (starting at ``base`` in the text) with ``cuts`` replaced by the placeholder."""
    out, pos = [], 0
    for s, e in sorted(cuts):
        s, e = max(s - base, pos), min(e - base, len(line))
        if e <= s:
            continue
        out.append(line[pos:s])
        out.append(PLACEHOLDER)
        pos = e
    out.append(line[pos:])
    return b"".join(out)


_rollups: dict[frozenset[str], Marking] = {}
_banners: dict[frozenset[str], tuple[str, bytes]] = {}   # build_lines: roll-up banners


def _rollup(marks: Sequence[str], markings: Sequence[Marking | None],
            idx: Sequence[int]) -> Marking:
    """Roll-up of the portions ``idx`` (their mark texts ``marks[i]``, markings
    ``markings[i]``), cached by the set of their mark texts."""
    key = frozenset(map(marks.__getitem__, idx))  # (no generator frame per portion)
    got = _rollups.get(key)
    if got is None:
        ms = [markings[i] for i in idx]
        if any(m is None for m in ms):
            raise ValueError("a kept portion has no marking")
        got = rollup(ms)  # type: ignore[arg-type]
        if len(_rollups) > 65536:
            _rollups.clear()
        _rollups[key] = got
    return got


def _banner_of(marks: Sequence[str], markings: Sequence[Marking | None],
               idx: Sequence[int]) -> tuple[str, bytes]:
    """The roll-up banner of the portions ``idx`` as text and UTF-8 bytes, cached by
    the set of their mark texts (as ``_rollup``, shared with ``build_lines``)."""
    key = frozenset(map(marks.__getitem__, idx))  # (no generator frame per portion)
    got = _banners.get(key)
    if got is None:
        text = render_banner(_rollup(marks, markings, idx))
        got = (text, text.encode("utf-8"))
        if len(_banners) > 65536:
            _banners.clear()
        _banners[key] = got
    return got


def build_lines(text: bytes, lines: Sequence[tuple[int, int]], marks: Sequence[str],
                markings: Sequence[Marking]) -> tuple[bytes, str]:
    """A one-section plain-text report of the ``lines`` spans of ``text`` under the
    roll-up banner of their distinct ``marks`` (``markings``): what ``build_output`` makes
    of such a message when whole portions are withheld and nothing is cut."""
    if not lines or not markings:
        raise ValueError("nothing to release")
    key = frozenset(marks)
    got = _banners.get(key)
    if got is None:
        doc = rollup(markings)
        got = (render_banner(doc), render_banner(doc).encode("utf-8"))
        if len(_banners) > 65536:
            _banners.clear()
        _banners[key] = got
    banner, head = got
    # the lines joined by '\n' under the banner, in the core: one allocation, each line
    # copied once (no slice per run, no Python loop over the lines)
    return msgidx_join_lines(text, lines if type(lines) is list else list(lines), head), banner


def build_output(msg: Message, plan: Plan) -> tuple[bytes, str]:
    """The released bytes and their banner for ``plan``; sections left empty are dropped."""
    ps = msg.portions
    if msg.format == "json":
        marks, markings = [p.mark for p in ps], [p.marking for p in ps]
        sections = [s for s in plan.sections if s]
        if not sections:
            raise ValueError("nothing to release")
        sec_marks = [_rollup(marks, markings, sec) for sec in sections]
        doc = _rollup(marks, markings, [i for sec in sections for i in sec])
        return _build_json(msg, plan, sections, sec_marks, doc), render_banner(doc)
    return build_text(msg.text, plan, [p.start for p in ps], [p.end for p in ps],
                      [p.mark for p in ps], [p.marking for p in ps])


def build_text(text: bytes, plan: Plan, starts: Sequence[int], ends: Sequence[int],
               marks: Sequence[str], markings: Sequence[Marking | None]) -> tuple[bytes, str]:
    """``build_output`` for a plain-text report given per portion its line span
    ``text[starts[i]:ends[i]]``, mark text and marking (a ``Message``'s portions, or the
    batch index's rows without building one)."""
    sections = [s for s in plan.sections if s]
    if not sections:
        raise ValueError("nothing to release")
    banner, head = _banner_of(marks, markings, [i for sec in sections for i in sec])
    # each line is a span of ``text`` (or its cut bytes), joined by '\n' in the core: no
    # slice per line, one allocation, each line copied once
    lines: list[bytes | tuple[int, int]] = [head]
    cuts_of = plan.cuts
    for k, sec in enumerate(sections):
        if k:
            lines.append(TEARLINE)
            lines.append(_banner_of(marks, markings, sec)[1])
        for i in sec:
            cuts = cuts_of.get(i)
            if cuts:
                lines.append(_cut(text[starts[i]:ends[i]], starts[i], cuts))
            else:
                lines.append((starts[i], ends[i]))
    lines.append(head)
    return msgidx_join_parts(text, lines), banner


def _build_json(msg: Message, plan: Plan, sections: list[list[int]], sec_marks: list[Marking],
                doc: Marking) -> bytes:
    assert msg.json_portions is not None
    out_secs: list[dict[str, Any]] = []
    for k, sec in enumerate(sections):
        items = []
        for i in sec:
            p = msg.portions[i]
            obj = dict(msg.json_portions[i])
            cuts = plan.cuts.get(i)
            if cuts:
                # canonical line = "(" mark ") " text, and text maps byte for byte
                base = p.mark_end + 1
                obj["text"] = _cut(obj["text"].encode("utf-8"), base, cuts).decode("utf-8")
            items.append(obj)
        out_secs.append({"banner": marking_to_ism(sec_marks[k]), "portions": items})
    doc_obj: dict[str, Any] = {"banner": marking_to_ism(doc), "portions": out_secs[0]["portions"]}
    if len(out_secs) > 1:
        doc_obj["tearlines"] = out_secs[1:]
    return json.dumps(doc_obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
