"""Capture files: a domain's traffic, recorded once, replayed under any policy.

Format (version 1; all integers little-endian)::

    file   = header block*
    header = "GCAP" | version u16 (=1) | flags u16 (=0) | created_us i64
             | meta_len u32 | meta (UTF-8 JSON object, meta_len bytes)
             | crc32 u32 (of every header byte before it)
    block  = "GCB1" | codec u8 (0 stored, 1 zlib) | reserved 3 bytes (zero)
             | count u32 | raw_len u32 | stored_len u32
             | crc32 u32 (of the 20 header bytes before it, then the stored bytes)
             | stored bytes (stored_len)
    raw block (after decompression, raw_len bytes) = record*  (exactly ``count``)
    record = rec_len u32 (bytes after this field)
             | time f64 (seconds since the epoch, when the message was seen)
             | id_len u16 | message id (UTF-8)
             | flow_len u16 | flow (UTF-8)
             | topic_len u16 | topic (UTF-8)
             | n_props u16 | n_props x (key_len u16 | key | val_len u16 | val)  MQTT 5
               user properties in arrival order (UTF-8)
             | payload_len u32 | payload (raw bytes, exactly as received)

The header's JSON ``meta`` says where the traffic came from (broker topic or
generator, seed, flow, tool version); it is informative, never trusted for a
decision. Records are grouped in independently compressed blocks (default: up to
1024 records or 1 MiB raw), so a crash loses at most the block being written, a
replay can hand whole blocks to worker processes by file offset, and a block can
be checked (CRC-32) and decoded on its own.

A replay reads blocks with ``read_block_records`` (parallel lists, no object per
message: records checked and copied out in one pass of the Cython core, zlib inflated
by the system's libdeflate when present); any block that pass does not fully
understand goes through the reference decoder, so validation and error messages are
the same.

Loading validates everything: a damaged header is rejected (``CaptureError``); a
block that fails its checks *in the middle* of the file is rejected too (fail
closed: a replay over silently damaged traffic would prove nothing); an
incomplete or damaged *last* block is what an interrupted writer leaves, so it is
reported (``CaptureIndex.torn``) and the good prefix is kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard._core import capture_records

__all__ = [
    "MAGIC",
    "VERSION",
    "BlockInfo",
    "BlockReader",
    "BlockRecords",
    "CaptureError",
    "CaptureIndex",
    "CaptureWriter",
    "CapturedMessage",
    "content_sha256",
    "decode_block_records",
    "load_capture",
    "read_block",
    "read_block_records",
    "read_blocks",
    "scan_capture",
]

MAGIC = b"GCAP"
BLOCK_MAGIC = b"GCB1"
VERSION = 1
CODEC_STORED, CODEC_ZLIB = 0, 1
_HEAD = struct.Struct("<4sHHqI")          # magic, version, flags, created_us, meta_len
_BLOCK = struct.Struct("<4sB3sIIII")      # magic, codec, reserved, count, raw, stored, crc
_U32 = struct.Struct("<I")
_REC = struct.Struct("<Id")               # rec_len, time
_U16 = struct.Struct("<H")
MAX_META = 1 << 20
MAX_BLOCK_RAW = 256 << 20                 # a single record may hold a 16 MiB+ payload
MAX_STRING = 0xFFFF


class CaptureError(ValueError):
    """A capture file (or a message to write) that is not what it must be."""


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One recorded message with its metadata."""

    message_id: str
    flow: str
    topic: str
    time: float
    properties: tuple[tuple[str, str], ...]
    payload: bytes


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """Where one valid block lies and which messages it holds."""

    offset: int           # of the block header in the file
    size: int             # header + stored bytes
    count: int
    first: int            # index of its first message in the capture


