"""Start-up self-test of a compiled scanner: it must find what its lists say it finds.

A scanner that silently finds nothing releases everything: a stale or mismatched
compiled core, a bad build flag, a table that failed to load. So before a
pipeline (or its independent re-check) may decide anything, its scanner scans a
canary for every dirty list and every pattern, one message at a time and as a
batch, and must report each. A failure raises ``SelfTestError``: the pipeline is
not built and nothing is released (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guard.scanner import Scanner
from guard.terms import TermList, parse_pattern, split_pattern_line

# Filler around each canary: plain words, no separators that could join it to a neighbour.
_LEFT, _RIGHT = b"canary check ", b" canary check\n"
_ATOM_SAMPLE = {"d": "7", "a": "Q", "w": "7"}


class SelfTestError(RuntimeError):
    """The scanner failed to find a canary its own lists require it to find."""


def _term_canary(term: str, clean: set[str]) -> str | None:
    """A plain-ASCII dirty term usable as a canary (not also a clean word), or None."""
    text = term[1:] if term.startswith("~") else term
    if not text or not text.isascii() or text.lower() in clean:
        return None
    if not all(ch.isalnum() or ch == " " for ch in text):
        return None
    return text


def _pattern_canary(line: str) -> tuple[str, str]:
    """``(pattern name, a string the pattern matches)``: each atom at its minimum count."""
    name, pattern = split_pattern_line(line)
    sample = "".join(
        (atom.cls if atom.lit else _ATOM_SAMPLE[atom.cls]) * max(atom.lo, 1)
        for atom in parse_pattern(pattern)
    )
    return name, sample


def canaries(lists: Sequence[TermList]) -> list[tuple[str, str, bytes]]:
    """``(list name, term or pattern name, canary message)`` for every checkable entry.

    One canary per dirty list (its first plain-ASCII term that is not also a clean
    word) and one per pattern.
    """
    clean = {t.lstrip("~").lower() for tl in lists if tl.kind == "clean" for t in tl.terms}
    out: list[tuple[str, str, bytes]] = []
    for tl in lists:
        if tl.kind == "dirty":
            for term in tl.terms:
                text = _term_canary(term, clean)
                if text is not None:
                    out.append((tl.name, term, _LEFT + text.encode() + _RIGHT))
                    break
        elif tl.kind == "pattern":
            for line in tl.terms:
                name, sample = _pattern_canary(line)
                out.append((tl.name, name, _LEFT + sample.encode() + _RIGHT))
    return out


def check_scanner(scanner: Scanner, lists: Sequence[TermList]) -> int:
    """Scan every canary singly and as one batch; return how many were checked.

    Raises ``SelfTestError`` naming the first list whose canary was not found.
    """
    cases = canaries(lists)
    if not cases:
        return 0
    buf = b"".join(c for _, _, c in cases)
    offsets = np.zeros(len(cases) + 1, dtype=np.int64)
    np.cumsum([len(c) for _, _, c in cases], out=offsets[1:])
    batch = scanner.scan_batch(buf, offsets)
    for i, (list_name, _term, message) in enumerate(cases):
        single = scanner.scan(message).matches
        batched = batch.matches_for(i)
        for how, found in (("scan", single), ("scan_batch", batched)):
            if not any(m.list_name == list_name for m in found):
                raise SelfTestError(
                    f"scanner self-test failed: {how} did not find the canary of list "
                    f"{list_name!r}; refusing to decide anything with this scanner"
                )
    return len(cases)
