"""``guard replay --audit DIR CAPTURE``: recorded verdicts must reproduce, by policy hash."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from guard.audit import AuditLog, DecisionRecord, Signer
from guard.capture import load_capture
from guard.cli import main
from guard.decide import Pipeline
from guard.policy import load_policy
from guard.recorder import record_generated
from guard.replay import audit_replay

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "us-secret-to-fvey.yaml"


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "c.gcap"
    record_generated(path, "us-secret-to-fvey", 60, seed=21)
    return path


def _write_log(directory: Path, capture: Path, policy: Path, *, alter: str | None = None,
               only: int | None = None) -> dict[str, str]:
    """An audit log of deciding ``capture`` under ``policy``; ``alter``: the message id
    whose recorded verdict is changed. Returns message id -> recorded verdict."""
    pipe = Pipeline(load_policy(policy))
    msgs = load_capture(capture)[1][:only]
    recorded = {}
    with AuditLog(directory, Signer.generate()) as log:
        for k, m in enumerate(msgs):
            d = pipe.decide(m.payload, m.message_id)
            verdict = d.verdict
            if m.message_id == alter:
                verdict = "release" if verdict != "release" else "block"
            recorded[m.message_id] = verdict
            out = hashlib.sha256(d.output).hexdigest() if d.output is not None else None
            log.append(DecisionRecord(f"d-{k}", m.time, m.flow, m.message_id,
                                      hashlib.sha256(m.payload).hexdigest(), out,
                                      d.policy_sha256, verdict,
                                      [f.to_dict() for f in d.findings]))
    return recorded


def test_reproduces_every_recorded_verdict(tmp_path: Path, capture: Path, capsys) -> None:
    log = tmp_path / "log"
    recorded = _write_log(log, capture, POLICY)
    assert main(["replay", "--audit", str(log), str(capture), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{len(recorded)} reproduced, 0 not" in out and str(POLICY) in out
    res = audit_replay(capture, [log], workers=1)
    assert res.ok and res.reproduced == res.records == 60 and res.unaudited == 0


def test_names_the_message_whose_verdict_differs(tmp_path: Path, capture: Path,
                                                 capsys) -> None:
    victim = load_capture(capture)[1][17].message_id
    log = tmp_path / "log"
    recorded = _write_log(log, capture, POLICY, alter=victim)
    assert main(["replay", "--audit", str(log), str(capture), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and data["reproduced"] == 59
    assert [m["message_id"] for m in data["mismatches"]] == [victim]
    m = data["mismatches"][0]
    assert m["recorded"] == recorded[victim] and m["reproduced"] != m["recorded"]
    assert main(["replay", "--audit", str(log), str(capture)]) == 1
    text = capsys.readouterr().out
    assert f"NOT REPRODUCED {victim}: recorded {recorded[victim]}, reproduced " \
           f"{m['reproduced']}" in text


def test_unknown_policy_hash_is_refused_unless_given(tmp_path: Path, capture: Path,
                                                     capsys) -> None:
    pdir = tmp_path / "pol"
    shutil.copytree(REPO / "policies" / "terms", pdir / "terms")
    variant = pdir / POLICY.name  # same flow and name, one more comment line: new hash
    variant.write_bytes(POLICY.read_bytes() + b"# a local edit: a new hash\n")
    log = tmp_path / "log"
    _write_log(log, capture, variant, only=20)
    sha = load_policy(variant).sha256
    assert main(["replay", "--audit", str(log), str(capture)]) == 2
    err = capsys.readouterr().err
    assert sha in err and "not available" in err
    assert main(["replay", "--audit", str(log), "--policy", str(variant), str(capture)]) == 0
    out = capsys.readouterr().out
    assert "20 reproduced" in out and "40 captured messages without a record" in out


def test_a_different_input_is_not_a_reproduction(tmp_path: Path, capture: Path) -> None:
    msgs = load_capture(capture)[1]
    pipe = Pipeline(load_policy(POLICY))
    log = tmp_path / "log"
    with AuditLog(log, Signer.generate()) as a:
        for k, m in enumerate(msgs[:3]):
            d = pipe.decide(m.payload, m.message_id)
            payload = m.payload + b"x" if k == 1 else m.payload  # recorded a different input
            a.append(DecisionRecord(f"d-{k}", 0.0, m.flow, m.message_id,
                                    hashlib.sha256(payload).hexdigest(), None,
                                    d.policy_sha256, d.verdict, []))
        a.append(DecisionRecord("d-x", 0.0, "other", "not-captured", "0" * 64, None,
                                pipe.policy.sha256, "block", []))
    res = audit_replay(capture, [log], workers=1)
    assert [m.message_id for m in res.mismatches] == [msgs[1].message_id]
    assert "SHA-256" in res.mismatches[0].why
    assert res.reproduced == 2 and res.not_in_capture == 1 and not res.ok


def test_empty_or_missing_log(tmp_path: Path, capture: Path, capsys) -> None:
    assert main(["replay", "--audit", str(tmp_path / "nolog"), str(capture)]) == 2
    assert "audit log" in capsys.readouterr().err
