"""Verify a log directory: meta, every record line, the hash chain, every head's root,
signature, consistency with the head before it and an inclusion proof; name the
first bad record.

Locating a single altered record from the chain alone: record ``i`` carries the
hash of record ``i - 1``. If that link breaks, either record ``i - 1`` changed
(then the link ``i + 1`` still holds) or record ``i``'s own ``prev`` changed
(then link ``i + 1`` breaks too). For the last record, the signed heads decide:
a head carries the leaf hash of its last record, and substituting the hash that
record ``i`` expected must reproduce the signed root. Sequence numbers catch
deletions and reordering; a ``prev`` that points further back names inserted records.

Independence: the writer encodes and hashes with compiled code (``guard.audit.accel``,
its own SHA-256); this module deliberately recomputes everything with hashlib
(OpenSSL) and the Python encoder and Merkle code (``RecordEncoder.encode``,
``merkle``), never ``accel``, so an independent implementation checks the fast one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from guard.audit.heads import TreeHead, parse_head
from guard.audit.keys import PublicKeys
from guard.audit.merkle import MerkleTree, verify_consistency, verify_inclusion
from guard.audit.records import ZERO_HASH, AuditError, StoredRecord, leaf_of, parse_lines

META_NAME = "log.json"
RECORDS_NAME = "records.jsonl"
HEADS_NAME = "heads.jsonl"
FORMAT = "guard-audit-log"
VERSION = 1


@dataclass(slots=True)
class Problem:
    """One thing wrong, located: ``record`` is the sequence number (= line - 1 of
    records.jsonl), ``head`` the 0-based index in heads.jsonl."""

    kind: str
    message: str
    record: int | None = None
    head: int | None = None

    def where(self) -> str:
        """Human form of the location, e.g. ``record 6 (records.jsonl line 7)``."""
        if self.record is not None:
            return f"record {self.record} ({RECORDS_NAME} line {self.record + 1})"
        if self.head is not None:
            return f"head {self.head} ({HEADS_NAME} line {self.head + 1})"
        return "log"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form with the 1-based line numbers."""
        d: dict[str, object] = {"kind": self.kind, "where": self.where(), "message": self.message}
        if self.record is not None:
            d["record"] = self.record
            d["line"] = self.record + 1
        if self.head is not None:
            d["head"] = self.head
            d["head_line"] = self.head + 1
        return d

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


@dataclass
class Report:
    """Outcome of checking one log directory."""

    directory: str
    log_id: str = ""
    records: int = 0
    heads: int = 0
    covered: int = 0  # tree size of the last good head
    key_ids: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    torn_records: int = 0  # bytes of an unterminated final line
    torn_heads: int = 0
    signatures_checked: bool = False
    # state for the writer and for `show` (not part of to_dict)
    lines: list[bytes] = field(default_factory=list, repr=False)
    tree: MerkleTree | None = field(default=None, repr=False)
    leaves: list[bytes] = field(default_factory=list, repr=False)
    parsed: list[StoredRecord | None] = field(default_factory=list, repr=False)
    head_list: list[TreeHead] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def first_bad_record(self) -> int | None:
        """Sequence number of the earliest record a problem is located at."""
        located = [p.record for p in self.problems if p.record is not None]
        return min(located) if located else None

    def to_dict(self) -> dict[str, object]:
        """The JSON object ``guard audit verify --json`` prints per log."""
        return {
            "directory": self.directory, "ok": self.ok, "log_id": self.log_id,
            "records": self.records, "heads": self.heads, "covered": self.covered,
            "key_ids": self.key_ids, "signatures_checked": self.signatures_checked,
            "first_bad_record": self.first_bad_record,
            "problems": [p.to_dict() for p in self.problems],
        }


def read_lines(path: Path) -> tuple[list[bytes], bytes]:
    """Complete lines of a file and its unterminated tail (b"" if none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], b""
    cut = data.rfind(b"\n") + 1
    lines = data[:cut].split(b"\n")[:-1] if cut else []
    return lines, data[cut:]


def _plausible_torn(tail: bytes, start: bytes) -> bool:
    """Could ``tail`` be the start of a line we write (cut short by a crash)?

    Anything else (NULs, binary junk) is damage, not an interrupted append.
    """
    n = min(len(tail), len(start))
    return tail[:n] == start[:n] and tail.isascii() and b"\x00" not in tail


def read_meta(directory: Path) -> dict[str, object]:
    """The log's ``log.json``; ``AuditError`` if missing or malformed."""
    path = directory / META_NAME
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise AuditError(f"{path} is missing: not an audit log directory") from None
    except (OSError, ValueError) as exc:
        raise AuditError(f"{path} is unreadable or not JSON: {exc}") from None
    if (
        not isinstance(meta, dict) or meta.get("format") != FORMAT
        or meta.get("version") != VERSION or not isinstance(meta.get("log_id"), str)
        or len(meta["log_id"]) != 32
    ):
        raise AuditError(f"{path}: not a {FORMAT} v{VERSION} meta file")
    return meta


