"""The parse fast path agrees with the full parser wherever it answers."""

from __future__ import annotations

import csv

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.markings import render_banner, render_portion
from guard.markings.fast import fast_parse
from guard.markings.parse import _parse
from tests.conftest import vectors_dir
from tests.test_markings_properties import valid_markings

TOKENS = ["SECRET", "TOP SECRET", "TS", "S", "C", "U", "UNCLASSIFIED", "//", "/", "-",
          "NF", "NOFORN", "REL TO USA, GBR", "REL", "RELIDO", "OC", "ORCON", "SI", "TK",
          "SI-G ABCD", "HCS-P", "SAR-BP", "RD", "RD-SG 14", "FRD-SIGMA 14", "FGI DEU",
          "DISPLAY ONLY IRQ", "LES", "XD", "ND", "FOUO", "(", ")", " ", ", ", "USA", "FVEY",
          "TK-BLFH", "IMC", "IMCON", "DSEN", "SBU", "CNWDI", "RD-CNWDI"]


def _agrees(text: str, kind: str) -> None:
    fast = fast_parse(text, kind)
    if fast is None:
        return
    slow = _parse(text, kind)
    assert slow.valid, (text, kind, [e.message for e in slow.errors])
    assert (slow.kind, slow.marking) == fast, text


@given(valid_markings())
@settings(max_examples=200, deadline=None)
def test_fast_path_agrees_on_valid_markings(m) -> None:
    for text, kind in ((render_banner(m), "banner"), (render_portion(m), "portion"),
                       (render_banner(m), "auto"), (render_portion(m), "auto")):
        assert fast_parse(text, kind) is not None  # canonical valid US markings
        _agrees(text, kind)


@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8),
       st.sampled_from(["auto", "banner", "portion"]))
@settings(max_examples=600, deadline=None)
def test_fast_path_never_accepts_what_the_parser_rejects(tokens: list[str], kind: str) -> None:
    _agrees("".join(tokens), kind)


@given(valid_markings(), st.integers(0, 200), st.sampled_from(["", " ", "/", "A", "-"]))
@settings(max_examples=300, deadline=None)
def test_fast_path_on_mutated_markings(m, pos: int, insert: str) -> None:
    for text in (render_banner(m), render_portion(m)):
        i = pos % (len(text) + 1)
        _agrees(text[:i] + insert + text[i + 1:], "auto")
        _agrees(text[:i] + insert + text[i:], "auto")


def test_fast_path_on_every_vector() -> None:
    with open(vectors_dir() / "codice-alliance/banner_portion_vectors.tsv",
              encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            _agrees(row["marking"], row["kind"])
    with open(vectors_dir() / "capco2016/examples_valid.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            _agrees(row["banner"], "banner")
            _agrees(row["portion"], "portion")
