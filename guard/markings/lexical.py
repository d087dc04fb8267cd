"""Input hygiene before parsing: size, characters, look-alikes, case and stray spaces.

Each problem is reported as its own finding, on the text as given; the folded text
(look-alikes mapped to the ASCII letter they imitate, upper-cased) has the same
length so that later findings keep their spans.
"""

from __future__ import annotations

import re
import unicodedata

from guard.findings import Finding

#: longest marking accepted (the longest Register-conformant banner is a few hundred
#: characters); anything longer is refused without further work.
MAX_LEN = 1024

# Letters that render like ASCII letters in common fonts (Cyrillic, Greek). Full-width
# and other compatibility forms are found through NFKC below.
_CONFUSABLE = {
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K",
    "М": "M", "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ԁ": "D",
    "а": "a", "с": "c", "е": "e", "і": "i", "ј": "j", "о": "o", "р": "p", "ѕ": "s",
    "х": "x", "у": "y",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o",
}

_WS = re.compile(r"^\s+|\s+$| {2,}| +(?=/)|(?<=/) +| +,|\t")
_LOWER = re.compile(r"[a-z]+")


def _describe(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        name = "unnamed character"
    return f"{ch!r} (U+{ord(ch):04X} {name})"


def prescan(text: str) -> tuple[str, list[Finding], bool]:
    """Return (folded text, findings, fatal).

    ``fatal`` means the text cannot be parsed at all (empty, too long). Otherwise the
    folded text is ASCII of the same length, upper-cased.
    """
    n = len(text)
    if n == 0 or not text.strip():
        return "", [Finding("input-empty", "The marking is empty.", 0, n)], True
    if n > MAX_LEN:
        return "", [Finding(
            "input-too-long",
            f"The marking is {n} characters long; markings longer than {MAX_LEN} are refused.",
            0, n)], True
    findings: list[Finding] = []
    if text.isascii():
        folded = text
        if not text.isprintable():
            chars = list(text)
            for i, ch in enumerate(chars):
                if not ch.isprintable():
                    findings.append(Finding(
                        "input-bad-char",
                        f"Control character {_describe(ch)} is not allowed in a marking.",
                        i, i + 1))
                    chars[i] = "?"
            folded = "".join(chars)
    else:
        chars = list(text)
        for i, ch in enumerate(chars):
            if ch.isascii():
                if not ch.isprintable():
                    findings.append(Finding(
                        "input-bad-char",
                        f"Control character {_describe(ch)} is not allowed in a marking.",
                        i, i + 1))
                    chars[i] = "?"
                continue
            ascii_like = _CONFUSABLE.get(ch)
            if ascii_like is None:
                norm = unicodedata.normalize("NFKC", ch)
                if len(norm) == 1 and norm.isascii() and norm.isprintable():
                    ascii_like = norm
            if ascii_like is not None:
                findings.append(Finding(
                    "input-lookalike",
                    f"{_describe(ch)} looks like the letter {ascii_like!r} but is not ASCII; "
                    "markings must be typed in plain ASCII.",
                    i, i + 1))
                chars[i] = ascii_like
            else:
                findings.append(Finding(
                    "input-bad-char",
                    f"Character {_describe(ch)} cannot appear in a marking.",
                    i, i + 1))
                chars[i] = "?"
        folded = "".join(chars)
    if not folded.isupper() or _LOWER.search(folded):
        for m in _LOWER.finditer(folded):
            findings.append(Finding(
                "input-lowercase",
                f"'{text[m.start():m.end()]}' is in lower case; markings must be upper case.",
                m.start(), m.end()))
        folded = folded.upper()
    if " " in folded or "\t" in folded:
        for m in _WS.finditer(folded):
            findings.append(Finding(
                "input-whitespace",
                "Stray space: markings use single spaces inside titles and lists and no "
                "space around '/' or '//' separators.",
                m.start(), m.end()))
    return folded, findings, False
