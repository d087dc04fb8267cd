"""Canonical text of a ``Marking``: banner line (Register abbreviations) or portion mark."""

from __future__ import annotations

from guard.markings import vocab
from guard.markings.model import Marking

_REG = vocab.register()
_TITLE = {"TS": "TOP SECRET", "S": "SECRET", "C": "CONFIDENTIAL", "R": "RESTRICTED",
          "U": "UNCLASSIFIED"}
_NATO_TITLE = {"TS": "COSMIC TOP SECRET", "S": "NATO SECRET", "C": "NATO CONFIDENTIAL",
               "R": "NATO RESTRICTED", "U": "NATO UNCLASSIFIED"}
_BANNER_AEA = {"DCNI": "DOD UCNI", "UCNI": "DOE UCNI", "TFNI": "TFNI"}


def _classification(m: Marking, banner: bool) -> str:
    level = m.classification
    word = _TITLE[level] if banner else level
    if m.origin == "US":
        return word
    if m.origin == "JOINT":
        return "//JOINT " + " ".join((word, *m.owners))
    if m.owners == ("NATO",):
        if m.nac:
            if banner:
                return f"//NATO {m.nac} {word}"
            return f"//N{_REG[m.nac].portion}{level}"
        return "//" + (_NATO_TITLE[level] if banner else ("CTS" if level == "TS" else
                                                         "N" + level))
    if not m.owners:
        return "//FGI " + word
    return "//" + " ".join((*m.owners, word))


def _aea(m: Marking, banner: bool) -> list[str]:
    out = []
    for key in m.aea:
        if key in ("RD", "FRD"):
            text = key
            if key == "RD" and "CNWDI" in m.aea:
                text += "-CNWDI"
            if m.sigma and (key == "RD" or "RD" not in m.aea):
                text += ("-SIGMA " if banner else "-SG ") + " ".join(map(str, m.sigma))
            out.append(text)
        elif key != "CNWDI":
            out.append(_BANNER_AEA[key] if banner else key)
    if m.sigma and not ({"RD", "FRD"} & set(m.aea)):
        out.append(("SIGMA " if banner else "SG ") + " ".join(map(str, m.sigma)))
    return out


def _dissem(m: Marking, banner: bool) -> list[str]:
    keys = list(m.dissem)
    for k in ("REL", "EYES", "DISPLAY"):
        if m.has(k):
            keys.append(k)
    keys.sort(key=lambda k: _REG[k].order)
    out = []
    for k in keys:
        if k == "REL":
            if m.rel_to:
                out.append("REL TO " + ", ".join(m.rel_to))
            else:
                out.append("REL")
        elif k == "DISPLAY":
            out.append("DISPLAY ONLY " + ", ".join(m.display_only))
        elif k == "EYES":
            out.append("EYES" if not banner and m.eyes == ("USA",) else
                       "/".join(m.eyes) + " EYES ONLY")
        else:
            e = _REG[k]
            out.append((e.abbrev or e.title) if banner else e.portion)
    return out


def _render(m: Marking, banner: bool) -> str:
    cats = [_classification(m, banner)]
    if m.non_us_controls:
        cats.append("/".join(m.non_us_controls))
    if m.sci:
        cats.append("/".join(c.text() for c in m.sci))
    if m.sap:
        cats.append("SAR-" + "/".join(c.text() for c in m.sap))
    aea = _aea(m, banner)
    if aea:
        cats.append("/".join(aea))
    if m.fgi_marked and m.origin == "US":
        cats.append(" ".join(("FGI", *m.fgi)))
    dissem = _dissem(m, banner)
    if dissem:
        cats.append("/".join(dissem))
    if m.non_ic:
        cats.append("/".join((_REG[k].abbrev or _REG[k].title) if banner else k
                             for k in m.non_ic))
    return "//".join(cats)


def render_banner(m: Marking) -> str:
    """Canonical banner line (Register banner abbreviations)."""
    return _render(m, True)


def render_portion(m: Marking) -> str:
    """Canonical portion mark, with its parentheses."""
    return "(" + _render(m, False) + ")"
