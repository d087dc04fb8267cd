"""A real-broker connection with the same interface as the in-process transport.

``MqttConnection`` is a thin asyncio wrapper over paho-mqtt (MQTT 5, QoS 1, manual
acknowledgement): ``publish`` returns once the broker's PUBACK arrived (reason >= 0x80
raises, 135 as ``NotAuthorized``), incoming messages are acknowledged only by ``ack``,
and a session opened with ``clean_start=False`` gets its unacknowledged messages again
after a reconnect. paho runs its network loop in its own thread; results cross into
the event loop with ``call_soon_threadsafe``. It is the reference against which the
in-process transport is tested, and a starting point for the daemon (which may choose
another client after measuring, see issue 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from guard.domains.transport import ConnectionLost, Message, NotAuthorized, TransportError

_NOT_AUTHORIZED = (0x86, 0x87)  # bad user name or password, not authorized
_ids = itertools.count(1)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise TransportError("a user property is longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


class _UserProperties(Properties):
    """PUBLISH properties made only of user properties, encoded once up front.

    paho's generic encoder costs about 20 us per property (a release stamp has ten);
    paho only ever calls ``pack()`` on the object, so the bytes are built here, in the
    MQTT 5 layout (identifier 0x26, then two length-prefixed UTF-8 strings).
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        body = b"".join(b"\x26" + _utf8(k) + _utf8(v) for k, v in pairs)
        object.__setattr__(self, "_packed", _varint(len(body)) + body)
        object.__setattr__(self, "_pairs", [tuple(p) for p in pairs])

    def pack(self) -> bytes:
        return self._packed  # type: ignore[attr-defined,no-any-return]

    def __str__(self) -> str:
        return f"UserProperty={self._pairs}"  # type: ignore[attr-defined]


