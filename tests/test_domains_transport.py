"""In-process transport: ACLs, filters, at-least-once redelivery, user properties.

The ACL test at the end runs the same publishes against real mosquitto brokers
configured from the same topology, and requires identical allow/deny decisions.
"""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from guard.domains.broker import Broker, BrokerUser
from guard.domains.topics import matches, overlap, valid_filter, valid_topic
from guard.domains.topology import load_topology
from guard.domains.transport import (
    ConnectionLost,
    InProcessBroker,
    Message,
    NotAuthorized,
    TransportError,
)

USERS = [
    BrokerUser("producer", write=("flows/+/in",)),
    BrokerUser("guard", read=("flows/+/in",), write=("released/#",)),
    BrokerUser("low", read=("released/#", "local/#"), write=("local/#",)),
]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _connect(b: InProcessBroker, user: str, **kw):
    return await b.connect(*b.credentials(user), **kw)


# -- topic semantics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/+", "a/b/c", False),
        ("+", "a", True),
        ("a/b", "a/b/", False),
    ],
)
def test_filter_matching(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


def test_filter_and_topic_validity() -> None:
    assert valid_filter("a/+/#") and not valid_filter("a/#/b") and not valid_filter("a+/b")
    assert valid_topic("a/b") and not valid_topic("a/+") and not valid_topic("")


_level = st.sampled_from(["a", "b", "+", "#"])
_filters = st.lists(_level, min_size=1, max_size=4).map("/".join).filter(valid_filter)
_topics = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=5).map("/".join)


@settings(max_examples=200, deadline=None)
@given(_filters, _filters)
def test_overlap_is_exactly_a_common_matching_topic(a: str, b: str) -> None:
    # Every topic over {a, b, c} up to 5 levels: a witness exists iff the filters overlap.
    import itertools

    witness = any(
        matches(a, "/".join(t)) and matches(b, "/".join(t))
        for n in range(1, 6)
        for t in itertools.product("abc", repeat=n)
    )
    assert overlap(a, b) is witness


# -- ACL, delivery, properties ------------------------------------------------------------


def test_acl_refuses_unauthorised_publish_and_nobody_receives_it() -> None:
    async def go():
        b = InProcessBroker("high", USERS)
        guard = await _connect(b, "guard")
        await guard.subscribe("#")
        low = await _connect(b, "low")
        with pytest.raises(NotAuthorized):
            await low.publish("flows/gbr/in", b"injected")
        with pytest.raises(NotAuthorized):
            await b.connect("producer", "wrong password")
        producer = await _connect(b, "producer")
        await producer.publish("flows/gbr/in", b"ok", [("message-id", "m1"), ("flow", "gbr")])
        msg = await guard.get(timeout=1)
        assert msg.payload == b"ok" and msg.topic == "flows/gbr/in"
        assert msg.properties == (("message-id", "m1"), ("flow", "gbr"))
        assert msg.property("flow") == "gbr" and msg.property("absent") is None
        with pytest.raises(TimeoutError):
            await guard.get(timeout=0.05)
        assert b.refused == 1

    run(go())


def test_read_acl_filters_delivery_even_with_a_wide_subscription() -> None:
    async def go():
        b = InProcessBroker("low", USERS)
        low = await _connect(b, "low")
        await low.subscribe("#")  # granted, as mosquitto does, but read ACL still applies
        guard = await _connect(b, "guard")
        await guard.publish("released/x", b"r")
        await low.publish("local/chat", b"l")
        producer = await _connect(b, "producer")
        await producer.publish("flows/x/in", b"never for low")
        got = [await low.get(timeout=1), await low.get(timeout=1)]
        assert [m.payload for m in got] == [b"r", b"l"]
        with pytest.raises(TimeoutError):
            await low.get(timeout=0.05)

    run(go())


