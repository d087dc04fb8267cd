"""The control categories after the classification: SCI, SAP, AEA, FGI, dissemination
controls and non-IC controls (and NATO's ATOMAL/BALK/BOHEMIA)."""

from __future__ import annotations

import re

from guard.markings import vocab
from guard.markings.lists import code_list
from guard.markings.model import Compartment, Control
from guard.markings.syntax import (
    _AEA_BASE,
    _AEA_SIMPLE,
    _ALNUM,
    _CNWDI,
    _FGI_PREFIXES,
    _REL_PREFIXES,
    _SAP_PREFIXES,
    _SCI_COMPS,
    _SCI_SYSTEMS,
    _SIMPLE_ANY,
    _SUB_RE,
    _UNPUB,
    AEA,
    CATEGORY_NAMES,
    DISSEM,
    FGI,
    ORDER,
    SAP,
    SCI,
    SIMPLE,
    Ctx,
    pieces,
)


def category_of(tok: str) -> int:
    """Best guess of the category a token belongs to (-1: unknown)."""
    if tok in _SIMPLE_ANY:
        return _SIMPLE_ANY[tok][0]
    if tok.startswith(("REL TO", "AUTHORIZED FOR RELEASE TO", "DISPLAY ONLY")) or tok in (
            "REL", "EYES") or tok.endswith("EYES ONLY") or tok == "USA":
        return DISSEM
    if tok.startswith(("SAR-", "SPECIAL ACCESS REQUIRED-")):
        return SAP
    if tok.startswith(("FGI", "FOREIGN GOVERNMENT INFORMATION")):
        return FGI
    head = tok.split("-", 1)[0]
    if head in _AEA_BASE or tok in _AEA_SIMPLE:
        return AEA
    if head in _SCI_SYSTEMS:
        return SCI
    return -1


def sci_controls(ctx: Ctx, tokens: list[tuple[str, int, int]]) -> list[Control]:
    known = any(t.split("-", 1)[0] in _SCI_SYSTEMS for t, _, _ in tokens)
    out: list[Control] = []
    for tok, a, b in tokens:
        parts = pieces(tok, "-", a)
        sysname, sa, sb = parts[0]
        other = category_of(tok)
        if sysname in _SCI_SYSTEMS:
            key, form = _SCI_SYSTEMS[sysname]
            ctx.form(sysname, form, sa, sb)
        elif other >= 0:
            ctx.err("syntax-separator",
                    f"'{tok}' is a {CATEGORY_NAMES[other]} marking; categories are "
                    "separated by '//'.", a, b)
            continue
        elif _UNPUB.match(sysname) and (known or len(sysname) == 3) and all(
                _ALNUM.match(p.replace(" ", "")) for p, _, _ in parts[1:]):
            key = sysname  # unpublished SCI control system (D.1, J example ANB/XNB)
        else:
            ctx.err("syntax-unknown-token", f"'{tok}' is not a registered marking.", a, b)
            continue
        ctx.spans.setdefault(key, (a, b))
        comps: list[Compartment] = []
        for comp, ca, cb in parts[1:]:
            words = comp.split(" ")
            name = words[0]
            subs = tuple(w for w in words[1:] if w)
            if not name:
                ctx.err("syntax-empty-token", f"Empty compartment in '{tok}'.", ca, cb)
                continue
            table = _SCI_COMPS.get(key)
            if table is not None and name in table:
                cname, form = table[name]
                ctx.form(name, form, ca, ca + len(name))
            else:
                cname = name
                ok = {"SI": re.fullmatch(r"[A-Z]{2,3}", name), "RSV":
                      re.fullmatch(r"[A-Z0-9]{3}", name)}.get(key, key not in _SCI_COMPS)
                if not ok:
                    ctx.err("sci-unknown-compartment",
                            f"'{name}' is not a registered compartment of {key}.", ca, cb)
            ckey = f"{key}-{cname}"
            ctx.spans.setdefault(ckey, (ca, cb))
            ctx.spans.setdefault(f"{key}-*", (ca, cb))
            if subs:
                ctx.spans.setdefault(ckey + ".sub", (ca, cb))
                sub_re = _SUB_RE.get(ckey)
                registered = cname in {v[0] for v in _SCI_COMPS.get(key, {}).values()}
                if sub_re is None and registered:
                    ctx.err("sci-unknown-compartment",
                            f"{key}-{cname} has no registered sub-compartments.", ca, cb)
                for s in subs:
                    if sub_re is not None and not sub_re.match(s):
                        ctx.err("sci-compartment-format",
                                f"Sub-compartment '{s}' of {key}-{cname} has the wrong form.",
                                ca, cb)
                if list(subs) != sorted(subs):
                    ctx.err("syntax-token-order",
                            f"Sub-compartments of {key}-{cname} must be listed "
                            "alphanumerically.", ca, cb)
            comps.append(Compartment(cname, subs))
        names = [c.name for c in comps]
        if names != sorted(names):
            ctx.err("syntax-token-order",
                    f"Compartments of {key} must be listed alphabetically.", a, b)
        out.append(Control(key, tuple(comps)))
    keys = [c.name for c in out]
    if keys != sorted(keys):
        ctx.err("syntax-token-order",
                "SCI control systems must be listed alphanumerically: "
                f"{'/'.join(sorted(keys))}.", tokens[0][1], tokens[-1][2])
    return out


