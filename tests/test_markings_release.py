"""Releasability, group membership data, roll-up decisions and banner checking."""

from __future__ import annotations

import pytest

from guard.data import data_path
from guard.markings import (
    check_banner,
    classification_rank,
    group_members,
    parse,
    releasable,
    render_banner,
    rollup,
)


def _m(text: str):
    result = parse(text)
    assert result.valid, [e.message for e in result.errors]
    return result.marking


def test_group_membership_is_shipped_data_with_its_source() -> None:
    assert group_members("FVEY") == {"USA", "GBR", "CAN", "AUS", "NZL"}
    assert group_members("ACGU") == {"USA", "GBR", "CAN", "AUS"}
    assert group_members("TEYE") == {"USA", "GBR", "AUS"}
    nato = group_members("NATO")
    assert {"FIN", "SWE", "USA", "TUR", "MKD"} <= nato and len(nato) == 32
    assert group_members("GBR") == {"GBR"}
    assert group_members("XYZ") == frozenset()
    header = data_path("tetragraphs.tsv").read_text().splitlines()[0]
    assert header.startswith("# source:") and "FIN" in header and "SWE" in header
    assert data_path("countries.tsv").read_text().startswith("# source:")


@pytest.mark.parametrize(("marking", "dest", "ok"), [
    ("SECRET//REL TO USA, FVEY", "GBR", True),
    ("SECRET//REL TO USA, FVEY", "FVEY", True),
    ("SECRET//REL TO USA, FVEY", "ACGU", True),        # every ACGU member is in FVEY
    ("SECRET//REL TO USA, FVEY", "NATO", False),       # least trusted member: TUR...
    ("SECRET//REL TO USA, FVEY", "JPN", False),
    ("SECRET//REL TO USA, AUS, CAN, GBR", "FVEY", False),  # NZL missing
    ("SECRET//REL TO USA, AUS, CAN, GBR, NZL", "FVEY", True),
    ("SECRET//REL TO USA, NATO", "FIN", True),         # FIN joined in 2023
    ("SECRET//REL TO USA, NATO", "SWE", True),         # SWE joined in 2024
    ("SECRET//REL TO USA, ISAF", "ISAF", True),        # named, though not decomposable
    ("SECRET//REL TO USA, ISAF", "GBR", False),        # ISAF members unknown: fail closed
    ("SECRET//NOFORN", "GBR", False),
    ("SECRET", "GBR", False),                          # no positive release decision
    ("SECRET//RELIDO", "GBR", False),                  # disclosure official must decide
    ("SECRET//REL TO USA, GBR/RELIDO", "GBR", True),
    ("SECRET//DISPLAY ONLY IRQ", "IRQ", False),        # display is not release
    ("SECRET//ORCON/REL TO USA, GBR", "GBR", False),   # originator must approve
    ("SECRET//RD//REL TO USA, GBR", "GBR", False),     # AEA agreement needed
    ("UNCLASSIFIED", "JPN", True),
    ("UNCLASSIFIED//FOUO", "JPN", False),
    ("//GBR SECRET", "GBR", True),                     # back to its owner
    ("//GBR SECRET", "CAN", False),
    ("//NATO SECRET", "NATO", True),
    ("//NATO SECRET", "JPN", False),
    ("SECRET//NOFORN", "USA", True),
])
def test_releasable(marking: str, dest: str, ok: bool) -> None:
    answer = releasable(_m(marking), dest)
    assert answer.releasable is ok
    assert bool(answer.reasons) is (not ok)
    assert answer.to_dict() == {"releasable": ok, "reasons": answer.reasons}


def test_refusal_names_the_uncovered_members() -> None:
    answer = releasable(_m("SECRET//REL TO USA, FVEY"), "NATO")
    assert "least trusted" in answer.reasons[0] and "TUR" in answer.reasons[0]


def test_classification_rank_is_comparable_across_origins() -> None:
    ranks = [classification_rank(_m(t)) for t in (
        "UNCLASSIFIED", "//GBR RESTRICTED", "//NATO CONFIDENTIAL", "SECRET",
        "//COSMIC TOP SECRET", "//JOINT TOP SECRET CAN USA//REL TO USA, CAN")]
    assert ranks == [0, 1, 2, 3, 4, 4]


