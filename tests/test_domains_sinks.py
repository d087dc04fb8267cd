"""Sinks: independent spillage checks, stamp verification, loss and duplicate detection.

Stamps are made and verified with the real guard.audit.stamp; markings are checked with
the real guard.markings engine and the sink's own regular expressions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guard.markings as markings
from guard.audit.keys import Signer
from guard.audit.stamp import make_stamp, verify_stamp
from guard.domains.generators import (
    GROUPS,
    Generator,
    GeneratorConfig,
    Mark,
    targets_from_topology,
)
from guard.domains.sinks import (
    Sink,
    consume,
    engine_check,
    independent_check,
    merge_summaries,
    totals,
)
from guard.domains.topology import load_topology

REPO = Path(__file__).resolve().parents[1]
CODEWORDS = REPO / "policies" / "terms" / "codewords.txt"
TOPO = load_topology()
TARGETS = {t.dest: t for t in targets_from_topology(TOPO)}

SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}


def stamped(payload: bytes, flow: str, mid: str) -> tuple[tuple[str, str], ...]:
    """What the guard attaches to a release: the generator's ids plus the stamp."""
    stamp = make_stamp(
        payload,
        decision_id=f"d-{mid}",
        flow=flow,
        message_id=mid,
        policy_sha256="0" * 64,
        signer=SIGNER,
    )
    return (("message-id", mid), ("flow", flow), *stamp)


def gbr_sink() -> Sink:
    return Sink.for_domain(TOPO, "gbr", KEYS, verify=verify_stamp)


def _gen(dest: str, seed: int = 1) -> Generator:
    return Generator(TARGETS[dest], seed, CODEWORDS, GeneratorConfig(oversize_bytes=70_000))


def test_sink_uses_the_real_markings_engine_by_default() -> None:
    assert gbr_sink().markings is markings


def test_clean_delivery_passes() -> None:
    sink = gbr_sink()
    g = _gen("GBR")
    ledger, decisions = [], []
    for cat in ["clean-finished", "clean-osint", "clean-climate", "raw-noforn", "malformed"] * 6:
        m = g.next(category=cat)
        ledger.append(m.entry)
        releasable = m.entry.expect.startswith("releasable-to-")
        decisions.append(
            {"message_id": m.message_id, "verdict": "release" if releasable else "block"}
        )
        if releasable:
            assert (
                sink.receive(
                    f"released/{m.flow}", m.payload, stamped(m.payload, m.flow, m.message_id)
                )
                == []
            )
    (s,) = sink.reconcile(ledger, decisions).values()
    assert (s.sent, s.received, s.released, s.blocked) == (30, 18, 18, 12)
    assert (s.spillage, s.lost, s.duplicates, s.stamp_failures, s.unexpected) == (0, 0, 0, 0, 0)
    assert s.ok and sink.incidents == []


SPILL = (
    b"SECRET//REL TO USA, GBR\n"
    b"(S//REL TO USA, GBR) Naval activity increased near the strait on 12 May.\n"
    b"(S//NF) The reporting comes from a sensitive technical source.\n"
    b"SECRET//REL TO USA, GBR\n"
)


def test_injected_noforn_portion_is_spillage_for_both_independent_parsers() -> None:
    text = SPILL.decode()
    assert any("NF" in p for p in independent_check(text, "GBR", 3))
    assert any("NOFORN" in p for p in engine_check(text, "GBR", 3, markings))
    sink = gbr_sink()
    incidents = sink.receive(
        "released/us-secret-to-gbr", SPILL, stamped(SPILL, "us-secret-to-gbr", "m1")
    )
    assert [i.kind for i in incidents] == ["spillage"]
    assert "line 3" in incidents[0].detail


class _BlindEngine:
    """A markings engine with a bug: it sees every mark as harmless UNCLASSIFIED."""

    def __init__(self) -> None:
        self.u = markings.parse("(U)").marking

    def recognize_portions(self, text: str) -> list[Any]:
        return []

    def parse(self, text: str, kind: str = "auto") -> Any:
        return markings.parse("UNCLASSIFIED", "banner")

    def classification_rank(self, m: Any) -> int:
        return 0

    def releasable(self, m: Any, dest: str) -> Any:
        return markings.releasable(self.u, dest)


class _CrashingEngine(_BlindEngine):
    def recognize_portions(self, text: str) -> list[Any]:
        raise RuntimeError("engine bug")


@pytest.mark.parametrize("engine", [_BlindEngine(), _CrashingEngine()])
def test_a_markings_engine_bug_does_not_hide_spillage(engine: Any) -> None:
    sink = Sink.for_domain(TOPO, "gbr", KEYS, verify=verify_stamp, markings=engine)
    sink.receive("released/us-secret-to-gbr", SPILL, stamped(SPILL, "us-secret-to-gbr", "m1"))
    assert [i.kind for i in sink.incidents] == ["spillage"]


