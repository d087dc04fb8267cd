"""A real-broker connection with the same interface as the in-process transport.

``MqttConnection`` is a thin asyncio wrapper over paho-mqtt (MQTT 5, QoS 1, manual
acknowledgement): ``publish`` returns once the broker's PUBACK arrived (reason >= 0x80
raises, 135 as ``NotAuthorized``), incoming messages are acknowledged only by ``ack``,
and a session opened with ``clean_start=False`` gets its unacknowledged messages again
after a reconnect. It is the reference against which the in-process transport is
tested, and the daemon's transport (bench/README.md: why paho).

paho is driven from the asyncio event loop (its "external loop" mode: ``loop_read``
when the socket is readable, ``loop_write`` when it has packets to send,
``loop_misc`` once a second), so there is no network thread: callbacks run on the
event loop, and no message crosses a thread. Every publish and ack queued in one loop
iteration goes out in one ``sendmsg`` at the end of it (``call_soon``; a writer
callback only when the socket is full), instead of one ``send`` per packet after two
``epoll_ctl`` calls. The socket is read 256 KB at a time into a buffer that paho's
many small reads consume (paho reads a packet header a byte at a time: one system
call each otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
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


_KEYS: dict[str, bytes] = {}  # encoded user property names (a stamp's are always the same)


def pack_user_properties(pairs: Sequence[tuple[str, str]]) -> bytes:
    """MQTT 5 PUBLISH properties made only of user properties, encoded (identifier
    0x26, then two length-prefixed UTF-8 strings each), with their length in front."""
    parts = []
    for k, v in pairs:
        key = _KEYS.get(k)
        if key is None:
            key = b"\x26" + _utf8(k)
            if len(_KEYS) < 256:
                _KEYS[k] = key
        raw = v.encode("utf-8")  # _utf8 inline: ~13 values per stamped message
        if len(raw) > 0xFFFF:
            raise TransportError("a user property is longer than 65535 bytes")
        parts += (key, len(raw).to_bytes(2, "big"), raw)
    body = b"".join(parts)
    return _varint(len(body)) + body


class _UserProperties(Properties):
    """PUBLISH properties made only of user properties, encoded once up front.

    paho's generic encoder costs about 20 us per property (a release stamp has ten);
    paho only ever calls ``pack()`` on the object, so the bytes are built here, in the
    MQTT 5 layout (identifier 0x26, then two length-prefixed UTF-8 strings).
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "_packed", pack_user_properties(pairs))
        object.__setattr__(self, "_pairs", [tuple(p) for p in pairs])

    def pack(self) -> bytes:
        return self._packed  # type: ignore[attr-defined,no-any-return]

    def __str__(self) -> str:
        return f"UserProperty={self._pairs}"  # type: ignore[attr-defined]


_READ_CHUNK = 256 * 1024
_WRITE_MAX = 512  # packets per sendmsg (IOV_MAX is 1024 on Linux)
_READ_BUDGET = 512  # packets handled per readable event before yielding to other tasks
_MISC_INTERVAL_S = 1.0


