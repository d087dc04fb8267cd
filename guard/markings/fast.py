"""Fast path of ``parse`` for clean, canonical US markings (the bulk of real traffic).

``fast_parse(text, kind)`` recognises a marking only when it can prove it VALID with
table lookups and bit masks built here from the same Register data as the full parser;
anything unusual (a problem, a non-US or JOINT classification, a notional compartment,
a title it does not know) returns ``None`` and the full parser (``parse._parse``) takes
over and explains. So the fast path never produces findings and never decides alone
that a marking is bad; tests/test_markings_fast.py checks it agrees with the full
parser. The algorithm runs compiled, in the Cython core (guard/_portions.pxi), because
a distinct marking must parse in a few microseconds; this module builds its tables.
"""

from __future__ import annotations

from guard._core import markings_fast_parse, markings_fast_setup
from guard.markings import vocab
from guard.markings.model import _build, new_compartment, new_control

_REG = vocab.register()
_BIT = {k: 1 << i for i, k in enumerate(_REG)}
_LEVEL_BIT = {"TS": 1, "S": 2, "C": 4, "U": 8}
_CLASSES = {k: sum(_LEVEL_BIT[c] for c in e.classes if c in _LEVEL_BIT) for k, e in _REG.items()}
_REQUIRES = {k: sum(_BIT[r] for r in e.requires) for k, e in _REG.items()}
_EXCLUDES = {k: sum(_BIT[x] for x in e.excludes) for k, e in _REG.items()}
_ORDER = {k: e.order for k, e in _REG.items()}

_CLASS = {
    "banner": {"TOP SECRET": "TS", "SECRET": "S", "CONFIDENTIAL": "C", "UNCLASSIFIED": "U"},
    "portion": {"TS": "TS", "S": "S", "C": "C", "U": "U"},
}
SCI, SAP, AEA, FGI, DISSEM, NONIC = 2, 3, 4, 5, 6, 7


def _simple_tables() -> dict[str, dict[str, tuple[int, str]]]:
    """Token -> (category rank, key) of single-word markings, per kind."""
    out: dict[str, dict[str, tuple[int, str]]] = {"banner": {}, "portion": {}}
    ranks = {"dissem": DISSEM, "nonic": NONIC}
    for e in _REG.values():
        if e.category not in ranks or e.key in ("REL", "DISPLAY", "EYES"):
            continue
        for s in (e.title, e.abbrev):
            if s:
                out["banner"][s] = (ranks[e.category], e.key)
        if e.portion:
            out["portion"][e.portion] = (ranks[e.category], e.key)
    for kind, table in (("banner", {"DOD UCNI": "DCNI", "DOE UCNI": "UCNI", "TFNI": "TFNI",
                                    "DOD UNCLASSIFIED CONTROLLED NUCLEAR INFORMATION": "DCNI",
                                    "DOE UNCLASSIFIED CONTROLLED NUCLEAR INFORMATION": "UCNI",
                                    "TRANSCLASSIFIED FOREIGN NUCLEAR INFORMATION": "TFNI"}),
                        ("portion", {"DCNI": "DCNI", "UCNI": "UCNI", "TFNI": "TFNI"})):
        for s, k in table.items():
            out[kind][s] = (AEA, k)
    return out


_SIMPLE = _simple_tables()
_SCI_SYS = {"banner": {"HCS": "HCS", "RESERVE": "RSV", "RSV": "RSV", "SI": "SI",
                       "TALENT KEYHOLE": "TK", "TK": "TK"},
            "portion": {"HCS": "HCS", "RSV": "RSV", "SI": "SI", "TK": "TK"}}
_SCI_COMP = {
    "banner": {"HCS": {"O": "O", "P": "P"},
               "SI": {"ECRU": "EU", "EU": "EU", "GAMMA": "G", "G": "G", "NONBOOK": "NK",
                      "NK": "NK"},
               "TK": {"BLUEFISH": "BLFH", "BLFH": "BLFH", "IDITAROD": "IDIT", "IDIT": "IDIT",
                      "KANDIK": "KAND", "KAND": "KAND"}},
    "portion": {"HCS": {"O": "O", "P": "P"}, "SI": {"EU": "EU", "G": "G", "NK": "NK"},
                "TK": {"BLFH": "BLFH", "IDIT": "IDIT", "KAND": "KAND"}},
}
_SUB_LEN = {"HCS-P": (1, 6), "SI-G": (4, 4), "TK-BLFH": (1, 6), "TK-IDIT": (1, 6),
            "TK-KAND": (1, 6)}
_AEA_BASE = {"banner": {"RD": "RD", "RESTRICTED DATA": "RD", "FRD": "FRD",
                        "FORMERLY RESTRICTED DATA": "FRD"},
             "portion": {"RD": "RD", "FRD": "FRD"}}
_CNWDI = {"banner": ("CNWDI", "CRITICAL NUCLEAR WEAPON DESIGN INFORMATION"),
          "portion": ("CNWDI",)}
_FRD_SIGMA = {14, 15, 18, 20}


_COUNTRIES = frozenset(vocab.countries())
_CODES = _COUNTRIES | frozenset(vocab.tetragraphs())
# integer sort ranks (ints compare faster than tuples): REL TO order and plain order
_REL_RANK = {c: i for i, c in enumerate(sorted(_CODES, key=vocab.list_sort_key))}
_PLAIN_RANK = {c: i for i, c in enumerate(sorted(_CODES, key=vocab.plain_sort_key))}
# key -> (bit, classification mask, requires mask, excludes mask, Register order)
_INFO = {k: (_BIT[k], _CLASSES[k], _REQUIRES[k], _EXCLUDES[k], _ORDER[k]) for k in _REG}
_SIMPLE_INFO = {kind: {tok: (rank, key, *_INFO[key]) for tok, (rank, key) in table.items()}
                for kind, table in _SIMPLE.items()}


markings_fast_setup({
    "class": _CLASS, "simple": _SIMPLE_INFO, "info": _INFO, "sci_sys": _SCI_SYS,
    "sci_comp": _SCI_COMP, "sub_len": _SUB_LEN, "aea_base": _AEA_BASE, "cnwdi": _CNWDI,
    "rel_rank": _REL_RANK, "plain_rank": _PLAIN_RANK, "order": _ORDER,
    "frd_sigma": _FRD_SIGMA, "build": _build, "control": new_control,
    "compartment": new_compartment,
})


# ``fast_parse(text, kind)``: (kind, marking) when ``text`` is a clean canonical valid US
# marking, else None. The compiled function itself: a Python wrapper would add a frame
# to every distinct parse.
fast_parse = markings_fast_parse