def test_filters_plus_and_hash_and_single_delivery_per_session() -> None:
    async def go():
        users = [BrokerUser("u", read=("#",), write=("#",))]
        b = InProcessBroker("t", users)
        c = await _connect(b, "u")
        await c.subscribe("a/+/c")
        await c.subscribe("a/#")
        for t in ["a/b/c", "a/x", "b/b/c", "a"]:
            await c.publish(t, t.encode())
        topics = [(await c.get(timeout=1)).topic for _ in range(3)]
        assert topics == ["a/b/c", "a/x", "a"]
        with pytest.raises(TimeoutError):
            await c.get(timeout=0.05)
        with pytest.raises(TransportError):
            await c.subscribe("a/#/b")
        with pytest.raises(TransportError):
            await c.publish("a/+", b"")

    run(go())


def test_unacked_messages_are_redelivered_on_reconnect_acked_ones_are_not() -> None:
    async def go():
        b = InProcessBroker("high", USERS)
        g = await _connect(b, "guard", client_id="g1", clean_start=False)
        await g.subscribe("flows/+/in")
        p = await _connect(b, "producer")
        for i in range(3):
            await p.publish("flows/f/in", f"m{i}".encode())
        _, m1, _ = [await g.get(timeout=1) for _ in range(3)]
        await g.ack(m1)
        await g.close()
        with pytest.raises(ConnectionLost):
            await g.publish("released/f", b"x")
        await p.publish("flows/f/in", b"m3")  # queued while the guard is away
        g = await _connect(b, "guard", client_id="g1", clean_start=False)
        again = [await g.get(timeout=1) for _ in range(3)]
        assert [(m.payload, m.dup) for m in again] == [
            (b"m0", True),
            (b"m2", True),
            (b"m3", False),
        ]
        for m in again:
            await g.ack(m)
        await g.close()
        g = await _connect(b, "guard", client_id="g1", clean_start=False)
        with pytest.raises(TimeoutError):
            await g.get(timeout=0.05)
        assert b.queued("g1") == 0

    run(go())


def test_clean_start_discards_the_session() -> None:
    async def go():
        b = InProcessBroker("high", USERS)
        g = await _connect(b, "guard", client_id="g1", clean_start=False)
        await g.subscribe("flows/+/in")
        p = await _connect(b, "producer")
        await p.publish("flows/f/in", b"m0")
        await g.get(timeout=1)
        await g.close()
        g = await _connect(b, "guard", client_id="g1", clean_start=True)
        await p.publish("flows/f/in", b"m1")  # no subscription any more
        with pytest.raises(TimeoutError):
            await g.get(timeout=0.05)

    run(go())


def test_receive_maximum_holds_back_until_acked_and_broker_restart_redelivers() -> None:
    async def go():
        b = InProcessBroker("high", USERS, receive_maximum=2)
        g = await _connect(b, "guard", client_id="g", clean_start=False)
        await g.subscribe("flows/+/in")
        p = await _connect(b, "producer", client_id="p")
        for i in range(4):
            await p.publish("flows/f/in", bytes([i]))
        a, c = await g.get(timeout=1), await g.get(timeout=1)
        with pytest.raises(TimeoutError):
            await g.get(timeout=0.05)
        await g.ack(a)
        third = await g.get(timeout=1)
        assert third.payload == b"\x02"
        b.restart()  # connections drop; the session and in-flight messages survive
        assert [m async for m in g.messages()] == []
        g = await _connect(b, "guard", client_id="g", clean_start=False)
        got = [await g.get(timeout=1) for _ in range(2)]
        await g.ack(got[0])  # the receive maximum still applies after reconnecting
        got.append(await g.get(timeout=1))
        assert [(m.payload, m.dup) for m in got] == [
            (b"\x01", True),
            (b"\x02", True),
            (b"\x03", False),
        ]
        assert c.payload == b"\x01"

    run(go())


def test_shared_subscription_spreads_messages_over_the_group() -> None:
    async def go():
        b = InProcessBroker("high", USERS)
        w1 = await _connect(b, "guard", client_id="w1")
        w2 = await _connect(b, "guard", client_id="w2")
        for w in (w1, w2):
            await w.subscribe("$share/guard/flows/+/in")
        p = await _connect(b, "producer")
        for i in range(10):
            await p.publish("flows/f/in", bytes([i]))
        assert b.queued("w1") == 5 and b.queued("w2") == 5
        got = sorted(
            [(await w1.get(timeout=1)).payload for _ in range(5)]
            + [(await w2.get(timeout=1)).payload for _ in range(5)]
        )
        assert got == [bytes([i]) for i in range(10)]

    run(go())


