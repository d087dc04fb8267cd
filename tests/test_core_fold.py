"""The C fold (guard._core.Folder behind guard.normalize.fold) equals fold_slow, the
per-character Python reference, on arbitrary bytes: valid and invalid UTF-8, look-alikes,
combining marks, invisible characters, overlong forms, encoded surrogates, 4-byte
characters; with a warm cache and with a fresh one (the lazy learning path)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import _core
from guard.normalize import _SKELETON, _SKELETON_UPPER, Folded, fold, fold_char, fold_slow

LOOKALIKES = "".join(_SKELETON) + "".join(_SKELETON_UPPER)
SPECIAL = (
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u034f\u061c\u180e"  # zero-width, soft hyphen
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"  # bidi
    "\u0301\u0308\u0327\u20dd\u0489"  # combining marks (Mn, Me)
    "\u00a0\u2003\u3000\u0085\u2028\u2029"  # Unicode spaces and line breaks
    "ﬃßÆœ№™½²ⅫＮＯＦＲ０９！"  # compatibility forms, full-width
    "\U0001d400\U0001d7d8\U0001f600\U00010348\U000e0041\U0010fffd"  # 4-byte
    "\ufdfa\u3250\u2474"  # the longest skeletons
)

# Byte fragments of every kind the decoder must tell apart.
INVALID = [
    b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xe0\x9f\xbf",  # overlong
    b"\xf0\x80\x80\xaf", b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xb2\x80",  # UTF-16 surrogates in UTF-8
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff",
    b"\xc2", b"\xe2\x82", b"\xf0\x9f\x98",  # truncated
    b"\xc2\xc2\xa9", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",  # bad continuation
]
VALID_EDGES = [
    "\u0080", "\u07ff", "\u0800", "\ufffd", "\uffff", "\U00010000", "\U0010ffff",
    "\ud7ff", "\ue000",
]

any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
evasion_text = st.text(
    alphabet=st.sampled_from(LOOKALIKES + SPECIAL + "".join(VALID_EDGES) + "noforn -.\n"),
    max_size=80)
fragments = st.lists(
    st.one_of(
        st.sampled_from(INVALID),
        st.sampled_from([c.encode() for c in LOOKALIKES + SPECIAL] + [
            c.encode() for c in VALID_EDGES]),
        st.binary(max_size=6),
        st.text(max_size=4).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"NOFORN", b" ", b"-", b"\n", b"a"]),
    ),
    max_size=30,
).map(b"".join)


def _same(a: Folded, b: Folded, data: bytes) -> None:
    assert a.text == b.text, data
    assert a.invalid_utf8 == b.invalid_utf8, data
    if b.start is None:
        assert a.start is None and a.end is None, data
        return
    assert a.start is not None and a.end is not None
    assert isinstance(a.start, np.ndarray) and a.start.dtype == np.int32
    assert isinstance(a.end, np.ndarray) and a.end.dtype == np.int32
    assert a.start.tolist() == list(b.start), data
    assert a.end.tolist() == list(b.end), data


def _fresh(data: bytes) -> Folded:
    """Fold with an empty cache: every non-ASCII code point goes through learning."""
    text, start, end, invalid = _core.Folder(fold_char).fold(data)
    return Folded(text, start, end, invalid)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes(data: bytes) -> None:
    ref = fold_slow(data)
    _same(fold(data), ref, data)
    if not data.isascii():
        _same(_fresh(data), ref, data)


@settings(max_examples=400, deadline=None)
@given(fragments)
def test_mixed_valid_and_invalid_sequences(data: bytes) -> None:
    ref = fold_slow(data)
    _same(fold(data), ref, data)
    if not data.isascii():
        _same(_fresh(data), ref, data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_text, evasion_text))
def test_unicode_text(text: str) -> None:
    data = text.encode("utf-8")
    _same(fold(data), fold_slow(data), data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_encoded_surrogates_are_invalid(text: str) -> None:
    """surrogatepass writes lone surrogates as 3 bytes that strict UTF-8 rejects."""
    data = text.encode("utf-8", "surrogatepass")
    ref = fold_slow(data)
    _same(fold(data), ref, data)
    assert ref.invalid_utf8 == any("\ud800" <= c <= "\udfff" for c in text)


def test_every_invalid_fragment_is_flagged_and_one_separator_per_byte() -> None:
    for frag in INVALID:
        data = b"a" + frag + b"b"
        f = fold(data)
        _same(f, fold_slow(data), data)
        assert f.invalid_utf8, frag
        if frag not in (b"\xc2\xc2\xa9", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc"):
            assert f.text == b"a" + b"-" * len(frag) + b"b", frag


def test_many_distinct_new_code_points_in_one_body() -> None:
    """More distinct unknown code points than one learning batch lists, repeated out of
    order: the measuring pass resumes where it stopped and the cache ends up complete."""
    cps = [cp for cp in range(0x400, 0x1400) if not 0xD800 <= cp < 0xE000]
    text = "".join(chr(cp) for cp in cps) + "x" + "".join(chr(cp) for cp in reversed(cps))
    data = text.encode("utf-8") + b"\xff"
    folder = _core.Folder(fold_char)
    t, s, e, inv = folder.fold(data)
    _same(Folded(t, s, e, inv), fold_slow(data), b"")
    assert folder.cached() == len(cps) + 1  # and the escape of 0xff
    t2, s2, e2, inv2 = folder.fold(data)  # warm: no learning, same result
    assert (t2, s2.tolist(), e2.tolist(), inv2) == (t, s.tolist(), e.tolist(), inv)


def test_all_invisible_folds_to_nothing() -> None:
    data = "\u200b\u00ad\u202e\u0301".encode()
    f = fold(data)
    assert f.text == b"" and len(f.start) == 0 and len(f.end) == 0 and not f.invalid_utf8


def test_ascii_keeps_the_identity_map() -> None:
    f = fold(b"plain ascii")
    assert f == Folded(b"plain ascii", None, None, False)


def test_bad_fold_char_raises_and_leaves_the_cache_usable() -> None:
    calls: list[str] = []

    def flaky(ch: str) -> str:
        calls.append(ch)
        if ch == "é":
            raise RuntimeError("boom")
        return fold_char(ch)

    folder = _core.Folder(flaky)
    with pytest.raises(RuntimeError, match="boom"):
        folder.fold("ä é".encode())
    t, _, _, _ = folder.fold("ä".encode())
    assert t == b"a"
    with pytest.raises(TypeError):
        _core.Folder(lambda ch: b"x").fold("é".encode())
    with pytest.raises(ValueError, match="longer than"):
        _core.Folder(lambda ch: "x" * 300).fold("é".encode())


def test_threads_folding_while_learning_agree() -> None:
    """Threads share one fresh Folder (the GIL is released while folding): every result
    equals the reference, whichever thread learnt a code point first."""
    folder = _core.Folder(fold_char)
    bodies = [("".join(chr(0x400 + (i * 7 + j) % 3000) for j in range(300)) + " x").encode()
              for i in range(16)]
    refs = [fold_slow(b) for b in bodies]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for r in range(4):
                i = (k + r * 5) % len(bodies)
                t, s, e, inv = folder.fold(bodies[i])
                _same(Folded(t, s, e, inv), refs[i], bodies[i])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_buffer_types(wrap: Callable[[bytes], object]) -> None:
    data = "NОFОRN ".encode() + b"\xff\xc0\xaf " + "ΝΟFΟRΝ".encode()
    t, s, e, inv = _core.Folder(fold_char).fold(wrap(data))
    _same(Folded(t, s, e, inv), fold_slow(data), data)