@dataclass(slots=True)
class CaptureIndex:
    """A validated capture's header and block list (records not decoded)."""

    path: Path
    version: int
    created: float
    meta: dict[str, Any]
    blocks: list[BlockInfo] = field(default_factory=list)
    torn: str | None = None   # what was cut off the end, if anything

    @property
    def messages(self) -> int:
        """Number of messages in the good blocks."""
        return sum(b.count for b in self.blocks)


# ---------------------------------------------------------------------------- writing

def _encode_str(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise CaptureError(f"{what} must be a string, not {type(s).__name__}")
    b = s.encode("utf-8", "strict")  # lone surrogates raise: caught by the caller
    if len(b) > MAX_STRING:
        raise CaptureError(f"{what} is {len(b)} bytes, over {MAX_STRING}")
    return _U16.pack(len(b)) + b


def encode_record(m: CapturedMessage) -> bytes:
    """One record's bytes (with its length prefix); ``CaptureError`` if unencodable."""
    try:
        props = m.properties
        if len(props) > MAX_STRING:
            raise CaptureError(f"{len(props)} user properties, over {MAX_STRING}")
        parts = [
            _encode_str(m.message_id, "message id"), _encode_str(m.flow, "flow"),
            _encode_str(m.topic, "topic"), _U16.pack(len(props)),
        ]
        for k, v in props:
            parts.append(_encode_str(k, "property key"))
            parts.append(_encode_str(v, "property value"))
        payload = bytes(m.payload)
        if len(payload) > MAX_BLOCK_RAW - 1024:
            raise CaptureError(f"payload of {len(payload)} bytes is too large to record")
        parts.append(_U32.pack(len(payload)))
        parts.append(payload)
        body = struct.pack("<d", float(m.time)) + b"".join(parts)
    except UnicodeEncodeError as exc:
        raise CaptureError(f"message {m.message_id!r}: text is not valid UTF-8: {exc}") from None
    except (TypeError, ValueError, struct.error) as exc:
        if isinstance(exc, CaptureError):
            raise
        raise CaptureError(f"message {m.message_id!r}: cannot encode: {exc}") from None
    return _U32.pack(len(body)) + body


def encode_header(meta: dict[str, Any], created: float) -> bytes:
    """The file header for ``meta`` (a JSON object) and creation time ``created``."""
    raw = json.dumps(meta, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    if len(raw) > MAX_META:
        raise CaptureError(f"capture metadata is {len(raw)} bytes, over {MAX_META}")
    head = _HEAD.pack(MAGIC, VERSION, 0, round(created * 1_000_000), len(raw)) + raw
    return head + _U32.pack(zlib.crc32(head))


def encode_block(records: Sequence[bytes], *, compress: bool = True, level: int = 6) -> bytes:
    """One block holding already encoded ``records``."""
    raw = b"".join(records)
    if len(raw) > MAX_BLOCK_RAW:
        raise CaptureError(f"block of {len(raw)} bytes, over {MAX_BLOCK_RAW}")
    stored = zlib.compress(raw, level) if compress else raw
    codec = CODEC_ZLIB if compress else CODEC_STORED
    head = _BLOCK.pack(BLOCK_MAGIC, codec, b"\0\0\0", len(records), len(raw), len(stored),
                       0)[:-4]
    return head + _U32.pack(zlib.crc32(stored, zlib.crc32(head))) + stored


class CaptureWriter:
    """Writes a new capture file block by block (context manager).

    A block is written when it reaches ``block_records`` messages or ``block_bytes``
    raw bytes, on ``flush()`` and on ``close()``; each write is followed by an
    ``os.fsync`` when ``fsync`` is true. An existing file is refused unless
    ``overwrite``.
    """

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None, *,
                 created: float | None = None, compress: bool = True, level: int = 6,
                 block_records: int = 1024, block_bytes: int = 1 << 20,
                 overwrite: bool = False, fsync: bool = False) -> None:
        self.path = Path(path)
        self.compress, self.level, self.fsync = compress, level, fsync
        self.block_records, self.block_bytes = max(1, block_records), max(1, block_bytes)
        self.count = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        header = encode_header(dict(meta or {}), time.time() if created is None else created)
        self._fh = self.path.open("wb" if overwrite else "xb")
        self._fh.write(header)
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    @property
    def pending(self) -> int:
        """Messages written but not yet in a block on disk."""
        return len(self._pending)

    def write(self, message: CapturedMessage) -> None:
        """Add one message (``CaptureError`` if it cannot be encoded; nothing written)."""
        rec = encode_record(message)
        self._pending.append(rec)
        self._pending_bytes += len(rec)
        self.count += 1
        if len(self._pending) >= self.block_records or self._pending_bytes >= self.block_bytes:
            self.flush()

    def write_many(self, messages: Iterable[CapturedMessage]) -> None:
        """Add several messages."""
        for m in messages:
            self.write(m)

    def flush(self) -> None:
        """Write the pending messages as one block."""
        if self._pending:
            self._fh.write(encode_block(self._pending, compress=self.compress,
                                        level=self.level))
            self._pending, self._pending_bytes = [], 0
            self._sync()

    def close(self) -> None:
        """Write what is pending and close the file."""
        if not self._fh.closed:
            try:
                self.flush()
            finally:
                self._fh.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- reading

def _read_header(fh: Any, path: Path) -> tuple[int, float, dict[str, Any], int]:
    head = fh.read(_HEAD.size)
    if len(head) < _HEAD.size:
        raise CaptureError(f"{path}: not a capture file (only {len(head)} bytes)")
    magic, version, flags, created_us, meta_len = _HEAD.unpack(head)
    if magic != MAGIC:
        raise CaptureError(f"{path}: not a capture file (bad magic {magic!r})")
    if version != VERSION:
        raise CaptureError(f"{path}: capture format version {version} is not supported "
                           f"(this guard reads version {VERSION})")
    if meta_len > MAX_META:
        raise CaptureError(f"{path}: corrupted header (metadata length {meta_len})")
    raw = fh.read(meta_len)
    crc = fh.read(4)
    if len(raw) < meta_len or len(crc) < 4:
        raise CaptureError(f"{path}: corrupted header (file ends inside it)")
    if _U32.unpack(crc)[0] != zlib.crc32(head + raw):
        raise CaptureError(f"{path}: corrupted header (checksum mismatch)")
    if flags != 0:
        raise CaptureError(f"{path}: unknown header flags {flags:#x}")
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: corrupted header metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise CaptureError(f"{path}: corrupted header metadata (not a JSON object)")
    return version, created_us / 1_000_000, meta, _HEAD.size + meta_len + 4


def _check_block(head: bytes, stored: bytes | None) -> str | None:
    """What is wrong with a block (None when it is sound)."""
    magic, codec, reserved, count, raw_len, stored_len, crc = _BLOCK.unpack(head)
    if magic != BLOCK_MAGIC or reserved != b"\0\0\0" or codec not in (0, 1):
        return "bad block header"
    if raw_len > MAX_BLOCK_RAW or stored_len > MAX_BLOCK_RAW + (1 << 20) or (
            codec == CODEC_STORED and stored_len != raw_len):
        return "bad block lengths"
    if count == 0 or count > raw_len // (_REC.size + 10):
        return f"implausible record count {count}"
    if stored is None:
        return None
    if len(stored) < stored_len:
        return f"block cut short ({len(stored)} of {stored_len} bytes)"
    if zlib.crc32(stored[:stored_len], zlib.crc32(head[:-4])) != crc:
        return "block checksum mismatch"
    return None


def scan_capture(path: str | os.PathLike[str]) -> CaptureIndex:
    """Validate a capture's header and every block's framing and checksum.

    Raises ``CaptureError`` for a damaged header or a damaged block followed by
    more data; an incomplete or damaged final block is reported in ``torn``.
    """
    p = Path(path)
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise CaptureError(f"{p}: cannot open: {exc.strerror or exc}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        version, created, meta, pos = _read_header(fh, p)
        idx = CaptureIndex(p, version, created, meta)
        first = 0
        while pos < size:
            head = fh.read(_BLOCK.size)
            problem: str | None = None
            fatal = False
            if len(head) < _BLOCK.size:
                problem = f"incomplete block header ({len(head)} bytes)"
            else:
                problem = _check_block(head, None)
                if problem is not None:
                    # a torn write truncates (or, on some file systems, leaves zeros);
                    # anything else in a block header is damage
                    fatal = (head + fh.read()).strip(b"\0") != b""
                else:
                    stored_len = _BLOCK.unpack(head)[5]
                    stored = fh.read(stored_len)
                    problem = _check_block(head, stored)
                    fatal = problem is not None and fh.tell() < size
            if problem is not None:
                if fatal:
                    raise CaptureError(f"{p}: {problem} at offset {pos} (block "
                                       f"{len(idx.blocks)}, message {first}); the capture "
                                       "is damaged")
                idx.torn = (f"{problem} at offset {pos}: the last {size - pos} bytes "
                            f"were dropped; {idx.messages} messages kept")
                break
            count = _BLOCK.unpack(head)[3]
            end = pos + _BLOCK.size + _BLOCK.unpack(head)[5]
            idx.blocks.append(BlockInfo(pos, end - pos, count, first))
            first += count
            pos = end
        return idx


def _decode_str(raw: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    if pos + 2 > end:
        raise CaptureError(f"record ends inside its {what}")
    (n,) = _U16.unpack_from(raw, pos)
    pos += 2
    if pos + n > end:
        raise CaptureError(f"record ends inside its {what}")
    try:
        return raw[pos:pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError:
        raise CaptureError(f"{what} is not valid UTF-8") from None


class _Libdeflate:
    """zlib-format inflation by the system's libdeflate (when installed): about six
    times faster than zlib on these blocks, the largest cost of reading a capture.
    Used only for sound blocks: anything it does not decode to exactly the stated
    length, consuming exactly the stored bytes, goes to zlib, which says what is wrong."""

    KEEP = 8 << 20        # largest output buffer a thread keeps between blocks

    def __init__(self) -> None:
        self.fn: Any = None
        self.local = threading.local()   # a decompressor is not thread-safe
        with contextlib.suppress(OSError, AttributeError):
            try:
                lib = ctypes.CDLL("libdeflate.so.0")
            except OSError:  # elsewhere than Debian's name: ask (runs ldconfig, slower)
                lib = ctypes.CDLL(ctypes.util.find_library("deflate") or "libdeflate.so")
            lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
            lib.libdeflate_alloc_decompressor.argtypes = []
            size_p = ctypes.POINTER(ctypes.c_size_t)
            lib.libdeflate_zlib_decompress_ex.argtypes = [
                ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                ctypes.c_size_t, size_p, size_p]
            lib.libdeflate_zlib_decompress_ex.restype = ctypes.c_int
            self.lib, self.fn = lib, lib.libdeflate_zlib_decompress_ex

    def inflate(self, stored: bytes, raw_len: int) -> bytes | None:
        """The inflated bytes when ``stored`` is one zlib stream of exactly ``raw_len``
        bytes; None otherwise (or without libdeflate)."""
        view = self.inflate_view(stored, raw_len)
        return None if view is None else view.tobytes()

    def inflate_view(self, stored: bytes, raw_len: int) -> memoryview | None:
        """``inflate``'s bytes as a view of this thread's buffer, without copying them
        out: valid only until this thread's next call (copy what is kept)."""
        if self.fn is None:
            return None
        local = self.local
        d = getattr(local, "d", None)
        if d is None:
            d = local.d = self.lib.libdeflate_alloc_decompressor()  # lives with the thread
            if not d:
                return None
        # Inflate into a buffer kept by the thread, then copy out: a fresh zeroed buffer
        # per block (create_string_buffer, then .raw) cost up to ~3x the inflation
        # itself (zeroing, and the page faults of a new 1 MiB mapping when malloc
        # hands one out), and the copy out of it was made anyway.
        out = getattr(local, "buf", None)
        if out is None or len(out) < raw_len:
            out = ctypes.create_string_buffer(max(raw_len, 1))
            if raw_len <= self.KEEP:
                local.buf = out
        used, got = ctypes.c_size_t(), ctypes.c_size_t()
        rc = self.fn(d, stored, len(stored), out, raw_len, ctypes.byref(used),
                     ctypes.byref(got))
        if rc != 0 or used.value != len(stored) or got.value != raw_len:
            return None
        return memoryview(out).cast("B")[:raw_len]


_LIBDEFLATE = _Libdeflate()


def _inflate(stored: bytes, raw_len: int) -> bytes | None:
    return _LIBDEFLATE.inflate(stored, raw_len)


def _raw_block(head: bytes, stored: bytes, *, view: bool = False,
               ) -> tuple[bytes | memoryview, int]:
    """A block's decoded record bytes and record count; ``CaptureError`` if damaged.
    With ``view``, inflated bytes may come as ``_Libdeflate.inflate_view`` gives them
    (a view of this thread's buffer, valid until its next inflation)."""
    problem = _check_block(head, stored)
    if problem is not None:
        raise CaptureError(problem)
    _, codec, _, count, raw_len, stored_len, _ = _BLOCK.unpack(head)
    stored = stored[:stored_len]
    if codec == CODEC_ZLIB:
        fast = (_LIBDEFLATE.inflate_view(stored, raw_len) if view
                else _inflate(stored, raw_len))
        if fast is not None:
            return fast, count
    if codec == CODEC_ZLIB:
        try:
            d = zlib.decompressobj()
            raw = d.decompress(stored, raw_len + 1)
        except zlib.error as exc:
            raise CaptureError(f"block does not decompress: {exc}") from None
        if not d.eof or d.unused_data:
            raise CaptureError("block does not decompress to its stated length")
    else:
        raw = stored
    if len(raw) != raw_len:
        raise CaptureError(f"block decompresses to {len(raw)} bytes, not {raw_len}")
    return raw, count


def decode_block(head: bytes, stored: bytes) -> list[CapturedMessage]:
    """The messages of one block (header and stored bytes); ``CaptureError`` if damaged."""
    raw, count = _raw_block(head, stored)
    return _decode_records(raw, count)


def _decode_records(raw: bytes, count: int) -> list[CapturedMessage]:
    raw_len = len(raw)
    out: list[CapturedMessage] = []
    pos = 0
    for k in range(count):
        if pos + _REC.size > raw_len:
            raise CaptureError(f"record {k} of the block is cut short")
        rec_len, t = _REC.unpack_from(raw, pos)
        end = pos + 4 + rec_len
        if end > raw_len:
            raise CaptureError(f"record {k} claims {rec_len} bytes, beyond the block")
        p = pos + _REC.size
        mid, p = _decode_str(raw, p, end, "message id")
        flow, p = _decode_str(raw, p, end, "flow")
        topic, p = _decode_str(raw, p, end, "topic")
        if p + 2 > end:
            raise CaptureError(f"record {k} ends inside its properties")
        (nprops,) = _U16.unpack_from(raw, p)
        p += 2
        props = []
        for _ in range(nprops):
            key, p = _decode_str(raw, p, end, "property key")
            val, p = _decode_str(raw, p, end, "property value")
            props.append((key, val))
        if p + 4 > end:
            raise CaptureError(f"record {k} ends inside its payload length")
        (plen,) = _U32.unpack_from(raw, p)
        p += 4
        if p + plen != end:
            raise CaptureError(f"record {k}: payload length {plen} does not fill the record")
        out.append(CapturedMessage(mid, flow, topic, t, tuple(props), raw[p:end]))
        pos = end
    if pos != raw_len:
        raise CaptureError(f"{raw_len - pos} bytes after the block's last record")
    return out


@dataclass(slots=True)
class BlockRecords:
    """The messages of one block as parallel lists (no object per message): what a
    replay needs. Validated exactly as ``decode_block`` validates."""

    ids: list[str]
    flows: list[str]
    payloads: list[bytes]
    times: list[float]


def decode_block_records(head: bytes, stored: bytes) -> BlockRecords:
    """``decode_block`` as parallel lists. The records are checked and copied out in one
    pass of the Cython core; a block that pass does not fully understand (damage,
    non-ASCII strings) goes through ``decode_block``, which explains what is wrong."""
    # the inflated bytes are read where libdeflate wrote them (no copy of the block):
    # every id, flow and payload kept is a copy made by capture_records or the decoder
    raw, count = _raw_block(head, stored, view=True)
    got = capture_records(raw, count)
    if got is None:
        ms = _decode_records(bytes(raw), count)
        return BlockRecords([m.message_id for m in ms], [m.flow for m in ms],
                            [m.payload for m in ms], [m.time for m in ms])
    return BlockRecords(*got)


def read_block_records(path: str | os.PathLike[str], block: BlockInfo) -> BlockRecords:
    """Decode one block of a capture as parallel lists (``decode_block_records``)."""
    with BlockReader(path) as reader:
        return reader.read(block)


class BlockReader:
    """A capture kept open to decode its blocks one at a time (``read_block_records``
    without opening the file again for every block). Context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        # kept open across calls (closed by close()); unbuffered: each block is one pread
        self._fh = open(path, "rb", buffering=0)  # noqa: SIM115

    def read(self, block: BlockInfo) -> BlockRecords:
        """Decode ``block`` as parallel lists (``decode_block_records``)."""
        data = os.pread(self._fh.fileno(), block.size, block.offset)
        try:
            if len(data) < _BLOCK.size:
                raise CaptureError("block cut short")
            return decode_block_records(data[:_BLOCK.size], data[_BLOCK.size:])
        except CaptureError as exc:
            raise CaptureError(f"{self.path}: block at offset {block.offset}: {exc}") from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_block(path: str | os.PathLike[str], block: BlockInfo) -> list[CapturedMessage]:
    """Decode one block of a capture (as listed by ``scan_capture``)."""
    return read_blocks(path, [block])


def read_blocks(path: str | os.PathLike[str],
                blocks: Sequence[BlockInfo]) -> list[CapturedMessage]:
    """Decode several blocks of a capture, in the order given."""
    out: list[CapturedMessage] = []
    with Path(path).open("rb") as fh:
        for b in blocks:
            fh.seek(b.offset)
            data = fh.read(b.size)
            try:
                if len(data) < _BLOCK.size:
                    raise CaptureError("block cut short")
                out += decode_block(data[:_BLOCK.size], data[_BLOCK.size:])
            except CaptureError as exc:
                raise CaptureError(f"{path}: block at offset {b.offset}: {exc}") from None
    return out


def iter_capture(index: CaptureIndex) -> Iterator[CapturedMessage]:
    """Every message of a scanned capture, block by block."""
    for b in index.blocks:
        yield from read_block(index.path, b)


def content_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a capture's messages (their encoded records, uncompressed, in order):
    the same for the same traffic whatever the block size, codec or zlib build."""
    idx = scan_capture(path)
    h = hashlib.sha256()
    for b in idx.blocks:
        for m in read_block(idx.path, b):
            h.update(encode_record(m))
    return h.hexdigest()


def load_capture(path: str | os.PathLike[str]) -> tuple[CaptureIndex, list[CapturedMessage]]:
    """Validate and decode a whole capture: its index and all its messages."""
    idx = scan_capture(path)
    return idx, read_blocks(idx.path, idx.blocks)