class _Reason:
    """The part of paho's ``ReasonCode`` that ``on_publish`` uses here."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


_PUBLISH_RECEIVED = Callable[[str, bytes, tuple[tuple[str, str], ...], int, bool, int], None]


def _decode_qos1_publish(header: int, data: bytes) -> tuple[Any, ...] | None:
    """(topic, payload, user properties, qos, dup, packet id) of an MQTT 5 QoS-1
    PUBLISH whose only properties are user properties; None for anything else (paho
    decodes those, and raises on malformed ones)."""
    n = len(data)
    if n < 5:
        return None
    tlen = (data[0] << 8) | data[1]
    k = 2 + tlen
    if k + 3 > n:
        return None
    topic = data[2:k].decode("utf-8")
    mid = (data[k] << 8) | data[k + 1]
    k += 2
    plen = shift = 0
    while True:  # variable byte integer: the properties' length
        if k >= n or shift > 21:
            return None
        b = data[k]
        k += 1
        plen |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    end = k + plen
    if mid == 0 or end > n or "\x00" in topic:
        return None
    props = []
    while k < end:
        if data[k] != 0x26 or k + 3 > end:
            return None
        klen = (data[k + 1] << 8) | data[k + 2]
        k += 3
        if k + klen + 2 > end:
            return None
        key = data[k:k + klen].decode("utf-8")
        k += klen
        vlen = (data[k] << 8) | data[k + 1]
        k += 2
        if k + vlen > end:
            return None
        value = data[k:k + vlen].decode("utf-8")
        k += vlen
        if "\x00" in key or "\x00" in value:
            return None
        props.append((key, value))
    return topic, data[end:], tuple(props), 1, bool(header & 0x08), mid


_PUBACK_RECEIVED = Callable[[int, int], bool]


class FastDecodeClient(mqtt.Client):
    """A paho client that decodes the common packets (QoS-1 PUBLISH with only user
    properties, PUBACK) itself.

    paho builds a ``Properties`` object, a ``ReasonCode`` and an ``MQTTMessage`` per
    packet (~100 us per message at 4 KB, the largest cost of the relay once the
    network threads were gone: profiled); every other packet, and every packet the
    lean decoder does not accept, goes through paho unchanged. With manual
    acknowledgement, a QoS-1 PUBLISH goes to ``on_publish_received(topic, payload,
    user_properties, qos, dup, packet_id)`` when that is set, instead of ``on_message``.
    """

    on_publish_received: _PUBLISH_RECEIVED | None = None
    # (packet id, reason code) of a PUBACK for a publish paho does not know (queued by
    # MqttConnection.publish_batch); returns whether it was one
    on_puback_received: _PUBACK_RECEIVED | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        cmd = self._in_packet["command"]
        fast = self.on_publish_received
        if fast is not None and (cmd & 0x06) == 0x02 and self._manual_ack \
                and self._protocol == mqtt.MQTTv5:
            try:
                got = _decode_qos1_publish(cmd, bytes(self._in_packet["packet"]))
            except (UnicodeDecodeError, IndexError):
                got = None
            if got is not None:
                fast(*got)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        data = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol != mqtt.MQTTv5 or len(data) < 2:
            return super()._handle_pubackcomp(cmd)
        mid = (data[0] << 8) | data[1]
        code = data[2] if len(data) > 2 else 0
        lean = self.on_puback_received
        if mid not in self._out_messages and lean is not None and lean(mid, code):
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # properties (a reason string) unused
        if not len(data) <= 4 or (len(data) == 4 and data[3] != 0):
            return super()._handle_pubackcomp(cmd)
        if mid in self._out_messages:
            return self._do_on_publish(mid, _Reason(code), None)  # type: ignore[arg-type]
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _update_inflight(self) -> MQTTErrorCode:
        # paho walks every unacknowledged message on every PUBACK to find queued ones;
        # there are none while all of them are in flight
        if len(self._out_messages) <= self._inflight_messages:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._update_inflight()


def _puback_error(topic: str, code: int) -> TransportError | None:
    if code == 135:
        return NotAuthorized(f"not authorized to publish to {topic}")
    if code >= 0x80:
        return TransportError(f"publish to {topic} refused (reason {code})")
    return None


def _settle_publish(fut: asyncio.Future[None], topic: str, code: int) -> None:
    if fut.done():
        return
    err = _puback_error(topic, code)
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(None)


_PENDING = object()


class PublishBatch:
    """QoS-1 publishes queued together (``MqttConnection.publish_batch``).

    ``done`` completes once every one has its PUBACK or has failed; then
    ``errors[k]`` is None (acknowledged) or the exception, and ``acked_ns[k]`` when
    that was known. Settled as the PUBACKs are read, with no callback per message:
    the waiting task wakes once.
    """

    __slots__ = ("_left", "_timer", "acked_ns", "done", "errors", "topics")

    def __init__(self, loop: asyncio.AbstractEventLoop, topics: list[str]) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.topics = topics
        self.errors: list[Any] = [_PENDING] * len(topics)
        self.acked_ns = [0] * len(topics)
        self._left = len(topics)
        self._timer: asyncio.TimerHandle | None = None
        if not topics:
            self.done.set_result(None)

    def settle(self, k: int, err: BaseException | None) -> None:
        """Record message ``k``'s outcome (the first one counts)."""
        if self.errors[k] is not _PENDING:
            return
        self.errors[k] = err
        self.acked_ns[k] = time.time_ns()
        self._left -= 1
        if not self._left:
            if self._timer is not None:
                self._timer.cancel()
            if not self.done.done():
                self.done.set_result(None)

    def expire(self) -> None:
        """Give up on the messages still without a PUBACK (``TimeoutError``)."""
        for k, e in enumerate(self.errors):
            if e is _PENDING:
                self.settle(k, TimeoutError(f"no PUBACK for a publish to {self.topics[k]}"))



