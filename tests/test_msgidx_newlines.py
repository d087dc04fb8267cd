"""The message index sizes its row table by a vectorised newline count: it must equal
``bytes.count`` whatever the length (16-byte steps, the 255-step lane flush, the tail)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guard._core import msgidx_count_newlines


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=9000))
def test_count_matches_bytes_count(data: bytes) -> None:
    assert msgidx_count_newlines(data) == data.count(b"\n")


@given(st.integers(0, 20000), st.sampled_from([b"\n", b"a\n", b"\n\n\nx", b"(S) a\r\n"]))
@settings(max_examples=100, deadline=None)
def test_dense_newlines_across_lane_flush(n: int, unit: bytes) -> None:
    # every byte lane sees a newline at each step: the 8-bit sums must not overflow
    data = (unit * (n // len(unit) + 1))[:n]
    assert msgidx_count_newlines(data) == data.count(b"\n")


def test_edges() -> None:
    assert msgidx_count_newlines(b"") == 0
    for n in (15, 16, 17, 4079, 4080, 4081, 4095, 4096, 4097, 8160, 8161):
        assert msgidx_count_newlines(b"\n" * n) == n
        assert msgidx_count_newlines(b"x" * n) == 0
