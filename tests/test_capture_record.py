"""``guard record``: from a generator (deterministic), from a topic (in-process and mosquitto)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import pytest

from guard.capture import CaptureWriter, load_capture
from guard.cli import main
from guard.domains.broker import Broker
from guard.domains.generators import Generator, GeneratorConfig, targets_from_topology
from guard.domains.mqtt_client import MqttConnection
from guard.domains.topology import load_topology
from guard.domains.transport import InProcessBroker
from guard.recorder import record_topic

REPO = Path(__file__).resolve().parents[1]
FLOW = "us-secret-to-fvey"


def test_generate_is_deterministic_and_matches_the_generator(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.gcap", tmp_path / "b.gcap"
    for p in (a, b):
        assert main(["record", "--generate", "40", "--seed", "5", "--flow", FLOW, str(p)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["record", "--generate", "40", "--seed", "5", "--flow", FLOW, str(a)]) == 2
    assert "exists" in capsys.readouterr().err
    idx, msgs = load_capture(a)
    assert idx.meta["seed"] == 5 and idx.meta["flow"] == FLOW
    target = {t.name: t for t in targets_from_topology(load_topology())}[FLOW]
    gen = Generator(target, 5, REPO / "policies/terms/codewords.txt",
                    GeneratorConfig(rate_per_s=40 / 86400, poisson=True))
    expected = gen.take(40)
    assert [m.message_id for m in msgs] == [e.message_id for e in expected]
    assert [hashlib.sha256(m.payload).hexdigest() for m in msgs] == \
        [e.entry.sha256 for e in expected]
    assert all(m.flow == FLOW and m.topic == target.topic for m in msgs)
    assert [m.properties for m in msgs] == [tuple(e.properties) for e in expected]
    times = [m.time for m in msgs]
    assert times == sorted(times) and times[-1] - times[0] > 3600  # spread over the day


def test_record_topic_in_process(tmp_path: Path) -> None:
    topo = load_topology()
    path = tmp_path / "r.gcap"

    async def go() -> None:
        broker = InProcessBroker("us-secret", topo.broker_users("us-secret"))
        guard = await broker.connect(*broker.credentials("guard"))
        producer = await broker.connect(*broker.credentials("producer"))
        await guard.subscribe(topo.flow(FLOW).inbound_topic)
        for i in range(5):
            await producer.publish(topo.flow(FLOW).inbound_topic, b"payload %d\xff" % i,
                                   [("message-id", f"id-{i}"), ("flow", FLOW), ("k", "v")])
        await producer.publish(topo.flow(FLOW).inbound_topic, b"no id", [])
        with CaptureWriter(path, {"source": "test"}) as w:
            st = await record_topic(guard, topo.flow(FLOW).inbound_topic, w, count=10,
                                    idle=0.3, subscribe=False)
        assert st.messages == 6 and st.stopped == "idle"
        assert broker._sessions[guard.client_id].inflight == {}  # every message was acked

    asyncio.run(asyncio.wait_for(go(), 20))
    msgs = load_capture(path)[1]
    # no message-id property: the daemon's convention, so that --audit can match it
    assert [m.message_id for m in msgs] == [f"id-{i}" for i in range(5)] + [
        "sha256:" + hashlib.sha256(b"no id").hexdigest()]
    assert [m.payload for m in msgs[:5]] == [b"payload %d\xff" % i for i in range(5)]
    assert all(m.flow == FLOW and ("k", "v") in m.properties for m in msgs[:5])
    assert msgs[5].flow == FLOW and msgs[5].properties == ()  # flow from the topic


def test_password_never_from_the_command_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("GUARD_MQTT_PASSWORD", raising=False)
    rc = main(["record", "--host", "127.0.0.1", "--port", "1", "--flow", FLOW,
               str(tmp_path / "x.gcap")])
    assert rc == 2 and "GUARD_MQTT_PASSWORD" in capsys.readouterr().err
    assert not (tmp_path / "x.gcap").exists()


@pytest.mark.integration
def test_record_from_mosquitto_via_the_cli(tmp_path: Path, monkeypatch) -> None:
    topo = load_topology()
    topic = topo.flow(FLOW).inbound_topic
    out = tmp_path / "m.gcap"
    with Broker("us-secret", topo.broker_users("us-secret"), persistence=False) as broker:
        broker.start()
        pwfile = tmp_path / "pw"
        pwfile.write_text(broker.credentials("guard")[1] + "\n")
        pwfile.chmod(0o600)
        rc: list[int] = []
        t = threading.Thread(target=lambda: rc.append(main([
            "record", "--host", broker.host, "--port", str(broker.port), "--flow", FLOW,
            "--password-file", str(pwfile), "--count", "3", "--duration", "20", str(out)])))
        t.start()

        async def produce() -> list[bytes]:
            sent: list[bytes] = []
            conn = await MqttConnection.connect(broker.host, broker.port,
                                                *broker.credentials("producer"))
            i = 0
            while t.is_alive() and i < 400:  # until the recorder has its three
                body = b"SECRET\n(S) m %d\nSECRET\n" % i
                await conn.publish(topic, body, [("message-id", f"q-{i}"), ("flow", FLOW)])
                sent.append(body)
                i += 1
                await asyncio.sleep(0.05)
            await conn.close()
            return sent

        time.sleep(0.3)
        sent = asyncio.run(produce())
        t.join(30)
    assert rc == [0]
    msgs = load_capture(out)[1]
    assert len(msgs) == 3
    first = sent.index(msgs[0].payload)
    assert [m.payload for m in msgs] == sent[first:first + 3]
    assert [m.message_id for m in msgs] == [f"q-{first + k}" for k in range(3)]
    assert all(m.topic == topic and m.flow == FLOW for m in msgs)


def test_a_message_is_acknowledged_only_once_its_block_is_written(tmp_path: Path) -> None:
    from guard.domains.transport import Message

    class Conn:
        def __init__(self, writer: CaptureWriter) -> None:
            self.queue = [Message("flows/f/in", b"p%d" % i, (("message-id", f"a{i}"),))
                          for i in range(7)]
            self.writer = writer
            self.acks: list[tuple[bytes, int, int]] = []  # payload, pending, file size

        async def get(self, timeout: float | None = None) -> Message:
            if not self.queue:
                await asyncio.sleep(timeout or 0)
                raise TimeoutError
            return self.queue.pop(0)

        async def ack(self, m: Message) -> None:
            self.acks.append((m.payload, self.writer.pending, path.stat().st_size))

    path = tmp_path / "ack.gcap"
    with CaptureWriter(path, {}, block_records=3) as w:
        conn = Conn(w)
        st = asyncio.run(record_topic(conn, "flows/f/in", w, idle=0.2, flush_s=60,
                                      subscribe=False))
    assert st.messages == 7
    assert [a[0] for a in conn.acks] == [b"p%d" % i for i in range(7)]
    assert all(pending == 0 for _, pending, _ in conn.acks)  # never ahead of the disk
    sizes = [size for _, _, size in conn.acks]
    assert sizes[0] == sizes[2] < sizes[3] == sizes[5] < sizes[6]  # acked block by block
