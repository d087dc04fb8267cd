"""``capture_slices``: the records of an inflated block copied out of a reused buffer.

The replay's reader inflates each block into one buffer per thread and slices the
records out of it without copying the block: every id, flow and payload must be a copy
(a block read later must not change those of an earlier one), and a span outside the
buffer must be refused before anything is read.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard._core import capture_slices
from guard.capture import _BLOCK, CapturedMessage, decode_block_records, encode_block, encode_record


def _block(tag: str, n: int) -> tuple[bytes, bytes]:
    recs = [encode_record(CapturedMessage(f"{tag}-{k}", "flow", "t", 1.0, (),
                                          (tag * 600 + str(k)).encode())) for k in range(n)]
    raw = encode_block(recs)
    return raw[:_BLOCK.size], raw[_BLOCK.size:]


def test_records_survive_the_next_block() -> None:
    first = decode_block_records(*_block("a", 40))
    kept = (list(first.ids), list(first.flows), [bytes(p) for p in first.payloads])
    second = decode_block_records(*_block("b", 60))
    assert (first.ids, first.flows, first.payloads) == kept
    assert second.payloads[0].startswith(b"bbb") and first.payloads[0].startswith(b"aaa")
    assert len({id(f) for f in second.flows}) == 1  # one object per distinct flow


@given(st.integers(-3, 40), st.integers(-3, 40))
def test_spans_outside_the_buffer_are_refused(a: int, b: int) -> None:
    raw = np.frombuffer(b"x" * 32, dtype=np.uint8)
    spans = np.array([[0, 1, 1, 2, a, b]], dtype=np.int64)
    if 0 <= a <= b <= 32:
        ids, flows, payloads = capture_slices(raw, spans)
        assert (ids, flows, payloads) == (["x"], ["x"], [b"x" * (b - a)])
    else:
        with pytest.raises(ValueError):
            capture_slices(raw, spans)
