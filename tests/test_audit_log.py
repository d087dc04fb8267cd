"""The writer: records round-trip, chain and heads, batching by size and by time,
fsync modes, all-or-nothing appends, and crash recovery (torn tail, SIGKILL)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.audit import AuditError, AuditLog, DecisionRecord, Signer
from guard.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from guard.audit.records import RecordEncoder, parse_line
from guard.audit.verify import analyse
from guard.findings import Finding

SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}
H = hashlib.sha256(b"payload").hexdigest()
P = hashlib.sha256(b"policy").hexdigest()


def rec(i: int, **kw: object) -> DecisionRecord:
    fields: dict = dict(decision_id=f"d-{i}", time=1_700_000_000.25 + i, flow="high-to-nato",
                        message_id=f"m-{i}", input_sha256=H, output_sha256=H, policy_sha256=P,
                        verdict="release")
    fields.update(kw)
    return DecisionRecord(**fields)


def test_records_round_trip_with_chain_and_heads(tmp_path: Path) -> None:
    records = [rec(0), rec(1, verdict="block", output_sha256=None,
                           findings=[Finding("marking", "NOFORN \u2014 not releasable", 0, 6)]),
               rec(2, message_id='quote " back\\slash \n nl \udc80', flow="h\u00f6gh")]
    with AuditLog(tmp_path, SIGNER) as log:
        assert log.append_many(records) == [0, 1, 2]
        assert log.append(rec(3)) == 3
    rep = analyse(tmp_path, KEYS)
    assert rep.ok, rep.problems
    got = [p.record for p in rep.parsed if p is not None]
    assert [g.message_id for g in got] == [r.message_id for r in records] + ["m-3"]
    assert got[1].findings == [{"rule": "marking", "message": "NOFORN \u2014 not releasable",
                                "start": 0, "end": 6}]
    assert got[1].output_sha256 is None and got[2].flow == "h\u00f6gh"
    assert all(g.key_id == SIGNER.key_id for g in got)
    assert all(math.isclose(g.time, r.time, abs_tol=1e-6)
               for g, r in zip(got, records, strict=False))
    # each record carries the leaf hash of the one before; the file is plain ASCII lines
    raw = (tmp_path / "records.jsonl").read_bytes()
    assert raw.isascii() and raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    for a, b in itertools.pairwise(lines):
        assert json.loads(b)["prev"] == hashlib.sha256(b"\x00" + a).hexdigest()
    head = rep.head_list[-1]
    assert head.tree_size == 4
    tree = MerkleTree([leaf_hash(line) for line in lines])
    for i in range(4):  # an inclusion proof for every record against the signed head
        assert verify_inclusion(leaf_hash(lines[i]), i, 4, tree.inclusion_proof(i),
                                bytes.fromhex(head.root_hash))


def test_invalid_record_rejected_and_nothing_written(tmp_path: Path) -> None:
    bad_values = [
        {"input_sha256": "XYZ"}, {"input_sha256": H.upper()}, {"output_sha256": H[:-1]},
        {"output_sha256": H[:-1] + "\""}, {"policy_sha256": "0" * 63}, {"verdict": "maybe"},
        {"time": float("nan")}, {"time": "yesterday"}, {"flow": ""}, {"decision_id": None},
        {"findings": [object()]}, {"input_sha256": H[:63], "output_sha256": H + "0"},
    ]
    with AuditLog(tmp_path, SIGNER) as log:
        log.append(rec(0))
        for bad in bad_values:
            with pytest.raises(AuditError, match="record 1 of the batch"):
                log.append_many([rec(1), rec(2, **bad)])
        assert log.size == 1
        log.append(rec(1))
    rep = analyse(tmp_path, KEYS)
    assert rep.ok and rep.records == 2


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.floats(0, 4e9, allow_nan=False),
       st.sampled_from(["release", "redact", "quarantine", "block", "error"]))
def test_any_strings_encode_canonically(decision_id: str, message_id: str, t: float,
                                        verdict: str) -> None:
    enc = RecordEncoder(SIGNER.key_id)
    r = rec(0, decision_id=decision_id, message_id=message_id, time=t, verdict=verdict)
    framed, leaves, prev = enc.encode([r], 7, "ab" * 32)
    line = framed[0][1:]
    assert b"\n" not in line and line.isascii()
    back = parse_line(line)
    assert back.seq == 7 and back.prev == "ab" * 32
    assert back.record.decision_id == decision_id and back.record.message_id == message_id
    assert back.record.verdict == verdict and abs(back.record.time - t) <= 1e-6
    assert leaves[0] == leaf_hash(line) and prev == leaves[0].hex()


def test_batches_close_by_size(tmp_path: Path) -> None:
    with AuditLog(tmp_path, SIGNER, batch_max=10, max_delay_s=60) as log:
        for i in range(25):
            log.append(rec(i))
        deadline = time.monotonic() + 10
        while log.committed < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert log.committed == 20  # two full batches signed, the rest waits
    sizes = [h.tree_size for h in analyse(tmp_path, KEYS).head_list]
    # the committer may cover both full batches with one head (group commit)
    assert sizes[-1] == 25 and all(s % 10 == 0 for s in sizes[:-1]) and sizes[-2] == 20


def test_batches_close_by_time_without_flush(tmp_path: Path) -> None:
    with AuditLog(tmp_path, SIGNER, batch_max=1000, max_delay_s=0.05) as log:
        log.append(rec(0))
        deadline = time.monotonic() + 10  # generous: this checks coverage, not speed
        while log.committed < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert log.committed == 1
        assert analyse(tmp_path, KEYS).ok  # covered while the writer is still open


@pytest.mark.parametrize("mode", ["always", "batch", "none"])
def test_fsync_modes(tmp_path: Path, mode: str) -> None:
    with AuditLog(tmp_path, SIGNER, fsync=mode) as log:
        log.append(rec(0))
        if mode == "always":
            assert log.committed == 1  # durable and signed when append returns
        log.append_many([rec(1), rec(2)])
        log.flush()
        assert log.committed == 3
    assert analyse(tmp_path, KEYS).ok
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "x", SIGNER, fsync="sometimes")


def test_one_writer_per_directory_and_closed_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, SIGNER)
    with pytest.raises(AuditError, match="another writer"):
        AuditLog(tmp_path, SIGNER)
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append(rec(0))
    AuditLog(tmp_path, SIGNER).close()


def test_reopen_continues_the_chain_with_a_rotated_key(tmp_path: Path) -> None:
    new = Signer.generate()
    with AuditLog(tmp_path, SIGNER) as log:
        log.append_many([rec(i) for i in range(5)])
    with AuditLog(tmp_path, new) as log:
        assert log.append(rec(5)) == 5
    both = {**KEYS, new.key_id: new.public_key}
    rep = analyse(tmp_path, both)
    assert rep.ok and rep.records == 6 and rep.key_ids == sorted([SIGNER.key_id, new.key_id])
    assert not analyse(tmp_path, {new.key_id: new.public_key}).ok  # old heads need the old key


def test_torn_tail_is_cut_and_committed_records_kept(tmp_path: Path) -> None:
    with AuditLog(tmp_path, SIGNER) as log:
        log.append_many([rec(i) for i in range(8)])
    path = tmp_path / "records.jsonl"
    intact = path.read_bytes()
    # a crash in the middle of writing record 8 (uncommitted: never acknowledged)
    partial = intact.split(b"\n")[3][:57]
    path.write_bytes(intact + partial)
    (tmp_path / "heads.jsonl").write_bytes((tmp_path / "heads.jsonl").read_bytes() + b'{"tree')
    rep = analyse(tmp_path, KEYS)
    assert not rep.ok and rep.problems[0].kind == "torn"
    assert analyse(tmp_path, KEYS, allow_tail=True).ok
    with AuditLog(tmp_path, SIGNER) as log:
        assert log.repaired_bytes == len(partial) + len(b'{"tree')
        assert log.size == 8
        log.append(rec(8))
    assert path.read_bytes().startswith(intact)
    rep = analyse(tmp_path, KEYS)
    assert rep.ok and rep.records == 9


def test_records_without_head_are_signed_on_reopen(tmp_path: Path) -> None:
    with AuditLog(tmp_path, SIGNER, batch_max=3, max_delay_s=60) as log:
        log.append_many([rec(i) for i in range(3)])
        log.flush()
        log.append_many([rec(i) for i in range(3, 6)])
    heads = tmp_path / "heads.jsonl"
    # a crash after the records were synced but before their head was written
    heads.write_bytes(heads.read_bytes().split(b"\n")[0] + b"\n")
    rep = analyse(tmp_path, KEYS)
    assert rep.problems[0].kind == "uncovered" and rep.first_bad_record == 3
    with AuditLog(tmp_path, SIGNER) as log:
        assert log.recovered_unsigned == 3 and log.committed == 6
    assert analyse(tmp_path, KEYS).ok


CHILD = textwrap.dedent("""
    import hashlib, sys
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    from guard.audit import AuditLog, DecisionRecord, Signer
    key = serialization.load_pem_private_key(sys.stdin.buffer.read(), None)
    h = hashlib.sha256(b"x").hexdigest()
    log = AuditLog(sys.argv[1], Signer(key), batch_max=64, max_delay_s=0.05, fsync="batch")
    i, calls = log.size, 0
    while True:
        log.append_many([DecisionRecord(f"c-{i + k}", 1.7e9, "f", f"m-{i + k}", h, h, h,
                                        "release") for k in range(37)])
        i += 37
        calls += 1
        if calls % 3 == 0:
            log.flush()
            print(log.committed, flush=True)  # acknowledged: must survive the kill
