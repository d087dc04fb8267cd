"""Each validation rule: the rule id fires, on the right characters, with a message.

Every case is a CAPCO-2016 rule (section in the comment); the span is checked by the
text it covers, so a finding that points at the wrong place fails.
"""

from __future__ import annotations

import pytest

from guard.markings import parse
from guard.markings.rules import RULES

CASES = [
    # (marking, kind, rule, text the finding's span covers)
    # category order and banner vs portion forms (C.1, D.1)
    ("SECRET//NOFORN//TK", "banner", "syntax-category-order", "TK"),
    ("SECRET//ORCON/NOFORN//SI", "banner", "syntax-category-order", "SI"),
    ("FOUO//UNCLASSIFIED", "banner", "syntax-category-order", "UNCLASSIFIED"),
    ("SECRET//NF", "banner", "form-portion-in-banner", "NF"),
    ("SECRET//REL", "banner", "form-portion-in-banner", "REL"),
    ("UNCLASSIFIED//DCNI", "banner", "form-portion-in-banner", "DCNI"),
    ("SECRET//RD-SG 14", "banner", "form-portion-in-banner", "SG"),
    ("(S//NOFORN)", "portion", "form-banner-in-portion", "NOFORN"),
    ("(TOP SECRET//NF)", "portion", "form-banner-in-portion", "TOP SECRET"),
    ("(U//DOD UCNI)", "portion", "form-banner-in-portion", "DOD UCNI"),
    ("(S//RD-SIGMA 14)", "portion", "form-banner-in-portion", "SIGMA"),
    ("(TS//TALENT KEYHOLE//NF)", "portion", "form-banner-in-portion", "TALENT KEYHOLE"),
    ("TS//NF", "banner", "form-class-abbrev", "TS"),
    # list order: USA first, trigraphs, tetragraphs, each alphabetical (H.8)
    ("SECRET//REL TO USA, GBR, CAN", "banner", "list-order", "USA, GBR, CAN"),
    ("SECRET//REL TO USA, NATO, GBR", "banner", "list-order", "USA, NATO, GBR"),
    ("SECRET//REL TO USA, NATO, FVEY", "banner", "list-order", "USA, NATO, FVEY"),
    ("SECRET//DISPLAY ONLY IRQ, AFG", "banner", "list-order", "IRQ, AFG"),
    ("SECRET//FGI GBR DEU", "banner", "list-order", "GBR DEU"),
    ("//JOINT SECRET USA CAN//REL TO USA, CAN", "banner", "list-order", "USA CAN"),
    ("SECRET//REL TO USA,GBR", "banner", "list-separator", "USA,GBR"),
    ("SECRET//REL TO USA, XYZ", "banner", "list-unknown-code", "XYZ"),
    ("SECRET//REL TO USA, GBR, GBR", "banner", "list-duplicate", "USA, GBR, GBR"),
    # REL TO without USA or with USA alone
    ("SECRET//REL TO GBR", "banner", "rel-no-usa", "REL TO GBR"),
    ("(S//REL TO CAN, GBR)", "portion", "rel-no-usa", "REL TO CAN, GBR"),
    ("SECRET//REL TO USA", "banner", "rel-usa-only", "REL TO USA"),
    # NOFORN with REL TO / RELIDO / DISPLAY ONLY (H.8 NOFORN)
    ("SECRET//NOFORN/REL TO USA, GBR", "banner", "noforn-conflict", "NOFORN/REL TO USA, GBR"),
    ("SECRET//NOFORN/RELIDO", "banner", "noforn-conflict", "NOFORN/RELIDO"),
    ("SECRET//NOFORN/DISPLAY ONLY IRQ", "banner", "noforn-conflict",
     "NOFORN/DISPLAY ONLY IRQ"),
    ("SECRET//RELIDO/DISPLAY ONLY IRQ", "banner", "fdr-conflict", "RELIDO/DISPLAY ONLY IRQ"),
    # EXDIS / NODIS without NOFORN, and together (H.9)
    ("SECRET//EXDIS", "banner", "nonic-requires-noforn", "EXDIS"),
    ("(S//ND)", "portion", "nonic-requires-noforn", "ND"),
    ("SECRET//NOFORN//EXDIS/NODIS", "banner", "control-conflict", "EXDIS/NODIS"),
    # controls not allowed at a classification level (H templates)
    ("CONFIDENTIAL//TK", "banner", "control-classification", "TK"),
    ("SECRET//FOUO", "banner", "control-classification", "FOUO"),
    ("UNCLASSIFIED//RD", "banner", "control-classification", "RD"),
    ("(S//SBU)", "portion", "control-classification", "SBU"),
    ("SECRET//SI-ABC//NOFORN", "banner", "control-classification", "ABC"),
    ("CONFIDENTIAL//IMCON", "banner", "control-classification", "IMCON"),
    # SCI rules (H.4): HCS / TK compartments need NOFORN, HCS and RSV need compartments
    ("SECRET//HCS-P", "banner", "sci-requires-noforn", "HCS-P"),
    ("SECRET//HCS-O//ORCON", "banner", "sci-requires-noforn", "HCS-O"),
    ("TOP SECRET//TK-BLFH//ORCON", "banner", "sci-requires-noforn", "BLFH"),
    ("SECRET//TK-IDIT ABCD", "banner", "sci-requires-noforn", "IDIT ABCD"),
    ("SECRET//TK-KAND", "banner", "sci-requires-noforn", "KAND"),
    ("TOP SECRET//HCS-P ABC//NOFORN", "banner", "control-requires", "P ABC"),
    ("TOP SECRET//SI-G//NOFORN", "banner", "control-requires", "G"),
    ("TOP SECRET//RSV//NOFORN", "banner", "sci-compartment-required", "RSV"),
    ("SECRET//HCS//NOFORN", "banner", "sci-compartment-required", "HCS"),
    ("SECRET//HCS-X//NOFORN", "banner", "sci-unknown-compartment", "X"),
    ("TOP SECRET//SI-G ABC//ORCON", "banner", "sci-compartment-format", "G ABC"),
    ("TOP SECRET//TK/SI//NOFORN", "banner", "syntax-token-order", "TK/SI"),
    # empty categories, empty tokens, unknown tokens, separators
    ("TS////NF", "portion", "syntax-empty-category", "////"),
    ("(S//NF/)", "portion", "syntax-empty-token", "/"),
    ("SECRET//BOGUS", "banner", "syntax-unknown-token", "BOGUS"),
    ("UNCLASSIFIED/NOFORN", "banner", "syntax-separator", "UNCLASSIFIED/NOFORN"),
    ("TOP SECRET//SI/NOFORN", "banner", "syntax-separator", "NOFORN"),
    ("TS//SI/TK//RS//IMC/NF", "portion", "syntax-category-repeated", "IMC/NF"),
    ("SECRET//NOFORN/ORCON", "banner", "syntax-token-order", "ORCON"),
    ("SECRET//NOFORN/NOFORN", "banner", "syntax-duplicate", "NOFORN"),
    ("(S//NF", "portion", "syntax-parentheses", "(S//NF"),
    # AEA (H.6)
    ("SECRET//RD-SIGMA 14 2", "banner", "aea-sigma", "SIGMA 14 2"),
    ("SECRET//FRD-SIGMA 3", "banner", "aea-sigma", "SIGMA 3"),
    ("SECRET//FRD-CNWDI", "banner", "aea-cnwdi", "CNWDI"),
    ("SECRET//RD/FRD", "banner", "control-conflict", "RD/FRD"),
    # classifications: non-US, NATO, JOINT (Register 2-3, H.3)
    ("RESTRICTED", "banner", "class-us-restricted", "RESTRICTED"),
    ("//NATO TOP SECRET", "banner", "class-nato", "NATO TOP SECRET"),
    ("//COSMIC SECRET", "banner", "class-nato", "COSMIC SECRET"),
    ("//USA SECRET", "banner", "class-non-us-usa", "USA SECRET"),
    ("UNCLASS", "banner", "class-unknown", "UNCLASS"),
    ("//JOINT SECRET CAN USA//NOFORN", "banner", "joint-rel-required", "JOINT SECRET CAN USA"),
    ("//JOINT SECRET CAN USA//REL TO USA, CAN/NOFORN", "banner", "joint-control", "NOFORN"),
    ("//JOINT SECRET CAN GBR//REL TO USA, CAN", "banner", "joint-list",
     "JOINT SECRET CAN GBR"),
    ("//JOINT RESTRICTED CAN USA//REL TO USA, CAN", "banner", "joint-classification",
     "JOINT RESTRICTED CAN USA"),
    ("//GBR SECRET//FGI DEU", "banner", "fgi-non-us", "FGI DEU"),
    ("//FGI SECRET//NOFORN", "banner", "class-fgi-banner", "FGI SECRET"),
    ("//JOINT SECRET//REL TO USA, CAN", "banner", "joint-list", "JOINT SECRET"),
    ("SECRET//FGI USA", "banner", "fgi-usa", "FGI USA"),
    ("//DEU SECRET//ATOMAL", "banner", "nonus-control", "ATOMAL"),
    ("//NATO SECRET//ATOMAL//NOFORN", "banner", "nonus-noforn", "NOFORN"),
    ("//NATO SECRET//BOHEMIA", "banner", "control-classification", "BOHEMIA"),
    ("SECRET//ORCON/ORCON-USGOV", "banner", "control-conflict", "ORCON/ORCON-USGOV"),
]