def sap_programs(ctx: Ctx, tokens: list[tuple[str, int, int]]) -> list[Control]:
    out = []
    for i, (tok, a, b) in enumerate(tokens):
        body = tok
        if i == 0:
            for prefix, form in _SAP_PREFIXES:
                if tok.startswith(prefix):
                    ctx.form(prefix.rstrip("-"), form, a, a + len(prefix))
                    body = tok[len(prefix):]
                    a += len(prefix)
                    break
        elif tok.startswith(("SAR-", "SPECIAL ACCESS REQUIRED-")):
            ctx.err("syntax-duplicate",
                    "The SAP category indicator (SAR-) is not repeated for further programs.",
                    a, b)
            body = tok.split("-", 1)[1]
        parts = pieces(body, "-", a)
        prog = parts[0][0]
        if not prog or not _ALNUM.match(prog.replace(" ", "")):
            ctx.err("syntax-unknown-token", f"'{tok}' is not a SAP program identifier.", a, b)
            continue
        if ctx.kind == "portion" and (len(prog) > 3 or " " in prog):
            ctx.err("form-banner-in-portion",
                    f"'{prog}' is a program identifier; a portion mark uses its two- or "
                    "three-character abbreviation.", parts[0][1], parts[0][2])
        comps = tuple(Compartment(p.split(" ")[0], tuple(p.split(" ")[1:]))
                      for p, _, _ in parts[1:] if p)
        out.append(Control(prog, comps))
    ctx.spans.setdefault("SAR", (tokens[0][1], tokens[-1][2]))
    return out


_SIGMA = re.compile(r"(SIGMA|SG) ([0-9 ]+)$")


def aea_markings(ctx: Ctx, tokens: list[tuple[str, int, int]]) -> tuple[list[str], list[int]]:
    aea: list[str] = []
    sigma: list[int] = []
    for tok, a, b in tokens:
        if tok in _AEA_SIMPLE:
            key, form = _AEA_SIMPLE[tok]
            ctx.form(tok, form, a, b)
            aea.append(key)
            ctx.spans.setdefault(key, (a, b))
            continue
        parts = pieces(tok, "-", a)
        base, ba, bb = parts[0]
        if base not in _AEA_BASE:
            ctx.err("syntax-unknown-token", f"'{tok}' is not a registered AEA marking.", a, b)
            continue
        key, form = _AEA_BASE[base]
        ctx.form(base, form, ba, bb)
        aea.append(key)
        ctx.spans.setdefault(key, (a, b))
        for sub, sa, sb in parts[1:]:
            if sub in _CNWDI:
                ctx.form(sub, _CNWDI[sub], sa, sb)
                aea.append("CNWDI")
                ctx.spans.setdefault("CNWDI", (sa, sb))
                if key != "RD":
                    ctx.err("aea-cnwdi", "CNWDI is a sub-marking of RD only.", sa, sb)
                continue
            m = _SIGMA.match(sub)
            if m is None:
                ctx.err("syntax-unknown-token",
                        f"'{sub}' is not a registered {key} sub-marking (CNWDI or SIGMA [#]).",
                        sa, sb)
                continue
            ctx.form(m.group(1), "b" if m.group(1) == "SIGMA" else "p", sa, sa + len(m.group(1)))
            nums = [int(x) for x in m.group(2).split() if x.isdigit()]
            ctx.spans.setdefault("SIGMA", (sa, sb))
            if nums != sorted(set(nums)) or any(not 1 <= x <= 99 for x in nums):
                ctx.err("aea-sigma",
                        "SIGMA numbers are listed once each in ascending order (1 to 99).",
                        sa, sb)
            if key == "FRD" and any(x not in (14, 15, 18, 20) for x in nums):
                ctx.err("aea-sigma", "FRD may carry only SIGMA 14, 15, 18 or 20.", sa, sb)
            sigma.extend(nums)
    return aea, sorted(set(sigma))


