"""The replay's fast block reader decodes exactly what the reference decoder decodes.

``decode_block_records`` (records decoded in one pass of the Cython core, zlib blocks inflated by
libdeflate when the system has it) must give the same ids, flows, payloads and times as
``decode_block`` (struct-by-struct, zlib) for any block, and for a damaged block raise
the same ``CaptureError``; the libdeflate inflater must never accept what zlib refuses.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard._core import capture_locate, capture_records, capture_slices
from guard.capture import (
    _BLOCK,
    _LIBDEFLATE,
    CapturedMessage,
    CaptureError,
    _inflate,
    decode_block,
    decode_block_records,
    encode_block,
    encode_record,
)

_ascii = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
_any = st.text(max_size=20)
_message = st.builds(
    CapturedMessage, st.one_of(_ascii, _any), st.one_of(_ascii, _any), st.one_of(_ascii, _any),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.tuples(_ascii, st.one_of(_ascii, _any)), max_size=3).map(tuple),
    st.binary(max_size=300))


def _split(block: bytes) -> tuple[bytes, bytes]:
    return block[:_BLOCK.size], block[_BLOCK.size:]


def _reference(block: bytes) -> tuple:
    try:
        ms = decode_block(*_split(block))
    except CaptureError as exc:
        return ("error", str(exc))
    return ([m.message_id for m in ms], [m.flow for m in ms], [m.payload for m in ms],
            [m.time for m in ms])


def _fast(block: bytes) -> tuple:
    try:
        r = decode_block_records(*_split(block))
    except CaptureError as exc:
        return ("error", str(exc))
    return (r.ids, r.flows, r.payloads, r.times)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, min_size=1, max_size=8), st.booleans())
def test_records_equal_the_reference_decoder(msgs: list[CapturedMessage], compress: bool) -> None:
    block = encode_block([encode_record(m) for m in msgs], compress=compress)
    assert _fast(block) == _reference(block)
    assert _fast(block)[2] == [m.payload for m in msgs]


def _reframe(records: bytes, count: int, compress: bool) -> bytes:
    """A block around arbitrary record bytes, with a valid header and checksum."""
    stored = zlib.compress(records) if compress else records
    head = _BLOCK.pack(b"GCB1", int(compress), b"\0\0\0", count, len(records), len(stored),
                       0)[:-4]
    return head + struct.pack("<I", zlib.crc32(stored, zlib.crc32(head))) + stored


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, min_size=1, max_size=4), st.data(), st.booleans())
def test_damaged_records_fail_the_same_way(msgs: list[CapturedMessage], data: st.DataObject,
                                           compress: bool) -> None:
    """Record bytes damaged under a sound block header (so that only the record
    decoding can notice): the same error, or the same messages, from both readers."""
    raw = bytearray(b"".join(encode_record(m) for m in msgs))
    for _ in range(data.draw(st.integers(1, 3))):
        what = data.draw(st.sampled_from(["flip", "cut", "extend"]))
        if what == "flip" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif what == "cut" and len(raw) > 1:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=8))
    count = len(msgs) + data.draw(st.integers(-1, 1))
    if count < 1 or count > len(raw) // 22:
        return
    block = _reframe(bytes(raw), count, compress)
    assert _fast(block) == _reference(block)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.data())
def test_libdeflate_inflates_only_what_zlib_inflates_to_the_stated_length(
        raw: bytes, data: st.DataObject) -> None:
    stored = bytearray(zlib.compress(raw, data.draw(st.integers(0, 9))))
    damaged = data.draw(st.booleans())
    if damaged:  # a flipped bit, a cut, or trailing bytes
        what = data.draw(st.sampled_from(["flip", "cut", "tail"]))
        if what == "flip":
            stored[data.draw(st.integers(0, len(stored) - 1))] ^= 1 << data.draw(
                st.integers(0, 7))
        elif what == "cut":
            del stored[data.draw(st.integers(0, len(stored) - 1)):]
        else:
            stored += b"\0"
    stated = max(0, len(raw) + data.draw(st.sampled_from([0, 0, -1, 1])))
    got = _inflate(bytes(stored), stated)
    try:
        d = zlib.decompressobj()
        ref = d.decompress(bytes(stored), stated + 1)
        ok = d.eof and not d.unused_data and len(ref) == stated
    except zlib.error:
        ok, ref = False, b""
    if got is not None:  # accepted: zlib accepts it too, with the same bytes
        assert ok and got == ref
    if not damaged and stated == len(raw) and _LIBDEFLATE.fn is not None:
        assert got == raw  # a sound block takes the fast inflater (when installed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, min_size=0, max_size=6), st.data())
def test_one_pass_decoder_matches_locate_then_slices(msgs: list[CapturedMessage],
                                                     data: st.DataObject) -> None:
    """``capture_records`` (one pass) refuses exactly what ``capture_locate`` refuses and
    otherwise gives what ``capture_slices`` cuts from its spans, with its times; each
    distinct flow is one object, however the flows are interleaved."""
    raw = bytearray(b"".join(encode_record(m) for m in msgs))
    if raw and data.draw(st.booleans()):  # damage: a flipped bit, a cut or a tail
        what = data.draw(st.sampled_from(["flip", "cut", "extend"]))
        if what == "flip":
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif what == "cut":
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=8))
    count = len(msgs) + data.draw(st.integers(-1, 1))
    buf = np.frombuffer(bytes(raw), dtype=np.uint8)
    got = capture_records(buf, count)
    located = capture_locate(buf, count)
    assert (got is None) == (located is None)
    if got is None:
        return
    times, spans = located
    assert got == (*capture_slices(buf, spans), times.tolist())
    assert len({id(f) for f in got[1]}) == len(set(got[1]))


def test_a_count_the_block_cannot_hold_is_refused_before_any_list_is_made() -> None:
    """A damaged header claiming more records than the block's bytes can hold (at least
    24 bytes each) is refused at once, as ``capture_locate`` refuses it, however large
    the count (no lists of that size are made first)."""
    msgs = [CapturedMessage("m1", "f", "t", 1.0, (), b"x")]
    buf = np.frombuffer(b"".join(encode_record(m) for m in msgs), dtype=np.uint8)
    assert capture_records(buf, 1) is not None
    for count in (2, len(buf) // 24 + 1, 2**40):
        assert capture_records(buf, count) is None
        assert capture_locate(buf, min(count, 10**6)) is None