def _in_packet(command: int, packet: bytearray) -> Any:
    """paho's incoming-packet state: a whole packet read (or none, for command 0)."""
    return {"command": command, "have_remaining": int(command != 0), "remaining_count": [],
            "remaining_mult": 1, "remaining_length": len(packet), "packet": packet,
            "to_process": 0, "pos": 0}


class _BufferedClient(FastDecodeClient):
    """A ``FastDecodeClient`` that reads its socket in large chunks and writes every
    queued packet in one ``sendmsg``, for the external-loop mode only (paho's own loop
    would not see the buffered bytes)."""

    _rbuf: bytes = b""
    _rpos: int = 0
    drained: bool = False  # the last socket read found nothing more

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            sock = self._sock
            if sock is None:
                raise ConnectionError("not connected")
            try:
                data = sock.recv(_READ_CHUNK)
            except BlockingIOError:
                self.drained = True
                raise
            if not data:
                return b""  # EOF: paho reports the connection lost
            self._rbuf, self._rpos = data, 0
        pos = self._rpos
        out = self._rbuf[pos:pos + bufsize]
        self._rpos = pos + len(out)
        return out

    fast_read: bool = True  # whole packets parsed from the buffer (tests turn it off)

    def _packet_read(self) -> MQTTErrorCode:
        """A QoS-1 PUBLISH or a PUBACK wholly in the read buffer is cut out and handled
        at once; paho reads its header, length and body with a call each (~5 us a
        packet). Any other packet, and one split across reads, goes through paho."""
        buf, pos = self._rbuf, self._rpos
        state = self._in_packet  # between packets: paho's idle state or the reused one
        if self.fast_read and (state is self._whole or state["command"] == 0) \
                and pos + 2 <= len(buf):
            cmd = buf[pos]
            if cmd & 0xF6 == 0x32 or cmd == 0x40:  # PUBLISH QoS 1 (any DUP/RETAIN), PUBACK
                n, k, length, shift = len(buf), pos + 1, 0, 0
                while k < n and shift <= 21:
                    b = buf[k]
                    k += 1
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        if k + length <= n:
                            return self._handle_whole(cmd, k, k + length)
                        break
        if state is self._whole:
            self._in_packet = _in_packet(0, bytearray())  # paho's own state, fresh
        return super()._packet_read()

    _whole: dict[str, Any] | None = None  # the state the whole-packet path reuses

    def _handle_whole(self, cmd: int, start: int, end: int) -> MQTTErrorCode:
        packet = bytearray(self._rbuf[start:end])
        whole = self._whole
        if whole is None or self._in_packet is not whole:
            whole = self._whole = _in_packet(cmd, packet)
        else:  # paho's handlers only read it: set the three fields that differ
            whole["command"], whole["packet"], whole["remaining_length"] = (
                cmd, packet, end - start)
        self._in_packet = whole
        self._rpos = end
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        try:
            rc = self._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        # still self._in_packet: the next whole packet reuses it, paho's reader
        # replaces it first (its command is not 0)
        return rc

    def _packet_write(self) -> MQTTErrorCode:
        out = self._out_packet
        sock = self._sock
        # QoS-0 PUBLISH and DISCONNECT have completion side effects in paho; TLS
        # sockets have no sendmsg: paho writes those its own way
        if type(sock) is not socket.socket or any(
                p["command"] & 0xF0 == 0xE0 or (p["command"] & 0xF0 == 0x30 and not p["qos"])
                for p in out):
            return super()._packet_write()
        while out:
            pkts = list(itertools.islice(out, _WRITE_MAX))
            try:
                n = sock.sendmsg([p["packet"] if not p["pos"] else
                                  memoryview(p["packet"])[p["pos"]:] for p in pkts])
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN  # loop_write asks for a writer
            except OSError:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            with self._msgtime_mutex:
                self._last_msg_out = mqtt.time_func()  # paho's keep-alive clock
            for p in pkts:
                if n >= p["to_process"]:
                    n -= p["to_process"]
                    p["to_process"] = 0
                    out.popleft()
                else:  # the socket is full: the rest when it is writable again
                    p["pos"] += n
                    p["to_process"] -= n
                    return MQTTErrorCode.MQTT_ERR_AGAIN
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    @property
    def buffered(self) -> bool:
        """Bytes read from the socket and not yet handled by paho."""
        return self._rpos < len(self._rbuf)


