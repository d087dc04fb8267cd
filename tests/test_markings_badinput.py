"""Bad input never raises: it gives a clear invalid result with findings."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.markings import parse, recognize_portions, releasable, rollup


def _rules(text: str, kind: str = "auto") -> set[str]:
    return {e.rule for e in parse(text, kind).errors}


def test_empty_and_blank() -> None:
    for text in ("", " ", "\t", "()", "(  )"):
        result = parse(text)
        assert not result.valid and result.marking is None
        assert "input-empty" in {e.rule for e in result.errors}


def test_one_megabyte_string_is_refused_quickly() -> None:
    text = "SECRET//" + "NOFORN/" * ((1 << 20) // 7)
    big = "S" * (1 << 20)
    for t in (text, big):
        result = parse(t)
        assert not result.valid
        assert [e.rule for e in result.errors] == ["input-too-long"]
        assert result.errors[0].end == len(t)


def test_binary_garbage_bytes() -> None:
    data = os.urandom(4096)
    result = parse(data.decode("latin-1"))
    assert not result.valid
    # bytes that are not UTF-8 given as bytes
    result = parse(b"\xff\xfeSECRET")  # type: ignore[arg-type]
    assert not result.valid and result.errors[0].rule == "input-bad-char"


def test_control_characters_are_reported_where_they_are() -> None:
    text = "SECRET//NO\x00FORN"
    errs = [e for e in parse(text).errors if e.rule == "input-bad-char"]
    assert [(e.start, e.end) for e in errs] == [(10, 11)]


def test_lower_case_is_its_own_finding_and_the_rest_is_still_checked() -> None:
    result = parse("secret//noforn/rel to usa, gbr")
    rules = [e.rule for e in result.errors]
    assert "input-lowercase" in rules
    assert "noforn-conflict" in rules  # the folded text is still validated
    first = next(e for e in result.errors if e.rule == "input-lowercase")
    assert (first.start, first.end) == (0, 6)


@pytest.mark.parametrize(("text", "index", "looks_like"), [
    ("SE\u0421RET", 2, "C"),            # Cyrillic capital ES
    ("S\u0415CRET//NOFORN", 1, "E"),    # Cyrillic capital IE
    ("TOP SECR\u0395T", 8, "E"),         # Greek capital EPSILON
    ("\uff33ECRET", 0, "S"),            # full-width S
    ("SECRET//N\uff2fFORN", 9, "O"),    # full-width O
])
def test_lookalike_characters_are_reported_on_their_own(text: str, index: int,
                                                         looks_like: str) -> None:
    result = parse(text)
    assert not result.valid
    looks = [e for e in result.errors if e.rule == "input-lookalike"]
    assert [(e.start, e.end) for e in looks] == [(index, index + 1)]
    assert repr(looks_like) in looks[0].message
    # only the look-alike is wrong: the folded marking is otherwise fine
    assert {e.rule for e in result.errors} == {"input-lookalike"}
    assert result.marking is not None


def test_non_lookalike_unicode_is_a_bad_character() -> None:
    assert "input-bad-char" in _rules("SECRET//NO\u2603FORN")


@pytest.mark.parametrize("text", [
    " SECRET//NOFORN", "SECRET//NOFORN ", "SECRET //NOFORN", "SECRET// NOFORN",
    "TOP  SECRET", "SECRET//REL TO USA , GBR",
])
def test_stray_spaces(text: str) -> None:
    result = parse(text)
    assert not result.valid
    assert "input-whitespace" in {e.rule for e in result.errors}


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_never_raises(text: str) -> None:
    result = parse(text)
    assert isinstance(result.valid, bool)
    assert "internal-error" not in {e.rule for e in result.errors}  # no hidden exception
    for e in result.errors:
        assert 0 <= e.start <= e.end <= len(text)
    if result.marking is not None:
        rollup([result.marking])
        releasable(result.marking, "GBR")


@given(st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bodies_never_raise(body: bytes) -> None:
    for hit in recognize_portions(body):
        assert 0 <= hit.start < hit.end <= len(body)
        assert body[hit.start:hit.start + 1] == b"("
        assert body[hit.end - 1:hit.end] == b")"


def test_releasable_refuses_unknown_destination_and_non_marking() -> None:
    m = parse("SECRET//REL TO USA, GBR").marking
    assert not releasable(m, "XXX").releasable
    assert not releasable(m, "").releasable
    assert not releasable(None, "GBR").releasable  # type: ignore[arg-type]


def test_non_text_inputs_are_refused_not_raised() -> None:
    class Text(str):
        pass

    assert parse(Text("SECRET//NOFORN")).valid
    assert parse(bytearray(b"SECRET//NOFORN")).valid  # type: ignore[arg-type]
    for junk in (None, 12, 3.5, ["SECRET"]):
        result = parse(junk)  # type: ignore[arg-type]
        assert not result.valid and result.errors[0].rule == "input-bad-char"
    bad = parse(b"SECRET//\xffNOFORN")  # type: ignore[arg-type]
    assert (bad.errors[0].start, bad.errors[0].end) == (8, 9)
    with pytest.raises(TypeError):
        recognize_portions(None)  # type: ignore[arg-type]


_PIECES = st.sampled_from([*"SECRTOPUNFLAIDGBRKH/-, ()", "//", "REL TO ", "USA", "GBR", "FVEY",
                           "NOFORN", "SI-G", "JOINT ", "NATO ", "FGI ", "SAR-", "RD-SG 1",
                           "TK-BLFH ", "DISPLAY ONLY ", "С", "Ｓ"])


@given(st.lists(_PIECES, max_size=25).map("".join), st.sampled_from(["auto", "banner",
                                                                     "portion"]))
@settings(max_examples=400, deadline=None)
def test_marking_shaped_garbage_never_raises(text: str, kind: str) -> None:
    result = parse(text, kind)
    assert "internal-error" not in {e.rule for e in result.errors}
    for e in result.errors:
        assert 0 <= e.start <= e.end <= len(text)
    assert result.valid or result.errors