class MqttConnection:
    """One authenticated MQTT 5 connection (see ``transport.Connection``)."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._c = client
        self._loop = loop
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._early: dict[int, int] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._early_subacks: dict[int, list[int]] = {}
        self._open = True
        self._closing = False
        # Client-side bound on delivered-but-not-taken messages: when it is reached,
        # paho's network thread waits, stops reading the socket, and TCP flow control
        # holds the rest at the broker. Needed because mosquitto 2.0.11 does not keep
        # to the MQTT 5 Receive Maximum once acknowledgements flow (measured).
        self._room: threading.Semaphore | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 3600,
        timeout_s: float = 10.0,
        receive_maximum: int | None = None,
        max_waiting: int | None = None,
    ) -> MqttConnection:
        """Connect and wait for CONNACK; ``NotAuthorized`` for refused credentials.

        ``receive_maximum`` (MQTT 5) caps the unacknowledged messages the broker sends
        us at once: the back-pressure bound of a consumer that acks late.
        ``max_waiting`` bounds the messages held here until ``get`` takes them (the
        network thread stops reading beyond it).
        """
        loop = asyncio.get_running_loop()
        cid = client_id or f"{username}-{next(_ids)}-{id(loop):x}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.username_pw_set(username, password)
        c.manual_ack_set(True)
        c.max_inflight_messages_set(1000)
        self = cls(c, loop)
        if max_waiting is not None:
            self._room = threading.Semaphore(max_waiting)
        connected: asyncio.Future[int] = loop.create_future()

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            if not connected.done():
                loop.call_soon_threadsafe(
                    lambda: connected.done() or connected.set_result(reason_code.value)
                )

        c.on_connect = on_connect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        if receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
        try:
            await loop.run_in_executor(
                None, lambda: c.connect(host, port, clean_start=clean_start, properties=props)
            )
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {exc}") from None
        c.loop_start()
        try:
            code = await asyncio.wait_for(connected, timeout_s)
        except TimeoutError:
            c.loop_stop()
            raise ConnectionLost(f"{host}:{port}: no CONNACK") from None
        if code != 0:
            c.loop_stop()
            self._open = False
            if code in _NOT_AUTHORIZED:
                raise NotAuthorized(f"{host}:{port}: connection refused (reason {code})")
            raise TransportError(f"{host}:{port}: connection refused (reason {code})")
        return self

    # -- paho thread callbacks ---------------------------------------------------------
    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        props = getattr(msg.properties, "UserProperty", None) or []
        m = Message(msg.topic, bytes(msg.payload), tuple(props), msg.qos, bool(msg.dup), msg.mid)
        room = self._room
        if room is not None:
            while not room.acquire(timeout=0.1):
                if self._closing:
                    return  # never acknowledged: the broker delivers it again
        # the event loop may be gone (shutdown): dropped here, delivered again later
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, m)

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        codes = [r.value for r in reason_codes]
        with self._lock:
            fut = self._subacks.pop(mid, None)
            if fut is None:
                self._early_subacks[mid] = codes
                return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(codes))

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, props: Any
    ) -> None:
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None:
                self._early[mid] = reason_code.value
                return
        self._loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(reason_code.value))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._open = False
        # paho's threaded loop would reconnect by itself with the same client id; a
        # dead connection stays dead, the owner opens a new one (and sees every redelivery)
        if hasattr(client, "_thread_terminate"):
            client._thread_terminate = True
        with contextlib.suppress(RuntimeError):  # the event loop may be closed already
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(
                    lambda f=fut: f.done() or f.set_exception(ConnectionLost("disconnected"))
                )

    # -- the Connection interface -----------------------------------------------------
    async def publish(
        self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Publish at QoS 1 and wait for PUBACK."""
        if not self._open:
            raise ConnectionLost("connection closed")
        props = _UserProperties(properties) if properties else None
        fut: asyncio.Future[int] = self._loop.create_future()
        # paho may call on_publish (which takes self._lock) while holding its own locks,
        # so publish outside self._lock; a PUBACK that beats us lands in _early.
        info = self._c.publish(topic, bytes(payload), qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"publish failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            if info.mid in self._early:
                fut.set_result(self._early.pop(info.mid))
            else:
                self._pending[info.mid] = fut
        code = await fut
        if code == 135:
            raise NotAuthorized(f"not authorized to publish to {topic}")
        if code >= 0x80:
            raise TransportError(f"publish to {topic} refused (reason {code})")

    async def subscribe(self, pattern: str) -> None:
        """Subscribe at QoS 1 (delivery still needs read access per topic)."""
        done: asyncio.Future[list[int]] = self._loop.create_future()
        # the SUBACK callback is installed once, at connect: setting a paho callback
        # takes the lock paho holds while delivering a message, which may be waiting
        # for room (max_waiting) that only this thread can make
        rc, mid = self._c.subscribe(pattern, qos=1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"subscribe {pattern!r} failed: {mqtt.error_string(rc)}")
        with self._lock:
            if mid in self._early_subacks:
                done.set_result(self._early_subacks.pop(mid))
            else:
                self._subacks[mid] = done
        codes = await asyncio.wait_for(done, 10)
        if any(c >= 0x80 for c in codes):
            raise TransportError(f"subscribe {pattern!r} refused: {codes}")

    async def unsubscribe(self, pattern: str) -> None:
        """Remove a subscription (no error if absent; the UNSUBACK is not awaited)."""
        rc, _ = self._c.unsubscribe(pattern)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"unsubscribe {pattern!r} failed: {mqtt.error_string(rc)}")

    async def ack(self, message: Message) -> None:
        """Send the PUBACK for a delivered message (nothing once the connection is gone:
        the broker redelivers it, and a packet id of a dead connection means nothing)."""
        if self._open:
            self._c.ack(message.mid, message.qos)

    async def get(self, timeout: float | None = None) -> Message:
        """The next delivered message; ``TimeoutError`` after ``timeout`` seconds."""
        m = await asyncio.wait_for(self._queue.get(), timeout)
        if self._room is not None and m is not None:
            self._room.release()
        if m is None:
            raise ConnectionLost("connection closed")
        return m

    @property
    def waiting(self) -> int:
        """Messages delivered to this connection and not yet taken by ``get``."""
        return self._queue.qsize()

    def get_nowait(self) -> Message | None:
        """A message already delivered and waiting, or None (``ConnectionLost`` if closed)."""
        try:
            m = self._queue.get_nowait()
            if self._room is not None and m is not None:
                self._room.release()
        except asyncio.QueueEmpty:
            if not self._open:
                raise ConnectionLost("connection closed") from None
            return None
        if m is None:
            raise ConnectionLost("connection closed")
        return m

    @property
    def connected(self) -> bool:
        """False after ``close`` or once the broker connection dropped."""
        return self._open

    async def messages(self) -> AsyncIterator[Message]:
        """Delivered messages until the connection closes."""
        while True:
            try:
                yield await self.get()
            except ConnectionLost:
                return

    async def close(self) -> None:
        """Disconnect (the broker keeps a ``clean_start=False`` session)."""
        self._closing = True
        if self._open:
            self._open = False
            self._c.disconnect()
        await self._loop.run_in_executor(None, self._c.loop_stop)
        self._queue.put_nowait(None)

    async def __aenter__(self) -> MqttConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
