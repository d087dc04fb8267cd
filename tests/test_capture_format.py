"""Capture files: round trip, torn tails kept, damaged headers and blocks rejected."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.capture import (
    CapturedMessage,
    CaptureError,
    CaptureWriter,
    content_sha256,
    load_capture,
    scan_capture,
)


def _msgs(n: int) -> list[CapturedMessage]:
    out = []
    for i in range(n):
        payload = (f"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) report {i}\n" * (i % 7)
                   ).encode() + bytes([i % 256]) * (i % 5)
        props = (("message-id", f"m-{i}"), ("flow", "f"), ("x-ünï", "väl\u2603"))
        out.append(CapturedMessage(f"m-{i}", "us-secret-to-fvey", "flows/us-secret-to-fvey/in",
                                   1_700_000_000.25 + i, props[: i % 4], payload))
    return out


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_many_blocks(tmp_path: Path, compress: bool) -> None:
    msgs = _msgs(50)
    path = tmp_path / "c.gcap"
    meta = {"source": "test", "seed": 3}
    with CaptureWriter(path, meta, compress=compress, block_records=7) as w:
        w.write_many(msgs)
    idx, got = load_capture(path)
    assert got == msgs
    assert idx.meta == meta and idx.torn is None
    assert len(idx.blocks) == 8 and idx.messages == 50
    assert [b.first for b in idx.blocks] == list(range(0, 50, 7))


def test_compression_makes_text_small(tmp_path: Path) -> None:
    msgs = _msgs(200)
    a, b = tmp_path / "a", tmp_path / "b"
    for p, c in ((a, True), (b, False)):
        with CaptureWriter(p, compress=c) as w:
            w.write_many(msgs)
    assert a.stat().st_size * 4 < b.stat().st_size


_text = st.text(max_size=40)
_message = st.builds(
    CapturedMessage, _text, _text, _text,
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.tuples(_text, _text), max_size=4).map(tuple), st.binary(max_size=600))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(_message, max_size=20), block=st.integers(1, 6))
def test_round_trip_property(tmp_path: Path, msgs: list[CapturedMessage], block: int) -> None:
    path = tmp_path / "p.gcap"
    with CaptureWriter(path, {}, block_records=block, overwrite=True) as w:
        w.write_many(msgs)
    assert load_capture(path)[1] == msgs


def _three_blocks(tmp_path: Path) -> tuple[Path, list[CapturedMessage]]:
    msgs = _msgs(30)
    path = tmp_path / "t.gcap"
    with CaptureWriter(path, {"k": 1}, block_records=10) as w:
        w.write_many(msgs)
    return path, msgs


def test_torn_tail_keeps_the_good_prefix(tmp_path: Path) -> None:
    path, msgs = _three_blocks(tmp_path)
    data = path.read_bytes()
    blocks = scan_capture(path).blocks
    last = blocks[-1]
    # every cut inside the last block (header or body) keeps exactly the first 20
    for cut in (last.offset + 1, last.offset + 10, last.offset + 30, len(data) - 1):
        path.write_bytes(data[:cut])
        idx, got = load_capture(path)
        assert got == msgs[:20], cut
        assert idx.torn is not None and f"offset {last.offset}" in idx.torn
    # a cut exactly on a block boundary is a clean, shorter capture
    path.write_bytes(data[:last.offset])
    idx, got = load_capture(path)
    assert got == msgs[:20] and idx.torn is None
    # a zero-filled tail (a crash on some file systems) is a torn tail too
    path.write_bytes(data[:last.offset] + b"\0" * 100)
    idx, got = load_capture(path)
    assert got == msgs[:20] and idx.torn is not None


@pytest.mark.parametrize("where", ["magic", "version", "flags", "created", "meta_len", "meta",
                                   "crc"])
def test_corrupted_header_is_rejected(tmp_path: Path, where: str) -> None:
    path, _ = _three_blocks(tmp_path)
    data = bytearray(path.read_bytes())
    meta_len = struct.unpack_from("<I", data, 16)[0]
    pos = {"magic": 1, "version": 4, "flags": 6, "created": 9, "meta_len": 17, "meta": 21,
           "crc": 20 + meta_len + 2}[where]
    data[pos] ^= 0x41
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match=r"capture file|header"):
        load_capture(path)


def test_header_cut_short_and_garbage_rejected(tmp_path: Path) -> None:
    path, _ = _three_blocks(tmp_path)
    data = path.read_bytes()
    for bad in (data[:10], data[:25], b"", b"\x89PNG\r\n\x1a\n" + b"x" * 64):
        path.write_bytes(bad)
        with pytest.raises(CaptureError):
            load_capture(path)


def test_damage_in_the_middle_is_rejected_not_cut(tmp_path: Path) -> None:
    path, _ = _three_blocks(tmp_path)
    blocks = scan_capture(path).blocks
    data = bytearray(path.read_bytes())
    data[blocks[0].offset + 40] ^= 1  # inside the first block's compressed body
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="checksum"):
        scan_capture(path)
    data[blocks[0].offset + 40] ^= 1
    data[blocks[1].offset] ^= 0xFF  # block magic of the second block
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="damaged"):
        scan_capture(path)


def test_writer_refuses_overwrite_and_unencodable(tmp_path: Path) -> None:
    path, _ = _three_blocks(tmp_path)
    with pytest.raises(FileExistsError):
        CaptureWriter(path)
    p2 = tmp_path / "u.gcap"
    with CaptureWriter(p2) as w:
        w.write(_msgs(1)[0])
        with pytest.raises(CaptureError, match="UTF-8"):
            w.write(CapturedMessage("bad\ud800", "f", "t", 0.0, (), b"x"))
        with pytest.raises(CaptureError):
            w.write(CapturedMessage("m", "f", "t", 0.0, (("k", "v" * 70000),), b"x"))
    assert [m.message_id for m in load_capture(p2)[1]] == ["m-0"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_is_a_capture_error_or_a_reported_tear(tmp_path: Path, data) -> None:
    """Flipped bytes, cuts and garbage never crash the reader: it raises CaptureError or
    keeps a prefix of the true messages (reporting any tear)."""
    path = tmp_path / "d.gcap"
    msgs = _msgs(12)
    with CaptureWriter(path, {"k": 1}, block_records=4, overwrite=True,
                       compress=data.draw(st.booleans())) as w:
        w.write_many(msgs)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    path.write_bytes(bytes(raw[:cut]) + data.draw(st.binary(max_size=30)))
    try:
        idx, got = load_capture(path)
    except CaptureError:
        return
    assert got == msgs[:len(got)]  # never a wrong message: CRCs guard every block
    if len(got) < len(msgs) and cut >= len(raw):
        assert idx.torn is not None


def test_content_digest_ignores_blocks_and_codec(tmp_path: Path) -> None:
    msgs = _msgs(20)
    digests = []
    for k, (comp, block) in enumerate([(True, 3), (False, 7), (True, 100)]):
        p = tmp_path / f"{k}.gcap"
        with CaptureWriter(p, {"k": k}, compress=comp, block_records=block) as w:
            w.write_many(msgs)
        digests.append(content_sha256(p))
    assert len(set(digests)) == 1
    p = tmp_path / "other.gcap"
    with CaptureWriter(p) as w:
        w.write_many([*msgs[:-1], CapturedMessage("x", "f", "t", 0.0, (), b"other")])
    assert content_sha256(p) != digests[0]