@pytest.mark.parametrize(("text", "kind", "rule", "covered"), CASES,
                         ids=[f"{c[2]}:{c[0]}" for c in CASES])
def test_rule_fires_on_the_right_span(text: str, kind: str, rule: str, covered: str) -> None:
    result = parse(text, kind)
    assert not result.valid
    hits = [e for e in result.errors if e.rule == rule]
    assert hits, [(e.rule, e.message) for e in result.errors]
    assert any(text[e.start:e.end] == covered for e in hits), [
        (e.rule, text[e.start:e.end]) for e in hits]
    for e in result.errors:
        assert e.rule in RULES, e.rule
        assert len(e.message) > 15
        assert e.message[0].isupper() or e.message[0] in "'("


def test_every_violation_is_reported_not_just_the_first() -> None:
    text = "SECRET//NOFORN/REL TO GBR, USA//EXDIS/NODIS//TK"
    rules = {e.rule for e in parse(text).errors}
    assert {"noforn-conflict", "list-order", "control-conflict",
            "syntax-category-order"} <= rules


@pytest.mark.parametrize("text", [
    "TOP SECRET//SI-G ABCD EFGH-XYZ//ORCON/NOFORN",
    "TOP SECRET//ANB/SI/TK/XNB//NOFORN",
    "TOP SECRET//HCS-P JJJ-P DDDD//ORCON/NOFORN",
    "TOP SECRET//TK-BLFH ABCD//NOFORN",
    "//GBR SECRET//REL TO USA, GBR",
    "//COSMIC TOP SECRET//BOHEMIA",
    "(//NIS//REL TO USA, ISAF, NATO)",
    "(//CAN GBR S)",
    "SECRET//REL TO USA, AUS, CAN, GBR, NZL",
    "SECRET//REL TO USA, GBR, JPN, ISAF, NATO",
    "UNCLASSIFIED//LES NOFORN",
    "SECRET//NOFORN//NO DISTRIBUTION",
])
def test_registered_forms_are_valid(text: str) -> None:
    result = parse(text)
    assert result.valid, [(e.rule, e.message) for e in result.errors]


def test_rule_table_documents_every_rule_the_code_can_emit() -> None:
    import pathlib
    import re

    import guard.markings as pkg

    emitted: set[str] = set()
    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        src = path.read_text()
        emitted |= set(re.findall(r'"((?:input|syntax|form|class|list|rel|control|noforn|fdr|'
                                  r'nonic|sci|aea|fgi|joint|nonus|internal)-[a-z-]+)"', src))
    assert emitted and emitted <= RULES, emitted - RULES
