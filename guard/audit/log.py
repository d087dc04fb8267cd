"""The append-only audit log writer: chain, batch, sign, group-commit.

``append``/``append_many`` encode and hash records at once (under a lock, because
each record carries the hash of the one before) and return their sequence numbers.
A background committer thread closes a batch when it reaches ``batch_max`` records
or when its oldest record has waited ``max_delay_s / 2`` (the other half is the
budget for writing, syncing and signing), writes all closed batches in one
``write``, syncs, extends the Merkle tree, signs one head over the whole log and
appends it to ``heads.jsonl``. Durability (``fsync``): ``"always"`` every append
call returns only once its records are durable and signed; ``"batch"`` (default)
records are synced before the head that covers them is written, and ``flush()``
waits for that; ``"none"`` leaves syncing to the OS (no crash guarantee).

Opening a directory validates it (chain, roots; signatures are ``guard audit
verify``'s job), cuts an unterminated final line (a torn write, which was never
committed) and signs a head over records a crash left unsigned.

Encoding, chain hashing and the Merkle frontier run in compiled code
(``guard.audit.accel``) when it is built, else in Python (``accel=False`` forces
that); the bytes on disk are the same either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from guard.audit import accel as _accel
from guard.audit.heads import TreeHead, sign_head
from guard.audit.keys import Signer
from guard.audit.merkle import Frontier
from guard.audit.records import AuditError, DecisionRecord, RecordEncoder
from guard.audit.verify import (
    FORMAT,
    HEADS_NAME,
    META_NAME,
    RECORDS_NAME,
    VERSION,
    analyse,
)

FSYNC_MODES = ("always", "batch", "none")


def _write_all(fd: int, *parts: bytes | memoryview) -> None:
    """Write every byte of ``parts`` (one writev; loops over short writes)."""
    views = [memoryview(p) for p in parts]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


class _Job:
    """A batch written to records.jsonl, waiting for its sync and signed head."""

    __slots__ = ("last_leaf", "root", "size", "t0")

    def __init__(self, size: int, root: bytes, last_leaf: bytes, t0: float) -> None:
        self.size, self.root, self.last_leaf, self.t0 = size, root, last_leaf, t0


class AuditLog:
    """Append-only, hash-chained, Merkle-batched, signed decision log in one directory.

    Use as a context manager; ``close()`` signs the last head. One writer per
    directory (an exclusive ``flock`` on ``DIR/.lock``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        signer: Signer,
        *,
        batch_max: int = 4096,
        max_delay_s: float = 0.1,
        fsync: str = "batch",
        accel: bool | None = None,
    ) -> None:
        if accel is None:
            accel = _accel.AVAILABLE
        elif accel and not _accel.AVAILABLE:
            raise ValueError("accel=True but guard._core was built without the audit hot path")
        self.accel = accel
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, not {fsync!r}")
        if batch_max < 1 or not max_delay_s > 0:
            raise ValueError("batch_max must be >= 1 and max_delay_s > 0")
        self.directory = Path(directory)
        self.signer = signer
        self.batch_max = batch_max
        self.max_delay_s = max_delay_s
        self.fsync = fsync
        self._seal_after = max_delay_s / 2
        self.max_observed_delay_s = 0.0  # oldest record's wait until its head was durable
        self.heads_signed = 0
        self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise AuditError(f"{self.directory} is open by another writer") from None
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._cond = threading.Condition()
        self._pending_data: list[bytes] = []  # newline-terminated lines, per append call
        self._pending_leaves: list[bytes] = []  # their packed 32-byte leaf hashes
        self._pending_n = 0
        self._pending_t0 = 0.0
        self._jobs: list[_Job] = []
        self._unsigned_t0: float | None = None  # first record of the oldest unsigned batch
        self._flushes = 0
        self._stop = False
        self._closed = False
        self._error: BaseException | None = None
        self._committer = threading.Thread(
            target=self._run, name=f"audit-commit-{self.log_id[:8]}", daemon=True
        )
        self._committer.start()

    # -- opening and repair -------------------------------------------------------------

    def _open(self) -> None:
        d = self.directory
        meta_path = d / META_NAME
        if not meta_path.exists():
            if (d / RECORDS_NAME).exists() or (d / HEADS_NAME).exists():
                raise AuditError(f"{meta_path} is missing but the directory holds a log")
            meta = {"format": FORMAT, "version": VERSION, "log_id": secrets.token_hex(16),
                    "created_us": time.time_ns() // 1000}
            tmp = d / f".{META_NAME}.tmp"
            tmp.write_bytes(json.dumps(meta).encode() + b"\n")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, meta_path)
            self._fsync_dir()
        rep = analyse(d, None, allow_tail=True, full=False)
        if not rep.ok:
            raise AuditError(f"{d}: refusing to append to a damaged log: {rep.problems[0]}")
        self.log_id = rep.log_id
        if rep.head_list and rep.head_list[-1].key_id == self.signer.key_id:
            # the heads were only hash-checked; the last one we can check ourselves
            why = rep.head_list[-1].verify({self.signer.key_id: self.signer.public_key})
            if why is not None:
                raise AuditError(f"{d}: refusing to append: last head: {why}")
        self.repaired_bytes = 0
        for name, torn in ((RECORDS_NAME, rep.torn_records), (HEADS_NAME, rep.torn_heads)):
            if torn:  # an interrupted write: never acknowledged, so never committed
                path = d / name
                size = path.stat().st_size
                os.truncate(path, size - torn)
                self.repaired_bytes += torn
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._rec_fd = os.open(d / RECORDS_NAME, flags, 0o640)
        self._head_fd = os.open(d / HEADS_NAME, flags, 0o640)
        if self.repaired_bytes:
            os.fsync(self._rec_fd)
            os.fsync(self._head_fd)
        self._fsync_dir()
        frontier = Frontier.of_tree(rep.tree) if rep.tree is not None else Frontier()
        self._frontier: Frontier | _accel.FastFrontier = (
            _accel.FastFrontier(frontier) if self.accel else frontier)
        self._seq = rep.records
        self._prev = rep.leaves[-1] if rep.leaves else bytes(32)  # raw leaf hash
        self._last_ts = rep.head_list[-1].timestamp_us if rep.head_list else 0
        self._committed = rep.records  # records durable and covered by a signed head
        self._encoder = RecordEncoder(self.signer.key_id)
        self.recovered_unsigned = rep.records - rep.covered
        if rep.records > rep.covered:  # a crash between the records and their head
            self._write_head(_Job(rep.records, self._frontier.root(), rep.leaves[-1], 0.0),
                             time.monotonic())

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- appending ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Records appended so far (the next sequence number)."""
        return self._seq

    @property
    def committed(self) -> int:
        """Records durable (per the fsync mode) and covered by a signed head."""
        return self._committed

    def append(self, record: DecisionRecord) -> int:
        """Append one record; returns its sequence number."""
        return self.append_many((record,))[0]

    def append_many(self, records: Sequence[DecisionRecord]) -> list[int]:
        """Append records in order; returns their sequence numbers.

        All-or-nothing: an invalid record raises ``AuditError`` and none of the
        batch enters the log.
        """
        if not isinstance(records, (list, tuple)):
            records = list(records)  # iterated more than once by the encoder
        with self._cond:
            self._check_usable()
            # keep the delay bound when the disk is slow: wait while a closed batch has
            # gone unsigned for half the budget (the committer is behind)
            while self._unsigned_t0 is not None and self._error is None and \
                    time.monotonic() - self._unsigned_t0 > self._seal_after:
                self._cond.wait(self._seal_after / 4)
            self._check_usable()
            first = self._seq
            data, leaves = self._encoder.encode_packed(records, first, self._prev,
                                                       fast=self.accel)
            n = len(leaves) // 32
            if not n:
                return []
            self._prev = leaves[-32:]
            self._seq = first + n
            now = time.monotonic()
            if not self._pending_n:
                self._pending_t0 = now
                self._cond.notify_all()  # the committer starts this batch's clock
            self._pending_data.append(data)
            self._pending_leaves.append(leaves)
            self._pending_n += n
            if self._pending_n >= self.batch_max or now - self._pending_t0 >= \
                    self._seal_after:
                self._close_batch()
        if self.fsync == "always":
            self.flush()
        return list(range(first, first + n))

    def _check_usable(self) -> None:
        if self._error is not None:
            raise AuditError(f"audit log failed, nothing more can be recorded: {self._error!r}")
        if self._closed:
            raise AuditError("audit log is closed")

    def _close_batch(self) -> None:
        """Write the pending records, extend the tree, queue a head (caller holds the lock).

        Done by the appending thread itself: it is CPU work either way, and handing
        it to another thread costs GIL switches; only syncing and signing, which
        wait on the disk, go to the committer.
        """
        chunks, leaves = self._pending_data, b"".join(self._pending_leaves)
        self._pending_data, self._pending_leaves, self._pending_n = [], [], 0
        try:
            # one writev of the append calls' buffers (joined when too many for IOV_MAX)
            _write_all(self._rec_fd, *(chunks if len(chunks) <= 64 else [b"".join(chunks)]))
        except BaseException as exc:  # fail closed: a torn write is repaired on reopen
            self._error = exc
            self._cond.notify_all()
            raise AuditError(f"cannot write the audit log: {exc!r}") from None
        self._frontier.extend_packed(leaves)
        self._jobs.append(_Job(self._frontier.size, self._frontier.root(), leaves[-32:],
                               self._pending_t0))
        if self._unsigned_t0 is None:
            self._unsigned_t0 = self._pending_t0
        self._cond.notify_all()

    def flush(self) -> None:
        """Return once everything appended so far is durable and covered by a signed head."""
        with self._cond:
            target = self._seq
            self._flushes += 1
            self._cond.notify_all()
            try:
                while self._committed < target and self._error is None:
                    self._cond.wait()
            finally:
                self._flushes -= 1
            if self._error is not None:
                raise AuditError(f"audit log failed: {self._error!r}")

    def close(self) -> None:
        """Flush, sign the last head, stop the committer and release the directory."""
        if self._closed:
            return
        try:
            if self._error is None:
                self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._stop = True
                self._cond.notify_all()
            self._committer.join()
            for fd in (self._rec_fd, self._head_fd, self._lock_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the committer ----------------------------------------------------------------------

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._jobs:
                    if self._pending_n:
                        left = self._pending_t0 + self._seal_after - time.monotonic()
                        if left <= 0 or self._flushes or self._stop:
                            try:
                                self._close_batch()
                            except AuditError:
                                return
                            break
                        cond.wait(left)
                    elif self._stop or self._error is not None:
                        return
                    else:
                        cond.wait()
                job = self._jobs[-1]  # group commit: one head covers every queued batch
                t0 = min(j.t0 for j in self._jobs)
                self._jobs.clear()
            try:
                if self.fsync != "none":
                    os.fdatasync(self._rec_fd)  # records durable before the head covering them
                self._write_head(job, t0)
            except BaseException as exc:  # fail closed: the log refuses everything after
                with cond:
                    self._error = exc
                    cond.notify_all()
                return
            with cond:
                self._committed = job.size
                self._unsigned_t0 = self._jobs[0].t0 if self._jobs else None
                cond.notify_all()

    def _write_head(self, job: _Job, t0: float) -> None:
        head: TreeHead = sign_head(
            self.signer, log_id=self.log_id, tree_size=job.size, root=job.root,
            last_leaf=job.last_leaf,
            timestamp_us=max(time.time_ns() // 1000, self._last_ts),  # never backwards
        )
        self._last_ts = head.timestamp_us
        _write_all(self._head_fd, head.to_line() + b"\n")
        if self.fsync != "none":
            os.fdatasync(self._head_fd)
        self.heads_signed += 1
        self.max_observed_delay_s = max(self.max_observed_delay_s, time.monotonic() - t0)
