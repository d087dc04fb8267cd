"""Shared syntax of CAPCO markings: the spellings the Register allows, the parse
context that collects findings, and splitting with character spans.

Syntax (CAPCO-2016 C.1, D.1): ``CLASSIFICATION//SCI//SAP//AEA//FGI//DISSEM//NON-IC``;
categories separated by ``//``, markings within a category by ``/``, sub-markings by
``-``, lists by ``, `` (REL TO, DISPLAY ONLY) or a space (FGI, JOINT, non-US owners).
"""

from __future__ import annotations

import re

from guard.findings import Finding
from guard.markings import vocab

# ---- vocabularies derived once from the Register -------------------------------------

_REG = vocab.register()
US_CLASS_BANNER = {"TOP SECRET": "TS", "SECRET": "S", "CONFIDENTIAL": "C", "UNCLASSIFIED": "U",
                    "RESTRICTED": "R"}
CLASS_PORTION = {"TS": "TS", "S": "S", "C": "C", "U": "U", "R": "R"}
_NATO_BANNER = {"COSMIC TOP SECRET": "TS", "NATO SECRET": "S", "NATO CONFIDENTIAL": "C",
                "NATO RESTRICTED": "R", "NATO UNCLASSIFIED": "U"}
_NATO_PORTION = {"CTS": "TS", "NS": "S", "NC": "C", "NR": "R", "NU": "U"}
_NAC = {e.key: e.portion for e in _REG.values() if e.category == "nac"}  # ISAF -> I
_NAC_BY_LETTER = {v: k for k, v in _NAC.items()}

# category ranks in banner order
CLASS, NATOCTL, SCI, SAP, AEA, FGI, DISSEM, NONIC = range(8)
CATEGORY_NAMES = {CLASS: "classification", NATOCTL: "non-US control", SCI: "SCI control system",
                  SAP: "special access program", AEA: "atomic energy act", FGI: "FGI",
                  DISSEM: "dissemination control", NONIC: "non-IC dissemination control"}


def _forms(category: str) -> dict[str, tuple[str, str]]:
    """Spelling -> (key, form) for simple one-word-or-title markings of a category.
    form: "b" banner only, "p" portion only, "bp" both."""
    out: dict[str, tuple[str, str]] = {}
    for e in _REG.values():
        if e.category != category or e.key in ("REL", "DISPLAY", "EYES"):
            continue
        spellings: dict[str, str] = {}
        for s, f in ((e.title, "b"), (e.abbrev, "b"), (e.portion, "p")):
            if s and f not in spellings.get(s, ""):
                spellings[s] = spellings.get(s, "") + f
        for s, f in spellings.items():
            out[s] = (e.key, f)
    return out


SIMPLE = {NATOCTL: _forms("natoctl"), DISSEM: _forms("dissem"), NONIC: _forms("nonic")}
_SIMPLE_ANY = {s: (cat, k, f) for cat, tbl in SIMPLE.items() for s, (k, f) in tbl.items()}
ORDER = {e.key: e.order for e in _REG.values()}
LISTED = ("REL", "DISPLAY", "EYES")  # kept in their own Marking fields

_SCI_SYSTEMS = {"HCS": ("HCS", "bp"), "RESERVE": ("RSV", "b"), "RSV": ("RSV", "bp"),
                "SI": ("SI", "bp"), "TALENT KEYHOLE": ("TK", "b"), "TK": ("TK", "bp")}
_SCI_COMPS = {
    "HCS": {"O": ("O", "bp"), "P": ("P", "bp")},
    "SI": {"ECRU": ("EU", "b"), "EU": ("EU", "bp"), "GAMMA": ("G", "b"), "G": ("G", "bp"),
           "NONBOOK": ("NK", "b"), "NK": ("NK", "bp")},
    "TK": {"BLUEFISH": ("BLFH", "b"), "BLFH": ("BLFH", "bp"), "IDITAROD": ("IDIT", "b"),
           "IDIT": ("IDIT", "bp"), "KANDIK": ("KAND", "b"), "KAND": ("KAND", "bp")},
}
# sub-compartment syntax per registered compartment (None: no sub-compartments registered)
_SUB_RE = {
    "HCS-P": re.compile(r"[A-Z0-9]{1,6}$"), "SI-G": re.compile(r"[A-Z]{4}$"),
    "TK-BLFH": re.compile(r"[A-Z0-9]{1,6}$"), "TK-IDIT": re.compile(r"[A-Z0-9]{1,6}$"),
    "TK-KAND": re.compile(r"[A-Z0-9]{1,6}$"),
}
_UNPUB = re.compile(r"[A-Z0-9]{2,6}$")
_ALNUM = re.compile(r"[A-Z0-9]+$")

_AEA_BASE = {"RD": ("RD", "bp"), "RESTRICTED DATA": ("RD", "b"), "FRD": ("FRD", "bp"),
             "FORMERLY RESTRICTED DATA": ("FRD", "b")}
_AEA_SIMPLE = {"DOD UCNI": ("DCNI", "b"), "DOD UNCLASSIFIED CONTROLLED NUCLEAR INFORMATION":
               ("DCNI", "b"), "DCNI": ("DCNI", "p"), "DOE UCNI": ("UCNI", "b"),
               "DOE UNCLASSIFIED CONTROLLED NUCLEAR INFORMATION": ("UCNI", "b"),
               "UCNI": ("UCNI", "p"), "TFNI": ("TFNI", "bp"),
               "TRANSCLASSIFIED FOREIGN NUCLEAR INFORMATION": ("TFNI", "b")}
_CNWDI = {"CNWDI": "bp", "CRITICAL NUCLEAR WEAPON DESIGN INFORMATION": "b"}

_SAP_PREFIXES = (("SAR-", "bp"), ("SPECIAL ACCESS REQUIRED-", "b"))
_FGI_PREFIXES = (("FGI", "bp"), ("FOREIGN GOVERNMENT INFORMATION", "b"))
_REL_PREFIXES = (("REL TO ", "bp"), ("AUTHORIZED FOR RELEASE TO ", "b"))


class Ctx:
    """Collects findings and spans while parsing one string."""

    __slots__ = ("errors", "kind", "spans")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.errors: list[Finding] = []
        self.spans: dict[str, tuple[int, int]] = {}

    def err(self, rule: str, message: str, start: int, end: int) -> None:
        self.errors.append(Finding(rule, message[:1].upper() + message[1:], start, end))

    def form(self, spelling: str, form: str, start: int, end: int, what: str = "") -> None:
        """Check that a spelling is allowed in this kind of marking."""
        if self.kind == "banner" and "b" not in form:
            self.err("form-portion-in-banner",
                     f"'{spelling}' is a portion mark; a banner line uses the title or the "
                     f"banner abbreviation{what}.", start, end)
        elif self.kind == "portion" and "p" not in form:
            self.err("form-banner-in-portion",
                     f"'{spelling}' is a banner-line form; a portion mark uses the portion "
                     f"abbreviation{what}.", start, end)


def pieces(s: str, sep: str, base: int) -> list[tuple[str, int, int]]:
    """Split ``s`` on ``sep`` and strip each piece; spans are absolute."""
    out = []
    pos = 0
    n = len(sep)
    while True:
        j = s.find(sep, pos)
        piece = s[pos:] if j < 0 else s[pos:j]
        stripped = piece.strip()
        lead = len(piece) - len(piece.lstrip())
        a = base + pos + lead
        out.append((stripped, a, a + len(stripped)))
        if j < 0:
            return out
        pos = j + n
