"""The same scenarios on real mosquitto (MqttConnection) and on the in-process transport.

Each scenario is written once against the Connection interface and must give the same
result on both backends: ACL refusals, user properties, filters, and redelivery of
unacknowledged messages to a resumed session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from guard.domains.broker import Broker, BrokerUser
from guard.domains.mqtt_client import MqttConnection
from guard.domains.transport import InProcessBroker, NotAuthorized

pytestmark = pytest.mark.integration

USERS = [
    BrokerUser("producer", write=("flows/+/in",)),
    BrokerUser("guard", read=("flows/+/in",), write=("released/#",)),
    BrokerUser("low", read=("released/#",), write=("local/#",)),
]
Connect = Callable[..., Awaitable[object]]


@pytest.fixture(params=["mosquitto", "in-process"])
def connect(request) -> Connect:
    if request.param == "mosquitto":
        broker = Broker("t", USERS, persistence=False)
        broker.start()
        request.addfinalizer(broker.close)

        async def real(user: str, password: str | None = None, **kw):
            name, pw = broker.credentials(user)
            return await MqttConnection.connect(
                broker.host, broker.port, name, password or pw, **kw
            )

        return real
    holder: dict[str, InProcessBroker] = {}

    async def inproc(user: str, password: str | None = None, **kw):
        # created inside the running loop that the scenario uses
        b = holder.setdefault("b", InProcessBroker("t", USERS))
        name, pw = b.credentials(user)
        return await b.connect(name, password or pw, **kw)

    return inproc


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_acl_properties_and_filters(connect: Connect) -> None:
    async def go():
        with pytest.raises(NotAuthorized):
            await connect("producer", "wrong")
        guard = await connect("guard", client_id="guard-a")
        await guard.subscribe("flows/+/in")
        low = await connect("low", client_id="low-a")
        await low.subscribe("#")
        producer = await connect("producer", client_id="producer-a")
        with pytest.raises(NotAuthorized):
            await low.publish("flows/x/in", b"from the low side")
        with pytest.raises(NotAuthorized):
            await producer.publish("released/x", b"producer forging a release")
        props = [("message-id", "m-1"), ("flow", "x"), ("stamp", "sig==")]
        await producer.publish("flows/x/in", b"report", props)
        m = await guard.get(timeout=5)
        assert (m.topic, m.payload, m.properties) == ("flows/x/in", b"report", tuple(props))
        await guard.ack(m)
        await guard.publish("released/x", b"release")
        r = await low.get(timeout=5)
        assert r.topic == "released/x" and r.payload == b"release"
        await low.ack(r)
        with pytest.raises(TimeoutError):
            await low.get(timeout=0.3)  # the report on flows/x/in is not readable here
        for c in (guard, low, producer):
            await c.close()

    run(go())


def test_unacknowledged_messages_come_back_to_a_resumed_session(connect: Connect) -> None:
    async def go():
        guard = await connect("guard", client_id="guard-r", clean_start=False)
        await guard.subscribe("flows/+/in")
        producer = await connect("producer", client_id="producer-r")
        for i in range(3):
            await producer.publish("flows/f/in", f"m{i}".encode(), [("message-id", f"m{i}")])
        got = [await guard.get(timeout=5) for _ in range(3)]
        assert [m.payload for m in got] == [b"m0", b"m1", b"m2"]
        await guard.ack(got[1])
        await asyncio.sleep(0.2)  # let the PUBACK reach the broker before disconnecting
        await guard.close()
        await producer.publish("flows/f/in", b"m3", [("message-id", "m3")])
        guard = await connect("guard", client_id="guard-r", clean_start=False)
        again = [await guard.get(timeout=5) for _ in range(3)]
        assert [(m.payload, m.dup) for m in again] == [
            (b"m0", True),
            (b"m2", True),
            (b"m3", False),
        ]
        assert again[0].properties == (("message-id", "m0"),)
        for m in again:
            await guard.ack(m)
        await asyncio.sleep(0.2)
        await guard.close()
        guard = await connect("guard", client_id="guard-r", clean_start=False)
        with pytest.raises(TimeoutError):
            await guard.get(timeout=0.3)
        await guard.close()
        await producer.close()

    run(go())
