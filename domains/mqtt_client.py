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


class MqttConnection:
    """One authenticated MQTT 5 connection (see ``transport.Connection``)."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._c = client
        self._loop = loop
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._early: dict[int, int] = {}
        self._open = True

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
    ) -> MqttConnection:
        """Connect and wait for CONNACK; ``NotAuthorized`` for refused credentials."""
        loop = asyncio.get_running_loop()
        cid = client_id or f"{username}-{next(_ids)}-{id(loop):x}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.username_pw_set(username, password)
        c.manual_ack_set(True)
        c.max_inflight_messages_set(1000)
        self = cls(c, loop)
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
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
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
        self._loop.call_soon_threadsafe(self._queue.put_nowait, m)

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
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
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
        props = Properties(PacketTypes.PUBLISH)
        if properties:
            props.UserProperty = [tuple(p) for p in properties]
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

        def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
            self._loop.call_soon_threadsafe(
                lambda: done.done() or done.set_result([r.value for r in reason_codes])
            )

        self._c.on_subscribe = on_subscribe
        rc, _ = self._c.subscribe(pattern, qos=1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"subscribe {pattern!r} failed: {mqtt.error_string(rc)}")
        codes = await asyncio.wait_for(done, 10)
        if any(c >= 0x80 for c in codes):
            raise TransportError(f"subscribe {pattern!r} refused: {codes}")

    async def ack(self, message: Message) -> None:
        """Send the PUBACK for a delivered message."""
        self._c.ack(message.mid, message.qos)

    async def get(self, timeout: float | None = None) -> Message:
        """The next delivered message; ``TimeoutError`` after ``timeout`` seconds."""
        m = await asyncio.wait_for(self._queue.get(), timeout)
        if m is None:
            raise ConnectionLost("connection closed")
        return m

    async def messages(self) -> AsyncIterator[Message]:
        """Delivered messages until the connection closes."""
        while True:
            try:
                yield await self.get()
            except ConnectionLost:
                return

    async def close(self) -> None:
        """Disconnect (the broker keeps a ``clean_start=False`` session)."""
        if self._open:
            self._open = False
            self._c.disconnect()
        await self._loop.run_in_executor(None, self._c.loop_stop)
        self._queue.put_nowait(None)

    async def __aenter__(self) -> MqttConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