def analyse(
    directory: str | os.PathLike[str],
    public_keys: PublicKeys | None = None,
    *,
    allow_tail: bool = False,
    full: bool = True,
) -> Report:
    """Check one log directory; signatures only when ``public_keys`` is given.

    ``allow_tail`` accepts what a crash or a live writer leaves: an unterminated
    final line and records not yet covered by a signed head. ``full=False`` (the
    writer reopening its own log) parses only records after the last head whose
    root matches: the signed root already vouches for every byte before it.
    """
    d = Path(directory)
    rep = Report(str(d), signatures_checked=public_keys is not None)
    try:
        meta = read_meta(d)
    except AuditError as exc:
        rep.problems.append(Problem("meta", str(exc)))
        return rep
    rep.log_id = str(meta["log_id"])
    lines, rec_tail = read_lines(d / RECORDS_NAME)
    head_lines, head_tail = read_lines(d / HEADS_NAME)
    rep.torn_records, rep.torn_heads = len(rec_tail), len(head_tail)
    n = rep.records = len(lines)
    rep.lines = lines
    leaves = rep.leaves = [leaf_of(line) for line in lines]  # hashlib, never accel
    heads: list[TreeHead | None] = []
    head_errors: dict[int, str] = {}
    for j, line in enumerate(head_lines):
        try:
            heads.append(parse_head(line))
        except AuditError as exc:
            heads.append(None)
            head_errors[j] = str(exc)
    rep.heads = len(heads)
    rep.head_list = [h for h in heads if h is not None]
    tree = rep.tree = MerkleTree(leaves)
    start = 0
    if not full and rep.head_list and len(rep.head_list) == len(heads):
        last = rep.head_list[-1]
        if last.tree_size <= n and tree.root(last.tree_size).hex() == last.root_hash:
            start = last.tree_size
    tail, errors = parse_lines(lines[start:], start)
    parsed = rep.parsed = [None] * start + tail
    rep.key_ids = sorted({p.record.key_id for p in tail if p is not None})

    bad = _first_bad_record(lines, leaves, parsed, errors, heads, tree, start)
    if bad is not None:
        rep.problems.append(bad)
    limit = bad.record if bad is not None and bad.record is not None else n
    _check_heads(rep, heads, head_errors, tree, leaves, public_keys, limit)
    if rec_tail and not _plausible_torn(rec_tail, b'{"seq":'):
        rep.problems.append(Problem(
            "record", f"the file ends in {len(rec_tail)} bytes that are not a record line",
            record=n))
    elif rep.torn_records and not allow_tail:
        rep.problems.append(Problem(
            "torn", f"unterminated final line of {rep.torn_records} bytes after the last record "
            "(an interrupted write; never committed)", record=n))
    if head_tail and not _plausible_torn(head_tail, b'{"tree_size":'):
        rep.problems.append(Problem(
            "head", f"{HEADS_NAME} ends in {len(head_tail)} bytes that are not a head line",
            head=len(heads)))
    elif rep.torn_heads and not allow_tail:
        rep.problems.append(Problem(
            "torn", f"unterminated final line of {rep.torn_heads} bytes in {HEADS_NAME}",
            head=len(heads)))
    if rep.ok and rep.covered < n and not allow_tail:
        rep.problems.append(Problem(
            "uncovered", f"records {rep.covered}..{n - 1} are not covered by any signed head "
            "(the writer did not close; reopen it to sign them, or pass --allow-tail)",
            record=rep.covered))
    return rep


