"""Portion marks inside message bodies: found by the Cython core, parsed once each.

Real traffic repeats a few hundred distinct markings, so each distinct mark's parse is
cached (a plain dict, cleared when it reaches ``CACHE_MAX`` entries so memory stays
bounded whatever the input).
"""

from __future__ import annotations

from typing import NamedTuple

from guard._core import find_portions, portion_hits
from guard.markings.model import ParseResult
from guard.markings.parse import parse

CACHE_MAX = 8192
_cache: dict[bytes, ParseResult] = {}


class PortionHit(NamedTuple):
    """A portion mark found in a body: ``[start, end)`` of the "(...)" and its parse."""

    start: int
    end: int
    result: ParseResult


def _parse_mark(raw: bytes) -> ParseResult:
    result = _cache.get(raw)
    if result is None:
        if len(_cache) >= CACHE_MAX:
            _cache.clear()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # U+FFFD (and lone surrogates) are reported as bad characters
            text = raw.decode("utf-8", "replace")
        result = parse(text, "portion")
        _cache[raw] = result
    return result


def recognize_portions(body: bytes | str) -> list[PortionHit]:
    """Portion marks at the start of lines in ``body``, with their (cached) parses.

    Offsets are byte offsets for ``bytes`` and character offsets for ``str``. Callers
    must treat ``hit.result.valid == False`` as a problem (fail closed). Results are
    shared through the cache: read them, do not modify them."""
    if isinstance(body, str):
        if body.isascii():
            data = body.encode("ascii")
        else:
            data = body.encode("utf-8", "surrogatepass")
            out = []
            pos = chars = 0  # byte and character offsets, advanced together (linear)
            for s, e in find_portions(data).tolist():
                chars += len(data[pos:s].decode("utf-8", "surrogatepass"))
                width = len(data[s:e].decode("utf-8", "surrogatepass"))
                out.append(PortionHit(chars, chars + width, _parse_mark(data[s:e])))
                chars += width
                pos = e
            return out
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
    else:
        raise TypeError(f"recognize_portions needs bytes or str, not {type(body).__name__}")
    return portion_hits(data, _cache, PortionHit, _parse_mark)
