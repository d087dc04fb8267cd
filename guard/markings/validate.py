"""Relationship checks on a parsed marking (CAPCO-2016 section H templates).

The rules come from the Register data (``guard/data/register.tsv``: classifications a
marking may be used with, what it requires and excludes) plus the few structural
rules of JOINT, NATO and FGI markings that the table cannot express.
"""

from __future__ import annotations

from guard.findings import Finding
from guard.markings import vocab
from guard.markings.model import Marking

_REG = vocab.register()
_FDR = {"NF", "REL", "RELIDO", "DISPLAY", "EYES"}
_NAMES = {e.key: (e.key if e.category == "sci" else e.abbrev or e.title)
          for e in _REG.values()}
_NAMES.update({"REL": "REL TO", "DISPLAY": "DISPLAY ONLY", "EYES": "EYES ONLY",
               "SIGMA": "SIGMA", "DSEN": "DEA SENSITIVE"})
_CLASS_NAMES = {"TS": "TOP SECRET", "S": "SECRET", "C": "CONFIDENTIAL", "R": "RESTRICTED",
                "U": "UNCLASSIFIED"}


def present_keys(m: Marking) -> list[str]:
    """Register keys of every control present in ``m`` (SCI keys like ``TK-BLFH.sub``)."""
    keys: list[str] = list(m.non_us_controls)
    for c in m.sci:
        keys.append(c.name)
        for comp in c.compartments:
            ck = f"{c.name}-{comp.name}"
            keys.append(ck if ck in _REG else f"{c.name}-*")
            if comp.subs:
                keys.append(ck + ".sub")
    if m.sap:
        keys.append("SAR")
    keys.extend(m.aea)
    if m.sigma:
        keys.append("SIGMA")
    if m.fgi_marked and m.origin == "US":
        keys.append("FGI")
    keys.extend(m.dissem)
    for k in ("REL", "DISPLAY", "EYES"):
        if m.has(k):
            keys.append(k)
    keys.extend(m.non_ic)
    return keys


def _name(key: str) -> str:
    if key.endswith(".sub"):
        return f"{key[:-4]} sub-compartments"
    if key.endswith("-*"):
        return f"{key[:-2]} compartments"
    return _NAMES.get(key, key)


