"""Normalisation: the skeleton, the offset map, and the fast fold equals the reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.normalize import fold, fold_slow, normalize_text


def test_skeleton_of_evasions() -> None:
    evasions = ["ＮＯＦＯＲＮ", "NОFОRN", "ΝΟFΟRΝ", "NO\u200bFO\u00adRN", "NÓFÖRN", "N\u202eOFORN"]
    for text in evasions:
        assert normalize_text(text.encode()) == "noforn", text
    assert normalize_text("ﬃ ß Æ".encode()) == "ffissae"
    assert normalize_text(b"n0f0rn", leet=True) == "noforn"
    assert normalize_text(b"n0f0rn", leet=False) == "n0f0rn"


def test_offset_map_points_at_original_characters() -> None:
    data = "aé\u200bＢ".encode()
    f = fold(data)
    assert f.text == b"aeb"
    assert [(int(s), int(e)) for s, e in zip(f.start, f.end, strict=True)] == [
        (0, 1), (1, 3), (6, 9)]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_fast_fold_equals_reference(text: str) -> None:
    data = text.encode("utf-8")
    a, b = fold(data), fold_slow(data)
    assert a.text == b.text
    if a.start is None:
        assert b.start is None
    else:
        assert list(map(int, a.start)) == list(b.start)
        assert list(map(int, a.end)) == list(b.end)


def test_invalid_utf8_is_flagged_and_folded() -> None:
    f = fold(b"ab\xffcd")
    assert f.invalid_utf8 and f.text == b"ab-cd"
