"""Decision records and their one canonical line form (the bytes that are hashed and signed).

A record line is compact ASCII JSON with the keys in the fixed order of ``FIELDS``;
the writer produces it with a hand-rolled encoder (one f-string per record, strings
escaped by the C JSON escaper) because ``json.dumps`` of a dict costs about 4 us and
the whole append path has about 2 us. ``parse_line`` accepts a line only if
re-encoding what it read gives back the very same bytes, so any edit that keeps
the JSON valid is still caught, at that line. The log writer uses
``encode_packed``, which hands whole batches to the compiled encoder in
``guard/_audit.pxi`` when it is built; the Python encoder here remains the
reference (tests check both give the same bytes) and the verifier's.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from binascii import hexlify as _hexlify
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]

from guard.audit import accel
from guard.audit.merkle import LEAF_PREFIX

FIELDS = (
    "seq", "decision_id", "time_us", "flow", "message_id", "input_sha256",
    "output_sha256", "policy_sha256", "verdict", "findings", "key_id", "prev",
)
VERDICTS = ("release", "redact", "quarantine", "block", "error")
ZERO_HASH = "0" * 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_VERDICT_CODE = {v: v for v in VERDICTS}
_sha = hashlib.sha256


class AuditError(Exception):
    """A record, head, key or log that is not what it must be (never silently accepted)."""


@dataclass(slots=True)
class DecisionRecord:
    """What the guard decided about one message; ``key_id`` is filled in by the log."""

    decision_id: str
    time: float
    flow: str
    message_id: str
    input_sha256: str
    output_sha256: str | None
    policy_sha256: str
    verdict: str
    findings: list[dict] = field(default_factory=list)
    key_id: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (``time`` in seconds)."""
        return {
            "decision_id": self.decision_id, "time": self.time, "flow": self.flow,
            "message_id": self.message_id, "input_sha256": self.input_sha256,
            "output_sha256": self.output_sha256, "policy_sha256": self.policy_sha256,
            "verdict": self.verdict, "findings": self.findings, "key_id": self.key_id,
        }


def _findings_json(findings: Iterable[object]) -> str:
    items = [f.to_dict() if hasattr(f, "to_dict") else f for f in findings]  # Finding objects too
    for item in items:
        if not isinstance(item, dict):
            raise AuditError(f"a finding must be a dict or a Finding, not {type(item).__name__}")
    try:
        return json.dumps(items, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"findings are not JSON-serialisable: {exc}") from None


