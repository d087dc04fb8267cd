"""The relay's guarantees on the in-process transport (fast, deterministic).

Redelivery after a crash (acknowledge, or re-publish the SAME decision), a message id
reused for other content, a failing pipeline, a failing audit log, odd message ids,
two workers sharing a flow, and the configuration file's error reporting.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.audit.keys import load_signer
from guard.daemon import load_routes, open_worker_state
from guard.daemon_config import ConfigError, parse_config
from guard.delivery import DecidedIndex
from guard.demo import POLICIES, TERMS, InProcessEnv
from guard.domains.generators import Generator, GeneratorConfig, targets_from_topology
from guard.relay import Relay, RelayFailed

FLOW = "us-secret-to-gbr"


class Harness:
    """In-process domains, a producer, a sink reader and relays for one flow."""

    def __init__(self, tmp: Path) -> None:
        self.env = InProcessEnv(tmp, flows=[FLOW])
        self.topo, self.routes = load_routes(None, POLICIES, [FLOW])
        self.signer = load_signer(self.env.key_dir)
        target = next(t for t in targets_from_topology(self.topo) if t.name == FLOW)
        self.gen = Generator(target, 71, TERMS, GeneratorConfig(sizes={512: 1.0}))
        self.states: list[Any] = []

    def relay(self, worker: int = 0, **kw: Any) -> Relay:
        state = open_worker_state(self.env.state_dir, worker, self.signer, max_delay_s=0.005)
        self.states.append(state)

        async def connect(domain: str, client_id: str, inbound: bool) -> Any:
            b = self.env.brokers[domain]
            return await b.connect(*b.credentials("guard"), client_id=client_id,
                                   clean_start=not inbound)

        kw.setdefault("shared_group", "guard")
        return Relay(self.routes, connect, state.audit, self.signer, state.index,
                     state.journal, client_id=f"guard-{worker}", status_interval_s=0,
                     reconnect_initial_s=0.01, **kw)

    def close_states(self) -> None:
        for s in self.states:
            s.close()
        self.states = []

    async def prime(self, *workers: int) -> None:
        """Create the workers' persistent sessions, as a guard that ran before would have."""
        b = self.env.brokers["us-secret"]
        for w in workers or (0,):
            conn = await b.connect(*b.credentials("guard"), client_id=f"guard-{w}-in-us-secret",
                                   clean_start=False)
            await conn.subscribe(f"$share/guard/flows/{FLOW}/in")
            await conn.close()

    async def publish(self, payloads: list[tuple[bytes, list[tuple[str, str]]]]) -> None:
        b = self.env.brokers["us-secret"]
        conn = await b.connect(*b.credentials("producer"))
        for payload, props in payloads:
            await conn.publish(f"flows/{FLOW}/in", payload, props)
        await conn.close()

    async def sink(self) -> Any:
        await self.prime()
        b = self.env.brokers["gbr"]
        conn = await b.connect(*b.credentials("sink"), client_id="sink", clean_start=False)
        await conn.subscribe("released/#")
        return conn

    def records(self) -> list[dict[str, Any]]:
        return self.env.decisions()


async def _drain(conn: Any, quiet_s: float = 0.3) -> list[Any]:
    out = []
    while True:
        try:
            m = await conn.get(timeout=quiet_s)
        except TimeoutError:
            return out
        out.append(m)
        await conn.ack(m)


async def _run_until(relay: Relay, cond: Any, timeout_s: float = 20) -> None:
    task = asyncio.create_task(relay.run())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    relay.stop()
    await task


def _messages(h: Harness, n: int, category: str = "clean-finished") -> list[Any]:
    return [h.gen.next(category) for _ in range(n)]