""")


@pytest.mark.timeout(120)
def test_sigkill_mid_stream_loses_no_committed_record(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = Signer.generate()
    pem = key._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    acked = 0
    for _round in range(2):  # kill, recover, kill again on the recovered log
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(pem)
        child.stdin.close()
        for _ in range(6):
            line = child.stdout.readline()
            assert line, "the writer child died"
            acked = int(line)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        rep = analyse(tmp_path, {key.key_id: key.public_key}, allow_tail=True)
        assert rep.ok, rep.problems
        assert rep.records >= acked and rep.covered >= acked
        with AuditLog(tmp_path, key) as log:
            assert log.size >= acked
    rep = analyse(tmp_path, {key.key_id: key.public_key})
    assert rep.ok and rep.records >= acked
    ids = [p.record.decision_id for p in rep.parsed if p is not None]
    assert ids[:acked] == [f"c-{i}" for i in range(acked)]


def test_concurrent_appenders_share_one_chain(tmp_path: Path) -> None:
    import threading

    with AuditLog(tmp_path, SIGNER, batch_max=64, max_delay_s=0.02) as log:
        seqs: list[int] = []
        lock = threading.Lock()

        def work(w: int) -> None:
            for k in range(0, 300, 3):
                got = log.append_many(rec(1000 * w + k + j) for j in range(3))
                with lock:
                    seqs.extend(got)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(seqs) == list(range(1200))
    rep = analyse(tmp_path, KEYS)
    assert rep.ok and rep.records == 1200