def test_queue_overflow_drops_like_mosquitto_or_blocks_the_publisher() -> None:
    async def go():
        b = InProcessBroker("high", USERS, max_queued_messages=2, receive_maximum=1)
        g = await _connect(b, "guard", client_id="g", clean_start=False)
        await g.subscribe("flows/+/in")
        await g.close()
        p = await _connect(b, "producer")
        for i in range(5):
            await p.publish("flows/f/in", bytes([i]))
        assert b.dropped == 3 and b.queued("g") == 2

        blocking = InProcessBroker(
            "high", USERS, max_queued_messages=2, receive_maximum=1, overflow="block"
        )
        g = await _connect(blocking, "guard", client_id="g")
        await g.subscribe("flows/+/in")
        p = await _connect(blocking, "producer")
        for i in range(3):  # one in flight, two queued
            await p.publish("flows/f/in", bytes([i]))
        fourth = asyncio.create_task(p.publish("flows/f/in", b"\x03"))
        await asyncio.sleep(0.05)
        assert not fourth.done()  # back-pressure: waits for room
        await g.ack(await g.get(timeout=1))
        await asyncio.wait_for(fourth, 1)
        assert blocking.dropped == 0 and blocking.queued("g") == 3

    run(go())


def test_message_is_immutable_value() -> None:
    m = Message("t", b"x", (("k", "v"),))
    with pytest.raises(AttributeError):
        m.payload = b"y"  # type: ignore[misc]


# -- same ACL decisions as mosquitto -------------------------------------------------------

PROBES = [
    ("us-secret", "producer", "flows/us-secret-to-gbr/in"),
    ("us-secret", "producer", "released/us-secret-to-gbr"),
    ("us-secret", "analyst", "flows/us-secret-to-gbr/in"),
    ("us-secret", "analyst", "local/notes"),
    ("us-secret", "guard", "flows/us-secret-to-gbr/in"),
    ("us-secret", "guard", "guard/status"),
    ("gbr", "partner", "released/us-secret-to-gbr"),
    ("gbr", "partner", "flows/us-secret-to-gbr/in"),
    ("gbr", "partner", "local/chat"),
    ("gbr", "partner", "guard/status"),
    ("gbr", "guard", "released/us-secret-to-gbr"),
    ("gbr", "guard", "released/us-secret-to-jpn"),
    ("gbr", "sink", "released/us-secret-to-gbr"),
]


def _mosquitto_allows(broker: Broker, user: str, topic: str) -> bool:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(*broker.credentials(user))
    connected, acked = threading.Event(), threading.Event()
    codes: dict[int, int] = {}
    c.on_connect = lambda *a: connected.set()

    def on_publish(client, userdata, mid, reason_code, properties):
        codes[mid] = reason_code.value
        acked.set()

    c.on_publish = on_publish
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        assert connected.wait(5)
        info = c.publish(topic, b"probe", qos=1)
        assert acked.wait(5)
        return codes[info.mid] < 0x80
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.integration
def test_inprocess_acl_decisions_equal_mosquitto_for_the_shipped_topology() -> None:
    topo = load_topology()
    real = {n: Broker(n, topo.broker_users(n)) for n in ("us-secret", "gbr")}
    try:
        for b in real.values():
            b.start()
        inproc = {n: InProcessBroker(n, list(real[n].users.values())) for n in real}

        async def allowed(domain: str, user: str, topic: str) -> bool:
            c = await _connect(inproc[domain], user)
            try:
                await c.publish(topic, b"probe")
                return True
            except NotAuthorized:
                return False

        for domain, user, topic in PROBES:
            expected = _mosquitto_allows(real[domain], user, topic)
            assert run(allowed(domain, user, topic)) is expected, (domain, user, topic)
    finally:
        for b in real.values():
            b.close()