def test_above_accreditation_sci_wrong_group_unmarked_and_undecodable_are_spillage() -> None:
    top = b"SECRET//REL TO USA, FVEY\n"
    cases = {
        "fvey": [
            top + b"(TS//REL TO USA, FVEY) x\n" + top,
            top + b"(S//SI//REL TO USA, FVEY) x\n" + top,
            b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) x\nSECRET//REL TO USA, GBR\n",
            top + b"(S//REL TO USA, FVEY) x\nan unmarked line\n" + top,
            top + b"(S//REL TO USA, FVEY) \xff\xfe\n" + top,
        ],
        "nato": [b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) x\nSECRET//REL TO USA, FVEY\n"],
        "public": [
            b"UNCLASSIFIED//FOR OFFICIAL USE ONLY\n(U//FOUO) x\n"
            b"UNCLASSIFIED//FOR OFFICIAL USE ONLY\n",
            top + b"(S//REL TO USA, FVEY) x\n" + top,
        ],
    }
    for domain, payloads in cases.items():
        sink = Sink.for_domain(TOPO, domain, KEYS, verify=verify_stamp)
        (flow,) = sink.flows
        for i, p in enumerate(payloads):
            found = sink.receive(f"released/{flow}", p, stamped(p, flow, f"{domain}-{i}"))
            assert [x.kind for x in found] == ["spillage"], (domain, p)
    ok = b"UNCLASSIFIED\n(U) Open-source reporting says the port reopened.\nUNCLASSIFIED\n"
    public = Sink.for_domain(TOPO, "public", KEYS, verify=verify_stamp)
    assert (
        public.receive("released/us-secret-to-public", ok, stamped(ok, "us-secret-to-public", "p"))
        == []
    )


def test_bad_or_missing_stamp_is_counted() -> None:
    sink = gbr_sink()
    g = _gen("GBR")
    m1, m2, m3 = (g.next(category="clean-finished") for _ in range(3))
    props = stamped(m1.payload, m1.flow, m1.message_id)
    tampered = m1.payload.replace(b"(", b"(", 1) + b"(U) Added after signing.\n"
    sink.receive(f"released/{m1.flow}", tampered, props)
    sink.receive(f"released/{m2.flow}", m2.payload, (("message-id", m2.message_id),))
    other = Signer.generate()  # signed by a key the sink does not trust
    forged = (
        ("message-id", m3.message_id),
        ("flow", m3.flow),
        *make_stamp(
            m3.payload,
            decision_id="d",
            flow=m3.flow,
            message_id=m3.message_id,
            policy_sha256="0" * 64,
            signer=other,
        ),
    )
    sink.receive(f"released/{m3.flow}", m3.payload, forged)
    decisions = [{"message_id": m.message_id, "verdict": "release"} for m in (m1, m2, m3)]
    (s,) = sink.reconcile([m1.entry, m2.entry, m3.entry], decisions).values()
    assert s.stamp_failures == 3 and s.spillage == 0 and not s.ok


def test_loss_duplicate_and_unexpected_arrivals_are_detected() -> None:
    sink = gbr_sink()
    g = _gen("GBR")
    a, b, c, d, e = (g.next(category="clean-finished") for _ in range(5))
    for m in (a, a, d):  # a twice; b decided release but never arrives; d was blocked
        sink.receive(f"released/{m.flow}", m.payload, stamped(m.payload, m.flow, m.message_id))
    decisions = [
        {"message_id": a.message_id, "verdict": "release"},
        {"message_id": b.message_id, "verdict": "redact"},
        {"message_id": d.message_id, "verdict": "block"},
        {"message_id": e.message_id, "verdict": "quarantine"},
        # c: sent, but the guard never decided it
    ]
    (s,) = sink.reconcile([x.entry for x in (a, b, c, d, e)], decisions).values()
    assert (s.sent, s.received, s.released, s.redacted, s.blocked, s.quarantined) == (
        5,
        3,
        1,
        1,
        1,
        1,
    )
    assert (s.lost, s.duplicates, s.unexpected, s.spillage) == (2, 1, 1, 0)
    lost = {i.message_id: i.detail for i in sink.incidents if i.kind == "loss"}
    assert lost == {
        b.message_id: "decided redact but never arrived",
        c.message_id: "sent but never decided",
    }
    assert totals(merge_summaries([{s.flow: s}, {s.flow: s}]))["lost"] == 4


def test_a_redecided_message_counts_once_by_its_last_verdict() -> None:
    sink = gbr_sink()
    m = _gen("GBR").next(category="clean-finished")
    sink.receive(f"released/{m.flow}", m.payload, stamped(m.payload, m.flow, m.message_id))
    decisions = [
        {"message_id": m.message_id, "verdict": "release"},
        {"message_id": m.message_id, "verdict": "release"},  # decided again after a restart
    ]
    (s,) = sink.reconcile([m.entry], decisions).values()
    assert (s.released, s.lost, s.duplicates) == (1, 0, 0) and s.ok