class RecordEncoder:
    """Turns records into chained, hashed lines for one key id.

    Caches the escaped form of flows and the validated policy hashes, which
    repeat across nearly every record.
    """

    def __init__(self, key_id: str) -> None:
        if not _KEY_ID.fullmatch(key_id):
            raise AuditError(f"bad key id {key_id!r}: 16 lowercase hex digits expected")
        self.key_id = key_id
        self._flows: dict[str, str] = {}
        self._policies: set[str] = set()

    def _flow(self, flow: object) -> str:
        if not isinstance(flow, str) or not flow:
            raise AuditError("flow must be a non-empty string")
        if len(self._flows) > 4096:  # bounded: flows are few, but never trust that
            self._flows.clear()
        q = self._flows[flow] = _quote(flow)
        return q

    def _policy(self, policy: object) -> str:
        if not isinstance(policy, str) or not _HEX64.fullmatch(policy):
            raise AuditError("policy_sha256 must be 64 lowercase hex digits")
        if len(self._policies) > 4096:
            self._policies.clear()
        self._policies.add(policy)
        return policy

    def encode(
        self, records: Sequence[DecisionRecord], seq: int, prev: str
    ) -> tuple[list[bytes], list[bytes], str]:
        """Framed lines and leaf hashes for ``records`` numbered from ``seq``.

        A framed line is ``0x00 || line`` (the RFC 9162 leaf input; the writer turns
        the 0x00 into the previous line's newline, JSON text never holds a raw NUL).
        ``prev`` is the hex leaf hash of the record before (``ZERO_HASH`` for the
        first); returns it updated. Raises ``AuditError`` naming the offending
        record before anything is returned, so a bad record never half-enters the log.
        """
        bodies = self._bodies(records, seq)
        framed: list[bytes] = []
        leaves: list[bytes] = []
        add_line = framed.append
        add_leaf = leaves.append
        sha = _sha
        tail = prev.encode() + b'"}'
        # the only sequential part: each line ends with the previous line's hash
        for body in bodies:
            line = body + tail
            h = sha(line).digest()
            tail = _hexlify(h) + b'"}'
            add_line(line)
            add_leaf(h)
        return framed, leaves, tail[:-2].decode()

    def encode_packed(
        self, records: Sequence[DecisionRecord], seq: int, prev: bytes, *, fast: bool = True
    ) -> tuple[bytes, bytes]:
        """The writer's form of ``encode``: ``(data, leaves)``.

        ``data`` is the lines as records.jsonl receives them (each ending in a
        newline), ``leaves`` their packed 32-byte leaf hashes, ``prev`` the raw leaf
        hash of the record before (32 zero bytes for the first). ``fast`` uses the
        compiled encoder and SHA-256 (``guard.audit.accel``) when it is built; both
        paths give the same bytes and raise the same ``AuditError``.
        """
        if not isinstance(records, (list, tuple)):
            records = list(records)
        if not records:
            return b"", b""
        if fast and accel.AVAILABLE:
            def slow(i: int) -> bytes:  # one record the compiled code leaves to Python
                return self._bodies(records[i:i + 1], seq + i, offset=i)[0]

            return accel.encode_chain(records, seq, self.key_id, prev, self._flows, _quote,
                                      _findings_json, slow)
        framed, leaves, _ = self.encode(records, seq, prev.hex())
        # framed lines are 0x00 || line: each NUL becomes the newline ending the line
        # before it (JSON text holds no raw NUL), so the data is copied only twice
        return b"".join(framed).replace(b"\x00", b"\n")[1:] + b"\n", b"".join(leaves)

    def _bodies(
        self, records: Sequence[DecisionRecord], seq: int, offset: int = 0
    ) -> list[bytes]:
        """Each record's framed line up to and including ``"prev":"`` (checked first);
        ``offset`` is the first record's index in the caller's batch (for messages)."""
        flows = self._flows
        policies = self._policies
        verdicts = _VERDICT_CODE
        key = self.key_id
        quote = _quote
        bodies: list[bytes] = []
        add = bodies.append
        fast = _batch_hex_ok(records)
        for i, r in enumerate(records):
            try:
                if not fast:
                    _check_hex(r)
                flow = flows.get(r.flow) or self._flow(r.flow)
                policy = r.policy_sha256
                if policy not in policies:
                    self._policy(policy)
                out = r.output_sha256
                out = "null" if out is None else f'"{out}"'
                r.key_id = key  # the interface: the log fills in the key id
                add((
                    f'\x00{{"seq":{seq + i},"decision_id":{quote(r.decision_id)},'
                    f'"time_us":{round(r.time * 1_000_000)},"flow":{flow},'
                    f'"message_id":{quote(r.message_id)},"input_sha256":"{r.input_sha256}",'
                    f'"output_sha256":{out},'
                    f'"policy_sha256":"{policy}","verdict":"{verdicts[r.verdict]}",'
                    f'"findings":{_findings_json(r.findings) if r.findings else "[]"},'
                    f'"key_id":"{key}","prev":"'
                ).encode())
            except AuditError as exc:
                raise AuditError(
                    f"record {i + offset} of the batch (decision {_safe(r)}): {exc}") from None
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
                raise AuditError(
                    f"record {i + offset} of the batch (decision {_safe(r)}): invalid field: "
                    f"{exc!r}"
                ) from None
        return bodies


def _batch_hex_ok(records: Sequence[DecisionRecord]) -> bool:
    """All hash fields of a batch are 64 lowercase hex digits: one pass over one string.

    fromhex also admits spaces and capitals, hence the round trip; a False here only
    sends the batch down the per-record path, which names the bad record.
    """
    try:
        hx = [r.input_sha256 for r in records] + [r.output_sha256 or ZERO_HASH for r in records]
        if set(map(len, hx)) != {64}:
            return False
        s = "".join(hx)
        return bytes.fromhex(s).hex() == s
    except (AttributeError, TypeError, ValueError):
        return False


def _check_hex(r: DecisionRecord) -> None:
    if not isinstance(r.input_sha256, str) or not _HEX64.fullmatch(r.input_sha256):
        raise AuditError("input_sha256 must be 64 lowercase hex digits")
    out = r.output_sha256
    if out is not None and (not isinstance(out, str) or not _HEX64.fullmatch(out)):
        raise AuditError("output_sha256 must be null or 64 lowercase hex digits")


def _safe(r: object) -> str:
    return repr(getattr(r, "decision_id", "?"))[:80]


@dataclass(slots=True)
class StoredRecord:
    """One record as read back from the log, with its chain fields."""

    seq: int
    prev: str
    record: DecisionRecord

    def to_dict(self) -> dict[str, object]:
        """The record's fields plus ``seq`` and ``prev``."""
        d: dict[str, object] = {"seq": self.seq, "prev": self.prev}
        d.update(self.record.to_dict())
        return d


