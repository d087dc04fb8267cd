"""MQTT clients compared: a forwarding relay on paho-mqtt and on aiomqtt vs a mosquitto bridge.

Each relay does what the guard's transport must do and nothing else: receive a
QoS-1 message from the high broker, publish it QoS 1 to the low broker, and (where
the client allows it) acknowledge the inbound message only after the outbound
PUBACK. The mosquitto bridge is the unfiltered baseline, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time

import paho.mqtt.client as mqtt

from guard.bench._mqttload import (
    Counter,
    Endpoint,
    bridge_pair,
    endpoint,
    paho_client,
    start_producer,
)
from guard.domains.broker import Broker, BrokerUser

TOPIC_IN = "flows/bench/in"
TOPIC_OUT = "released/bench/in"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=20_000, help="messages per measurement")
    parser.add_argument("--size", type=int, default=4096, help="payload bytes")


def _brokers() -> tuple[Broker, Broker]:
    high = Broker(
        "relay-high",
        [BrokerUser("producer", write=(TOPIC_IN,)), BrokerUser("guard", read=(TOPIC_IN,))],
        persistence=False,
    ).start()
    low = Broker(
        "relay-low",
        [BrokerUser("guard", write=(TOPIC_OUT,)), BrokerUser("sink", read=(TOPIC_OUT,))],
        persistence=False,
    ).start()
    return high, low


def _drive(src: Endpoint, dst: Endpoint, count: int, size: int) -> dict[str, float]:
    """Publish ``count`` messages at ``src`` and time their arrival at ``dst``."""
    counter = Counter(dst, TOPIC_OUT, count)
    producer = start_producer(src, TOPIC_IN, count, size)
    ok = counter.wait(max(60.0, count / 500))
    producer.wait(10)
    counter.close()
    return {
        "msgs_s": round(counter.rate(), 1) if ok else 0.0,
        "p50_ms": round(counter.percentile_ms(0.5), 2),
        "p99_ms": round(counter.percentile_ms(0.99), 2),
    }


def _measure(relay_start, count: int, size: int) -> dict[str, float]:
    high, low = _brokers()
    try:
        stop = relay_start(endpoint(high, "guard"), endpoint(low, "guard"))
        try:
            return _drive(endpoint(high, "producer"), endpoint(low, "sink"), count, size)
        finally:
            stop()
    finally:
        high.close()
        low.close()


def _paho_relay(src: Endpoint, dst: Endpoint):
    """paho-mqtt: manual ack of the inbound message once the outbound PUBACK arrives."""
    out = paho_client(dst, "relay-out")
    inbound = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="relay-in",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    inbound.username_pw_set(src.user, src.password)
    pending: dict[int, int] = {}
    early: set[int] = set()
    lock = threading.Lock()

    # Never call into paho while holding `lock`: on_publish runs in the other client's
    # thread under that client's locks and takes `lock` (an inversion that deadlocked the
    # first version of this relay, which then "measured" about 1,000 msg/s).
    def on_publish(client, userdata, mid, reason_code, properties):
        with lock:
            in_mid = pending.pop(mid, None)
            if in_mid is None:
                early.add(mid)  # the PUBACK beat the bookkeeping
                return
        inbound.ack(in_mid, 1)

    def on_message(client, userdata, msg):
        info = out.publish(TOPIC_OUT, msg.payload, qos=1)
        with lock:
            acked = info.mid in early
            if acked:
                early.discard(info.mid)
            else:
                pending[info.mid] = msg.mid
        if acked:
            inbound.ack(msg.mid, 1)

    out.on_publish = on_publish
    inbound.on_message = on_message
    ready = threading.Event()
    inbound.on_subscribe = lambda *a: ready.set()
    inbound.on_connect = lambda c, *a: c.subscribe(TOPIC_IN, qos=1)
    inbound.connect(src.host, src.port)
    inbound.loop_start()
    if not ready.wait(10):
        raise RuntimeError("relay did not subscribe")

    def stop() -> None:
        for c in (inbound, out):
            c.disconnect()
            c.loop_stop()

    return stop


def _aiomqtt_relay(src: Endpoint, dst: Endpoint):
    """aiomqtt: no manual acknowledgement, so the inbound ack is not tied to the outbound."""
    import aiomqtt

    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def run() -> None:
        async with (
            aiomqtt.Client(
                src.host, src.port, username=src.user, password=src.password,
                protocol=aiomqtt.ProtocolVersion.V5, identifier="aio-in",
            ) as inbound,
            aiomqtt.Client(
                dst.host, dst.port, username=dst.user, password=dst.password,
                protocol=aiomqtt.ProtocolVersion.V5, identifier="aio-out",
                max_inflight_messages=1000,
            ) as out,
        ):
            await inbound.subscribe(TOPIC_IN, qos=1)
            ready.set()
            async for msg in inbound.messages:
                await out.publish(TOPIC_OUT, msg.payload, qos=1)

    thread = threading.Thread(target=lambda: loop.run_until_complete(_guarded(run())), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("aiomqtt relay did not subscribe")

    def stop() -> None:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        thread.join(5)

    return stop


async def _guarded(coro) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await coro


def measure_bridge(count: int, size: int) -> dict[str, float]:
    """The same load through a mosquitto bridge (no relay process at all)."""
    high, low, src, dst = bridge_pair(TOPIC_IN, TOPIC_OUT)
    try:
        time.sleep(0.5)  # the bridge connects asynchronously
        return _drive(src, dst, count, size)
    finally:
        high.close()
        low.close()


def run(args: argparse.Namespace) -> dict[str, object]:
    bridge = measure_bridge(args.count, args.size)
    paho = _measure(_paho_relay, args.count, args.size)
    aio = _measure(_aiomqtt_relay, args.count, args.size)
    result: dict[str, object] = {"count": args.count, "size": args.size}
    for name, figures in (("bridge", bridge), ("paho", paho), ("aiomqtt", aio)):
        for key, value in figures.items():
            result[f"{name}_{key}"] = value
    for name in ("paho", "aiomqtt"):
        b = bridge["msgs_s"]
        result[f"ratio_{name}_vs_bridge"] = round(result[f"{name}_msgs_s"] / b, 3) if b else None
    return result