class MqttConnection:
    """One authenticated MQTT 5 connection (see ``transport.Connection``)."""

    def __init__(self, client: _BufferedClient, loop: asyncio.AbstractEventLoop) -> None:
        self._c = client
        self._loop = loop
        # (message or the closed sentinel None, wall-clock ns when it was read)
        self._queue: asyncio.Queue[tuple[Message | None, int]] = asyncio.Queue()
        self.last_received_ns = 0  # when the message ``get`` returned last was read
        self._pending: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._lean: dict[int, tuple[PublishBatch, int]] = {}  # publish_batch's, by packet id
        self._early: dict[int, int] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._early_subacks: dict[int, list[int]] = {}
        self._open = True
        self._closing = False
        self._connected: asyncio.Future[int] | None = None
        self._fd = -1
        self._writing = False  # a writer callback is registered (the socket was full)
        self._write_soon: asyncio.Handle | None = None  # a write at the end of this iteration
        self._paused = False
        self._read_soon = False
        self._misc: asyncio.TimerHandle | None = None
        # Client-side bound on delivered-but-not-taken messages: when it is reached the
        # socket is no longer read, and TCP flow control holds the rest at the broker.
        # Needed because mosquitto 2.0.11 does not keep to the MQTT 5 Receive Maximum
        # once acknowledgements flow (measured).
        self._max_waiting: int | None = None

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
        socket is not read beyond it).
        """
        loop = asyncio.get_running_loop()
        cid = client_id or f"{username}-{next(_ids)}-{id(loop):x}"
        c = _BufferedClient(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.username_pw_set(username, password)
        c.manual_ack_set(True)
        c.max_inflight_messages_set(1000)
        self = cls(c, loop)
        self._max_waiting = max_waiting
        connected: asyncio.Future[int] = loop.create_future()
        self._connected = connected
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_publish_received = self._on_publish_received
        c.on_publish = self._on_publish
        c.on_puback_received = self._on_lean_puback
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        if receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
        try:
            # the TCP connect blocks: in a thread, before any socket callback is set
            # (paho writes the CONNECT packet there and then)
            await loop.run_in_executor(
                None, lambda: c.connect(host, port, clean_start=clean_start, properties=props)
            )
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {exc}") from None
        self._attach()
        try:
            code = await asyncio.wait_for(connected, timeout_s)
        except TimeoutError:
            self._abort()
            raise ConnectionLost(f"{host}:{port}: no CONNACK") from None
        if code != 0:
            self._abort()
            if code in _NOT_AUTHORIZED:
                raise NotAuthorized(f"{host}:{port}: connection refused (reason {code})")
            raise TransportError(f"{host}:{port}: connection refused (reason {code})")
        if not self._open:
            raise ConnectionLost(f"{host}:{port}: disconnected at once")
        return self

    # -- driving paho from the event loop ------------------------------------------------
    def _attach(self) -> None:
        c = self._c
        sock = c.socket()
        if sock is None:
            raise ConnectionLost("no socket after connect")
        if isinstance(sock, socket.socket):
            # acks and publishes are written in bursts; never wait for Nagle
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._fd = sock.fileno()
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        self._loop.add_reader(self._fd, self._on_readable)
        if c.want_write():
            self._on_register_write(c, None, sock)
        self._misc = self._loop.call_later(_MISC_INTERVAL_S, self._on_misc)

    def _detach(self) -> None:
        if self._write_soon is not None:
            self._write_soon.cancel()
            self._write_soon = None
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = -1
            self._writing = False
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _abort(self) -> None:
        """Drop the socket without a DISCONNECT packet."""
        self._open = False
        self._detach()
        sock = self._c.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._detach()

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        # paho calls this once until it unregisters: everything queued from now on in
        # this loop iteration is written at once
        if not self._writing and self._write_soon is None and self._fd >= 0:
            self._write_soon = self._loop.call_soon(self._on_writable)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._writing and self._fd >= 0:
            self._writing = False
            self._loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        self._write_soon = None
        self._c.loop_write()
        if not self._writing and self._fd >= 0 and self._c.want_write():
            # the socket is full: the rest when it is writable (paho unregisters then)
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)

    def flush_writes(self) -> None:
        """Write what is queued now rather than at the end of this loop iteration."""
        if self._fd >= 0 and not self._writing and self._c.want_write():
            if self._write_soon is not None:
                self._write_soon.cancel()
            self._on_writable()

    def _on_misc(self) -> None:
        self._misc = None
        if self._fd < 0:
            return
        self._c.loop_misc()  # keepalive: PINGREQ, and a dead broker noticed
        if self._fd >= 0:
            self._misc = self._loop.call_later(_MISC_INTERVAL_S, self._on_misc)

    def _room(self) -> bool:
        return self._max_waiting is None or self._queue.qsize() < self._max_waiting

    def _on_readable(self) -> None:
        self._read_soon = False
        c = self._c
        c.drained = False
        for _ in range(_READ_BUDGET):
            if not self._room():
                if self._fd >= 0 and not self._paused:
                    self._paused = True
                    self._loop.remove_reader(self._fd)
                return
            if c.loop_read() != mqtt.MQTT_ERR_SUCCESS or c.drained or self._fd < 0:
                return
        # budget spent: let other tasks run; what is already buffered is handled next
        if c.buffered and self._fd >= 0:
            self._read_soon = True
            self._loop.call_soon(self._on_readable)

    def _resume(self) -> None:
        if self._paused and self._room():
            self._paused = False
            if self._fd >= 0:
                self._loop.add_reader(self._fd, self._on_readable)
                if self._c.buffered and not self._read_soon:
                    self._read_soon = True
                    self._loop.call_soon(self._on_readable)

    # -- paho callbacks (on the event loop) ------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        fut = self._connected
        if fut is not None and not fut.done():
            fut.set_result(reason_code.value)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self._closing:
            return  # never acknowledged: the broker delivers it again
        props = getattr(msg.properties, "UserProperty", None) or []
        self._queue.put_nowait(
            (Message(msg.topic, bytes(msg.payload), tuple(props), msg.qos, bool(msg.dup),
                     msg.mid), time.time_ns()))

    def _on_publish_received(self, topic: str, payload: bytes,
                             props: tuple[tuple[str, str], ...], qos: int, dup: bool,
                             mid: int) -> None:
        if not self._closing:  # else never acknowledged: the broker delivers it again
            self._queue.put_nowait((Message(topic, payload, props, qos, dup, mid),
                                    time.time_ns()))

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        codes = [r.value for r in reason_codes]
        fut = self._subacks.pop(mid, None)
        if fut is None:
            self._early_subacks[mid] = codes
        elif not fut.done():
            fut.set_result(codes)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, props: Any
    ) -> None:
        entry = self._pending.pop(mid, None)
        if entry is None:
            self._early[mid] = reason_code.value
        else:
            _settle_publish(entry[0], entry[1], reason_code.value)

    def _on_lean_puback(self, mid: int, code: int) -> bool:
        entry = self._lean.pop(mid, None)
        if entry is None:
            return False
        batch, k = entry
        batch.settle(k, _puback_error(batch.topics[k], code))
        return True

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        # paho does not reconnect in external-loop mode: a dead connection stays dead,
        # the owner opens a new one (and sees every redelivery)
        self._open = False
        self._detach()
        self._queue.put_nowait((None, 0))
        fut = self._connected
        if fut is not None and not fut.done():
            fut.set_exception(ConnectionLost("disconnected before CONNACK"))
            fut.exception()  # retrieved: connect() may have given up already
        pending, self._pending = self._pending, {}
        for f, _ in pending.values():
            if not f.done():
                f.set_exception(ConnectionLost("disconnected"))
        lean, self._lean = self._lean, {}
        for batch, k in lean.values():
            batch.settle(k, ConnectionLost("disconnected"))
        subacks, self._subacks = self._subacks, {}
        for s in subacks.values():
            if not s.done():
                s.set_exception(ConnectionLost("disconnected"))

    # -- the Connection interface -----------------------------------------------------
    async def publish(
        self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Publish at QoS 1 and wait for PUBACK."""
        await self.publish_nowait(topic, payload, properties)

    def publish_nowait(
        self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]] = ()
    ) -> asyncio.Future[None]:
        """Queue a QoS-1 publish; the future completes at its PUBACK (or fails).

        No task per message: a batch of publishes is queued at once, written in one
        ``loop_write`` and awaited together (``asyncio.wait``).
        """
        fut: asyncio.Future[None] = self._loop.create_future()
        if not self._open:
            fut.set_exception(ConnectionLost("connection closed"))
            return fut
        try:
            props = _UserProperties(properties) if properties else None
        except TransportError as exc:  # a property too long to encode
            fut.set_exception(exc)
            return fut
        info = self._c.publish(topic, bytes(payload), qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fut.set_exception(ConnectionLost(f"publish failed: {mqtt.error_string(info.rc)}"))
        elif info.mid in self._early:
            _settle_publish(fut, topic, self._early.pop(info.mid))
        else:
            self._pending[info.mid] = (fut, topic)
        return fut

    def publish_batch(self, messages: Sequence[tuple[str, bytes, Sequence[tuple[str, str]]]],
                      timeout_s: float) -> PublishBatch:
        """Queue QoS-1 publishes ``(topic, payload, user properties)`` and write them
        at once; ``done`` completes when every PUBACK arrived, or failed, or after
        ``timeout_s`` (``TimeoutError`` for those still without one).

        The PUBLISH packets are built here (paho's ``publish`` makes a message object,
        a ``threading.Condition`` and its own property encoding per message) and go out
        through paho's packet queue; paho's keep-alive and socket handling are unchanged.
        """
        batch = PublishBatch(self._loop, [t for t, _, _ in messages])
        c = self._c
        for k, (topic, payload, props) in enumerate(messages):
            if not self._open or c._sock is None:
                batch.settle(k, ConnectionLost("connection closed"))
                continue
            try:
                t = topic.encode("utf-8")
                if not t or len(t) > 0xFFFF or "\x00" in topic or "+" in topic or "#" in topic:
                    raise TransportError(f"cannot publish to {topic!r}")
                packed = pack_user_properties(props) if props else b"\x00"
            except (TransportError, UnicodeEncodeError) as exc:  # nothing was queued
                batch.settle(k, exc if isinstance(exc, TransportError) else
                             TransportError(f"cannot publish to {topic!r}"))
                continue
            mid = c._mid_generate()
            while mid in self._lean or mid in c._out_messages:  # 65535 ids in flight: rare
                mid = c._mid_generate()
            data = bytes(payload)
            body = 2 + len(t) + 2 + len(packed) + len(data)
            self._lean[mid] = (batch, k)
            c._packet_queue(0x30, b"".join((b"\x32", _varint(body), len(t).to_bytes(2, "big"),
                                            t, mid.to_bytes(2, "big"), packed, data)), mid, 1)
        if batch._left:
            self.flush_writes()
            batch._timer = self._loop.call_later(timeout_s, batch.expire)
        return batch

    async def subscribe(self, pattern: str) -> None:
        """Subscribe at QoS 1 (delivery still needs read access per topic)."""
        if not self._open:
            raise ConnectionLost("connection closed")
        rc, mid = self._c.subscribe(pattern, qos=1)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise TransportError(f"subscribe {pattern!r} failed: {mqtt.error_string(rc)}")
        if mid in self._early_subacks:
            codes = self._early_subacks.pop(mid)
        else:
            done: asyncio.Future[list[int]] = self._loop.create_future()
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
        if not self._open and self._queue.empty():
            raise ConnectionLost("connection closed")
        return self._taken(await asyncio.wait_for(self._queue.get(), timeout))

    def _taken(self, entry: tuple[Message | None, int]) -> Message:
        """A message just taken off the queue (None is the closed sentinel)."""
        m, self.last_received_ns = entry
        if m is None:
            raise ConnectionLost("connection closed")
        if self._paused:  # room again below the bound: read the socket again
            self._resume()
        return m

    @property
    def waiting(self) -> int:
        """Messages delivered to this connection and not yet taken by ``get``."""
        return self._queue.qsize()

    def get_nowait(self) -> Message | None:
        """A message already delivered and waiting, or None (``ConnectionLost`` if closed)."""
        try:
            m = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if not self._open:
                raise ConnectionLost("connection closed") from None
            return None
        return self._taken(m)

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
            self._c.disconnect()  # queues DISCONNECT; paho closes the socket once it is out
            if self._c.socket() is not None:
                self._c.loop_write()
        self._abort()
        self._queue.put_nowait((None, 0))

    async def __aenter__(self) -> MqttConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
