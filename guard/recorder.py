"""Fill a capture file: from a broker topic (any ``transport.Connection``) or a generator.

``record_topic`` subscribes a connection to a topic and writes every delivered
message (with its MQTT 5 user properties and the time it arrived) until a count,
a duration or an idle time is reached; a message is acknowledged only once it is
in the writer. ``record_generated`` writes a seeded generator stream, stamped with
its scheduled times from a fixed start, so the same arguments give the same file
byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.capture import CapturedMessage, CaptureWriter

__all__ = ["GENERATED_START", "RecordStats", "generated_messages", "record_generated",
           "record_topic"]

#: Default start of a generated capture (2026-01-01T00:00:00Z): fixed for reproducibility.
GENERATED_START = 1767225600.0
REPO = Path(__file__).resolve().parents[1]


@dataclass(slots=True)
class RecordStats:
    """What a recording run wrote."""

    messages: int = 0
    bytes: int = 0
    stopped: str = ""


def _flow_of(topic: str, props: tuple[tuple[str, str], ...], default: str) -> str:
    for k, v in props:
        if k == "flow" and v:
            return v
    if default:
        return default
    parts = topic.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "flows" else topic


async def record_topic(conn: Any, topic: str, writer: CaptureWriter, *, flow: str = "",
                       count: int | None = None, duration: float | None = None,
                       idle: float | None = None, stop: asyncio.Event | None = None,
                       subscribe: bool = True, flush_s: float = 1.0) -> RecordStats:
    """Record messages delivered on ``conn`` for ``topic`` into ``writer``.

    The message id comes from the ``message-id`` user property (else, as the daemon
    does, ``sha256:<hex of the payload>``), the flow from the ``flow`` property (else
    ``flow``, else the topic). Stops after ``count`` messages, ``duration`` seconds,
    ``idle`` seconds without a message, when ``stop`` is set, or when the connection
    closes. Messages are acknowledged only once the block holding them is written
    (a full block, or every ``flush_s`` seconds), so a crash of the recorder loses
    nothing the broker considers delivered.
    """
    if subscribe:
        await conn.subscribe(topic)
    st = RecordStats()
    loop = asyncio.get_running_loop()
    end = loop.time() + duration if duration else None
    last = loop.time()
    unacked: list[Any] = []
    flushed = loop.time()

    async def settle() -> None:
        nonlocal flushed
        writer.flush()
        flushed = loop.time()
        for msg in unacked:
            await conn.ack(msg)
        unacked.clear()

    try:
        while count is None or st.messages < count:
            if stop is not None and stop.is_set():
                st.stopped = "stopped"
                break
            now = loop.time()
            if end is not None and now >= end:
                st.stopped = "duration"
                break
            if idle is not None and now - last >= idle:
                st.stopped = "idle"
                break
            if unacked and now - flushed >= flush_s:
                await settle()
            waits = [w for w in (idle and last + idle - now, end and end - now,
                                 0.5 if stop is not None else None,
                                 flushed + flush_s - now if unacked else None) if w is not None]
            try:
                m = await conn.get(max(0.0, min(waits)) if waits else None)
            except TimeoutError:
                continue
            except Exception as exc:  # the connection closed: keep what we have
                st.stopped = f"connection: {type(exc).__name__}"
                break
            last = loop.time()
            props = tuple(m.properties)
            # the daemon's convention (guard/relay.py), so that --audit finds the record
            mid = next((v for k, v in props if k == "message-id"), None)
            if mid is None:
                mid = "sha256:" + hashlib.sha256(m.payload).hexdigest()
            writer.write(CapturedMessage(mid, _flow_of(m.topic, props, flow), m.topic,
                                         time.time(), props, m.payload))
            unacked.append(m)
            st.messages += 1
            st.bytes += len(m.payload)
            if not writer.pending:  # the writer just wrote a full block
                await settle()
        else:
            st.stopped = "count"
    finally:
        if st.stopped.startswith("connection"):
            writer.flush()  # nothing to acknowledge on a closed connection
        else:
            await settle()
    return st


def generated_messages(flow: str, n: int, seed: int, *, rate_per_s: float | None = None,
                       json_share: float = 0.0, start: float = GENERATED_START,
                       terms: Path | None = None) -> list[CapturedMessage]:
    """``n`` messages of the seeded generator for ``flow`` (a flow of the shipped topology).

    ``rate_per_s`` spaces them (Poisson arrivals) from ``start``; by default they span
    one day.
    """
    from guard.domains.generators import Generator, GeneratorConfig, targets_from_topology
    from guard.domains.topology import load_topology

    targets = {t.name: t for t in targets_from_topology(load_topology())}
    if flow not in targets:
        raise ValueError(f"unknown flow {flow!r} (known: {', '.join(sorted(targets))})")
    rate = rate_per_s or max(n, 1) / 86400.0
    cfg = GeneratorConfig(rate_per_s=rate, poisson=True, json_share=json_share)
    gen = Generator(targets[flow], seed, terms or REPO / "policies/terms/codewords.txt", cfg)
    return [CapturedMessage(m.message_id, m.flow, m.topic, round(start + m.at, 6),
                            tuple(m.properties), m.payload) for m in gen.take(n)]


def record_generated(path: str | Path, flow: str, n: int, seed: int, *,
                     rate_per_s: float | None = None, json_share: float = 0.0,
                     start: float = GENERATED_START, overwrite: bool = False,
                     compress: bool = True) -> RecordStats:
    """Write a capture of ``n`` generated messages (deterministic for given arguments)."""
    msgs = generated_messages(flow, n, seed, rate_per_s=rate_per_s, json_share=json_share,
                              start=start)
    meta = {"source": "generator", "flow": flow, "messages": n, "seed": seed,
            "rate_per_s": rate_per_s, "json_share": json_share, "start": start}
    with CaptureWriter(path, meta, created=start, overwrite=overwrite, compress=compress) as w:
        w.write_many(msgs)
    return RecordStats(len(msgs), sum(len(m.payload) for m in msgs), "count")
