"""Tampering with a closed log is detected AND located: any flipped byte, deleted,
inserted, reordered or truncated records, replaced signatures, the wrong key."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.audit import AuditError, AuditLog, DecisionRecord, Signer
from guard.audit.verify import analyse

SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}
N = 12  # records, signed in heads of 4


def _record(i: int) -> DecisionRecord:
    digest = hashlib.sha256(f"msg {i}".encode()).hexdigest()
    blocked = i % 5 == 3
    return DecisionRecord(
        decision_id=f"d-{i}", time=1_700_000_000 + i / 7, flow="high-to-fvey",
        message_id=f"m-{i}", input_sha256=digest, output_sha256=None if blocked else digest,
        policy_sha256=hashlib.sha256(b"policy").hexdigest(),
        verdict="block" if blocked else "release",
        findings=[{"rule": "dirty-word", "message": "term \u201cNOFORN\u201d", "start": 3,
                   "end": 9}] if blocked else [],
    )


_MADE: list[Path] = []


@pytest.fixture(scope="module")
def pristine() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="audit-pristine-"))
    _MADE.append(d)
    with AuditLog(d / "log", SIGNER, batch_max=4, max_delay_s=30) as log:
        for i in range(N):
            log.append(_record(i))
            if i % 4 == 3:
                log.flush()
    rep = analyse(d / "log", KEYS)
    assert rep.ok and rep.records == N and rep.heads == 3, rep.problems
    yield d / "log"
    for made in _MADE:
        shutil.rmtree(made, ignore_errors=True)


def _copy(src: Path) -> Path:
    parent = Path(tempfile.mkdtemp(prefix="audit-tamper-"))
    _MADE.append(parent)
    shutil.copytree(src, parent / "log")
    return parent / "log"


def _lines(d: Path, name: str = "records.jsonl") -> list[bytes]:
    return (d / name).read_bytes().split(b"\n")[:-1]


def _write(d: Path, lines: list[bytes], name: str = "records.jsonl") -> None:
    (d / name).write_bytes(b"".join(line + b"\n" for line in lines))


def _first_bad(d: Path, keys: dict | None = None) -> int | None:
    rep = analyse(d, KEYS if keys is None else keys)
    assert not rep.ok
    return rep.first_bad_record


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_detected_and_located(pristine: Path, data: st.DataObject) -> None:
    raw = (pristine / "records.jsonl").read_bytes()
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    d = _copy(pristine)
    try:
        (d / "records.jsonl").write_bytes(raw[:pos] + bytes([new]) + raw[pos + 1:])
        expected = raw[:pos].count(b"\n")  # the record the byte belongs to
        assert _first_bad(d) == expected
    finally:
        shutil.rmtree(d.parent)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_flipped_head_byte_is_detected_and_located(pristine: Path,
                                                      data: st.DataObject) -> None:
    raw = (pristine / "heads.jsonl").read_bytes()
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    d = _copy(pristine)
    try:
        (d / "heads.jsonl").write_bytes(raw[:pos] + bytes([new]) + raw[pos + 1:])
        rep = analyse(d, KEYS)
        assert not rep.ok
        assert rep.problems[0].head == raw[:pos].count(b"\n")
    finally:
        shutil.rmtree(d.parent)


@pytest.mark.parametrize("record", range(N))
def test_consistent_edit_of_a_field_is_located(pristine: Path, record: int) -> None:
    # a valid, canonical record with a different verdict: only hashes can tell
    d = _copy(pristine)
    lines = _lines(d)
    lines[record] = lines[record].replace(b'"verdict":"release"', b'"verdict":"block"', 1) \
        .replace(b'"verdict":"block"', b'"verdict":"error"', 1)
    _write(d, lines)
    assert _first_bad(d) == record


@pytest.mark.parametrize("record", [0, 5, N - 1])
def test_deleted_record_is_located(pristine: Path, record: int) -> None:
    d = _copy(pristine)
    lines = _lines(d)
    del lines[record]
    _write(d, lines)
    assert _first_bad(d) == record


def test_truncated_middle_is_located(pristine: Path) -> None:
    d = _copy(pristine)
    lines = _lines(d)
    _write(d, lines[:3] + lines[7:])
    rep = analyse(d, KEYS)
    assert rep.first_bad_record == 3 and rep.problems[0].kind == "sequence"
    assert "missing" in rep.problems[0].message


def test_record_cut_short_in_the_middle_is_located(pristine: Path) -> None:
    d = _copy(pristine)
    lines = _lines(d)
    lines[6] = lines[6][:40]
    _write(d, lines)
    assert _first_bad(d) == 6


def test_truncated_end_is_located(pristine: Path) -> None:
    d = _copy(pristine)
    _write(d, _lines(d)[:10])
    rep = analyse(d, KEYS)
    assert rep.first_bad_record == 10 and rep.problems[0].kind == "truncated"


def test_inserted_record_from_another_log_is_located(pristine: Path, tmp_path: Path) -> None:
    other = Signer.generate()
    with AuditLog(tmp_path / "other", other) as log:
        for i in range(6):
            log.append(_record(100 + i))
    foreign = _lines(tmp_path / "other")[5]
    d = _copy(pristine)
    lines = _lines(d)
    lines.insert(5, foreign)
    _write(d, lines)
    assert _first_bad(d) == 5


def test_forged_record_with_right_seq_and_prev_is_located(pristine: Path) -> None:
    # an attacker who computes seq and prev correctly still breaks the next link
    d = _copy(pristine)
    lines = _lines(d)
    forged = json.loads(lines[4])
    forged["decision_id"] = "forged"
    forged["seq"] = 5
    forged["prev"] = hashlib.sha256(b"\x00" + lines[4]).hexdigest()
    lines.insert(5, json.dumps(forged, separators=(",", ":")).encode())
    _write(d, lines)
    rep = analyse(d, KEYS)
    assert rep.first_bad_record == 5 and rep.problems[0].kind == "inserted"


def test_duplicated_record_is_located(pristine: Path) -> None:
    d = _copy(pristine)
    lines = _lines(d)
    lines.insert(8, lines[7])
    _write(d, lines)
    assert _first_bad(d) in (7, 8)  # the two copies are byte-identical


@pytest.mark.parametrize("a", [0, 4, N - 2])
def test_reordered_records_are_located(pristine: Path, a: int) -> None:
    d = _copy(pristine)
    lines = _lines(d)
    lines[a], lines[a + 1] = lines[a + 1], lines[a]
    _write(d, lines)
    assert _first_bad(d) == a


@pytest.mark.parametrize("head", range(3))
def test_replaced_signature_is_located(pristine: Path, head: int) -> None:
    d = _copy(pristine)
    heads = _lines(d, "heads.jsonl")
    obj = json.loads(heads[head])
    forged = Signer.generate().sign(b"something else")  # a real signature, wrong content
    obj["signature"] = base64.b64encode(forged).decode()
    heads[head] = json.dumps(obj, separators=(",", ":")).encode()
    _write(d, heads, "heads.jsonl")
    rep = analyse(d, KEYS)
    assert not rep.ok
    assert rep.problems[0].kind == "signature" and rep.problems[0].head == head


def test_resigned_head_over_altered_records_is_caught(pristine: Path) -> None:
    # a head re-signed by another key over a different root: key unknown
    d = _copy(pristine)
    heads = _lines(d, "heads.jsonl")
    obj = json.loads(heads[1])
    obj["root_hash"] = "ab" * 32
    heads[1] = json.dumps(obj, separators=(",", ":")).encode()
    _write(d, heads, "heads.jsonl")
    rep = analyse(d, KEYS)
    assert rep.problems[0].head == 1 and rep.problems[0].kind == "signature"


def test_wrong_public_key_is_reported(pristine: Path) -> None:
    stranger = Signer.generate()
    rep = analyse(pristine, {stranger.key_id: stranger.public_key})
    assert not rep.ok and rep.problems[0].head == 0
    assert SIGNER.key_id in rep.problems[0].message
    # the same key id mapped to another key (a swapped key file) fails the signature
    rep = analyse(pristine, {SIGNER.key_id: stranger.public_key})
    assert not rep.ok and rep.problems[0].kind == "signature"


def test_deleted_head_line_leaves_records_uncovered(pristine: Path) -> None:
    d = _copy(pristine)
    _write(d, _lines(d, "heads.jsonl")[:2], "heads.jsonl")
    rep = analyse(d, KEYS)
    assert not rep.ok and rep.problems[0].kind == "uncovered" and rep.first_bad_record == 8


def test_writer_refuses_a_damaged_log(pristine: Path) -> None:
    d = _copy(pristine)
    lines = _lines(d)
    del lines[3]
    _write(d, lines)
    with pytest.raises(AuditError, match="record 3"):
        AuditLog(d, SIGNER)


def test_swapped_log_id_is_caught(pristine: Path) -> None:
    d = _copy(pristine)
    meta = json.loads((d / "log.json").read_text())
    meta["log_id"] = "0" * 32
    (d / "log.json").write_text(json.dumps(meta))
    rep = analyse(d, KEYS)
    assert not rep.ok and rep.problems[0].head == 0


JUNK = [b"\x00" * 100, b"\xff\xfe garbage \x80\n", b"[]\n", b"{}\n" * 3, b'{"seq":0}\n',
        b"\n\n\n", b"x" * 100_000, b'{"seq":\x00\x00']


@pytest.mark.parametrize("junk", JUNK, ids=range(len(JUNK)))
@pytest.mark.parametrize("name", ["records.jsonl", "heads.jsonl"])
def test_garbage_files_are_reported_not_crashed_on(name: str, junk: bytes,
                                                   pristine: Path) -> None:
    d = _copy(pristine)
    (d / name).write_bytes(junk)
    rep = analyse(d, KEYS, allow_tail=True)
    assert not rep.ok and rep.problems[0].message
    json.dumps(rep.to_dict())  # the report itself is always serialisable
    with pytest.raises(AuditError):  # the writer never appends to a damaged log
        AuditLog(d, SIGNER).close()


def test_lost_heads_file_is_resigned_from_intact_records(pristine: Path) -> None:
    # records synced, every head lost (e.g. a crash before the first head): the chain
    # is intact, so reopening signs it again rather than refusing to run
    d = _copy(pristine)
    (d / "heads.jsonl").write_bytes(b"")
    assert analyse(d, KEYS).problems[0].kind == "uncovered"
    AuditLog(d, SIGNER).close()
    assert analyse(d, KEYS).ok


def test_missing_or_bad_meta_is_reported(tmp_path: Path, pristine: Path) -> None:
    d = _copy(pristine)
    (d / "log.json").write_bytes(b"\x00\x01")
    rep = analyse(d, KEYS)
    assert not rep.ok and rep.problems[0].kind == "meta"
    (d / "log.json").unlink()
    assert analyse(d, KEYS).problems[0].kind == "meta"
    with pytest.raises(AuditError, match="missing"):
        AuditLog(d, SIGNER)


def test_writer_refuses_a_forged_last_head(pristine: Path) -> None:
    d = _copy(pristine)
    heads = _lines(d, "heads.jsonl")
    obj = json.loads(heads[-1])
    obj["signature"] = base64.b64encode(bytes(64)).decode()
    heads[-1] = json.dumps(obj, separators=(",", ":")).encode()
    _write(d, heads, "heads.jsonl")
    with pytest.raises(AuditError, match="last head"):
        AuditLog(d, SIGNER)
