"""The whole chain on the in-process transport: generators -> high broker -> decision
pipeline (real policies) -> signed release -> low brokers -> sinks.

A minimal relay stands in for the daemon (issue 6 part 3, not written yet): it reads
each flow's inbound topic, decides with guard.decide.Pipeline, publishes releases with
a real guard.audit.stamp, and acknowledges the input afterwards. The sinks must find
no spillage, loss, duplicate or bad stamp; and a relay that skips the pipeline must be
caught by the same sinks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from guard.audit.keys import Signer
from guard.audit.stamp import make_stamp
from guard.decide import Pipeline
from guard.domains.generators import (
    Generator,
    GeneratorConfig,
    interleave,
    publish_stream,
    targets_from_topology,
)
from guard.domains.sinks import Sink, consume, totals
from guard.domains.topology import load_topology
from guard.policy import load_policy

REPO = Path(__file__).resolve().parents[1]
TOPO = load_topology(policies_dir=REPO / "policies")
SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}


def _run_chain(n_each: int, seed: int, *, bypass: bool) -> tuple[dict, list, dict]:
    gens = [
        Generator(t, seed, REPO / "policies/terms/codewords.txt",
                  GeneratorConfig(json_share=0.2, oversize_bytes=1_200_000))
        for t in targets_from_topology(TOPO)
    ]  # fmt: skip
    msgs = interleave(gens, n_each)
    pipelines = (
        {}
        if bypass
        else {f.name: Pipeline(load_policy(REPO / "policies" / f.policy)) for f in TOPO.flows}
    )
    brokers = TOPO.build_inprocess()
    high = brokers["us-secret"]
    decisions: list[dict[str, str]] = []
    verdicts: Counter[tuple[str, str]] = Counter()

    async def relay(ready: asyncio.Event) -> None:
        guard_in = await high.connect(*high.credentials("guard"), client_id="guard")
        outs = {
            f.name: await brokers[f.destination].connect(
                *brokers[f.destination].credentials("guard"))
            for f in TOPO.flows
        }  # fmt: skip
        await guard_in.subscribe("flows/+/in")
        ready.set()  # MQTT drops what is published before anyone subscribes
        for _ in msgs:
            msg = await guard_in.get(timeout=10)
            mid, flow = msg.property("message-id") or "", msg.property("flow") or ""
            if bypass:
                verdict, output = "release", msg.payload
            else:
                d = pipelines[flow].decide(msg.payload, mid)
                verdict, output = d.verdict, d.output
            decisions.append({"message_id": mid, "verdict": verdict})
            if verdict in ("release", "redact"):
                assert output is not None
                stamp = make_stamp(output, decision_id=f"d-{mid}", flow=flow, message_id=mid,
                                   policy_sha256="0" * 64, signer=SIGNER)  # fmt: skip
                await outs[flow].publish(
                    TOPO.flow(flow).released_topic, output, [*msg.properties, *stamp]
                )
            await guard_in.ack(msg)  # only once the release is accepted downstream

    async def go() -> dict:
        sinks, tasks, conns = {}, [], []
        for f in TOPO.flows:
            b = brokers[f.destination]
            conn = await b.connect(*b.credentials("sink"), client_id="sink")
            sinks[f.destination] = Sink.for_domain(TOPO, f.destination, KEYS)
            tasks.append(asyncio.create_task(consume(conn, sinks[f.destination], ["released/#"])))
            conns.append((b, conn))
        producer = await high.connect(*high.credentials("producer"))
        ready = asyncio.Event()
        relay_task = asyncio.create_task(relay(ready))
        await ready.wait()
        await publish_stream(producer, msgs, pace=False)
        await relay_task
        for b, conn in conns:
            while b.queued("sink"):
                await asyncio.sleep(0.005)
            await conn.close()
        await asyncio.gather(*tasks)
        return sinks

    sinks = asyncio.run(asyncio.wait_for(go(), 60))
    summaries = {}
    for s in sinks.values():
        summaries.update(s.reconcile([m.entry for m in msgs], decisions))
    by_id = {m.message_id: m.entry for m in msgs}
    for d in decisions:
        verdicts[(by_id[d["message_id"]].expect.split("-to-")[0], d["verdict"])] += 1
    return summaries, [i for s in sinks.values() for i in s.incidents], dict(verdicts)


def test_real_pipeline_through_in_process_domains_has_no_spillage_loss_or_duplicate() -> None:
    summaries, incidents, verdicts = _run_chain(60, seed=31, bypass=False)
    assert incidents == []
    t = totals(summaries)
    assert t["sent"] == 300 and t["lost"] == t["spillage"] == t["duplicates"] == 0
    assert t["stamp_failures"] == t["unexpected"] == 0
    assert t["received"] == t["released"] + t["redacted"] > 100
    # The traffic exercised every verdict; NOFORN-only reports never left.
    assert {v for _, v in verdicts} == {"release", "redact", "quarantine", "block"}
    assert set(dict(verdicts)) >= {("should-block-noforn", "block")}
    assert not any(k == ("should-block-noforn", v) for k in verdicts for v in ("release", "redact"))


def test_the_same_sinks_catch_a_relay_that_skips_the_pipeline() -> None:
    summaries, incidents, _ = _run_chain(30, seed=32, bypass=True)
    t = totals(summaries)
    assert t["spillage"] > 10 and t["lost"] == 0
    kinds = Counter(i.kind for i in incidents)
    assert kinds["spillage"] == t["spillage"]
    flows_with_spillage = {i.flow for i in incidents if i.kind == "spillage"}
    assert flows_with_spillage == {f.name for f in TOPO.flows}
