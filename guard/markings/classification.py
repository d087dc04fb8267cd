"""The classification category: US, non-US (a country, NATO, concealed FGI) and JOINT."""

from __future__ import annotations

from guard.markings.lists import code_list
from guard.markings.model import Marking
from guard.markings.syntax import (
    _NAC,
    _NAC_BY_LETTER,
    _NATO_BANNER,
    _NATO_PORTION,
    CLASS_PORTION,
    US_CLASS_BANNER,
    Ctx,
    pieces,
)


def _split_class_words(ctx: Ctx, words: list[tuple[str, int, int]]) -> tuple[str, int, int]:
    """Find a classification at the start of ``words`` (consumed in place)."""
    if not words:
        return "", 0, 0
    w, a, b = words[0]
    if w == "TOP" and len(words) > 1 and words[1][0] == "SECRET":
        del words[:2]
        ctx.form("TOP SECRET", "b", a, b)
        return "TS", a, b
    if w in US_CLASS_BANNER and w != "TOP":
        del words[0]
        ctx.form(w, "b", a, b)
        return US_CLASS_BANNER[w], a, b
    if w in CLASS_PORTION:
        del words[0]
        ctx.form(w, "p", a, b)
        return CLASS_PORTION[w], a, b
    return "", a, b


def _non_us_class(ctx: Ctx, s: str, a: int, b: int) -> Marking | None:
    """``JOINT S CAN USA``, ``NATO SECRET``, ``CTS``, ``GBR SECRET``, ``FGI S``..."""
    if s in _NATO_BANNER or s in _NATO_PORTION:
        form = "b" if s in _NATO_BANNER else "p"
        ctx.form(s, form, a, b)
        level = _NATO_BANNER.get(s) or _NATO_PORTION[s]
        return Marking(level, origin="NON-US", owners=("NATO",))
    if len(s) == 3 and s[0] == "N" and s[1] in _NAC_BY_LETTER and s[2] in "SCRU":
        ctx.form(s, "p", a, b)
        return Marking(s[2], origin="NON-US", owners=("NATO",), nac=_NAC_BY_LETTER[s[1]])
    words = pieces(s, " ", a)
    if words and words[0][0] in ("NATO", "COSMIC"):
        if len(words) > 2 and words[1][0] in _NAC:
            rest = " ".join(w for w, _, _ in words[2:])
            if rest in US_CLASS_BANNER and rest != "TOP SECRET":
                ctx.form(s, "b", a, b)
                return Marking(US_CLASS_BANNER[rest], origin="NON-US", owners=("NATO",),
                               nac=words[1][0])
        lvl = " ".join(w for w, _, _ in words[1:])
        level = US_CLASS_BANNER.get(lvl) or CLASS_PORTION.get(lvl, "")
        ctx.err("class-nato",
                f"'{s}' is not a NATO classification; NATO markings are COSMIC TOP SECRET "
                "(CTS), NATO SECRET (NS), NATO CONFIDENTIAL (NC), NATO RESTRICTED (NR) and "
                "NATO UNCLASSIFIED (NU).", a, b)
        return Marking(level, origin="NON-US", owners=("NATO",)) if level else None
    if words and words[0][0] == "JOINT":
        rest = words[1:]
        level, _, _ = _split_class_words(ctx, rest)
        if not level:
            ctx.err("class-unknown", f"'{s}' has no classification level after JOINT.", a, b)
            return None
        ctx.spans["class"] = (a, b)
        owners: tuple[str, ...] = ()
        if rest:
            la = rest[0][1]
            owners = code_list(ctx, s[la - a:], la, False, "the JOINT list", False)
        return Marking(level, origin="JOINT", owners=owners)
    # [LIST] [classification] or FGI [classification]
    if len(words) >= 2:
        tail = words[-1][0]
        if len(words) >= 3 and words[-2][0] == "TOP" and tail == "SECRET":
            level, la, form = "TS", words[-2][1], "b"
            head = words[:-2]
        elif tail in US_CLASS_BANNER:
            level, la, form = US_CLASS_BANNER[tail], words[-1][1], "b"
            head = words[:-1]
        elif tail in CLASS_PORTION:
            level, la, form = CLASS_PORTION[tail], words[-1][1], "p"
            head = words[:-1]
        else:
            head = []
            level = ""
        if level and head:
            ctx.form(s[la - a:], form, la, b)
            if len(head) == 1 and head[0][0] == "FGI":
                return Marking(level, origin="NON-US", owners=(), fgi_marked=True)
            ha = head[0][1]
            owners = code_list(ctx, s[: head[-1][2] - a], ha, False, "the owner list", False)
            if "USA" in owners:
                ctx.err("class-non-us-usa",
                        "USA cannot own a non-US classification; use JOINT for co-owned "
                        "information.", a, b)
            return Marking(level, origin="NON-US", owners=owners)
    ctx.err("class-unknown", f"'{s}' is not a non-US, NATO or JOINT classification.", a, b)
    return None


def classification(ctx: Ctx, s: str, a: int, b: int, non_us: bool) -> Marking | None:
    ctx.spans["class"] = (a, b)
    if non_us:
        return _non_us_class(ctx, s, a, b)
    if "/" in s:
        ctx.err("syntax-separator",
                f"'{s}': categories are separated by '//' (a single '/' separates markings "
                "within one category).", a, b)
        s = s.split("/")[0]
        b = a + len(s)
    level = US_CLASS_BANNER.get(s)
    if level is not None:
        ctx.form(s, "b", a, b)
    else:
        level = CLASS_PORTION.get(s)
        if level is None:
            ctx.err("class-unknown",
                    f"'{s}' is not a classification; a marking starts with TOP SECRET, "
                    "SECRET, CONFIDENTIAL or UNCLASSIFIED (TS, S, C, U in portions), or with "
                    "'//' for non-US and JOINT classifications.", a, b)
            return None
        if ctx.kind == "banner":
            ctx.err("form-class-abbrev",
                    f"'{s}' is abbreviated; the banner line spells the classification out "
                    "in English.", a, b)
    if level == "R":
        ctx.err("class-us-restricted",
                "RESTRICTED is not a US classification; it appears only in non-US and NATO "
                "markings such as //GBR RESTRICTED or //NATO RESTRICTED.", a, b)
    return Marking(level)
