"""The append-only audit log writer: chain, batch, sign, group-commit.

``append``/``append_many`` encode and hash records at once (under a lock, because
each record carries the hash of the one before) and return their sequence numbers.
A background committer thread closes a batch when it reaches ``batch_max`` records
or when its oldest record has waited ``max_delay_s / 2`` (the other half is the
budget for writing, syncing and signing), writes all closed batches in one
``write``, syncs, extends the Merkle tree, signs one head over the whole log and
appends it to ``heads.jsonl``; a second thread syncs ``heads.jsonl`` in the
background (within ``HEAD_SYNC_S``, at once when ``flush()`` or ``close()`` waits),
so that the next batch's records sync need not wait for it. Durability (``fsync``):
``"always"`` every append call returns only once its records are durable and signed;
``"batch"`` (default) records are synced before the head that covers them is
written, and ``flush()`` waits for both to be durable; ``"none"`` leaves syncing to
the OS (no crash guarantee).

``flush_future()`` is the non-blocking form for a caller that must not wait in a
thread (the guard's event loop), and ``commit_many()`` appends and commits at once
(the batch closes in the caller's thread: one wake-up of the committer, and no wait
for a slow disk, since the caller waits for the future). Their future completes once
the records are durable and a signed head covering them is written, without waiting
for that head's own sync: a head lost with the page cache (a machine crash, not a
killed process) is signed again when the log is reopened, since its records are
durable, so nothing acknowledged on that basis is lost.

Opening a directory validates it (chain, roots; signatures are ``guard audit
verify``'s job), cuts an unterminated final line (a torn write, which was never
committed) and signs a head over records a crash left unsigned.

Encoding, chain hashing and the Merkle frontier run in compiled code
(``guard.audit.accel``) when it is built, else in Python (``accel=False`` forces
that); the bytes on disk are the same either way.
"""

from __future__ import annotations