def parse_lines(
    lines: Sequence[bytes], first: int = 0
) -> tuple[list[StoredRecord | None], dict[int, str]]:
    """Strictly parse many lines: the records (None where bad) and {index: what is wrong}.

    Fast path: runs of lines with one key id are re-encoded in a single ``encode``
    call (pure Python and hashlib, never the compiled writer path: the verifier
    stays independent of it) from the first line's seq and prev; a line that does not come back
    byte-identical (or a broken chain) is re-checked alone for a precise message.
    """
    out: list[StoredRecord | None] = []
    errors: dict[int, str] = {}
    for k, line in enumerate(lines):
        try:
            out.append(_parse_fields(line))
        except AuditError as exc:
            out.append(None)
            errors[first + k] = str(exc)
    k = 0
    while k < len(out):
        s = out[k]
        if s is None:
            k += 1
            continue
        end = k + 1
        while end < len(out) and end - k < 4096 and out[end] is not None and \
                out[end].record.key_id == s.record.key_id:  # type: ignore[union-attr]
            end += 1
        run = out[k:end]
        try:
            again, _, _ = _encoder(s.record.key_id).encode(
                [r.record for r in run], s.seq, s.prev)  # type: ignore[union-attr]
        except AuditError:
            again = []
        for j in range(k, end):
            if j - k >= len(again) or again[j - k][1:] != lines[j]:
                try:  # diagnose alone, with its own seq and prev
                    _canonical(out[j], lines[j])  # type: ignore[arg-type]
                except AuditError as exc:
                    out[j] = None
                    errors[first + j] = str(exc)
        k = end
    return out, errors


def _encoder(key_id: str) -> RecordEncoder:
    enc = _ENCODERS.get(key_id)
    if enc is None:
        if len(_ENCODERS) > 256:
            _ENCODERS.clear()
        enc = _ENCODERS[key_id] = RecordEncoder(key_id)
    return enc


def _canonical(s: StoredRecord, line: bytes) -> None:
    try:
        again, _, _ = _encoder(s.record.key_id).encode([s.record], s.seq, s.prev)
    except AuditError as exc:
        raise AuditError(str(exc).split(": ", 1)[-1]) from None
    if again[0][1:] != line:
        raise AuditError("not in canonical form (bytes differ from the re-encoded record)")


def parse_line(line: bytes) -> StoredRecord:
    """Strictly parse one record line (no newline); ``AuditError`` says what is wrong."""
    s = _parse_fields(line)
    _canonical(s, line)
    return s


def _parse_fields(line: bytes) -> StoredRecord:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuditError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise AuditError("not a JSON object")
    keys = tuple(obj)
    if keys != FIELDS:
        missing = [k for k in FIELDS if k not in obj]
        extra = [k for k in keys if k not in FIELDS]
        raise AuditError(
            f"fields differ from the format (missing {missing}, unexpected {extra}, "
            "or out of order)"
        )
    seq, prev, time_us = obj["seq"], obj["prev"], obj["time_us"]
    if not isinstance(obj["decision_id"], str) or not isinstance(obj["message_id"], str):
        raise AuditError("decision_id and message_id must be strings")
    if type(seq) is not int or seq < 0:
        raise AuditError("seq must be a non-negative integer")
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise AuditError("prev must be 64 lowercase hex digits")
    if type(time_us) is not int:
        raise AuditError("time_us must be an integer")
    if not isinstance(obj["key_id"], str) or not _KEY_ID.fullmatch(obj["key_id"]):
        raise AuditError("key_id must be 16 lowercase hex digits")
    if not isinstance(obj["findings"], list):
        raise AuditError("findings must be a list")
    rec = DecisionRecord(
        decision_id=obj["decision_id"], time=_seconds(time_us), flow=obj["flow"],
        message_id=obj["message_id"], input_sha256=obj["input_sha256"],
        output_sha256=obj["output_sha256"], policy_sha256=obj["policy_sha256"],
        verdict=obj["verdict"], findings=obj["findings"], key_id=obj["key_id"],
    )
    return StoredRecord(seq, prev, rec)


_ENCODERS: dict[str, RecordEncoder] = {}


def _seconds(time_us: int) -> float:
    """A float t with round(t * 1e6) == time_us, so a parsed record re-encodes exactly
    (t = time_us / 1e6 nearly always is; nudge by ulps otherwise)."""
    t = time_us / 1_000_000
    for _ in range(64):
        got = round(t * 1_000_000)
        if got == time_us:
            break
        t = math.nextafter(t, -math.inf if got > time_us else math.inf)
    return t


def leaf_of(line: bytes) -> bytes:
    """Leaf hash of a stored line (RFC 9162, 0x00 prefix)."""
    return _sha(LEAF_PREFIX + line).digest()
