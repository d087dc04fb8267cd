"""Normalisation that defeats the usual evasions, with an offset map back to the original bytes.

Two stages, both shared by message bodies and by the terms themselves (so that a term and
the text it hides in are folded the same way):

1. ``fold(data)``: only for bodies that are not pure ASCII (the common case skips it
   entirely and the Cython core reads the raw bytes). Every original character becomes its
   Latin skeleton: NFKD compatibility decomposition, combining marks dropped, case folded,
   Cyrillic/Greek/other look-alikes mapped to the Latin letter they imitate, zero-width,
   bidirectional controls, soft hyphens and other format characters removed, Unicode
   spaces to " ", Unicode punctuation to "-". The result is a byte string (UTF-8 for the
   few non-Latin letters that remain) plus, for every output byte, the original byte span
   of the character it came from.
2. ``squeeze(folded, leet)``: the pure-Python reference of what the Cython core does in one
   table-driven pass: keep letters and digits (lower-cased, optionally leetspeak-folded),
   drop separators, and record for every kept character the kind of separator run (gap)
   that precedes it. Matching runs on the squeezed stream, so "N.O.F.O.R.N", "NO-FORN",
   "N O F O R N" and a line break mid-word all read "noforn"; the gap kinds then decide
   whether such a match is a plausible evasion or two unrelated words (see ``GAP_*``).
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Gap kinds recorded before each squeezed character (0: none, the previous character is
# adjacent). TIGHT: at most three non-blank separators ("-", ".", "\r\n") or one line break
# with a little indentation: may join the fragments of one word. LOOSE: other short runs
# ("N O F"): may join single letters only. HARD: longer than 8 bytes or a paragraph break:
# never joined. The start of the text counts as HARD.
GAP_NONE, GAP_TIGHT, GAP_LOOSE, GAP_HARD = 0, 1, 2, 3
MAX_JOIN_GAP = 8

LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}

# Look-alikes that NFKD + casefold leave outside ASCII, mapped to the Latin letter they
# imitate (after casefolding, so only lower-case forms are listed).
_SKELETON = {
    # Cyrillic
    "а": "a", "б": "b", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "ж": "x",
    "з": "3", "и": "u", "й": "u", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o",
    "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "ф": "o", "х": "x", "ц": "u",
    "ч": "y", "ш": "w", "щ": "w", "ъ": "b", "ы": "bi", "ь": "b", "э": "e", "ю": "io",
    "я": "r", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ү": "y", "ґ": "r", "є": "e", "ћ": "h", "ђ": "h", "ѵ": "v",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o",
    "ι": "i", "κ": "k", "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n",
    "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "φ": "o", "χ": "x", "ψ": "w",
    "ω": "w", "ϲ": "c", "ϳ": "j", "ϐ": "b", "ϑ": "o", "ϱ": "p", "ϵ": "e",
    # Armenian, Cherokee-free Latin extras and IPA
    "օ": "o", "ո": "n", "ս": "u", "ց": "g", "ք": "p", "հ": "h",
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ƀ": "b",
    "ɑ": "a", "ɡ": "g", "ɩ": "i", "ɪ": "i", "ʏ": "y", "ɴ": "n", "ʀ": "r", "ᴀ": "a",
    "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w",
    "ᴢ": "z", "ꜱ": "s", "æ": "ae", "œ": "oe", "ð": "d", "þ": "p", "ŀ": "l", "ɾ": "r",
}

# Capitals whose lower-case form imitates a different Latin letter (Greek "Ν" looks like
# "N" but "ν" like "v"; Cyrillic "Н" like "H" but "н" like a small "h"): mapped first.
_SKELETON_UPPER = {
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m",
    "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c", "Ϳ": "j",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
    "С": "c", "Т": "t", "Х": "x", "У": "y", "Ѕ": "s", "І": "i", "Ј": "j", "Ү": "y",
    "Ԛ": "q", "Ԝ": "w", "Ӏ": "l",
}

# Characters removed outright (not separators): they are invisible, so a word hiding
# them must still read as one word. Format (Cf) and combining marks are removed by category.
_INVISIBLE = set("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u3164\uffa0")
_LINE_BREAKS = set("\u0085\u2028\u2029")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@lru_cache(maxsize=65536)
def fold_char(ch: str) -> str:
    """The Latin skeleton of one non-ASCII character ("" when it is invisible)."""
    cat = unicodedata.category(ch)
    if ch in _INVISIBLE or (cat in ("Cf", "Mn", "Me", "Cs") and not _is_surrogate(ch)):
        return ""
    if _is_surrogate(ch):  # an undecodable byte (surrogateescape): a separator
        return "-"
    if ch in _LINE_BREAKS:
        return "\n"
    if cat.startswith("Z"):
        return " "
    if ch in _SKELETON_UPPER:
        return _SKELETON_UPPER[ch]
    out = []
    for c in _strip_marks(unicodedata.normalize("NFKD", ch)).casefold():
        for d in _strip_marks(unicodedata.normalize("NFKD", c)):
            out.append(_fold_one(d))
    return "".join(out)


def _is_surrogate(ch: str) -> bool:
    return "\udc80" <= ch <= "\udcff"


def _strip_marks(s: str) -> str:
    return "".join(c for c in s if unicodedata.category(c) not in ("Mn", "Me", "Cf"))


def _fold_one(c: str) -> str:
    if c < "\x80":
        return c
    if c in _SKELETON:
        return _SKELETON[c]
    cat = unicodedata.category(c)
    if cat == "Nd":
        return str(unicodedata.digit(c, 0))
    if cat.startswith("L") or cat.startswith("N"):
        return c
    if cat.startswith("Z"):
        return " "
    if cat == "Cc" or c in _INVISIBLE:
        return "-"
    return "-"  # punctuation, symbols, unassigned: a separator


@dataclass(frozen=True, slots=True)
class Folded:
    """A folded body: ``text`` plus, per byte of it, the original byte span it came from.

    ``start``/``end`` are ``None`` when the body was pure ASCII (identity map).
    """

    text: bytes
    start: Sequence[int] | None  # array('i') or numpy int32
    end: Sequence[int] | None
    invalid_utf8: bool


def fold(data: bytes) -> Folded:
    """Fold ``data`` to its Latin skeleton with an offset map (identity for pure ASCII).

    Bodies that are not pure ASCII are folded in C (``guard._core.Folder``, the GIL
    released): decoding and mapping run per byte in C, Python work (``fold_char``) only
    for code points never seen before in this process. Equal to ``fold_slow``.
    """
    if data.isascii():
        return Folded(data, None, None, False)
    text, start, end, invalid = _folder().fold(data)
    return Folded(text, start, end, invalid)


@lru_cache(maxsize=1)
def _folder() -> Any:  # guard._core.Folder: a compiled class without stubs
    """The process-wide C folder; its cache of skeletons grows with the code points seen."""
    from guard import _core  # local: normalize stays importable before the core is built

    return _core.Folder(fold_char)


def fold_slow(data: bytes) -> Folded:
    """Per-character reference of ``fold`` (also the path for invalid UTF-8)."""
    if data.isascii():
        return Folded(data, None, None, False)
    try:
        text = data.decode("utf-8")
        invalid = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        invalid = True
    pieces: list[bytes] = []
    starts = array("i")
    ends = array("i")
    pos = 0  # character index in text
    boff = 0  # byte offset in data
    for m in _NON_ASCII.finditer(text):
        i = m.start()
        if i > pos:  # an ASCII run: copied as is, identity offsets
            n = i - pos
            pieces.append(text[pos:i].encode("ascii"))
            starts.extend(range(boff, boff + n))
            ends.extend(range(boff + 1, boff + n + 1))
            boff += n
        ch = m.group()
        blen = 1 if _is_surrogate(ch) else len(ch.encode("utf-8"))
        out = fold_char(ch).encode("utf-8")
        if out:
            pieces.append(out)
            starts.extend([boff] * len(out))
            ends.extend([boff + blen] * len(out))
        boff += blen
        pos = i + 1
    if pos < len(text):
        n = len(text) - pos
        pieces.append(text[pos:].encode("ascii"))
        starts.extend(range(boff, boff + n))
        ends.extend(range(boff + 1, boff + n + 1))
    return Folded(b"".join(pieces), starts, ends, invalid)


@lru_cache(maxsize=4)
def fold_table(leet: bool) -> bytes:
    """The 256-entry byte map of the squeeze pass: 0 for a separator, else the folded byte."""
    table = bytearray(256)
    for b in range(256):
        c = chr(b)
        if b >= 0x80:
            table[b] = b  # a byte of a non-Latin letter that fold() kept
        elif c.isascii() and c.isalnum():
            table[b] = ord(c.lower())
    if leet:
        for k, v in LEET.items():
            table[ord(k)] = ord(v)
    return bytes(table)


# Separator classes of the squeeze pass: 1 blank, 2 line feed, 3 anything else.
@lru_cache(maxsize=1)
def class_table() -> bytes:
    """The 256-entry separator class map: 1 blank, 2 line feed, 3 other; 0 unused."""
    table = bytearray(b"\x03" * 256)
    for c in " \t\v\f":
        table[ord(c)] = 1
    table[ord("\n")] = 2
    return bytes(table)


def gap_kind(length: int, blanks: int, newlines: int) -> int:
    """Classify a separator run (see the ``GAP_*`` constants)."""
    if length > MAX_JOIN_GAP or newlines >= 2:
        return GAP_HARD
    if (blanks == 0 and length <= 3) or newlines == 1:
        return GAP_TIGHT
    return GAP_LOOSE


@dataclass(frozen=True, slots=True)
class Squeezed:
    """Letters and digits only: ``chars[i]`` came from folded byte ``index[i]`` and is
    preceded by a gap of kind ``gaps[i]``."""

    chars: bytes
    index: list[int]
    gaps: bytes


def squeeze(folded: bytes, leet: bool = False) -> Squeezed:
    """Reference implementation of the core's squeeze pass (used for terms and tests)."""
    table = fold_table(leet)
    classes = class_table()
    chars = bytearray()
    index: list[int] = []
    gaps = bytearray()
    glen, blanks, newlines = MAX_JOIN_GAP + 1, 0, 0  # the start of text is a hard gap
    for i, b in enumerate(folded):
        f = table[b]
        if f:
            gaps.append(gap_kind(glen, blanks, newlines) if glen else GAP_NONE)
            chars.append(f)
            index.append(i)
            glen = blanks = newlines = 0
        else:
            glen += 1
            k = classes[b]
            blanks += k == 1
            newlines += k == 2
    return Squeezed(bytes(chars), index, bytes(gaps))


def normalize_text(data: bytes, leet: bool = False) -> str:
    """The squeezed skeleton of ``data`` as a str (one char per byte), for display and tests."""
    return squeeze(fold(data).text, leet).chars.decode("latin-1")
