"""In-process MQTT-like transport: the embedded default where no broker binary exists.

Design (asyncio, one event loop): an ``InProcessBroker`` per domain holds the users
(the same ``BrokerUser`` objects, hence the same ACL, that configure mosquitto), the
sessions and their queues; ``InProcessClient`` is a connection with the small
interface the daemon needs from any transport::

    await conn.publish(topic, payload, properties)   # returns once "PUBACK"ed
    await conn.subscribe(filter)
    async for message in conn.messages(): ...; await conn.ack(message)

Semantics follow mosquitto 2 with MQTT 5 and QoS 1, checked against the real broker in
the tests:

- authentication by user name and password, no anonymous clients;
- a publish to a topic the user may not write is refused with ``NotAuthorized``
  (mosquitto's PUBACK reason 135) and reaches nobody;
- subscriptions are always granted, and each message is delivered only if the
  subscriber's user may read its topic (mosquitto checks read access per message);
- ``+``/``#`` filters and ``$share/<group>/<filter>`` shared subscriptions (one member
  of the group receives each message, round robin);
- at-least-once: a delivered message stays in flight until ``ack``; at most
  ``receive_maximum`` are in flight per session; when a session with
  ``clean_start=False`` reconnects, its unacknowledged messages are delivered again
  with ``dup=True`` (MQTT 4.4), then the queued ones;
- a session's queue holds at most ``max_queued_messages``; beyond that mosquitto drops
  messages silently, which ``overflow="drop"`` reproduces (counted in
  ``InProcessBroker.dropped``), while ``overflow="block"`` makes publishers wait;
- MQTT 5 user properties travel with every message unchanged.

Where this differs from mosquitto on purpose: a message matching several of one
session's subscriptions is delivered once (mosquitto sends one copy per
subscription; MQTT 5 allows either), and nothing is persisted to disk: ``restart``
drops connections but keeps sessions, like a broker restarted with persistence.
The broker is not thread-safe: use it from the event loop that runs the clients.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from guard.domains.broker import BrokerUser
from guard.domains.topics import matches, valid_filter, valid_topic

Properties = tuple[tuple[str, str], ...]


class TransportError(RuntimeError):
    """A transport operation failed; the operation did not take effect."""


class NotAuthorized(TransportError):
    """Bad credentials, or a publish to a topic the user may not write (reason 135)."""


class ConnectionLost(TransportError):
    """The connection closed (client close or broker restart) while in use."""


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message; pass it back to ``ack`` once it is safely handled."""

    topic: str
    payload: bytes
    properties: Properties = ()
    qos: int = 1
    dup: bool = False
    mid: int = 0

    def property(self, key: str) -> str | None:
        """The first user property called ``key``, or None."""
        for k, v in self.properties:
            if k == key:
                return v
        return None


class Connection(Protocol):
    """What the daemon, generators and sinks need from any transport."""

    async def publish(
        self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]] = ()
    ) -> None: ...

    async def subscribe(self, pattern: str) -> None: ...

    async def ack(self, message: Message) -> None: ...

    def messages(self) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...


def _permitted(patterns: Sequence[str], topic: str) -> bool:
    return any(matches(p, topic) for p in patterns)


def _check_properties(props: Sequence[tuple[str, str]]) -> Properties:
    out = []
    for item in props:
        if (
            not isinstance(item, tuple | list)
            or len(item) != 2
            or not all(isinstance(x, str) for x in item)
        ):
            raise TransportError(f"user property must be a (str, str) pair, got {item!r}")
        out.append((item[0], item[1]))
    return tuple(out)


@dataclass
class _Session:
    client_id: str
    user: BrokerUser
    subscriptions: set[str] = field(default_factory=set)
    queue: deque[Message] = field(default_factory=deque)
    inflight: dict[int, Message] = field(default_factory=dict)
    mids: itertools.count = field(default_factory=lambda: itertools.count(1))
    client: InProcessClient | None = None


