"""Vocabularies of the markings engine, loaded once from the data shipped in ``guard/data``.

- ``register.tsv``: the CAPCO-2016 Register (Table 4) with each template's rules
  (allowed classifications, required and excluded markings), in Register order;
- ``countries.tsv``: ISO 3166 trigraphs (ODNI ISM CVE);
- ``tetragraphs.tsv``: tetragraphs and, where decomposable, their member countries
  (ODNI ISM CVE, NATO amended with FIN and SWE).

Nothing here is policy logic: changing a group's membership is a data change.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from guard.data import data_path

#: classification level codes in rank order (see ``classification_rank``).
LEVELS: dict[str, int] = {"U": 0, "R": 1, "C": 2, "S": 3, "TS": 4}


@dataclass(frozen=True, slots=True)
class Entry:
    """One Register row."""

    category: str
    key: str
    title: str
    abbrev: str  # "" when the Register gives no banner abbreviation
    portion: str  # "" when the marking has no portion form
    classes: frozenset[str]
    requires: tuple[str, ...]
    excludes: tuple[str, ...]
    order: int
    note: str


def _split(field: str) -> tuple[str, ...]:
    return () if field in ("", "-") else tuple(x for x in field.split(",") if x)


def _rows(name: str) -> list[list[str]]:
    rows = []
    with open(data_path(name), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            rows.append(line.rstrip("\n").split("\t"))
    return rows


@lru_cache(maxsize=1)
def register() -> dict[str, Entry]:
    """All Register entries by key, in Register order."""
    out: dict[str, Entry] = {}
    for i, row in enumerate(_rows("register.tsv")):
        row += [""] * (9 - len(row))
        cat, key, title, abbrev, portion, classes, req, exc, note = row[:9]
        out[key] = Entry(
            cat,
            key,
            title,
            "" if abbrev == "-" else abbrev,
            "" if portion == "-" else portion,
            frozenset(_split(classes)) or frozenset(LEVELS),
            _split(req),
            _split(exc),
            i,
            note,
        )
    return out


@lru_cache(maxsize=1)
def countries() -> dict[str, str]:
    """Trigraph -> country name (deprecated codes included; they are still codes)."""
    return {r[0]: r[1] for r in _rows("countries.tsv")}


@lru_cache(maxsize=1)
def tetragraphs() -> dict[str, frozenset[str]]:
    """Tetragraph -> member trigraphs (empty when the tetragraph is not decomposable)."""
    out = {}
    for r in _rows("tetragraphs.tsv"):
        members = frozenset(r[2].split()) if len(r) > 2 and r[1] == "Yes" else frozenset()
        out[r[0]] = members
    return out


def is_country(code: str) -> bool:
    """True for a known trigraph country code."""
    return code in countries()


def is_tetragraph(code: str) -> bool:
    """True for a known tetragraph (group / organisation) code."""
    return code in tetragraphs()


def group_members(code: str) -> frozenset[str]:
    """Countries a code stands for: a trigraph stands for itself, a decomposable
    tetragraph for its members; unknown or non-decomposable codes for nothing."""
    if code in countries():
        return frozenset((code,))
    return tetragraphs().get(code, frozenset())


def list_sort_key(code: str) -> tuple[int, str]:
    """CAPCO list order: USA first, then trigraphs, then tetragraphs, each alphabetical."""
    if code == "USA":
        return (0, code)
    return (1, code) if len(code) == 3 and code in countries() else (2, code)


def plain_sort_key(code: str) -> tuple[int, str]:
    """JOINT / FGI / owner list order: trigraphs (USA among them), then tetragraphs."""
    return (1, code) if len(code) == 3 and code in countries() else (2, code)


def sort_list(codes: object) -> tuple[str, ...]:
    """Codes in CAPCO list order, without duplicates."""
    return tuple(sorted(set(codes), key=list_sort_key))  # type: ignore[arg-type]
