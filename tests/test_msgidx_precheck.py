"""The message index's first look at a message (bytes refused? its newlines where?) in
one pass: the AVX-512 path must answer as the portable one (the SSE2 byte pass, then
memchr) at every 64-byte seam and tail length, with every kind of byte the check refuses
or lets through."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from guard._core import msgidx_index, msgidx_offsets, msgidx_precheck
from guard.messages import MarkIndex
from tests.simd_paths import both_paths

# what no simple report carries (parse_message's rule, on UTF-8 text): C0 controls but tab
# and LF, a CR not before LF, DEL, C1 controls and the characters that change display
_REFUSED = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069"
                      r"\ufeff]|\r(?!\n)")
_PIECES = [b"a", b"(S) x", b"\n", b"\r\n", b"\r", b"\t", b"\x7f", b"\x00", b"\x1f",
           "\u00e9".encode(), "\u2028".encode(), "\u202e".encode(), "\ufeff".encode(),
           "\u0085".encode(), "\U0001f600".encode(), b"\xff", b"\xc2", b"\xe2\x80", b"\xed\xa0\x80",
           b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b" " * 40, b"x" * 63]


def _refused(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return _REFUSED.search(text) is not None


def _check(data: bytes) -> None:
    simd, portable = both_paths(lambda: msgidx_precheck(data))
    assert simd == portable
    assert portable[0] == _refused(data)
    want = [] if portable[0] else [i for i, b in enumerate(data) if b == 10]
    assert portable[1] == want


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=120), st.integers(0, 130))
def test_paths_agree_with_reference(pieces: list[bytes], pad: int) -> None:
    _check(b"y" * pad + b"".join(pieces))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes(data: bytes) -> None:
    _check(data)


def test_every_seam_and_tail() -> None:
    for n in (0, 1, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097):
        _check(b"\n" * n)
        _check(b"x" * n)
        for piece in _PIECES:
            for at in {0, max(0, n - 1), n // 2}:
                _check(b"x" * at + piece + b"x" * (n - at))


def test_index_alike_on_both_paths() -> None:
    msgs = [b"SECRET\n(S) a\n(U) b\xc3\xa9\nSECRET\n", b"SECRET\n(S) a\x01\nSECRET\n",
            b"SECRET\r\n(S) a\r\nSECRET\r\n", b"SECRET\n(S) a\rb\nSECRET\n",
            b"UNCLASSIFIED\n" + b"(U) x\n" * 300 + b"UNCLASSIFIED"]

    def run() -> list[list[int]]:
        marks = MarkIndex(lambda raw: None, lambda text: None)
        got = msgidx_index(list(msgs), 1000, True, marks.table, marks.miss, marks.btable,
                           marks.banner_miss)
        status, info, rowstart, rows, ids, bids = got[:6]
        used = int(rowstart[-1])  # the row table's rows past the last message's are unset
        return [status.tolist(), info.tolist(), rowstart.tolist(), rows[:used].tolist(),
                ids.tolist(), bids.tolist()]

    simd, portable = both_paths(run)
    assert simd == portable


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=70), max_size=40))
def test_offsets_are_the_running_lengths(datas: list[bytes]) -> None:
    want = [0]
    for d in datas:
        want.append(want[-1] + len(d))
    got = msgidx_offsets(datas)
    assert got.dtype.name == "int64" and got.tolist() == want
    assert msgidx_offsets(tuple(datas)).tolist() == want
