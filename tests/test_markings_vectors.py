"""Every third-party marking vector in ../shared/vectors, read in place at test time.

Peer verdicts are expected unless the row is in tests/markings_deviations.py, the one
reviewed list of places where CAPCO-2016 says otherwise.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from guard.markings import (
    classification_rank,
    parse,
    releasable,
    render_banner,
    render_portion,
    rollup,
)
from tests.conftest import vectors_dir
from tests.markings_deviations import DEVIATIONS, NOT_APPLICABLE_4774


def _tsv(rel: str) -> list[dict[str, str]]:
    with open(vectors_dir() / rel, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _ids(rows: list[tuple]) -> list[str]:
    return [f"{i}:{r[1][:40]}" for i, r in enumerate(rows)]


CAPCO_EXAMPLES = [(r["capco2016_location"], r["banner"], r["portion"])
                  for r in _tsv("capco2016/examples_valid.tsv")]
ROLLUPS = [(r["portions (semicolon-separated)"], r["expected_banner"])
           for r in _tsv("capco2016/rollup_vectors.tsv")]
CODICE = [("codice-alliance", r["kind"], r["marking"], r["expect"])
          for r in _tsv("codice-alliance/banner_portion_vectors.tsv")]
CONNEXTA = [("connexta", "banner", r["banner"], r["expect"])
            for r in _tsv("connexta-ion-security-markings/banner_vectors.tsv")]


@pytest.mark.parametrize(("where", "banner", "portion"), CAPCO_EXAMPLES,
                         ids=[f"{i}:{r[1][:40]}" for i, r in enumerate(CAPCO_EXAMPLES)])
def test_capco_examples_are_valid_and_round_trip(where: str, banner: str, portion: str) -> None:
    b = parse(banner, "banner")
    p = parse(portion, "portion")
    assert b.valid, (where, [e.message for e in b.errors])
    assert p.valid, (where, [e.message for e in p.errors])
    assert b.kind == "banner" and p.kind == "portion"
    # canonical forms parse back to the same marking
    assert parse(render_banner(b.marking), "banner").marking == b.marking
    assert parse(render_portion(p.marking), "portion").marking == p.marking


def test_banner_titles_and_abbreviations_are_the_same_marking() -> None:
    long = parse("TOP SECRET//SI-GAMMA/TALENT KEYHOLE//RISK SENSITIVE/ORIGINATOR CONTROLLED/"
                 "NOT RELEASABLE TO FOREIGN NATIONALS").marking
    short = parse("TOP SECRET//SI-G/TK//RSEN/ORCON/NOFORN").marking
    portion = parse("(TS//SI-G/TK//RS/OC/NF)").marking
    assert long == short == portion


@pytest.mark.parametrize(("portions", "expected"), ROLLUPS,
                         ids=[f"{i}:{r[1][:40]}" for i, r in enumerate(ROLLUPS)])
def test_capco_rollup_vectors(portions: str, expected: str) -> None:
    marks = [parse(p.strip(), "portion").marking for p in portions.split(";")]
    assert all(m is not None for m in marks)
    assert render_banner(rollup(marks)) == expected


def _expected(source: str, kind: str, marking: str, peer: str) -> bool:
    valid = peer == "valid"
    return not valid if (source, kind, marking) in DEVIATIONS else valid


@pytest.mark.parametrize(("source", "kind", "marking", "peer"), CODICE + CONNEXTA,
                         ids=[f"{r[0][:7]}{i}:{r[2][:40]}" for i, r in
                              enumerate(CODICE + CONNEXTA)])
def test_peer_vectors(source: str, kind: str, marking: str, peer: str) -> None:
    result = parse(marking, kind)
    expected = _expected(source, kind, marking, peer)
    assert result.valid is expected, (
        DEVIATIONS.get((source, kind, marking)), [(e.rule, e.message) for e in result.errors])
    if not result.valid:
        for e in result.errors:
            assert e.message and 0 <= e.start <= e.end <= max(len(marking), 1)


def test_deviation_list_has_no_stale_entries() -> None:
    rows = {(s, k, m) for s, k, m, _ in CODICE + CONNEXTA}
    rows |= {("spiffing", "label", p.name) for p in _labels()}
    stale = [key for key in DEVIATIONS if key not in rows]
    assert not stale
    assert all(len(reason) > 20 for reason in DEVIATIONS.values())


# ---- STANAG 4774 labels (spiffing): classification and release lists --------------

_NS = {"s": "urn:nato:stanag:4774:confidentialitymetadatalabel:1:0"}
_NATO_LEVEL = {"UNCLASSIFIED": "NATO UNCLASSIFIED", "RESTRICTED": "NATO RESTRICTED",
               "CONFIDENTIAL": "NATO CONFIDENTIAL", "SECRET": "NATO SECRET",
               "TOP SECRET": "COSMIC TOP SECRET"}
_RANK = {"UNCLASSIFIED": 0, "RESTRICTED": 1, "CONFIDENTIAL": 2, "SECRET": 3, "TOP SECRET": 4}


def _labels() -> list[Path]:
    return sorted(vectors_dir().glob("spiffing-nato4774/*.nato"))


def _peer_valid(label: Path) -> bool:
    """spiffing's verdict for the label (its .nato or .xml form); a label whose test is
    commented out as invalid in tests.xml has no verdict and counts as invalid."""
    tests = ET.parse(vectors_dir() / "spiffing-nato4774" / "tests.xml").getroot()
    verdicts = {t.get("label"): t.get("valid") for t in tests.iter("test")}
    verdict = verdicts.get(label.name) or verdicts.get(label.stem + ".xml")
    return verdict == "true"


@pytest.mark.parametrize("label", _labels(), ids=lambda p: p.name)
def test_stanag_4774_labels(label: Path) -> None:
    root = ET.parse(label).getroot()
    info = root.find("s:ConfidentialityInformation", _NS)
    assert info is not None
    policy = info.findtext("s:PolicyIdentifier", namespaces=_NS)
    level = info.findtext("s:Classification", namespaces=_NS)
    assert policy == "NATO"
    release: list[str] = []
    for cat in info.findall("s:Category", _NS):
        if cat.get("TagName") in ("Releasable To", "Only"):
            for v in cat.findall("s:GenericValue", _NS):
                code = (v.text or "").strip()
                if code not in NOT_APPLICABLE_4774 and code not in release:
                    release.append(code)
    banner = "//" + _NATO_LEVEL[level]
    codes = sorted(set(release) - {"NATO"})
    if codes:
        # CAPCO: USA first in any REL TO string (H.8); tetragraphs after trigraphs
        trig = sorted(c for c in codes if len(c) == 3)
        tetra = sorted(c for c in codes if len(c) != 3)
        listed = ["USA", *trig, *tetra, *(["NATO"] if "NATO" in release else [])]
        banner += "//REL TO " + ", ".join(listed)
    result = parse(banner, "banner")
    expected = _peer_valid(label)
    if ("spiffing", "label", label.name) in DEVIATIONS:
        expected = not expected
    assert result.valid is expected, [e.message for e in result.errors]
    assert classification_rank(result.marking) == _RANK[level]
    for code in codes:
        assert releasable(result.marking, code).releasable, code
    # a country the label does not name is refused, with a reason
    refused = releasable(result.marking, "CHN")
    assert not refused.releasable and refused.reasons
    # NATO information may go back to NATO (its owner), member by member
    assert releasable(result.marking, "NATO").releasable