@pytest.mark.parametrize(("portions", "banner"), [
    (["(S)", "(C)"], "SECRET"),
    (["(U)"], "UNCLASSIFIED"),
    (["(S//REL TO USA, FVEY)", "(U)"], "SECRET//REL TO USA, FVEY"),  # (U) is neutral
    (["(S//REL TO USA, FVEY)", "(U//FOUO)"], "SECRET//REL TO USA, FVEY"),
    (["(S//RELIDO)", "(C)"], "SECRET//NOFORN"),                   # rule 17: fail closed
    (["(S//REL TO USA, FVEY/RELIDO)", "(S//REL)"], "SECRET//REL TO USA, FVEY"),
    (["(TS//SI-G ABCD//OC/NF)", "(S//SI-G EFGH-XYZ//OC/NF)"],
     "TOP SECRET//SI-G ABCD EFGH-XYZ//ORCON/NOFORN"),
    (["(S//RD-SG 14//NF)", "(S//FRD-SG 18//NF)"], "SECRET//RD-SIGMA 14 18//NOFORN"),
    (["(//GBR S//REL TO USA, GBR)", "(//DEU C//REL TO USA, DEU, GBR)"],
     "SECRET//FGI DEU GBR//REL TO USA, GBR"),
    (["(//NS//ATOMAL//OC)", "(//NC//OC)"], "//NATO SECRET//ATOMAL//ORCON"),
    (["(//GBR R)", "(U)"], "CONFIDENTIAL//FGI GBR"),
    (["(//NS//ATOMAL//OC)", "(S//NF)"], "SECRET//ATOMAL//FGI NATO//ORCON/NOFORN"),
    (["(S//NF//XD)", "(S//NF//ND)"], "SECRET//NOFORN//NODIS"),
    (["(U//SBU-NF)"], "UNCLASSIFIED//SBU NOFORN"),
    (["(S//REL TO USA, FVEY/DISPLAY ONLY IRQ)", "(S//REL TO USA, GBR/DISPLAY ONLY IRQ)"],
     "SECRET//REL TO USA, GBR/DISPLAY ONLY IRQ"),
])
def test_rollup(portions: list[str], banner: str) -> None:
    marks = [parse(p).marking for p in portions]
    assert render_banner(rollup(marks)) == banner
    assert parse(banner, "banner").valid  # the roll-up is itself a valid banner


def test_check_banner_reports_each_mismatched_category() -> None:
    portions = [_m("(S//REL TO USA, GBR)"), _m("(S//NF)"), _m("(U)")]
    findings = check_banner(_m("SECRET//REL TO USA, GBR"), portions)
    assert [f.rule for f in findings] == ["banner-rollup-dissem"]
    assert "SECRET//NOFORN" in findings[0].message
    good = check_banner(_m("SECRET//NOFORN"), portions)
    assert good == []
    under = check_banner(_m("CONFIDENTIAL//NOFORN"), portions)
    assert [f.rule for f in under] == ["banner-rollup-classification"]


def test_check_banner_resolves_rel_abbreviation_against_the_banner() -> None:
    banner = _m("SECRET//FRD-SIGMA 14 18//REL TO USA, ACGU")
    assert check_banner(banner, [_m("(S//FRD-SG 14 18//REL)")]) == []
    joint = _m("//JOINT SECRET CAN GBR USA//REL TO USA, CAN, GBR")
    assert check_banner(joint, [_m("(//JOINT S//REL)")]) == []


def test_shipped_vocabularies_match_the_odni_cve_files(vectors) -> None:
    import csv

    from guard.markings import vocab

    cve = vectors / "odni-ism-cve"
    with open(cve / "CVEnumISMCATRelTo.csv", encoding="utf-8-sig") as fh:
        codes = [r["Value"] for r in csv.DictReader(fh)]
    trigraphs = [c for c in codes if len(c) == 3 and c.isalpha() and not vocab.is_tetragraph(c)]
    assert trigraphs and all(vocab.is_country(c) for c in trigraphs)
    with open(cve / "tetragraph_membership.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        code, members = row["tetragraph"], set(row["members(space-separated)"].split())
        assert vocab.is_tetragraph(code)
        if row["decomposable"] != "Yes":
            assert group_members(code) == frozenset()
        elif code == "NATO":
            assert group_members(code) == members | {"FIN", "SWE"}
        else:
            assert group_members(code) == members
