"""Human review (two distinct reviewers, deadlines) and the inspect / review commands."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pytest

from guard.cli import inspect as inspect_cli
from guard.cli import review as review_cli
from guard.decide import Pipeline
from guard.policy import load_policy
from guard.review import ReviewError, ReviewStore

POLICIES = Path(__file__).resolve().parents[1] / "policies"
QUAR = (b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) The owner is a U.S. person, "
        b"SSN 123-45-6789.\n(U) Weather clear.\nSECRET//REL TO USA, GBR\n")
LANE = b"UNCLASSIFIED\n(U) OSINT: press reporting names a U.S. person.\nUNCLASSIFIED\n"


def _queue(store: ReviewStore, policy_path: Path, data: bytes, now: float | None = None):
    pol = load_policy(policy_path)
    d = Pipeline(pol).decide(data)
    assert d.verdict == "quarantine" and d.output is None and d.candidate is not None
    return store.submit(d, data, pol, now=now), d


def test_two_distinct_reviewers_release(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "q")
    rid, d = _queue(store, POLICIES / "us-secret-to-gbr.yaml", QUAR)
    rec = store.approve(rid, "alice", "checked privacy")
    assert rec["status"] == "pending"
    with pytest.raises(ReviewError, match="already acted"):
        store.approve(rid, "alice")
    rec = store.approve(rid, "bob")
    assert rec["status"] == "released"
    out = Path(rec["output_path"]).read_bytes()
    assert out == d.candidate and b"123-45-6789" not in out and b"[REDACTED]" in out
    assert [a["who"] for a in rec["actions"]] == ["alice", "bob"]
    assert all(a["when"] > 0 for a in rec["actions"])
    with pytest.raises(ReviewError, match="not pending"):
        store.deny(rid, "carol")


def test_one_denial_denies_and_system_names_refused(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "q")
    rid, _ = _queue(store, POLICIES / "us-secret-to-gbr.yaml", QUAR)
    with pytest.raises(ReviewError):
        store.approve(rid, "guard:deadline")
    store.approve(rid, "alice")
    assert store.deny(rid, "bob", "privacy")["status"] == "denied"
    assert not list((tmp_path / "q" / "released").iterdir())


def test_deadline_denies_by_default(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "q")
    t0 = time.time()
    rid, _ = _queue(store, POLICIES / "us-secret-to-gbr.yaml", QUAR, now=t0)
    assert store.process_deadlines(now=t0 + 3600) == []
    assert store.process_deadlines(now=t0 + 169 * 3600) == [rid]
    assert store.load(rid)["status"] == "expired"
    with pytest.raises(ReviewError, match="expired"):
        store.approve(rid, "alice", now=t0 + 170 * 3600)


def test_deadline_auto_releases_lane_messages(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "q")
    t0 = time.time()
    rid, d = _queue(store, POLICIES / "us-secret-to-public.yaml", LANE, now=t0)
    assert d.auto_release and d.lanes == ("osint",)
    store.process_deadlines(now=t0 + 73 * 3600)
    rec = store.load(rid)
    assert rec["status"] == "released" and rec["released_by"] == "guard:deadline"
    # the same flow without the lane indicator is not eligible
    rid2, d2 = _queue(store, POLICIES / "us-secret-to-public.yaml",
                      b"UNCLASSIFIED\n(U) A U.S. person visited.\nUNCLASSIFIED\n", now=t0)
    assert not d2.auto_release
    store.process_deadlines(now=t0 + 73 * 3600)
    assert store.load(rid2)["status"] == "expired"
    # a code word (SCI) anywhere, even in a withheld portion, rules automatic release out
    _rid3, d3 = _queue(store, POLICIES / "us-secret-to-public.yaml",
                      b"TOP SECRET//SI//NOFORN\n(TS//SI//NF) Intercept.\n"
                      b"(U) OSINT: press reporting names a U.S. person.\n"
                      b"TOP SECRET//SI//NOFORN\n", now=t0)
    assert d3.lanes == ("osint",) and not d3.auto_release


def test_changed_policy_refuses_release(tmp_path: Path) -> None:
    pdir = tmp_path / "pol"
    shutil.copytree(POLICIES / "terms", pdir / "terms")
    path = pdir / "us-secret-to-gbr.yaml"
    shutil.copy(POLICIES / "us-secret-to-gbr.yaml", path)
    store = ReviewStore(tmp_path / "q")
    rid, _ = _queue(store, path, QUAR)
    store.approve(rid, "alice")
    path.write_text(path.read_text() + "\n# edited\n")
    with pytest.raises(ReviewError, match="policy changed"):
        store.approve(rid, "bob")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guard")
    sub = parser.add_subparsers()
    inspect_cli.register(sub)
    review_cli.register(sub)
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize(("data", "verdict", "status"), [
    (b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) x.\nSECRET//REL TO USA, GBR\n",
     "release", 0),
    (b"SECRET//NOFORN\n(S//REL TO USA, GBR) x.\n(S//NF) y.\nSECRET//NOFORN\n", "redact", 3),
    (QUAR, "quarantine", 4),
    (b"garbage", "block", 1),
])
def test_inspect_json_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      data: bytes, verdict: str, status: int) -> None:
    msg = tmp_path / "m.txt"
    msg.write_bytes(data)
    pol = POLICIES / "us-secret-to-gbr.yaml"
    assert _run(["inspect", "--policy", str(pol), "--json", str(msg)]) == status
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == verdict
    assert out["policy_sha256"] == load_policy(pol).sha256
    assert {"verdict", "findings", "output", "banner", "policy_sha256"} <= set(out)
    for f in out["findings"]:
        assert set(f) == {"rule", "message", "start", "end"}
    assert (out["output"] is None) == (verdict in ("block", "quarantine"))


def test_inspect_bad_policy_and_missing_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: bad\n")
    assert _run(["inspect", "--policy", str(bad), str(bad)]) == 5
    pol = str(POLICIES / "us-secret-to-gbr.yaml")
    assert _run(["inspect", "--policy", pol, str(tmp_path / "none")]) == 5
    capsys.readouterr()


def test_review_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = tmp_path / "m.txt"
    msg.write_bytes(QUAR)
    q = str(tmp_path / "q")
    pol = str(POLICIES / "us-secret-to-gbr.yaml")
    assert _run(["inspect", "--policy", pol, "--json", "--queue", q, str(msg)]) == 4
    rid = json.loads(capsys.readouterr().out)["review_id"]
    assert _run(["review", "--store", q, "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == rid and rows[0]["status"] == "pending"
    assert _run(["review", "--store", q, "show", rid, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "[REDACTED]" in shown["candidate"] and "input" not in shown
    assert _run(["review", "--store", q, "approve", rid, "--reviewer", "alice"]) == 0
    assert _run(["review", "--store", q, "approve", rid, "--reviewer", "alice"]) == 1
    assert _run(["review", "--store", q, "approve", rid, "--reviewer", "bob"]) == 0
    assert "released" in capsys.readouterr().out
    assert _run(["review", "--store", q, "show", "not-an-id"]) == 1
