"""What the guard already decided and delivered: rebuilt at start, kept while running.

The audit log is the durable record of every decision; a small journal next to it
(``delivered.log``, one JSON line ``[flow, message_id]`` per message whose release the
low-side broker acknowledged) says which releases are known to have arrived. Both are
read at start so that a message redelivered by the high-side broker after a crash or
a reconnect is recognised by its message id:

- decided and delivered (or decided not to release): acknowledged, nothing else;
- decided release/redact but not known delivered: published again under the SAME
  decision (a downstream duplicate at worst, never a second decision);
- never seen: decided now.

The journal is written without fsync on purpose: losing its tail (a machine crash)
only turns "delivered" back into "maybe delivered", which costs a duplicate, never a
loss. Entries are bounded by ``window`` (oldest forgotten first).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELEASING = ("release", "redact")
JOURNAL_NAME = "delivered.log"


@dataclass(slots=True)
class Decided:
    """One earlier decision about a message."""

    decision_id: str
    verdict: str
    input_sha256: str
    output_sha256: str | None
    policy_sha256: str
    delivered: bool = False

    @property
    def releasing(self) -> bool:
        """True when the decision released (or redacted) the message."""
        return self.verdict in RELEASING


class DecidedIndex:
    """``(flow, message_id) -> Decided`` for the most recent ``window`` messages.

    Entries are kept as plain tuples of strings, which the garbage collector stops
    tracking after its first look: a window of a million ``Decided`` objects would
    be traversed by every full collection (tens of ms of pause, the p99's worst
    enemy in a long run); ``get`` builds the ``Decided`` it returns.
    """

    def __init__(self, window: int = 1_000_000) -> None:
        self.window = window
        self._entries: OrderedDict[tuple[str, str], tuple[Any, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, flow: str, message_id: str) -> Decided | None:
        """The earlier decision about this message, if any (a copy: change it with
        ``add`` or ``mark_delivered``)."""
        t = self._entries.get((flow, message_id))
        return None if t is None else Decided(*t)

    def add(self, flow: str, message_id: str, d: Decided) -> None:
        """Remember a decision (the latest one wins)."""
        key = (flow, message_id)
        self._entries[key] = (d.decision_id, d.verdict, d.input_sha256, d.output_sha256,
                              d.policy_sha256, d.delivered)
        self._entries.move_to_end(key)
        while len(self._entries) > self.window:
            self._entries.popitem(last=False)

    def mark_delivered(self, keys: Iterable[tuple[str, str]]) -> None:
        """Record that these releases were acknowledged by the low-side broker."""
        entries = self._entries
        for key in keys:
            t = entries.get(key)
            if t is not None and not t[5]:
                entries[key] = (*t[:5], True)  # same place in the order

    def load_audit(self, records_path: Path) -> int:
        """Add every decision in an audit ``records.jsonl``; returns the count read."""
        n = 0
        try:
            fh = open(records_path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0
        with fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn tail: never committed
                try:
                    r = json.loads(line)
                    d = Decided(r["decision_id"], r["verdict"], r["input_sha256"],
                                r["output_sha256"], r["policy_sha256"])
                    self.add(r["flow"], r["message_id"], d)
                except (ValueError, KeyError, TypeError):
                    continue  # `guard audit verify` reports damage; here it is just skipped
                n += 1
        return n

    def load_journal(self, path: Path) -> int:
        """Mark the releases listed in a delivery journal; returns the count read."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        keys = []
        for line in data.split(b"\n"):
            try:
                flow, mid = json.loads(line)
            except (ValueError, TypeError):
                continue  # torn or empty line
            if isinstance(flow, str) and isinstance(mid, str):
                keys.append((flow, mid))
        self.mark_delivered(keys)
        return len(keys)


_encode_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class DeliveryJournal:
    """Append-only ``delivered.log``; one ``write`` per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def record(self, keys: Iterable[tuple[str, str]]) -> None:
        """Note releases acknowledged downstream (survives a kill of this process)."""
        # the bytes json.dumps([flow, id]) gives, without its per-call overhead
        enc = _encode_str
        data = "".join(f"[{enc(f)}, {enc(m)}]\n" for f, m in keys)
        if data:
            os.write(self._fd, data.encode("ascii"))

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
