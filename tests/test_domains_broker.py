"""The project's own mosquitto brokers: generated config, authentication and ACL.

These start real brokers on free ports; mosquitto must be installed (the
quickstart installs it), and its absence fails the test rather than skipping it.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from guard.domains.broker import Broker, BrokerUser, acl_text, password_line

pytestmark = pytest.mark.integration


def _client(broker: Broker, user: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(*broker.credentials(user))
    return c


def _connect(c: mqtt.Client, broker: Broker) -> int:
    """Connect synchronously; return the CONNACK reason code value."""
    done = threading.Event()
    result: list[int] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        result.append(reason_code.value)
        done.set()

    c.on_connect = on_connect
    c.connect(broker.host, broker.port)
    c.loop_start()
    assert done.wait(5), "no CONNACK"
    return result[0]


@pytest.fixture
def high_broker():
    users = [
        BrokerUser("producer", write=("flows/+/in",)),
        BrokerUser("guard", read=("flows/+/in",)),
        BrokerUser("lowside", read=("public/#",)),
    ]
    with Broker("high", users) as b:
        yield b


def test_password_line_has_mosquitto_pbkdf2_format() -> None:
    line = password_line("alice", "pw")
    user, rest = line.split(":", 1)
    assert user == "alice"
    assert rest.startswith("$7$") and rest.count("$") == 4


def test_acl_lists_each_users_filters() -> None:
    text = acl_text([BrokerUser("a", read=("x/#",), write=("y",)), BrokerUser("b", read=("z",))])
    assert "user a\ntopic read x/#\ntopic write y" in text
    assert "user b\ntopic read z" in text


def test_wrong_password_is_refused(high_broker: Broker) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv5)
    c.username_pw_set("producer", "not-the-password")
    try:
        assert _connect(c, high_broker) != 0
    finally:
        c.loop_stop()


def test_acl_lets_guard_read_what_producer_writes_and_blocks_low_side(high_broker: Broker) -> None:
    received: list[bytes] = []
    got = threading.Event()
    guard = _client(high_broker, "guard")
    guard.on_message = lambda c, u, m: (received.append(m.payload), got.set())
    assert _connect(guard, high_broker) == 0
    subscribed = threading.Event()
    guard.on_subscribe = lambda *a: subscribed.set()
    guard.subscribe("flows/+/in", qos=1)
    assert subscribed.wait(5)

    acks: dict[int, int] = {}
    acked = threading.Event()

    def on_publish(client, userdata, mid, reason_code, properties):
        acks[mid] = reason_code.value
        acked.set()

    low = _client(high_broker, "lowside")
    low.on_publish = on_publish
    assert _connect(low, high_broker) == 0
    info = low.publish("flows/gbr/in", b"injected from the low side", qos=1)
    assert acked.wait(5)
    assert acks[info.mid] == 135  # MQTT 5 "Not authorized"

    producer = _client(high_broker, "producer")
    assert _connect(producer, high_broker) == 0
    props = Properties(PacketTypes.PUBLISH)
    producer.publish("flows/gbr/in", b"from the high side", qos=1, properties=props)
    assert got.wait(5)
    for c in (guard, low, producer):
        c.disconnect()
        c.loop_stop()
    assert received == [b"from the high side"]


def test_restart_keeps_port(high_broker: Broker) -> None:
    port = high_broker.port
    high_broker.restart(kill=True)
    assert high_broker.running and high_broker.port == port
