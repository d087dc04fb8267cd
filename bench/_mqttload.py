"""Load generation and measurement over real brokers, shared by the MQTT benchmarks.

The producer runs in its own process so that its Python work does not compete
with the code being measured for the GIL; the consumer runs in the measuring
process and records, per message, the latency from the send time the producer
wrote into the first 8 bytes of the payload.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from guard.domains.broker import Broker, BrokerUser
from guard.domains.mqtt_client import FastDecodeClient

_STAMP = struct.Struct("<d")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect."""

    host: str
    port: int
    user: str
    password: str


def endpoint(broker: Broker, user: str) -> Endpoint:
    """The endpoint of ``user`` on ``broker``."""
    name, password = broker.credentials(user)
    return Endpoint(broker.host, broker.port, name, password)


def paho_client(ep: Endpoint, client_id: str, *, fast: bool = False,
                **kwargs: object) -> mqtt.Client:
    """A connected paho MQTT 5 client with its network loop running.

    ``fast``: a ``FastDecodeClient`` with manual acknowledgement (set its
    ``on_publish_received`` and ack there): paho's own decoding costs ~100 us per
    4 KB message, which would make a Python subscriber the limit of what it measures.
    """
    cls = FastDecodeClient if fast else mqtt.Client
    c = cls(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kwargs)
    if fast:
        c.manual_ack_set(True)
    c.username_pw_set(ep.user, ep.password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(ep.host, ep.port, keepalive=30)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"no CONNACK from {ep.host}:{ep.port}")
    return c


def _produce(ep: Endpoint, topic: str, count: int, size: int, rate: float | None) -> None:
    c = paho_client(ep, f"producer-{time.monotonic_ns()}")
    filler = b"x" * max(0, size - _STAMP.size)
    interval = 1.0 / rate if rate else 0.0
    start = time.perf_counter()
    infos = []
    for i in range(count):
        if interval:
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        infos.append(c.publish(topic, _STAMP.pack(time.time()) + filler, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def start_producer(
    ep: Endpoint, topic: str, count: int, size: int, rate: float | None = None
) -> subprocess.Popen[bytes]:
    """Publish ``count`` QoS-1 messages of ``size`` bytes from a separate process.

    The parameters (password included) go over stdin, not the command line.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.bench._mqttload"], stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    job = {"ep": asdict(ep), "topic": topic, "count": count, "size": size, "rate": rate}
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    return proc


class Counter:
    """Subscribes and records arrival latencies until ``count`` messages arrived."""

    def __init__(self, ep: Endpoint, topic: str, count: int) -> None:
        self.count = count
        self.latencies: list[float] = []
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self._client = paho_client(ep, f"counter-{time.monotonic_ns()}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        if not self.latencies:
            self.first = time.perf_counter()
        (sent,) = _STAMP.unpack_from(msg.payload)
        self.latencies.append(now - sent)
        if len(self.latencies) >= self.count:
            self.last = time.perf_counter()
            self.done.set()

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def rate(self) -> float:
        """Messages per second between the first and the last arrival."""
        n = len(self.latencies)
        span = (self.last or time.perf_counter()) - self.first
        return (n - 1) / span if n > 1 and span > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bridge_pair(
    topic_in: str, topic_out: str
) -> tuple[Broker, Broker, Endpoint, Endpoint]:
    """Two brokers joined by a mosquitto bridge that carries ``topic_in`` to ``topic_out``.

    The bridge runs inside the low broker and pulls from the high one, QoS 1: the
    unfiltered baseline the guard is compared with.
    """
    high = Broker(
        "bench-high",
        [BrokerUser("producer", write=(topic_in,)), BrokerUser("bridge", read=(topic_in,))],
        persistence=False,
    ).start()
    low = Broker(
        "bench-low",
        [BrokerUser("sink", read=(topic_out,)), BrokerUser("producer", write=(topic_out,))],
        persistence=False,
    )
    user, password = high.credentials("bridge")
    prefix_in, _, _ = topic_in.rpartition("/")
    prefix_out, _, leaf = topic_out.rpartition("/")
    extra = "\n".join(
        [
            "connection guard-bench-bridge",
            f"address {high.host}:{high.port}",
            f"remote_username {user}",
            f"remote_password {password}",
            "bridge_protocol_version mqttv50",
            "cleansession true",
            "try_private false",
            f"topic {leaf} in 1 {prefix_out}/ {prefix_in}/",
            "max_queued_messages 100000",
            "",
        ]
    )
    low.extra_config = extra
    low.start()
    return high, low, endpoint(high, "producer"), endpoint(low, "sink")


if __name__ == "__main__":
    _job = json.loads(sys.stdin.read())
    _produce(Endpoint(**_job["ep"]), _job["topic"], _job["count"], _job["size"], _job["rate"])