class InProcessBroker:
    """One domain's broker in memory, configured with the same users as mosquitto."""

    def __init__(
        self,
        name: str,
        users: Sequence[BrokerUser],
        *,
        max_queued_messages: int = 100_000,
        receive_maximum: int = 1000,
        max_packet_bytes: int = 16 * 1024 * 1024,
        overflow: str = "drop",
    ) -> None:
        if overflow not in ("drop", "block"):
            raise ValueError("overflow must be 'drop' or 'block'")
        self.name = name
        self.users = {u.name: u for u in users}
        self.max_queued_messages = max_queued_messages
        self.receive_maximum = receive_maximum
        self.max_packet_bytes = max_packet_bytes
        self.overflow = overflow
        self.published = 0
        self.refused = 0
        self.dropped = 0
        self._sessions: dict[str, _Session] = {}
        self._shared_rr: dict[tuple[str, str], int] = {}
        self._space = asyncio.Condition() if overflow == "block" else None

    # -- connections ------------------------------------------------------------------
    def credentials(self, user: str) -> tuple[str, str]:
        """``(username, password)`` of a configured user."""
        u = self.users[user]
        return u.name, u.password

    async def connect(
        self,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
    ) -> InProcessClient:
        """Authenticate and open a connection (a session resumes unless ``clean_start``)."""
        user = self.users.get(username)
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise NotAuthorized(f"{self.name}: bad user name or password")
        cid = client_id or f"{username}-{id(object()):x}"
        old = self._sessions.get(cid)
        if old is not None and old.client is not None:
            old.client._lost()  # MQTT: a second connection with the same id takes over
            old.client = None
        if old is None or clean_start or old.user.name != username:
            session = _Session(cid, user)
            self._sessions[cid] = session
        else:
            session = old
        client = InProcessClient(self, session)
        session.client = client
        # Redeliver what was in flight when the previous connection went away.
        for mid, msg in sorted(session.inflight.items()):
            session.inflight[mid] = replace(msg, dup=True)
            client._queue.put_nowait(session.inflight[mid])
        self._pump(session)
        return client

    def restart(self) -> None:
        """Drop every connection but keep the sessions (a restart with persistence)."""
        for s in self._sessions.values():
            if s.client is not None:
                s.client._lost()
                s.client = None

    def queued(self, client_id: str) -> int:
        """Messages waiting for (queued or in flight to) the session ``client_id``."""
        s = self._sessions.get(client_id)
        return 0 if s is None else len(s.queue) + len(s.inflight)

    # -- routing ----------------------------------------------------------------------
    def _targets(self, topic: str) -> list[_Session]:
        plain: list[_Session] = []
        shared: dict[tuple[str, str], list[_Session]] = {}
        for s in self._sessions.values():
            if not _permitted(s.user.read, topic):
                continue
            hit = False
            for sub in s.subscriptions:
                if sub.startswith("$share/"):
                    _, group, filt = sub.split("/", 2)
                    if matches(filt, topic):
                        shared.setdefault((group, filt), []).append(s)
                elif matches(sub, topic):
                    hit = True
            if hit:
                plain.append(s)
        chosen = list(plain)
        for key, members in shared.items():
            # Prefer connected members, as brokers do; round robin among them.
            live = [m for m in members if m.client is not None] or members
            n = self._shared_rr.get(key, 0)
            self._shared_rr[key] = n + 1
            pick = live[n % len(live)]
            if pick not in chosen:
                chosen.append(pick)
        return chosen

    async def _publish(
        self, session: _Session, topic: str, payload: bytes, props: Properties
    ) -> None:
        if not valid_topic(topic):
            raise TransportError(f"{self.name}: invalid topic name {topic!r}")
        if len(payload) > self.max_packet_bytes:
            raise TransportError(
                f"{self.name}: payload of {len(payload)} bytes exceeds max_packet_size"
            )
        if not _permitted(session.user.write, topic):
            self.refused += 1
            raise NotAuthorized(f"{self.name}: {session.user.name} may not publish to {topic}")
        targets = self._targets(topic)
        if self._space is not None:
            async with self._space:
                await self._space.wait_for(
                    lambda: all(len(t.queue) < self.max_queued_messages for t in targets)
                )
        self.published += 1
        for t in targets:
            if len(t.queue) >= self.max_queued_messages:
                self.dropped += 1
                continue
            t.queue.append(Message(topic, payload, props, 1, False, next(t.mids)))
            self._pump(t)

    def _pump(self, s: _Session) -> None:
        """Move queued messages into flight while the receive maximum allows."""
        if s.client is None:
            return
        moved = False
        while s.queue and len(s.inflight) < self.receive_maximum:
            msg = s.queue.popleft()
            s.inflight[msg.mid] = msg
            s.client._queue.put_nowait(msg)
            moved = True
        if moved and self._space is not None:
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        assert self._space is not None
        async with self._space:
            self._space.notify_all()

    def _ack(self, s: _Session, mid: int) -> None:
        s.inflight.pop(mid, None)
        self._pump(s)


