"""``guard replay --policy NEW --baseline OLD``: counts, changes, sharing gained, risk added,
and the reports, each checked against an independent message-by-message computation."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from guard.capture import CapturedMessage, CaptureWriter, load_capture
from guard.cli import main
from guard.decide import Pipeline
from guard.policy import load_policy
from guard.recorder import record_generated
from guard.replay import RELEASED, ReplayError, replay
from guard.report import html_page, markdown, summary

REPO = Path(__file__).resolve().parents[1]
OLD = REPO / "policies" / "us-secret-to-fvey.yaml"
NEW = REPO / "policies" / "us-secret-to-fvey-yesforn.yaml"
FVEY = "SECRET//REL TO USA, FVEY"

# hand-built traffic: (message id, payload)
HAND = [
    ("rel-fvey", f"{FVEY}\n(S//REL TO USA, FVEY) Naval activity increased near the strait.\n"
                 f"(U) Weather in the area was clear.\n{FVEY}\n"),
    ("uncaveated", "SECRET\n(S) Convoy movements were observed near the border.\n"
                   "(S) Analysts assess the exercise will continue.\nSECRET\n"),
    ("mixed-uncav", "SECRET\n(S) Engineering units reinforced positions.\n"
                    "(U) Sea state was moderate.\nSECRET\n"),
    ("noforn", "SECRET//NOFORN\n(S//NF) The reporting comes from a sensitive source.\n"
               "SECRET//NOFORN\n"),
    ("<script>x</script>", "SECRET\n(S) Survey ships resumed patrols.\nSECRET\n"),
    ("binary", "\x00\x01\x02garbage"),
]


def _hand_capture(path: Path) -> list[CapturedMessage]:
    msgs = [CapturedMessage(mid, "us-secret-to-fvey", "flows/us-secret-to-fvey/in",
                            1_767_225_600.0 + i, (("message-id", mid),), body.encode())
            for i, (mid, body) in enumerate(HAND)]
    with CaptureWriter(path, {"source": "test"}, block_records=2) as w:
        w.write_many(msgs)
    return msgs


def _oracle(msgs: list[CapturedMessage]) -> tuple[list, list]:
    """Decide one message at a time with Pipeline.decide (no replay code involved)."""
    old, new = Pipeline(load_policy(OLD)), Pipeline(load_policy(NEW))
    return ([old.decide(m.payload, m.message_id) for m in msgs],
            [new.decide(m.payload, m.message_id) for m in msgs])


def test_changed_sharing_and_risk_on_a_hand_built_capture(tmp_path: Path) -> None:
    cap = tmp_path / "hand.gcap"
    msgs = _hand_capture(cap)
    before, after = _oracle(msgs)
    res = replay(cap, NEW, OLD, workers=1)

    changed = [i for i in range(len(msgs)) if before[i].verdict != after[i].verdict
               or (after[i].verdict in RELEASED and before[i].output != after[i].output)]
    assert [c.index for c in res.changes] == changed
    # the point of the reform: uncaveated portions are withheld today, released by YESFORN
    ids = {c.message_id: c for c in res.changes}
    assert {"uncaveated", "mixed-uncav", "<script>x</script>"} <= set(ids)
    assert "rel-fvey" not in ids and "noforn" not in ids and "binary" not in ids
    for c in res.changes:
        b, a = before[c.index], after[c.index]
        assert (c.before.verdict, c.after.verdict) == (b.verdict, a.verdict)
        assert [f[0] for f in c.before.findings] == [f.rule for f in b.findings]
        assert [f[0] for f in c.after.findings] == [f.rule for f in a.findings]

    gained = [i for i in range(len(msgs))
              if after[i].verdict in RELEASED and before[i].verdict not in RELEASED]
    assert before[1].verdict not in RELEASED and after[1].verdict == "release"
    sg = res.sharing_gained()["FVEY"]
    assert sg["messages"] == len(gained)
    assert sg["bytes"] == sum(len(after[i].output) for i in gained)
    assert set(sg["members"]) == {"USA", "GBR", "CAN", "AUS", "NZL"}

    risk = res.risk_added()
    expect: Counter[str] = Counter()
    for i in gained:
        expect.update({f.rule for f in before[i].findings})
    assert {k: v["messages"] for k, v in risk.items()} == dict(expect)
    assert expect  # the baseline had a reason for every message it withheld


def test_counts_agree_with_decide_message_by_message(tmp_path: Path) -> None:
    cap = tmp_path / "gen.gcap"
    record_generated(cap, "us-secret-to-fvey", 150, seed=11)
    msgs = load_capture(cap)[1]
    before, after = _oracle(msgs)
    res2 = replay(cap, NEW, OLD, workers=2)
    res1 = replay(cap, NEW, OLD, workers=1)
    for res in (res1, res2):
        assert res.messages == len(msgs) == 150
        assert res.bytes == sum(len(m.payload) for m in msgs)
        assert res.by_verdict(False) == {v: sum(d.verdict == v for d in before)
                                         for v in ("release", "redact", "quarantine", "block")}
        assert res.by_verdict(True) == {v: sum(d.verdict == v for d in after)
                                        for v in ("release", "redact", "quarantine", "block")}
        assert sum(res.released_bytes_before.values()) == sum(
            len(d.output) for d in before if d.verdict in RELEASED)
        rules = Counter(r for d in after for r in {f.rule for f in d.findings})
        assert res.rules_after == rules
    assert [c.message_id for c in res1.changes] == [c.message_id for c in res2.changes]
    assert res1.counts_after == res2.counts_after
    # without a baseline: only NEW's counts
    alone = replay(cap, OLD, workers=2)
    assert alone.by_verdict(True) == res1.by_verdict(False) and not alone.changes
    s = summary(alone)
    assert s["by_verdict_before"] is None and s["changed"] is None


def test_reports_are_self_contained_and_escaped(tmp_path: Path) -> None:
    cap = tmp_path / "hand.gcap"
    _hand_capture(cap)
    out = tmp_path / "rep"
    assert main(["replay", "--policy", str(NEW), "--baseline", str(OLD), str(cap),
                 "--report", str(out), "--json", "--workers", "2"]) == 0
    page = (out / "report.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 3  # verdicts, sharing gained, risk added
    for svg in svgs:  # each chart is well-formed XML with bars in it
        root = ET.fromstring(svg)
        assert root.tag == "svg" and root.findall(".//rect")
    assert not re.search(r"https?:", page, re.I)
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|@import|url\(", page, re.I)
    assert "&lt;script&gt;x&lt;/script&gt;" in page  # the hostile message id, escaped
    md = (out / "report.md").read_text()
    assert "uncaveated" in md and "<script>" not in md
    data = json.loads((out / "summary.json").read_text())
    for key in ("messages", "changed", "by_verdict_before", "by_verdict_after", "msgs_per_s"):
        assert key in data
    assert data["messages"] == len(HAND)
    assert data["changed"] == len(data["changed_messages"]) >= 3
    assert html_page(replay(cap, NEW, workers=1)).count("<svg") == 1
    assert "Sharing gained" not in markdown(replay(cap, NEW, workers=1))


def test_cli_json_keys_and_errors(tmp_path: Path, capsys) -> None:
    cap = tmp_path / "hand.gcap"
    _hand_capture(cap)
    assert main(["replay", "--policy", str(NEW), str(cap), "--json", "--workers", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["messages"] == len(HAND) and data["by_verdict_before"] is None
    assert sum(data["by_verdict_after"].values()) == len(HAND)
    assert data["msgs_per_s"] > 0
    bad = tmp_path / "bad.gcap"
    bad.write_bytes(b"GCAP" + b"\0" * 40)
    assert main(["replay", "--policy", str(NEW), str(bad)]) == 2
    assert "capture" in capsys.readouterr().err
    assert main(["replay", str(cap)]) == 2
    broken = tmp_path / "p.yaml"
    broken.write_text("flow: [\n")
    assert main(["replay", "--policy", str(broken), str(cap)]) == 2


@pytest.mark.parametrize("cut", [1, 20])
def test_torn_capture_is_replayed_and_reported(tmp_path: Path, cut: int, capsys) -> None:
    cap = tmp_path / "hand.gcap"
    _hand_capture(cap)
    cap.write_bytes(cap.read_bytes()[:-cut])
    res = replay(cap, NEW, OLD, workers=1)
    assert res.torn and res.messages == 4  # blocks of 2: the last one was cut
    assert main(["replay", "--policy", str(NEW), str(cap), "--json", "--workers", "1"]) == 0
    assert "dropped" in capsys.readouterr().err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_worker_fails_the_replay_not_hangs(tmp_path: Path, workers: int,
                                                     monkeypatch) -> None:
    cap = tmp_path / "hand.gcap"
    _hand_capture(cap)

    def broken(policy: object) -> None:
        raise RuntimeError("scanner table mismatch")

    monkeypatch.setattr("guard.replay.Pipeline", broken)  # inherited by forked workers
    with pytest.raises(ReplayError, match="scanner table mismatch"):
        replay(cap, NEW, OLD, workers=workers)
    assert main(["replay", "--policy", str(NEW), str(cap), "--workers", str(workers)]) == 2


def test_counts_are_per_flow_and_flow_filter(tmp_path: Path) -> None:
    cap = tmp_path / "two.gcap"
    body = HAND[0][1].encode()
    msgs = [CapturedMessage(f"m{i}", "flow-a" if i % 3 else "flow-b", "t", 0.0, (), body)
            for i in range(9)]
    with CaptureWriter(cap, {}) as w:
        w.write_many(msgs)
    verdict = Pipeline(load_policy(NEW)).decide(body).verdict
    res = replay(cap, NEW, workers=1)
    assert res.counts_after == {("flow-a", "FVEY", verdict): 6, ("flow-b", "FVEY", verdict): 3}
    only = replay(cap, NEW, workers=2, flows=["flow-b"])
    assert only.messages == 3 and only.counts_after == {("flow-b", "FVEY", verdict): 3}
