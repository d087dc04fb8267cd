"""Term lists (dirty words, clean words) and PII patterns: the two policy file formats.

Term file (UTF-8): one term per line; ``#`` starts a comment line; blank lines ignored;
a leading ``~`` matches the term as a substring anywhere, otherwise it must stand as a
whole word / whole phrase (words separated by single spaces).

Pattern file (UTF-8): ``NAME = PATTERN`` per line, ``#`` comment lines. Atoms: ``\\d`` digit,
``\\a`` ASCII letter, ``\\w`` letter or digit, any other character literally (escape ``\\\\``,
``\\{``); an atom may be followed by ``{n}`` or ``{n,m}``; a match stands as a whole word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike

KINDS = ("dirty", "clean", "pattern")
MAX_PATTERN_POSITIONS = 63  # the core simulates a pattern as one 64-bit state mask


@dataclass(frozen=True)
class TermList:
    """A named list of terms of one kind: "dirty", "clean" or "pattern".

    For dirty/clean lists each term is the text as written (``~`` prefix = substring);
    for pattern lists each term is a ``NAME = PATTERN`` line.
    """

    name: str
    kind: str
    terms: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"term list {self.name!r}: unknown kind {self.kind!r}")
        object.__setattr__(self, "terms", tuple(self.terms))


@dataclass(frozen=True, slots=True)
class Atom:
    """One pattern atom: ``cls`` is "d", "a", "w" or a literal character; repeated lo..hi."""

    cls: str
    lit: bool
    lo: int
    hi: int


def _read_lines(path: str | PathLike[str]) -> list[tuple[int, str]]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]


def load_terms(path: str | PathLike[str], name: str, kind: str) -> TermList:
    """Read a term file; ``kind`` is "dirty" or "clean". Raises ValueError naming file:line."""
    if kind not in ("dirty", "clean"):
        raise ValueError(f"load_terms: kind must be 'dirty' or 'clean', not {kind!r}")
    terms: list[str] = []
    for n, line in _read_lines(path):
        if not line or line.startswith("#"):
            continue
        body = line[1:].strip() if line.startswith("~") else line
        if not body:
            raise ValueError(f"{path}:{n}: empty term")
        terms.append(("~" if line.startswith("~") else "") + " ".join(body.split()))
    return TermList(name, kind, terms)


def parse_pattern(pattern: str) -> list[Atom]:
    """Parse a pattern into atoms. Raises ValueError on a malformed pattern."""
    atoms: list[Atom] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"pattern {pattern!r}: dangling backslash")
            e = pattern[i + 1]
            atom = Atom(e, False, 1, 1) if e in "daw" else Atom(e, True, 1, 1)
            i += 2
        elif c in "{}":
            raise ValueError(f"pattern {pattern!r}: unescaped {c!r} at {i}")
        else:
            atom = Atom(c, True, 1, 1)
            i += 1
        if i < n and pattern[i] == "{":
            close = pattern.find("}", i)
            if close < 0:
                raise ValueError(f"pattern {pattern!r}: unclosed repetition")
            spec = pattern[i + 1 : close].split(",")
            try:
                lo = int(spec[0])
                hi = int(spec[1]) if len(spec) == 2 else lo
            except ValueError:
                raise ValueError(
                    f"pattern {pattern!r}: bad repetition {{{','.join(spec)}}}"
                ) from None
            if len(spec) > 2 or lo < 0 or hi < lo or hi == 0:
                raise ValueError(f"pattern {pattern!r}: bad repetition {{{','.join(spec)}}}")
            atom = Atom(atom.cls, atom.lit, lo, hi)
            i = close + 1
        atoms.append(atom)
    if not atoms:
        raise ValueError("empty pattern")
    width = sum(a.hi * (len(a.cls.encode("utf-8")) if a.lit else 1) for a in atoms)
    if width > MAX_PATTERN_POSITIONS:
        raise ValueError(f"pattern {pattern!r}: longer than {MAX_PATTERN_POSITIONS} characters")
    if sum(a.lo for a in atoms) == 0:
        raise ValueError(f"pattern {pattern!r}: matches the empty string")
    return atoms


def split_pattern_line(line: str) -> tuple[str, str]:
    """``"NAME = PATTERN"`` -> (name, pattern); raises ValueError when malformed."""
    name, sep, pattern = line.partition("=")
    name, pattern = name.strip(), pattern.strip()
    if not sep or not name or not pattern:
        raise ValueError(f"expected 'NAME = PATTERN', got {line!r}")
    parse_pattern(pattern)
    return name, pattern


def load_patterns(path: str | PathLike[str], name: str) -> TermList:
    """Read a pattern file into a "pattern" TermList. Raises ValueError naming file:line."""
    terms: list[str] = []
    for n, line in _read_lines(path):
        if not line or line.startswith("#"):
            continue
        try:
            pname, pattern = split_pattern_line(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        terms.append(f"{pname} = {pattern}")
    return TermList(name, "pattern", terms)