def _first_bad_record(
    lines: list[bytes], leaves: list[bytes], parsed: list[StoredRecord | None],
    errors: dict[int, str], heads: list[TreeHead | None], tree: MerkleTree, start: int = 0,
) -> Problem | None:
    n = len(lines)
    index: dict[str, int] | None = None

    def where_is(h: str) -> int | None:
        nonlocal index
        if index is None:
            index = {leaf.hex(): k for k, leaf in enumerate(leaves)}
        return index.get(h)

    def link_ok(k: int) -> bool:
        s = parsed[k]
        return s is not None and s.prev == (leaves[k - 1].hex() if k else ZERO_HASH)

    for i in range(start, n):
        if i in errors:
            return Problem("record", errors[i], record=i)
        s = parsed[i]
        assert s is not None
        expected = leaves[i - 1].hex() if i else ZERO_HASH
        if s.seq != i or s.prev != expected:
            p = where_is(s.prev)
            if p is not None and p < i - 1:
                return Problem(
                    "inserted", f"record(s) {p + 1}..{i - 1} were inserted: record {i} "
                    f"(seq {s.seq}) chains directly to record {p}", record=p + 1)
            if s.seq != i:
                if p is not None and p >= i:
                    what = "records reordered"
                elif s.seq > i:
                    what = f"{s.seq - i} record(s) missing before it (deleted or truncated)"
                else:
                    what = "a record was inserted before it or records were reordered"
                return Problem("sequence", f"sequence number {s.seq}, expected {i}: {what}",
                               record=i)
            # seq right, link broken: record i-1 altered, or the prev field of record i
            if i + 1 < n and parsed[i + 1] is not None:
                if link_ok(i + 1):
                    return Problem(
                        "altered", f"its hash no longer matches the prev of record {i}, which "
                        "is itself consistent with its successor: record altered",
                        record=i - 1)
                return Problem("chain", f"prev does not match the hash of record {i - 1}, and "
                               "its own hash does not match the next record's prev: record "
                               "altered", record=i)
            if _substitution_matches(leaves, i - 1, bytes.fromhex(s.prev), heads, tree):
                return Problem(
                    "altered", f"its hash no longer matches the prev of record {i}; the signed "
                    "root confirms the original hash: record altered", record=i - 1)
            return Problem("chain", f"prev does not match the hash of record {i - 1}",
                           record=i)
    return None


def _substitution_matches(
    leaves: list[bytes], k: int, original: bytes, heads: list[TreeHead | None], tree: MerkleTree
) -> bool:
    """Would the first head covering record ``k`` verify if its leaf were ``original``?"""
    for h in heads:
        if h is not None and h.tree_size > k and h.tree_size <= len(leaves):
            if h.tree_size == k + 1:
                return h.last_leaf == original.hex()
            trial = list(leaves[: h.tree_size])
            trial[k] = original
            return MerkleTree(trial).root().hex() == h.root_hash
    return False


def _check_heads(
    rep: Report, heads: list[TreeHead | None], head_errors: dict[int, str], tree: MerkleTree,
    leaves: list[bytes], public_keys: PublicKeys | None, limit: int,
) -> None:
    n = len(leaves)
    prev: TreeHead | None = None
    for j, h in enumerate(heads):
        if h is None:
            rep.problems.append(Problem("head", head_errors[j], head=j))
            return
        if h.log_id != rep.log_id:
            rep.problems.append(Problem("head", f"log id {h.log_id} is not this log's "
                                        f"({rep.log_id})", head=j))
            return
        if public_keys is not None:
            why = h.verify(public_keys)
            if why is not None:
                rep.problems.append(Problem("signature", why, head=j))
                return
        if prev is not None and (h.tree_size <= prev.tree_size
                                 or h.timestamp_us < prev.timestamp_us):
            rep.problems.append(Problem("head", f"tree size {h.tree_size} / time not after the "
                                        f"previous head's ({prev.tree_size})", head=j))
            return
        if h.tree_size > n:
            rep.problems.append(Problem(
                "truncated", f"signed head {j} covers {h.tree_size} records but the log has "
                f"only {n}: records {n}..{h.tree_size - 1} are missing", record=n))
            return
        if h.tree_size > limit:
            return  # records beyond the first bad one cannot be vouched for
        start = prev.tree_size if prev is not None else 0
        if tree.root(h.tree_size).hex() != h.root_hash:
            if leaves[h.tree_size - 1].hex() != h.last_leaf:
                rep.problems.append(Problem(
                    "altered", f"its hash does not match the last leaf signed in head {j}",
                    record=h.tree_size - 1))
            else:
                rep.problems.append(Problem(
                    "altered", f"records {start}..{h.tree_size - 1} do not reproduce the root "
                    f"signed in head {j}", record=start))
            return
        root = bytes.fromhex(h.root_hash)
        proof = tree.inclusion_proof(h.tree_size - 1, h.tree_size)
        if not verify_inclusion(leaves[h.tree_size - 1], h.tree_size - 1, h.tree_size, proof,
                                root):
            rep.problems.append(Problem("proof", "inclusion proof of its last record fails",
                                        head=j))
            return
        if prev is not None:
            cproof = tree.consistency_proof(prev.tree_size, h.tree_size)
            if not verify_consistency(prev.tree_size, h.tree_size,
                                      bytes.fromhex(prev.root_hash), root, cproof):
                rep.problems.append(Problem("proof", f"not consistent with head {j - 1}",
                                            head=j))
                return
        rep.covered = h.tree_size
        prev = h


def verify_logs(
    directories: list[str | os.PathLike[str]], public_keys: PublicKeys, *, allow_tail: bool = False
) -> list[Report]:
    """``analyse`` each directory (e.g. one per worker) with signatures checked."""
    return [analyse(d, public_keys, allow_tail=allow_tail) for d in directories]