_CLOSED = Message("", b"", (), 0, False, -1)


class InProcessClient:
    """A connection to an ``InProcessBroker`` (see ``Connection``)."""

    def __init__(self, broker: InProcessBroker, session: _Session) -> None:
        self._broker = broker
        self._session = session
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._open = True

    @property
    def client_id(self) -> str:
        """The session's client identifier."""
        return self._session.client_id

    @property
    def connected(self) -> bool:
        """False after ``close`` or when the broker dropped the connection."""
        return self._open

    def _require_open(self) -> None:
        if not self._open:
            raise ConnectionLost(f"{self._broker.name}: connection {self.client_id} is closed")

    def _lost(self) -> None:
        self._open = False
        self._queue.put_nowait(_CLOSED)

    async def publish(
        self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Publish at QoS 1; returns when the broker has taken the message."""
        self._require_open()
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TransportError("payload must be bytes")
        await self._broker._publish(
            self._session, topic, bytes(payload), _check_properties(properties)
        )
        # A network publish is a suspension point; without one a publishing loop would
        # starve every other task of the event loop.
        await asyncio.sleep(0)

    async def subscribe(self, pattern: str) -> None:
        """Subscribe at QoS 1 (granted; delivery still needs read access per topic)."""
        self._require_open()
        filt = pattern.split("/", 2)[2] if pattern.startswith("$share/") else pattern
        if (
            not valid_filter(filt)
            or (pattern.startswith("$share/") and pattern.count("/") < 2)
            or (pattern.startswith("$") and not pattern.startswith("$share/"))
        ):
            raise TransportError(f"{self._broker.name}: invalid topic filter {pattern!r}")
        self._session.subscriptions.add(pattern)

    async def unsubscribe(self, pattern: str) -> None:
        """Remove a subscription (no error if absent)."""
        self._require_open()
        self._session.subscriptions.discard(pattern)

    async def ack(self, message: Message) -> None:
        """Acknowledge a delivered message (PUBACK): it will not be delivered again."""
        self._require_open()
        self._broker._ack(self._session, message.mid)

    async def get(self, timeout: float | None = None) -> Message:
        """The next delivered message; ``TimeoutError`` after ``timeout`` seconds."""
        self._require_open()
        msg = await asyncio.wait_for(self._queue.get(), timeout)
        if msg is _CLOSED:
            raise ConnectionLost(f"{self._broker.name}: connection {self.client_id} closed")
        return msg

    @property
    def waiting(self) -> int:
        """Messages delivered to this connection and not yet taken by ``get``."""
        return self._queue.qsize()

    def get_nowait(self) -> Message | None:
        """A message already delivered and waiting, or None (``ConnectionLost`` if closed)."""
        self._require_open()
        try:
            msg = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if msg is _CLOSED:
            raise ConnectionLost(f"{self._broker.name}: connection {self.client_id} closed")
        return msg

    async def messages(self) -> AsyncIterator[Message]:
        """Delivered messages until the connection closes."""
        while True:
            try:
                yield await self.get()
            except ConnectionLost:
                return

    async def close(self) -> None:
        """Disconnect; the session (and its unacked messages) stays for a reconnect."""
        if self._open:
            self._lost()
            if self._session.client is self:
                self._session.client = None

    async def __aenter__(self) -> InProcessClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