import concurrent.futures
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
HEAD_SYNC_S = 0.05  # the longest a written head waits for its sync (none waits on it)


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
        # one lock, three conditions, so that each wake-up reaches only the thread it
        # is for: the committer (_cond), the head syncer (_head_cond), and whoever waits
        # for a commit or a sync (_done_cond: flush(), appends held back by a slow disk)
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._head_cond = threading.Condition(lock)
        self._done_cond = threading.Condition(lock)
        self._pending_data: list[bytes] = []  # newline-terminated lines, per append call
        self._pending_leaves: list[bytes] = []  # their packed 32-byte leaf hashes
        self._pending_n = 0
        self._pending_t0 = 0.0
        self._jobs: list[_Job] = []
        self._unsigned_t0: float | None = None  # first record of the oldest unsigned batch
        self._flushes = 0
        # flush_future() callers: (records to cover, future), completed by the committer
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._head_written = self._committed  # tree size of the last head written
        self._head_synced = self._committed  # ... and of the last head known durable
        self._stop = False
        self._closed = False
        self._error: BaseException | None = None
        self._committer = threading.Thread(
            target=self._run, name=f"audit-commit-{self.log_id[:8]}", daemon=True
        )
        self._committer.start()
        self._head_syncer = threading.Thread(
            target=self._sync_heads, name=f"audit-heads-{self.log_id[:8]}", daemon=True
        )
        self._head_syncer.start()

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
                self._done_cond.wait(self._seal_after / 4)
            self._check_usable()
            first = self._seq
            n = self._queue(records)
            if not n:
                return []
            if self._pending_n >= self.batch_max or \
                    time.monotonic() - self._pending_t0 >= self._seal_after:
                self._close_batch()
        if self.fsync == "always":
            self.flush()
        return list(range(first, first + n))

    def _queue(self, records: Sequence[DecisionRecord]) -> int:
        """Encode records onto the chain and add them to the open batch (lock held);
        returns how many. Raises ``AuditError`` for an invalid record, queuing none."""
        data, leaves = self._encoder.encode_packed(records, self._seq, self._prev,
                                                   fast=self.accel)
        n = len(leaves) // 32
        if n:
            self._prev = leaves[-32:]
            self._seq += n
            if not self._pending_n:
                self._pending_t0 = time.monotonic()
                self._cond.notify()  # the committer starts this batch's clock
            self._pending_data.append(data)
            self._pending_leaves.append(leaves)
            self._pending_n += n
        return n

    def commit_many(self, records: Sequence[DecisionRecord]) -> concurrent.futures.Future[None]:
        """Append records and commit them at once; returns ``flush_future()``'s future.

        The batch closes now, written by the calling thread, and the committer is
        woken once to sync and sign it. Unlike ``append_many`` it never waits for a
        slow disk: its caller bounds what it has in flight and waits for the future.
        All-or-nothing, and ``AuditError`` as for ``append_many``.
        """
        if not isinstance(records, (list, tuple)):
            records = list(records)  # iterated more than once by the encoder
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            self._check_usable()
            if records:
                self._queue(records)
            if self._pending_n:
                self._close_batch()  # wakes the committer
            if self._committed >= self._seq:
                fut.set_result(None)
            else:
                self._waiters.append((self._seq, fut))
        return fut

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
            self._notify_all()
            raise AuditError(f"cannot write the audit log: {exc!r}") from None
        self._frontier.extend_packed(leaves)
        self._jobs.append(_Job(self._frontier.size, self._frontier.root(), leaves[-32:],
                               self._pending_t0))
        if self._unsigned_t0 is None:
            self._unsigned_t0 = self._pending_t0
        self._cond.notify()

    def flush(self) -> None:
        """Return once everything appended so far is durable and covered by a durable
        signed head."""
        with self._cond:
            target = self._seq
            self._flushes += 1
            self._cond.notify()
            self._head_cond.notify()  # a written head waiting for its sync: now
            try:
                while self._head_synced < target and self._error is None:
                    self._done_cond.wait()
            finally:
                self._flushes -= 1
            if self._error is not None:
                raise AuditError(f"audit log failed: {self._error!r}")

    def flush_future(self) -> concurrent.futures.Future[None]:
        """A future that completes once everything appended so far is durable and
        covered by a signed head (written; its own sync follows in the background, see
        the module docstring), or fails with ``AuditError``. Never blocks."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            if self._error is not None:
                fut.set_exception(AuditError(f"audit log failed: {self._error!r}"))
            elif self._committed >= self._seq:
                fut.set_result(None)
            else:
                self._waiters.append((self._seq, fut))
                self._cond.notify()  # the committer closes the pending batch now
        return fut

    def _settle_waiters(self) -> list[concurrent.futures.Future[None]]:
        """Take the waiters the committed size now covers (caller holds the lock)."""
        done = [f for t, f in self._waiters if t <= self._committed]
        if done:
            self._waiters = [(t, f) for t, f in self._waiters if t > self._committed]
        return done

    def _notify_all(self) -> None:
        """Wake every waiting thread (an error or the end; caller holds the lock)."""
        for c in (self._cond, self._head_cond, self._done_cond):
            c.notify_all()

    def _fail_waiters(self) -> None:
        with self._cond:
            waiters, self._waiters = self._waiters, []
            why = f"audit log failed: {self._error!r}" if self._error else "audit log closed"
        for _, f in waiters:
            f.set_exception(AuditError(why))

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
                self._notify_all()
            self._committer.join()
            with self._cond:
                self._head_cond.notify()  # the head syncer ends once the committer has
            self._head_syncer.join()
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
        try:
            self._commit_loop()
        finally:  # whatever ended the committer, nobody waits for it forever
            self._fail_waiters()
            with self._cond:
                self._notify_all()

    def _commit_loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._jobs:
                    if self._pending_n:
                        left = self._pending_t0 + self._seal_after - time.monotonic()
                        if left <= 0 or self._flushes or self._waiters or self._stop:
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
                self._write_head(job, t0, sync=False)  # synced by _sync_heads
            except BaseException as exc:  # fail closed: the log refuses everything after
                with cond:
                    self._error = exc
                    self._notify_all()
                return
            with cond:
                self._committed = self._head_written = job.size
                self._unsigned_t0 = self._jobs[0].t0 if self._jobs else None
                done = self._settle_waiters()
                if self._flushes or self._stop:  # someone waits for the head's sync
                    self._head_cond.notify()
                self._done_cond.notify_all()
            for f in done:  # outside the lock: their callbacks run here
                f.set_result(None)

    def _sync_heads(self) -> None:
        """Sync ``heads.jsonl`` after the committer wrote heads (the head syncer thread):
        every ``HEAD_SYNC_S``, or at once when ``flush()`` or ``close()`` waits for it
        (one sync covers every head written before it; fewer syncs, fewer wake-ups)."""
        cond = self._head_cond
        while True:
            with cond:
                pending = self._head_written > self._head_synced
                if not pending or not (self._flushes or self._stop):
                    if not pending and self._stop and not self._committer.is_alive():
                        return
                    cond.wait(HEAD_SYNC_S)
                if self._error is not None:
                    return
                if self._head_written <= self._head_synced:
                    continue
                target = self._head_written
            try:
                if self.fsync != "none":
                    os.fdatasync(self._head_fd)
            except BaseException as exc:  # fail closed, as for the records
                with cond:
                    self._error = exc
                    self._notify_all()
                self._fail_waiters()
                return
            with cond:
                self._head_synced = target
                self._done_cond.notify_all()

    def _write_head(self, job: _Job, t0: float, *, sync: bool = True) -> None:
        head: TreeHead = sign_head(
            self.signer, log_id=self.log_id, tree_size=job.size, root=job.root,
            last_leaf=job.last_leaf,
            timestamp_us=max(time.time_ns() // 1000, self._last_ts),  # never backwards
        )
        self._last_ts = head.timestamp_us
        _write_all(self._head_fd, head.to_line() + b"\n")
        if sync and self.fsync != "none":
            os.fdatasync(self._head_fd)
        self.heads_signed += 1
        self.max_observed_delay_s = max(self.max_observed_delay_s, time.monotonic() - t0)
