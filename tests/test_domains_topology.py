"""Domain description files: loading, validation errors, derived ACLs on real brokers."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from guard.domains.broker import Broker
from guard.domains.topics import matches, overlap
from guard.domains.topology import DEFAULT_DIR, TopologyError, load_topology

REPO = Path(__file__).resolve().parents[1]


def test_shipped_domains_load_with_their_policies() -> None:
    topo = load_topology(policies_dir=REPO / "policies")
    assert set(topo.domains) == {"us-secret", "gbr", "fvey", "nato", "jpn", "public"}
    high = topo.domains["us-secret"]
    assert (high.side, high.accreditation, high.dest) == ("high", "SECRET", "USA")
    assert {d.dest for d in topo.domains.values() if d.side == "low"} == {
        "GBR", "FVEY", "NATO", "JPN", "PUBLIC",
    }  # fmt: skip
    assert topo.domains["public"].rank == 0
    for name, d in topo.domains.items():
        if d.side == "low":
            (flow,) = topo.flows_to(name)
            assert flow.source == "us-secret"
            assert flow.policy == f"{flow.name}.yaml"
            assert flow.inbound_topic == f"flows/{flow.name}/in"
            assert flow.released_topic == f"released/{flow.name}"


def test_derived_acls_never_let_a_client_write_what_feeds_or_leaves_the_guard() -> None:
    topo = load_topology()
    guard_topics = [f.inbound_topic for f in topo.flows] + [f.released_topic for f in topo.flows]
    for name, d in topo.domains.items():
        acl = topo.acl(name)
        roles = {u.name: u.role for u in d.users}
        for user, (_read, write) in acl.items():
            if roles[user] == "guard":
                continue
            for w in write:
                for t in guard_topics:
                    if roles[user] == "producer" and t in topo.guard_feeding_topics(name):
                        continue  # producers feed the guard on purpose
                    assert not matches(w, t), (name, user, w, t)
                assert not overlap(w, d.topics.status)
        # Only the guard reads what feeds it.
        for t in topo.guard_feeding_topics(name):
            readers = [u for u, (read, _) in acl.items() if any(matches(r, t) for r in read)]
            assert readers == ["guard"]


def _write_domains(tmp: Path, mutate) -> Path:
    d = tmp / "domains"
    shutil.copytree(DEFAULT_DIR, d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    mutate(d)
    return d


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        ("gbr.yaml", lambda d: d.update(colour="red"), "gbr.yaml: colour: unknown key"),
        (
            "gbr.yaml",
            lambda d: d["topics"].update(extra="x"),
            "gbr.yaml: topics.extra: unknown key",
        ),
        ("gbr.yaml", lambda d: d.pop("accreditation"), "gbr.yaml: accreditation: missing"),
        (
            "gbr.yaml",
            lambda d: d.update(accreditation="SEKRET"),
            "gbr.yaml: accreditation: 'SEKRET'",
        ),
        ("gbr.yaml", lambda d: d.update(group="FVEY"), "gbr.yaml: country/group/public"),
        (
            "gbr.yaml",
            lambda d: d["users"][1].update(role="admin"),
            "gbr.yaml: users[1].role: 'admin'",
        ),
        ("gbr.yaml", lambda d: d["users"][1].update(pw="x"), "gbr.yaml: users[1].pw: unknown key"),
        ("gbr.yaml", lambda d: d["topics"].update(local=["flows/#"]), "gbr.yaml: topics.local[0]"),
        ("gbr.yaml", lambda d: d["topics"].update(local=["#"]), "overlaps topics.inbound"),
        (
            "gbr.yaml",
            lambda d: d["topics"].update(local=["released/+"]),
            "overlaps topics.released",
        ),
        ("gbr.yaml", lambda d: d["topics"].update(inbound="flows/in"), "gbr.yaml: topics.inbound"),
        ("public.yaml", lambda d: d.update(accreditation="SECRET"), "public domain must be UNCL"),
        (
            "us-secret.yaml",
            lambda d: d["flows"][0].update(to="mars"),
            "flows[0].to: unknown domain",
        ),
        (
            "us-secret.yaml",
            lambda d: d["flows"][1].update(name="us-secret-to-gbr"),
            "flows[1].name",
        ),
        ("us-secret.yaml", lambda d: d["flows"][0].update(policy="../x.yaml"), "flows[0].policy"),
        ("us-secret.yaml", lambda d: d["flows"][0].update(via="x"), "flows[0].via: unknown key"),
        (
            "jpn.yaml",
            lambda d: d["users"].append({"name": "p", "role": "producer"}),
            "jpn.yaml: users",
        ),
    ],
)
def test_invalid_files_are_rejected_naming_file_and_key(tmp_path, file, change, expected) -> None:
    d = _write_domains(tmp_path, lambda d: _edit(d / file, change))
    with pytest.raises(TopologyError) as err:
        load_topology(d)
    assert expected in str(err.value)
    assert all(p.startswith(str(d)) for p in err.value.problems)


def test_broken_yaml_and_missing_policies_are_reported(tmp_path) -> None:
    d = _write_domains(tmp_path, lambda d: (d / "nato.yaml").write_text("name: [unclosed"))
    with pytest.raises(TopologyError, match=r"nato\.yaml: \(file\): cannot read YAML"):
        load_topology(d)
    with pytest.raises(TopologyError, match=r"us-secret-to-gbr\.yaml does not exist"):
        load_topology(DEFAULT_DIR, policies_dir=tmp_path)
    with pytest.raises(TopologyError, match=r"no \*\.yaml domain files"):
        load_topology(tmp_path / "nothing")


# -- the derived ACL on real mosquitto brokers -----------------------------------------


class _Client:
    def __init__(self, broker: Broker, user: str) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{user}", protocol=mqtt.MQTTv5
        )
        self.c.username_pw_set(*broker.credentials(user))
        self.received: list[tuple[str, bytes]] = []
        self.codes: dict[int, int] = {}
        self.got = threading.Event()
        self.acked = threading.Condition()
        connected, subscribed = threading.Event(), threading.Event()
        self._subscribed = subscribed
        self.c.on_connect = lambda *a: connected.set()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = lambda c, u, m: (
            self.received.append((m.topic, m.payload)),
            self.got.set(),
        )
        self.c.on_publish = self._on_publish
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert connected.wait(5)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.acked:
            self.codes[mid] = reason_code.value
            self.acked.notify_all()

    def subscribe(self, pattern: str) -> None:
        self._subscribed.clear()
        self.c.subscribe(pattern, qos=1)
        assert self._subscribed.wait(5)

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.c.publish(topic, payload, qos=1)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.codes, 5)
        return self.codes[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.integration
def test_real_brokers_built_from_topology_forbid_low_side_writes_into_the_guard() -> None:
    topo = load_topology()
    brokers = topo.build_brokers()
    high, gbr = brokers["us-secret"], brokers["gbr"]
    clients: list[_Client] = []
    try:
        high.start()
        gbr.start()
        guard_in = _Client(high, "guard")
        sink = _Client(gbr, "sink")
        clients += [guard_in, sink]
        guard_in.subscribe("#")
        sink.subscribe("#")

        # Low side: a partner can neither forge guard output nor reach guard input.
        partner = _Client(gbr, "partner")
        clients.append(partner)
        assert partner.publish("released/us-secret-to-gbr", b"forged release") == 135
        assert partner.publish("flows/us-secret-to-gbr/in", b"into the guard") == 135
        assert partner.publish("guard/status", b"fake health") == 135
        assert partner.publish("local/chat", b"allowed") == 0

        # High side: analysts cannot feed the guard; producers can.
        analyst = _Client(high, "analyst")
        producer = _Client(high, "producer")
        clients += [analyst, producer]
        assert analyst.publish("flows/us-secret-to-gbr/in", b"not a producer") == 135
        assert producer.publish("flows/us-secret-to-gbr/in", b"report") == 0
        assert guard_in.got.wait(5)

        # The guard may write released/<flow> for the flow into GBR, and no other flow.
        guard_out = _Client(gbr, "guard")
        clients.append(guard_out)
        assert guard_out.publish("released/us-secret-to-jpn", b"wrong flow") == 135
        assert guard_out.publish("released/us-secret-to-gbr", b"release") == 0
        assert sink.got.wait(5)
        assert guard_in.received == [("flows/us-secret-to-gbr/in", b"report")]
        # the sink reads local traffic too, and only what was allowed
        time.sleep(0.2)  # anything wrongly delivered would have arrived by now
        assert sorted(sink.received) == [
            ("local/chat", b"allowed"),
            ("released/us-secret-to-gbr", b"release"),
        ]
    finally:
        for c in clients:
            c.close()
        for b in brokers.values():
            b.close()