def test_redelivery_is_acked_or_republished_under_the_same_decision(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msgs = _messages(h, 6)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r1 = h.relay()
        await _run_until(r1, lambda: r1.metrics.delivered[FLOW] == 6)
        first = await _drain(sink)
        assert len(first) == 6
        h.close_states()
        decisions = {d["message_id"]: d for d in h.records()}
        # forget that two of them were delivered (a kill between PUBACK and journal)
        journal = h.env.state_dir / "worker-0" / "delivered.log"
        lines = journal.read_text().splitlines()
        gone = {json.loads(x)[1] for x in lines[:2]}
        journal.write_text("".join(x + "\n" for x in lines[2:]))
        # the high side delivers every message again (as after a crash before the PUBACK)
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r2 = h.relay()
        await _run_until(r2, lambda: sum(r2.metrics.redelivered.values()) == 6
                         and r2.metrics.inflight == 0)
        again = await _drain(sink)
        h.close_states()
        assert sorted(dict(m.properties)["guard-message-id"] for m in again) == sorted(gone)
        for m in again:  # the same decision, stamped again; no new record
            p = dict(m.properties)
            assert p["guard-decision-id"] == decisions[p["guard-message-id"]]["decision_id"]
        assert len(h.records()) == 6
        assert r2.metrics.republished[FLOW] == 2

    asyncio.run(go())


def test_a_reused_message_id_with_other_content_is_never_released(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    a, b = _messages(h, 2)

    async def go() -> None:
        sink = await h.sink()
        props = list(a.properties)
        await h.publish([(a.payload, props), (b.payload, props)])
        r = h.relay()
        await _run_until(r, lambda: len(h.records()) == 2 and r.metrics.inflight == 0)
        got = await _drain(sink)
        h.close_states()
        assert [dict(m.properties)["guard-message-id"] for m in got] == [a.message_id]
        second = h.records()[1]
        assert second["verdict"] == "block"
        assert "already decided for different content" in json.dumps(second["findings"])

    asyncio.run(go())


def test_a_failing_pipeline_blocks_and_records_every_message(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def broken(*a: Any, **k: Any) -> Any:
        raise MemoryError("simulated")

    h.routes[0].pipeline.decide_batch = broken  # type: ignore[method-assign]
    msgs = _messages(h, 5)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay()
        await _run_until(r, lambda: len(h.records()) == 5 and r.metrics.inflight == 0)
        assert await _drain(sink, 0.1) == []
        h.close_states()
        assert {d["verdict"] for d in h.records()} == {"block"}
        assert all("pipeline failed" in json.dumps(d["findings"]) for d in h.records())
        # acknowledged: nothing comes back to a new session of the same worker
        assert h.env.brokers["us-secret"].queued("guard-0-in-us-secret") == 0

    asyncio.run(go())


def test_an_audit_log_that_fails_stops_the_relay_and_acknowledges_nothing(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msgs = _messages(h, 4)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay()

        def refuse(records: Any) -> Any:
            from guard.audit.records import AuditError

            raise AuditError("disk full (simulated)")

        r.audit.append_many = refuse  # type: ignore[method-assign]
        r.audit.commit_many = refuse  # type: ignore[method-assign]
        with pytest.raises(RelayFailed):
            await asyncio.wait_for(r.run(), 20)
        assert await _drain(sink, 0.1) == []
        assert h.env.brokers["us-secret"].queued("guard-0-in-us-secret") == 4
        h.close_states()

    asyncio.run(go())


class _CountingSigner:
    """A signer that counts its signatures, or fails when told to."""

    def __init__(self, signer: Any, fail: bool = False) -> None:
        self.inner, self.fail, self.calls = signer, fail, 0
        self.key_id, self.public_key = signer.key_id, signer.public_key

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        if self.fail:
            raise OSError("signing device gone (simulated)")
        return self.inner.sign(data)


def test_releases_are_stamped_in_batches_that_each_verify(tmp_path: Path) -> None:
    from guard.audit.stamp import verify_stamp

    h = Harness(tmp_path)
    msgs = _messages(h, 40)
    counting = _CountingSigner(h.signer)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay()
        r.signer = counting  # type: ignore[assignment]
        await _run_until(r, lambda: r.metrics.delivered[FLOW] == 40)
        got = await _drain(sink)
        h.close_states()
        keys = {h.signer.key_id: h.signer.public_key}
        assert len(got) == 40
        sigs = set()
        for m in got:
            ok, why = verify_stamp(m.payload, list(m.properties), keys)
            assert ok, why
            sigs.add(dict(m.properties)["guard-signature"])
        # fewer signatures than releases: they were batched (the audit log signs too)
        assert len(sigs) < 40 and counting.calls < 40

    asyncio.run(go())


def test_a_release_whose_stamp_cannot_be_signed_is_blocked_and_explained(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msgs = _messages(h, 5)

    async def go() -> None:
        sink = await h.sink()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay()
        r.signer = _CountingSigner(h.signer, fail=True)  # type: ignore[assignment]
        await _run_until(r, lambda: len(h.records()) == 5 and r.metrics.inflight == 0)
        assert await _drain(sink, 0.1) == []
        h.close_states()
        assert {d["verdict"] for d in h.records()} == {"block"}
        assert all(d["output_sha256"] is None for d in h.records())
        assert all("release stamp failed" in json.dumps(d["findings"]) for d in h.records())

    asyncio.run(go())


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mid=st.one_of(st.none(), st.text(min_size=0, max_size=300)))
def test_any_message_id_is_decided_once_and_never_crashes(tmp_path_factory: Any,
                                                          mid: str | None) -> None:
    h = Harness(tmp_path_factory.mktemp("ids"))
    m = _messages(h, 1)[0]
    props = [] if mid is None else [("message-id", mid)]

    async def go() -> None:
        await h.prime()
        await h.publish([(m.payload, props)])
        r = h.relay()
        await _run_until(r, lambda: len(h.records()) == 1 and r.metrics.inflight == 0)
        h.close_states()

    asyncio.run(go())
    rec = h.records()[0]
    if mid is None:
        assert rec["message_id"] == "sha256:" + m.entry.sha256
    elif not mid or len(mid) > 256 or any(ord(c) < 32 or c == "\x7f" for c in mid):
        assert rec["verdict"] == "block"
    else:
        assert rec["message_id"] == mid


def test_two_workers_share_a_flow_and_decide_each_message_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msgs = _messages(h, 40)

    async def go() -> None:
        sink = await h.sink()
        await h.prime(0, 1)
        r0, r1 = h.relay(0), h.relay(1)
        t0 = asyncio.create_task(r0.run())
        t1 = asyncio.create_task(r1.run())
        await asyncio.sleep(0.1)
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        while sum(r.metrics.delivered[FLOW] for r in (r0, r1)) < 40:
            await asyncio.sleep(0.01)
        r0.stop()
        r1.stop()
        await asyncio.gather(t0, t1)
        got = await _drain(sink)
        h.close_states()
        assert len(got) == 40
        assert r0.metrics.delivered[FLOW] > 5 and r1.metrics.delivered[FLOW] > 5
        ids = [d["message_id"] for d in h.records()]
        assert sorted(ids) == sorted(m.message_id for m in msgs)
        ok, problems = h.env.verify_audit()
        assert ok and len(h.env.audit_dirs()) == 2, problems

    asyncio.run(go())


def test_index_rebuilt_from_audit_and_journal(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    msgs = _messages(h, 3)

    async def go() -> None:
        await h.prime()
        await h.publish([(m.payload, list(m.properties)) for m in msgs])
        r = h.relay()
        await _run_until(r, lambda: r.metrics.delivered[FLOW] == 3 and r.metrics.inflight == 0)
        h.close_states()

    asyncio.run(go())
    idx = DecidedIndex()
    assert idx.load_audit(h.env.state_dir / "worker-0" / "audit" / "records.jsonl") == 3
    assert all(not idx.get(FLOW, m.message_id).delivered for m in msgs)
    assert idx.load_journal(h.env.state_dir / "worker-0" / "delivered.log") == 3
    assert all(idx.get(FLOW, m.message_id).delivered for m in msgs)
    small = DecidedIndex(window=2)
    small.load_audit(h.env.state_dir / "worker-0" / "audit" / "records.jsonl")
    assert len(small) == 2 and small.get(FLOW, msgs[0].message_id) is None


def test_the_decided_index_keeps_order_and_is_not_tracked_by_the_collector() -> None:
    import gc

    from guard.delivery import Decided

    idx = DecidedIndex(window=3)
    for i in range(4):
        idx.add("f", f"m{i}", Decided(f"d{i}", "release", "a" * 64, "b" * 64, "c" * 64))
    assert idx.get("f", "m0") is None and len(idx) == 3  # the oldest went first
    idx.mark_delivered([("f", "m2"), ("f", "nope")])
    assert idx.get("f", "m2").delivered and not idx.get("f", "m1").delivered
    idx.add("f", "m4", Decided("d4", "block", "a" * 64, None, "c" * 64))
    assert idx.get("f", "m1") is None and idx.get("f", "m2").decision_id == "d2"
    got = idx.get("f", "m4")
    assert got is not None and not got.releasing and got.output_sha256 is None
    gc.collect()
    assert not any(gc.is_tracked(v) or gc.is_tracked(k) for k, v in idx._entries.items())


def test_config_errors_name_every_bad_key(tmp_path: Path) -> None:
    bad = {"brokers": {"gbr": {"port": 70000, "colour": 1}}, "batch_max": 0,
           "audit": {"fsync": "sometimes"}, "surprise": True}
    with pytest.raises(ConfigError) as err:
        parse_config(bad, base=tmp_path)
    text = "\n".join(err.value.problems)
    for key in ("brokers.gbr.port", "brokers.gbr.colour", "batch_max", "audit.fsync",
                "surprise", "signing_key", "state_dir", "brokers.gbr: password"):
        assert key in text, key
    (tmp_path / "pw").write_text("secret\n")
    cfg = parse_config({"brokers": {"gbr": {"port": 1884, "password_file": "pw"}},
                        "signing_key": "k", "state_dir": "s"}, base=tmp_path)
    assert cfg.brokers["gbr"].password == "secret" and cfg.state_dir == tmp_path / "s"
    assert "secret" not in repr(cfg.brokers["gbr"])


@settings(max_examples=50, deadline=None)
@given(pairs=st.lists(st.tuples(st.text(max_size=40), st.text(max_size=300)), max_size=12))
def test_user_properties_are_encoded_exactly_as_paho_does(pairs: list[tuple[str, str]]) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from guard.domains.mqtt_client import _UserProperties

    pairs = [(k, v) for k, v in pairs
             if not any(0xD800 <= ord(c) <= 0xDFFF for c in k + v)]
    if not pairs:
        return
    ref = Properties(PacketTypes.PUBLISH)
    ref.UserProperty = pairs
    assert _UserProperties(pairs).pack() == ref.pack()


def test_the_example_configuration_is_valid_apart_from_its_secrets(tmp_path: Path) -> None:
    import yaml

    from guard.demo import REPO

    path = REPO / "domains" / "config" / "guard.yaml"
    data = yaml.safe_load(path.read_text())
    with pytest.raises(ConfigError) as err:
        parse_config(data, base=path.parent, path=path)
    assert all("password_file: cannot read" in p or ": password or password_file" in p
               for p in err.value.problems), err.value.problems
    for name in data["brokers"]:
        (tmp_path / name).write_text("pw")
        data["brokers"][name]["password_file"] = str(tmp_path / name)
    cfg = parse_config(data, base=path.parent, path=path)
    topo, routes = load_routes(cfg.topology, cfg.policies, cfg.flows)
    assert {r.name for r in routes} == {f.name for f in topo.flows} and len(routes) == 5
    assert set(cfg.brokers) == set(topo.domains)
