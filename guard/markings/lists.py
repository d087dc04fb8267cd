"""Country and organisation lists: REL TO, DISPLAY ONLY, EYES ONLY, JOINT, FGI, owners."""

from __future__ import annotations

from guard.markings import vocab
from guard.markings.syntax import Ctx, pieces


def code_list(ctx: Ctx, s: str, base: int, comma: bool, what: str,
               usa_first: bool = True) -> tuple[str, ...]:
    """Parse a list of trigraphs / tetragraphs, checking codes, separator and order.

    REL TO, DISPLAY ONLY and EYES ONLY lists put USA first (``usa_first``); JOINT, FGI
    and owner lists are alphabetical, trigraphs before tetragraphs."""
    if not s:
        ctx.err("list-empty", f"{what} needs at least one country or organisation code.",
                base, base)
        return ()
    if comma:
        items = pieces(s, ",", base)
        for code, a, b in list(items):
            if " " in code:
                ctx.err("list-separator",
                        f"In {what}, codes are separated by a comma and a space (', ').", a, b)
        flat = []
        for code, a, _b in items:
            flat.extend(pieces(code, " ", a) if " " in code else [(code, a, a + len(code))])
        items = [x for x in flat if x[0]]
        if ", " not in s and "," in s:
            ctx.err("list-separator",
                    f"In {what}, codes are separated by a comma and a space (', ').",
                    base, base + len(s))
    else:
        items = [x for x in pieces(s, " ", base) if x[0]]
        if "," in s:
            ctx.err("list-separator", f"In {what}, codes are separated by single spaces.",
                    base, base + len(s))
            items = [(c.strip(","), a, b) for c, a, b in items if c.strip(",")]
    codes = []
    for code, a, b in items:
        if not code:
            ctx.err("list-empty", f"Empty entry in {what}.", a, b)
            continue
        if not (vocab.is_country(code) or vocab.is_tetragraph(code)):
            ctx.err("list-unknown-code",
                    f"'{code}' in {what} is not a registered country trigraph or tetragraph.",
                    a, b)
        codes.append(code)
    if len(set(codes)) != len(codes):
        ctx.err("list-duplicate", f"{what} repeats a code.", base, base + len(s))
    sort_key = vocab.list_sort_key if usa_first else vocab.plain_sort_key
    keys = [sort_key(c) for c in codes]
    if keys != sorted(keys):
        want = sorted(set(codes), key=sort_key)
        ctx.err("list-order",
                f"{what} must list {'USA first, then ' if usa_first else ''}trigraphs "
                f"alphabetically, then tetragraphs alphabetically: {', '.join(want)}.",
                base, base + len(s))
    return tuple(sorted(set(codes), key=sort_key))
