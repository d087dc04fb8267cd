"""The latency path keeps its guarantees: the audit log's non-blocking commit future,
the relay's own hang watchdog, the coalesced socket writes and the latency trace."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from test_daemon_relay import Harness, _drain, _messages, _run_until

from guard.audit import AuditError, AuditLog, DecisionRecord, Signer
from guard.audit.verify import analyse
from guard.daemon_config import parse_config
from guard.domains.mqtt_client import _BufferedClient
from guard.metrics import LatencyTrace
from guard.relay import HUNG

SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}
H = hashlib.sha256(b"x").hexdigest()


def rec(i: int) -> DecisionRecord:
    return DecisionRecord(f"d-{i}", 1.7e9 + i, "f", f"m-{i}", H, H, H, "release")


# -- AuditLog.flush_future ---------------------------------------------------------------


def test_flush_future_completes_once_the_records_are_committed(tmp_path: Path) -> None:
    with AuditLog(tmp_path, SIGNER, batch_max=1000, max_delay_s=60) as log:
        assert log.flush_future().done()  # nothing appended: nothing to wait for
        log.append_many([rec(i) for i in range(5)])
        fut = log.flush_future()  # closes the pending batch at once (60 s timer)
        fut.result(timeout=10)
        assert log.committed == 5
        # a head covering the five records is on disk while the writer is still open
        assert analyse(tmp_path, KEYS, allow_tail=True).records == 5
        log.append(rec(5))
        futs = [log.flush_future() for _ in range(3)]
        for f in futs:
            f.result(timeout=10)
        assert log.committed == 6
    rep = analyse(tmp_path, KEYS)
    assert rep.ok and rep.records == 6


def test_commit_many_commits_at_once_and_keeps_the_chain(tmp_path: Path) -> None:
    with AuditLog(tmp_path, SIGNER, batch_max=1000, max_delay_s=60) as log:
        log.append_many([rec(i) for i in range(3)])  # pending, behind a 30 s timer
        fut = log.commit_many([rec(i) for i in range(3, 7)])
        fut.result(timeout=10)  # covers the earlier records too
        assert log.committed == 7
        assert log.commit_many([]).done()
        log.commit_many([rec(7)]).result(timeout=10)
        bad = dataclasses.replace(rec(9), flow="")
        with pytest.raises(AuditError, match="record 1 of the batch"):
            log.commit_many([rec(8), bad])
        assert log.size == 8  # all-or-nothing
    rep = analyse(tmp_path, KEYS)
    assert rep.ok and rep.records == 8


def test_flush_future_fails_when_the_log_fails(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, SIGNER, batch_max=1000, max_delay_s=60)
    try:
        log.append(rec(0))
        log.flush()
        # the records file becomes unwritable: the next batch cannot be written
        os.close(log._rec_fd)
        log._rec_fd = os.open(os.devnull, os.O_RDONLY)
        log.append(rec(1))
        fut = log.flush_future()
        with pytest.raises(AuditError):
            fut.result(timeout=10)
        with pytest.raises(AuditError):
            log.append(rec(2))  # and it refuses everything after
        assert isinstance(log.flush_future().exception(timeout=1), AuditError)
    finally:
        log.close()
    assert not log._committer.is_alive() and not log._head_syncer.is_alive()
    assert analyse(tmp_path, KEYS).records == 1  # what was committed stays


def test_close_leaves_every_head_synced_and_the_threads_ended(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, SIGNER, batch_max=7, max_delay_s=0.01)
    for i in range(40):
        log.append(rec(i))
        if i % 9 == 0:
            log.flush_future()
    log.close()
    assert not log._committer.is_alive() and not log._head_syncer.is_alive()
    assert log._head_synced == log.committed == 40
    rep = analyse(tmp_path, KEYS)
    assert rep.ok and rep.records == 40


# -- the relay's hang watchdog --------------------------------------------------------


def test_a_hung_pipeline_blocks_its_batch_and_the_relay_goes_on(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    route = h.routes[0]
    assert not route.pipeline.watchdog  # the daemon's pipelines: the relay watches them
    route.policy = dataclasses.replace(route.policy, time_budget_ms=50)
    real = route.pipeline.decide_batch
    release = threading.Event()
    hung_ids: list[str] = []

    def first_call_hangs(payloads: Any, ids: Any) -> Any:
        if not hung_ids:
            hung_ids.extend(ids)
            release.wait(30)  # a filter that never returns (until the test ends)
        return real(payloads, ids)

    route.pipeline.decide_batch = first_call_hangs  # type: ignore[method-assign]
    first, later = _messages(h, 3), _messages(h, 3)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in first])
        r = h.relay(batch_max=3)
        task = asyncio.create_task(_run_until(r, lambda: len(h.records()) == 6, 30))
        while len(h.records()) < 3:
            await asyncio.sleep(0.01)
        await h.publish([(m.payload, list(m.properties)) for m in later])
        await task
        release.set()  # the abandoned call returns now: it must change nothing
        await asyncio.sleep(0.2)
        got = await _drain(sink, 0.3)
        h.close_states()
        recs = h.records()
        assert len(recs) == 6, recs  # nothing recorded twice by the abandoned thread
        assert hung_ids and {d["message_id"] for d in recs} == {m.message_id
                                                                 for m in first + later}
        for d in recs:
            if d["message_id"] in hung_ids:
                assert d["verdict"] == "block" and HUNG in json.dumps(d["findings"])
            else:
                assert d["verdict"] == "release"
        released = {dict(m.properties)["guard-message-id"] for m in got}
        assert released == {d["message_id"] for d in recs} - set(hung_ids)
        assert r.metrics.errors["decide-hung"] == 1
        assert h.env.brokers["us-secret"].queued("guard-0-in-us-secret") == 0

    asyncio.run(go())


def test_a_bug_in_the_decide_thread_stops_the_relay_and_acknowledges_nothing(
        tmp_path: Path) -> None:
    from guard.relay import RelayFailed

    h = Harness(tmp_path)
    msgs = _messages(h, 4)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay()

        def broken(*a: Any, **k: Any) -> None:
            raise ZeroDivisionError("simulated bug")

        r._settle = broken  # type: ignore[method-assign]
        with pytest.raises(RelayFailed):
            await asyncio.wait_for(r.run(), 20)
        assert await _drain(sink, 0.1) == []
        assert h.env.brokers["us-secret"].queued("guard-0-in-us-secret") == 4
        h.close_states()
        assert h.records() == []

    asyncio.run(go())


# -- coalesced socket writes -----------------------------------------------------------


def _client_on(sock: socket.socket) -> _BufferedClient:
    c = _BufferedClient(CallbackAPIVersion.VERSION2, client_id="t")
    c._sock = sock
    return c


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=40),
       offset=st.integers(0, 3))
def test_coalesced_writes_send_every_byte_in_order(sizes: list[int], offset: int) -> None:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # partial writes happen
        c = _client_on(a)
        want = b""
        for n, size in enumerate(sizes):
            data = bytes([n % 251]) * size
            pos = min(offset, size - 1) if n == 0 else 0  # a packet already begun
            c._out_packet.append({"command": 0x32, "mid": n + 1, "qos": 1, "pos": pos,
                                  "to_process": size - pos, "packet": data, "info": None})
            want += data[pos:]
        got = bytearray()
        for _ in range(100_000):
            rc = c._packet_write()
            while True:
                try:
                    chunk = b.recv(1 << 20)
                except BlockingIOError:
                    break
                got += chunk
            if rc == 0 and not c._out_packet:
                break
        while True:
            try:
                got += b.recv(1 << 20)
            except BlockingIOError:
                break
        assert bytes(got) == want
        assert not c._out_packet
    finally:
        a.close()
        b.close()


def test_a_disconnect_in_the_queue_is_left_to_paho() -> None:
    a, b = socket.socketpair()
    try:
        c = _client_on(a)
        c._out_packet.append({"command": 0x40, "mid": 1, "qos": 0, "pos": 0, "to_process": 4,
                              "packet": b"\x40\x02\x00\x01", "info": None})
        c._out_packet.append({"command": 0xE0, "mid": 0, "qos": 0, "pos": 0, "to_process": 2,
                              "packet": b"\xe0\x00", "info": None})
        c._packet_write()  # paho's own path: writes both, then closes on the DISCONNECT
        assert b.recv(100) == b"\x40\x02\x00\x01\xe0\x00"
        assert c._sock is None
    finally:
        a.close()
        b.close()


# -- the latency trace ---------------------------------------------------------------


def test_the_relay_traces_every_message_when_asked(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msgs = _messages(h, 12)
    trace = LatencyTrace(str(tmp_path / "trace.0"))

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay(trace=trace, batch_max=5)
        await _run_until(r, lambda: len(h.records()) == 12 and r.metrics.inflight == 0)
        await _drain(sink, 0.1)
        h.close_states()
        trace.close()

    asyncio.run(go())
    batches = [json.loads(line) for line in (tmp_path / "trace.0").read_text().splitlines()]
    mids = [m for b in batches for m in b["mid"]]
    assert sorted(mids) == sorted(m.message_id for m in msgs)
    for b in batches:
        assert 1 <= len(b["mid"]) <= 5
        assert all(t == 0 or t <= b["taken"] for t in b["recv"])  # 0: not known
        assert b["taken"] <= b["decided"] <= b["durable"] <= b["acked"]
        for pub in b["puback"]:
            assert pub is None or b["durable"] <= pub <= b["acked"]


def test_latency_trace_is_a_config_path(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    cfg = parse_config({"brokers": {"us-secret": {"port": 1883, "password_file": "pw"}},
                        "signing_key": "k", "state_dir": "s", "latency_trace": "t/trace"},
                       base=tmp_path)
    assert cfg.latency_trace == (tmp_path / "t" / "trace").resolve()
    assert parse_config({"brokers": {"us-secret": {"port": 1883, "password_file": "pw"}},
                         "signing_key": "k", "state_dir": "s"}, base=tmp_path).latency_trace \
        is None


# -- publish_batch: the lean PUBLISH path ------------------------------------------------


def _read_packets(sock: socket.socket) -> list[tuple[int, bytes]]:
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    out, k = [], 0
    while k < len(data):
        header, k = data[k], k + 1
        n = shift = 0
        while True:
            b = data[k]
            k += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append((header, data[k:k + n]))
        k += n
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=st.lists(st.tuples(st.sampled_from(["released/a", "released/b/c", "r/é"]),
                               st.binary(max_size=5000),
                               st.lists(st.tuples(st.text(max_size=12), st.text(max_size=30)),
                                        max_size=10)), min_size=1, max_size=20),
       codes=st.data())
def test_publish_batch_writes_what_paho_reads_and_settles_by_puback(
        msgs: list[tuple[str, bytes, list[tuple[str, str]]]], codes: Any) -> None:
    from guard.domains.mqtt_client import MqttConnection, _decode_qos1_publish
    from guard.domains.transport import NotAuthorized, TransportError

    msgs = [(t, p, [(k, v) for k, v in props if "\x00" not in k + v]) for t, p, props in msgs]

    async def go() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            c = _client_on(a)
            c._protocol = 5  # MQTT 5, as MqttConnection.connect sets it
            conn = MqttConnection(c, asyncio.get_running_loop())
            conn._fd = a.fileno()
            c.on_puback_received = conn._on_lean_puback
            batch = conn.publish_batch(msgs, 30)
            got = _read_packets(b)
            assert len(got) == len(msgs)
            mids = []
            for (header, body), (topic, payload, props) in zip(got, msgs, strict=True):
                assert header == 0x32
                t, p, pr, qos, dup, mid = _decode_qos1_publish(header, body)  # type: ignore[misc]
                assert (t, p, list(pr), qos, dup) == (topic, payload, props, 1, False)
                mids.append(mid)
            assert len(set(mids)) == len(mids) and not batch.done.done()
            # PUBACKs in reverse order: 0 (success), 0x87 (not authorized), 0x90 with
            # properties (a reason string): the last two fail, never silently succeed
            want = [codes.draw(st.sampled_from([0, 0x87, 0x90])) for _ in mids]
            for mid, code in reversed(list(zip(mids, want, strict=True))):
                ack = mid.to_bytes(2, "big") + bytes([code])
                if code == 0x90:
                    ack += b"\x05\x1f\x00\x02no"  # reason string property
                b.send(bytes([0x40, len(ack)]) + ack)
            while not batch.done.done():
                conn._on_readable()
                await asyncio.sleep(0)
            for code, err in zip(want, batch.errors, strict=True):
                if code == 0:
                    assert err is None
                elif code == 0x87:
                    assert isinstance(err, NotAuthorized)
                else:
                    assert isinstance(err, TransportError) and "144" in str(err)
            assert not conn._lean
        finally:
            a.close()
            b.close()

    asyncio.run(go())


def test_publish_batch_times_out_and_fails_on_disconnect() -> None:
    from guard.domains.mqtt_client import MqttConnection
    from guard.domains.transport import ConnectionLost

    async def go() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            c = _client_on(a)
            conn = MqttConnection(c, asyncio.get_running_loop())
            conn._fd = a.fileno()
            late = conn.publish_batch([("t/1", b"x", [])], 0.05)
            await asyncio.wait_for(late.done, 5)
            assert isinstance(late.errors[0], TimeoutError)
            lost = conn.publish_batch([("t/2", b"y", [("k", "v")]), ("t/3", b"z", [])], 30)
            conn._on_disconnect(c, None, None, None, None)
            await asyncio.wait_for(lost.done, 5)
            assert all(isinstance(e, ConnectionLost) for e in lost.errors)
            after = conn.publish_batch([("t/4", b"w", [])], 30)
            assert after.done.done() and isinstance(after.errors[0], ConnectionLost)
        finally:
            a.close()
            b.close()

    asyncio.run(go())
