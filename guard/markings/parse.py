"""Parse a banner line or portion mark into a ``Marking``, reporting every problem.

Clean canonical US markings take the compiled fast path (``fast``); everything else
goes through the full parser here, which reads the structure category by category
(``classification``, ``controls``, ``lists``), checks the forms (banner title or
abbreviation vs portion mark), and then ``validate`` checks the relationships between
markings. Rule ids are listed in ``guard.markings.rules``.
"""

from __future__ import annotations

from guard.findings import Finding
from guard.markings.classification import classification
from guard.markings.controls import (
    aea_markings,
    category_of,
    dissem_controls,
    fgi_list,
    sap_programs,
    sci_controls,
)
from guard.markings.fast import fast_parse
from guard.markings.lexical import prescan
from guard.markings.model import Marking, ParseResult
from guard.markings.syntax import (
    AEA,
    CATEGORY_NAMES,
    CLASS,
    CLASS_PORTION,
    DISSEM,
    FGI,
    LISTED,
    NATOCTL,
    NONIC,
    ORDER,
    SAP,
    SCI,
    US_CLASS_BANNER,
    Ctx,
    pieces,
)
from guard.markings.validate import validate


def _parse(text: str, kind: str) -> ParseResult:
    folded, findings, fatal = prescan(text)
    if fatal:
        return ParseResult(text, kind if kind != "auto" else "banner", None, findings)
    s = folded
    lead = len(s) - len(s.lstrip())
    body = s.strip()
    base = lead
    is_paren = body.startswith("(") or body.endswith(")")
    if kind == "auto":
        kind = "portion" if is_paren else "banner"
    ctx = Ctx(kind)
    ctx.errors.extend(findings)
    if kind == "portion" and is_paren:
        if not (body.startswith("(") and body.endswith(")")) or body.count("(") != 1 or \
                body.count(")") != 1:
            ctx.err("syntax-parentheses",
                    "A portion mark is enclosed in one pair of parentheses.", lead,
                    lead + len(body))
        if body.startswith("("):
            body = body[1:]
            base += 1
        if body.endswith(")"):
            body = body[:-1]
    elif kind == "banner" and is_paren:
        ctx.err("syntax-parentheses", "A banner line is not enclosed in parentheses.", lead,
                lead + len(body))
        body = body.strip("()")
        base += 1
    if not body.strip():
        ctx.err("input-empty", "The marking is empty.", 0, len(text))
        return ParseResult(text, kind, None, ctx.errors)
    cats = pieces(body, "//", base)
    non_us = False
    if cats[0][0] == "" and len(cats) > 1:
        non_us = True
        cats = cats[1:]
    cls_text, ca, cb = cats[0]
    if not cls_text:
        ctx.err("syntax-empty-category", "The marking has no classification.", ca, cb)
        return ParseResult(text, kind, None, ctx.errors)
    base_marking = classification(ctx, cls_text, ca, cb, non_us)
    fields: dict = {}
    seen: dict[int, tuple[int, int]] = {}
    last_rank = CLASS
    for cat_text, a, b in cats[1:]:
        if not cat_text:
            ctx.err("syntax-empty-category",
                    "Empty category: no slashes are used to hold the place of an absent "
                    "category (e.g. TS//NF, not TS////NF).", a - 2, b + 2)
            continue
        tokens = pieces(cat_text, "/", a)
        for t, ta, _tb in tokens:
            if not t:
                ctx.err("syntax-empty-token", "Empty marking between '/' separators.",
                        ta - 1, ta)
        tokens = [t for t in tokens if t[0]]
        if not tokens:
            continue
        rank = -1
        for t, _, _ in tokens:
            rank = category_of(t)
            if rank >= 0:
                break
        guessed = False
        if rank < 0 and last_rank < SAP:
            rank = SCI  # candidates for unpublished SCI control systems
            guessed = True
        if rank < 0:
            for t, ta, tb in tokens:
                ctx.err("syntax-unknown-token", f"'{t}' is not a registered marking.", ta, tb)
            continue
        if rank in seen and guessed:
            pass  # unknown tokens: reported as such, not as a repeated category
        elif rank in seen:
            ctx.err("syntax-category-repeated",
                    f"The {CATEGORY_NAMES[rank]} category appears twice; its markings go "
                    "together, separated by '/'.", a, b)
        elif rank < last_rank:
            ctx.err("syntax-category-order",
                    f"The {CATEGORY_NAMES[rank]} category is out of order; the order is "
                    "classification//SCI//SAP//AEA//FGI//dissemination//non-IC.", a, b)
        seen.setdefault(rank, (a, b))
        last_rank = max(last_rank, rank)
        if rank in (DISSEM, NONIC, NATOCTL):
            keys = dissem_controls(ctx, tokens, rank, fields)
            name = {DISSEM: "dissem", NONIC: "non_ic", NATOCTL: "non_us_controls"}[rank]
            merged = [*fields.get(name, ()), *(k for k in keys if k not in LISTED)]
            fields[name] = tuple(sorted(set(merged), key=ORDER.__getitem__))
        elif rank == SCI:
            fields["sci"] = (*fields.get("sci", ()), *sci_controls(ctx, tokens))
        elif rank == SAP:
            fields["sap"] = (*fields.get("sap", ()), *sap_programs(ctx, tokens))
        elif rank == AEA:
            aea, sigma = aea_markings(ctx, tokens)
            fields["aea"] = tuple(sorted(set((*fields.get("aea", ()), *aea)),
                                         key=ORDER.__getitem__))
            fields["sigma"] = tuple(sorted(set((*fields.get("sigma", ()), *sigma))))
        elif rank == FGI:
            fields["fgi_marked"] = True
            fields["fgi"] = fgi_list(ctx, tokens)
    if base_marking is None:
        for cat_text, a, b in cats[1:]:
            if cat_text in US_CLASS_BANNER or cat_text in CLASS_PORTION:
                ctx.err("syntax-category-order",
                        f"'{cat_text}' is a classification: the classification comes first.",
                        a, b)
        return ParseResult(text, kind, None, _clamped(ctx.errors, len(text)))
    for k in ("rel_to", "display_only", "eyes"):
        if k in fields:
            fields[k] = tuple(fields[k])
    marking = Marking(
        classification=base_marking.classification,
        origin=base_marking.origin,
        owners=base_marking.owners,
        nac=base_marking.nac,
        fgi_marked=base_marking.fgi_marked or fields.pop("fgi_marked", False),
        **fields,
    )
    validate(marking, ctx.kind, ctx.spans, ctx.errors, len(text))
    return ParseResult(text, kind, marking, _clamped(ctx.errors, len(text)))