def test_json_delivery_is_checked_like_text() -> None:
    g = Generator(TARGETS["GBR"], 2, CODEWORDS, GeneratorConfig(json_share=1.0))
    sink = gbr_sink()
    ok = g.next(category="clean-finished", size=512)
    bad = g.next(category="raw-noforn", size=512)
    assert ok.entry.format == bad.entry.format == "json"
    assert (
        sink.receive(
            "released/us-secret-to-gbr", ok.payload, stamped(ok.payload, ok.flow, ok.message_id)
        )
        == []
    )
    found = sink.receive(
        "released/us-secret-to-gbr", bad.payload, stamped(bad.payload, bad.flow, "x")
    )
    assert [i.kind for i in found] == ["spillage"]


# -- three independent implementations agree on releasability ---------------------------

_marks = st.builds(
    Mark,
    cls=st.sampled_from(["U", "C", "S", "TS"]),
    sci=st.sampled_from([(), ("SI",)]),
    dissem=st.sampled_from([(), ("NF",), ("OC", "NF")]),
    rel=st.sampled_from(
        [
            (),
            ("USA", "GBR"),
            ("USA", "FVEY"),
            ("USA", "NATO"),
            ("USA", "JPN"),
            ("USA", "AUS", "GBR"),
            ("USA", "AUS"),
            ("USA", "CAN", "NZL"),
        ]
    ),
).filter(
    lambda m: (
        not (m.rel and "NF" in m.dissem) and not (m.cls == "U" and (m.sci or m.dissem or m.rel))
    )
)


@settings(max_examples=150, deadline=None)
@given(_marks, st.sampled_from(["GBR", "FVEY", "NATO", "JPN", "PUBLIC"]))
def test_generator_model_sink_regex_and_markings_engine_agree(mark: Mark, dest: str) -> None:
    rank = 0 if dest == "PUBLIC" else 3
    ranks = {"U": 0, "C": 2, "S": 3, "TS": 4}
    expected = ranks[mark.cls] <= rank and not mark.sci and mark.releasable_to(dest)
    text = f"{mark.banner()}\n{mark.portion()} Text.\n{mark.banner()}\n"
    assert (independent_check(text, dest, rank) == []) is expected
    assert (engine_check(text, dest, rank, markings) == []) is expected


def test_group_table_matches_the_markings_engine() -> None:
    for code, members in GROUPS.items():
        assert markings.group_members(code) == members, code


# -- end to end over the in-process transport ---------------------------------------------


def test_sink_consumes_from_the_in_process_transport_and_acks() -> None:
    brokers = TOPO.build_inprocess()
    high, low = brokers["us-secret"], brokers["gbr"]
    g = _gen("GBR", seed=5)
    msgs = [
        g.next(category=c, size=512) for c in ["clean-finished", "raw-noforn", "clean-osint"] * 4
    ]

    async def go() -> int:
        producer = await high.connect(*high.credentials("producer"))
        guard_in = await high.connect(*high.credentials("guard"))
        guard_out = await low.connect(*low.credentials("guard"))
        sink_conn = await low.connect(*low.credentials("sink"), client_id="sink", clean_start=False)
        sink = gbr_sink()
        task = asyncio.create_task(consume(sink_conn, sink, ["released/#"]))
        await guard_in.subscribe("flows/+/in")
        for m in msgs:
            await producer.publish(m.topic, m.payload, m.properties)
        decisions = []
        for _ in msgs:  # a trivial stand-in guard: releases what the ledger says releasable
            msg = await guard_in.get(timeout=2)
            mid = msg.property("message-id") or ""
            flow = msg.property("flow") or ""
            entry = next(x.entry for x in msgs if x.message_id == mid)
            verdict = "release" if entry.expect.startswith("releasable-to-") else "block"
            decisions.append({"message_id": mid, "verdict": verdict})
            if verdict == "release":
                await guard_out.publish(
                    f"released/{flow}", msg.payload, stamped(msg.payload, flow, mid)
                )
            await guard_in.ack(msg)
        while low.queued("sink"):
            await asyncio.sleep(0.01)
        await sink_conn.close()
        n = await task
        (s,) = sink.reconcile([m.entry for m in msgs], decisions).values()
        assert (s.sent, s.received, s.released, s.blocked) == (12, 8, 8, 4) and s.ok
        return n

    assert asyncio.run(asyncio.wait_for(go(), 20)) == 8


def test_stamp_roundtrip_and_tamper_detection_with_the_real_module() -> None:
    props = stamped(b"x", "us-secret-to-gbr", "m")
    assert verify_stamp(b"x", props, KEYS)[0] and not verify_stamp(b"y", props, KEYS)[0]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_sink_never_raises_and_fails_closed_on_arbitrary_bytes(data: bytes) -> None:
    sink = gbr_sink()
    problems = sink.check_content(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert problems
        return
    meaningful = [x for x in text.split("\n") if x.strip()]
    if meaningful and not any(x.startswith("(") or x[:1].isupper() for x in meaningful):
        assert problems  # unmarked content is never accepted
    sink.receive("released/us-secret-to-gbr", data, ())
    assert sink.incidents and sink.incidents[0].kind == "stamp"