def validate(m: Marking, kind: str, spans: dict[str, tuple[int, int]], out: list[Finding],
             n: int) -> None:
    """Append to ``out`` a finding for every relationship rule ``m`` breaks."""
    whole = (0, n)

    def span(key: str) -> tuple[int, int]:
        return spans.get(key) or spans.get(key.split(".")[0]) or whole

    keys = present_keys(m)
    present = set(keys)
    level = m.classification
    # classification level allowed for each control
    for key in keys:
        e = _REG.get(key)
        if e is None or not level:
            continue
        ok = level in e.classes
        if level == "R" and m.origin != "US":
            ok = bool(e.classes & {"C", "U"})  # a foreign RESTRICTED sits between C and U
        if not ok:
            allowed = ", ".join(_CLASS_NAMES[c] for c in ("TS", "S", "C", "R", "U")
                                if c in e.classes)
            out.append(Finding(
                "control-classification",
                f"{_name(key)} may only be used with {allowed}, not {_CLASS_NAMES[level]}.",
                *span(key)))
    # requires / excludes
    reported: set[frozenset[str]] = set()
    required_once: set[tuple[str, str]] = set()
    for key in keys:
        e = _REG.get(key)
        if e is None:
            continue
        for req in e.requires:
            if req in present or (req == "NF" and m.origin == "NON-US"):
                continue
            # one finding per SCI control system and missing marking (HCS and HCS-P
            # both require NOFORN: say it once)
            root = (key.split("-")[0] if e.category == "sci" else key, req)
            if root in required_once:
                continue
            required_once.add(root)
            if key in ("XD", "ND") and req == "NF":
                rule = "nonic-requires-noforn"
            elif req == "NF" and e.category == "sci":
                rule = "sci-requires-noforn"
            else:
                rule = "control-requires"
            verb = "require" if key.endswith((".sub", "-*")) else "requires"
            out.append(Finding(rule, f"{_name(key)} {verb} {_name(req)}.", *span(key)))
        for exc in e.excludes:
            pair = frozenset((key, exc))
            if exc not in present or pair in reported:
                continue
            reported.add(pair)
            if "NF" in pair or "SBU-NF" in pair or "LES-NF" in pair:
                rule = "noforn-conflict"
            elif pair <= _FDR:
                rule = "fdr-conflict"
            else:
                rule = "control-conflict"
            a1, b1 = span(key)
            a2, b2 = span(exc)
            out.append(Finding(rule, f"{_name(key)} cannot be used with {_name(exc)}.",
                               min(a1, a2), max(b1, b2)))
    # SCI systems that need a compartment
    for c in m.sci:
        if c.name in ("HCS", "RSV") and not c.compartments:
            out.append(Finding(
                "sci-compartment-required",
                f"{_name(c.name)} is not used alone; it requires an associated compartment"
                f"{' (HCS-O or HCS-P)' if c.name == 'HCS' else ''}.", *span(c.name)))
    if "HCS-P.sub" in present and not any(
            c.name == "HCS" and any(x.name == "P" for x in c.compartments) for c in m.sci):
        out.append(Finding("control-requires", "PRODUCT sub-compartments require HCS-P.",
                           *span("HCS")))
    # AEA
    if m.sigma and not ({"RD", "FRD"} & present):
        out.append(Finding("aea-sigma", "SIGMA requires RD or FRD.", *span("SIGMA")))
    # origin-specific rules
    if m.origin == "NON-US" and not m.owners and kind == "banner":
        out.append(Finding("class-fgi-banner",
                           "A banner line does not use the concealed-FGI form //FGI [level]; "
                           "it is the US classification followed by //FGI, e.g. "
                           "SECRET//FGI.", *span("class")))
    if m.origin == "JOINT":
        cls = span("class")
        if not m.owners and kind == "banner":
            out.append(Finding("joint-list", "A JOINT banner line lists its co-owners "
                               "(//JOINT SECRET CAN USA).", *cls))
        if "USA" not in m.owners and m.owners:
            out.append(Finding("joint-list",
                               "A JOINT marking always includes USA as a co-owner.", *cls))
        if len(m.owners) == 1:
            out.append(Finding("joint-list", "JOINT needs two or more co-owners.", *cls))
        if level == "R":
            out.append(Finding("joint-classification",
                               "JOINT may be TOP SECRET, SECRET, CONFIDENTIAL or UNCLASSIFIED, "
                               "not RESTRICTED.", *cls))
        if not m.has("REL"):
            out.append(Finding("joint-rel-required",
                               "A JOINT marking requires REL TO [USA, LIST].", *cls))
        if "NF" in present:
            out.append(Finding("joint-control", "JOINT cannot be used with NOFORN.",
                               *span("NF")))
        if "HCS" in present:
            out.append(Finding("joint-control", "JOINT cannot be used with HCS.",
                               *span("HCS")))
    if m.origin == "NON-US" and m.fgi_marked and m.owners:
        out.append(Finding("fgi-non-us",
                           "The FGI marking is for US products carrying foreign information; "
                           "a non-US marking names its owner in the classification.",
                           *span("FGI")))
    # NATO controls belong to NATO information: a NATO classification, or a US document
    # that carries NATO FGI (named, or concealed) after roll-up
    nato_fgi = m.origin == "US" and m.fgi_marked and (not m.fgi or "NATO" in m.fgi)
    if m.non_us_controls and "NATO" not in m.owners and not nato_fgi:
        out.append(Finding("nonus-control",
                           f"{'/'.join(m.non_us_controls)} may only be used with NATO "
                           "classifications.", *span(m.non_us_controls[0])))
    if m.origin == "NON-US" and "NATO" in m.owners and "NF" in present:
        out.append(Finding("nonus-noforn",
                           "NOFORN is a US control; NATO information is released by NATO.",
                           *span("NF")))
    if m.origin != "US" and m.fgi_marked and m.owners and m.origin == "JOINT":
        out.append(Finding("fgi-non-us", "FGI is not used with a JOINT classification.",
                           *span("FGI")))