def _clamped(errors: list[Finding], n: int) -> list[Finding]:
    """Spans inside the text (a separator-based span may reach one past an end)."""
    out = []
    for e in errors:
        if e.start < 0 or e.end > n or e.start > e.end:
            a = min(max(e.start, 0), n)
            e = Finding(e.rule, e.message, a, min(max(e.end, a), n))
        out.append(e)
    return out


def parse(text: str, kind: str = "auto") -> ParseResult:
    """Parse a banner line or portion mark; never raises.

    ``kind``: ``"banner"``, ``"portion"`` (parentheses optional) or ``"auto"`` (text in
    parentheses is a portion mark). Every problem found is in ``.errors``.
    """
    if type(text) is not str:
        if isinstance(text, str):
            text = str.__str__(text)  # a str subclass: its plain text
        elif isinstance(text, (bytes, bytearray, memoryview)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                return ParseResult(repr(bytes(text)[:80]), "banner", None, [Finding(
                    "input-bad-char", "The marking is not valid UTF-8 text.",
                    exc.start, exc.end)])
        else:
            return ParseResult(repr(text)[:80], "banner", None, [Finding(
                "input-bad-char", f"The marking is not text ({type(text).__name__}).", 0, 0)])
    if kind not in ("auto", "banner", "portion"):
        kind = "auto"
    try:
        fast = fast_parse(text, kind)
        if fast is not None:
            return ParseResult(text, fast[0], fast[1], [])
        return _parse(text, kind)
    except Exception as exc:  # fail closed: an internal error is an invalid marking
        return ParseResult(text, kind, None, [Finding(
            "internal-error", f"The marking could not be parsed ({type(exc).__name__}).",
            0, len(text))])
