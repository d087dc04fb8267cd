"""Replay decides in full batches across block boundaries: counts, changes and their
indexes still agree with deciding every message alone, with and without a flow filter."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from guard.audit import AuditLog, DecisionRecord, Signer
from guard.capture import CapturedMessage, CaptureWriter, load_capture
from guard.decide import Pipeline
from guard.policy import load_policy
from guard.recorder import record_generated
from guard.replay import RELEASED, ReplayError, audit_replay, replay

REPO = Path(__file__).resolve().parents[1]
OLD = REPO / "policies" / "us-secret-to-fvey.yaml"
NEW = REPO / "policies" / "us-secret-to-fvey-yesforn.yaml"
# withheld by the NOFORN-default baseline, released under YESFORN: changed messages
UNCAVEATED = [b"SECRET\n(S) Convoy movements were observed near the border.\nSECRET\n",
              b"SECRET\n(S) Engineering units reinforced positions.\n(U) Sea state was "
              b"moderate.\nSECRET\n"]


def test_batches_span_blocks_and_keep_message_order(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # batches of 8 over blocks of 7 records, so that with 8 chunks per worker every
    # chunk decides batches that straddle blocks (forked workers inherit the patch)
    monkeypatch.setattr("guard.replay.BATCH", 8)
    src = tmp_path / "gen.gcap"
    record_generated(src, "us-secret-to-fvey", 300, seed=5)
    gen = load_capture(src)[1]
    # two flows interleaved, 7 records per block: every batch straddles blocks
    msgs = [CapturedMessage(f"{m.message_id}-{k}", "flow-b" if k % 5 == 0 else m.flow,
                            m.topic, m.time, m.properties,
                            UNCAVEATED[k % 2] if k % 11 == 0 else m.payload)
            for k, m in enumerate(gen + gen)]
    cap = tmp_path / "small-blocks.gcap"
    with CaptureWriter(cap, {"source": "test"}, block_records=7) as w:
        w.write_many(msgs)
    old, new = Pipeline(load_policy(OLD)), Pipeline(load_policy(NEW))
    before = [old.decide(m.payload, m.message_id) for m in msgs]
    after = [new.decide(m.payload, m.message_id) for m in msgs]

    for flows in (None, ["flow-b"]):
        keep = [i for i, m in enumerate(msgs) if flows is None or m.flow in flows]
        changed = [i for i in keep if before[i].verdict != after[i].verdict
                   or (after[i].verdict in RELEASED and before[i].output != after[i].output)]
        assert changed, "the scenario must change some messages"
        for workers in (1, 2):
            res = replay(cap, NEW, OLD, workers=workers, flows=flows)
            assert res.messages == len(keep)
            assert res.bytes == sum(len(msgs[i].payload) for i in keep)
            assert [c.index for c in res.changes] == changed
            assert [c.message_id for c in res.changes] == [msgs[i].message_id for i in changed]
            assert [(c.before.verdict, c.after.verdict) for c in res.changes] == [
                (before[i].verdict, after[i].verdict) for i in changed]
            assert res.counts_after == Counter(
                (msgs[i].flow, "FVEY", after[i].verdict) for i in keep)
            assert res.counts_before == Counter(
                (msgs[i].flow, "FVEY", before[i].verdict) for i in keep)
            rel: Counter[str] = Counter()
            for i in keep:
                if after[i].verdict in RELEASED and after[i].output is not None:
                    rel[msgs[i].flow] += len(after[i].output)
            assert res.released_bytes_after == rel
            assert res.rules_before == Counter(
                r for i in keep for r in {f.rule for f in before[i].findings})


def test_audit_batches_per_policy_span_blocks(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages recorded under two policies, interleaved, in blocks of 3; batches of 4
    per policy straddle blocks. Every verdict reproduces; the one altered is named."""
    monkeypatch.setattr("guard.replay.BATCH", 4)
    src = tmp_path / "gen.gcap"
    record_generated(src, "us-secret-to-fvey", 40, seed=9)
    msgs = load_capture(src)[1]
    cap = tmp_path / "small-blocks.gcap"
    with CaptureWriter(cap, {"source": "test"}, block_records=3) as w:
        w.write_many(msgs)
    pipes = [Pipeline(load_policy(OLD)), Pipeline(load_policy(NEW))]
    victim = msgs[22].message_id
    log = tmp_path / "log"
    with AuditLog(log, Signer.generate()) as al:
        for k, m in enumerate(msgs):
            d = pipes[k % 2].decide(m.payload, m.message_id)
            verdict = d.verdict
            if m.message_id == victim:
                verdict = "release" if verdict != "release" else "block"
            al.append(DecisionRecord(f"d-{k}", m.time, m.flow, m.message_id,
                                     hashlib.sha256(m.payload).hexdigest(), None,
                                     d.policy_sha256, verdict, []))
    for workers in (1, 2):
        res = audit_replay(cap, [log], workers=workers)
        assert res.records == len(msgs) and res.reproduced == len(msgs) - 1
        assert [m.message_id for m in res.mismatches] == [victim]
        assert len(res.policies) == 2


def test_leftovers_carry_over_to_the_next_chunk(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """What a chunk leaves short of a batch is decided with the worker's next chunk: the
    batches are full but for those closing the end's single-block chunks (at most
    3 * BATCH / 2), and every message is decided once."""
    monkeypatch.setattr("guard.replay.BATCH", 8)
    src = tmp_path / "gen.gcap"
    record_generated(src, "us-secret-to-fvey", 200, seed=3)
    cap = tmp_path / "blocks-of-5.gcap"
    with CaptureWriter(cap, {"source": "test"}, block_records=5) as w:
        w.write_many(load_capture(src)[1])
    sizes: list[int] = []
    decide_batch = Pipeline.decide_batch

    def spy(self, messages, message_ids=None):  # type: ignore[no-untyped-def]
        sizes.append(len(messages))
        return decide_batch(self, messages, message_ids)

    monkeypatch.setattr(Pipeline, "decide_batch", spy)
    res = replay(cap, OLD, workers=1)
    assert res.messages == sum(sizes) == 200
    assert max(sizes) <= 12
    # chunks of 40 blocks on one worker: 20, 10, 5, 2, 1, 1, 1 (some blocks are short:
    # the generator's oversize messages fill one alone); only the single ones end short
    assert len([s for s in sizes if s != 8]) <= 3


def test_a_leftover_never_decided_fails_the_replay(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: messages a worker carried over and never decided (its flush lost)
    make the replay an error, not a smaller count."""
    monkeypatch.setattr("guard.replay.BATCH", 8)
    monkeypatch.setattr("guard.replay._compare_flush", lambda: None)
    src = tmp_path / "gen.gcap"
    record_generated(src, "us-secret-to-fvey", 60, seed=4)
    cap = tmp_path / "blocks-of-5.gcap"
    with CaptureWriter(cap, {"source": "test"}, block_records=5) as w:
        w.write_many(load_capture(src)[1])
    monkeypatch.setattr("guard.replay._chunks", lambda blocks, workers: [list(blocks)])
    with pytest.raises(ReplayError, match="every message exactly once"):
        replay(cap, OLD, workers=1)