def fgi_list(ctx: Ctx, tokens: list[tuple[str, int, int]]) -> tuple[str, ...]:
    tok, a, b = tokens[0]
    for prefix, form in _FGI_PREFIXES:
        if tok == prefix or tok.startswith(prefix + " "):
            ctx.form(prefix, form, a, a + len(prefix))
            rest = tok[len(prefix):].lstrip()
            ctx.spans["FGI"] = (a, b)
            if len(tokens) > 1:
                ctx.err("syntax-separator", "FGI takes one list of codes separated by spaces.",
                        tokens[1][1], tokens[-1][2])
            if not rest:
                return ()
            codes = code_list(ctx, rest, b - len(rest), False, "the FGI list", False)
            if "USA" in codes:
                ctx.err("fgi-usa", "USA cannot be a source of foreign government information.",
                        a, b)
            return codes
    ctx.err("syntax-unknown-token", f"'{tok}' is not a registered marking.", a, b)
    return ()


def dissem_controls(ctx: Ctx, tokens: list[tuple[str, int, int]], cat: int, m: dict) -> list[str]:
    """Dissemination or non-IC controls; lists go into ``m``."""
    keys: list[str] = []
    # USA/CAN/GBR EYES ONLY contains single slashes: glue it back together
    glued: list[tuple[str, int, int]] = []
    i = 0
    while i < len(tokens):
        tok, a, b = tokens[i]
        if tok == "USA" and cat == DISSEM:
            j = i
            while j < len(tokens) and not tokens[j][0].endswith("EYES ONLY"):
                j += 1
            if j < len(tokens):
                glued.append(("/".join(t for t, _, _ in tokens[i:j + 1]), a, tokens[j][2]))
                i = j + 1
                continue
        glued.append((tok, a, b))
        i += 1
    table = SIMPLE[cat]
    for tok, a, b in glued:
        if tok in table:
            key, form = table[tok]
            ctx.form(tok, form, a, b)
        elif cat == DISSEM and tok == "REL":
            key = "REL"
            ctx.form(tok, "p", a, b, " (REL TO USA, [LIST])")
            m["rel_abbrev"] = True
        elif cat == DISSEM and tok.startswith(("REL TO", "AUTHORIZED FOR RELEASE TO")):
            key = "REL"
            rest = ""
            for prefix, form in _REL_PREFIXES:
                if tok.startswith(prefix) or tok == prefix.strip():
                    ctx.form(prefix.strip(), form, a, a + len(prefix) - 1)
                    rest = tok[len(prefix):]
                    break
            codes = code_list(ctx, rest, b - len(rest), True, "the REL TO list")
            if codes and "USA" not in codes:
                ctx.err("rel-no-usa", "A REL TO list must start with USA.", a, b)
            elif codes == ("USA",):
                ctx.err("rel-usa-only",
                        "REL TO USA alone releases to no one; use NOFORN, or name the "
                        "countries.", a, b)
            m["rel_to"] = codes
        elif cat == DISSEM and tok.startswith("DISPLAY ONLY"):
            key = "DISPLAY"
            rest = tok[len("DISPLAY ONLY"):].lstrip()
            m["display_only"] = code_list(ctx, rest, b - len(rest), True,
                                           "the DISPLAY ONLY list")
        elif cat == DISSEM and (tok == "EYES" or tok.endswith(" EYES ONLY")):
            key = "EYES"
            if tok == "EYES":
                ctx.form(tok, "p", a, b)
                m["eyes"] = ("USA",)
            else:
                codes = tok[: -len(" EYES ONLY")].split("/")
                bad = [c for c in codes if not vocab.is_country(c)]
                if bad or codes[0] != "USA" or codes[1:] != sorted(codes[1:]):
                    ctx.err("list-order",
                            "EYES ONLY lists USA first, then trigraphs alphabetically, "
                            "separated by '/'.", a, b)
                m["eyes"] = vocab.sort_list(codes)
        else:
            other = category_of(tok)
            if other >= 0 and other != cat:
                ctx.err("syntax-separator",
                        f"'{tok}' is a {CATEGORY_NAMES[other]} marking; categories are "
                        "separated by '//'.", a, b)
            else:
                ctx.err("syntax-unknown-token", f"'{tok}' is not a registered marking.", a, b)
            continue
        if key in keys:
            ctx.err("syntax-duplicate", f"'{tok}' is repeated.", a, b)
            continue
        if keys and ORDER[key] < ORDER[keys[-1]]:
            ctx.err("syntax-token-order",
                    f"'{tok}' is out of Register order; within a category markings follow "
                    "the order of the Register.", a, b)
        keys.append(key)
        ctx.spans.setdefault(key, (a, b))
    return keys
