"""`guard demo`: the whole simulation from the command line, in-process and on mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
KEYS = {"flows", "spillage", "lost", "duplicates", "audit_verified", "msgs_per_s"}


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard", "demo", "--seconds", "2",
                           "--rate", "40", *args], capture_output=True, text=True, timeout=180)


def test_demo_in_process_prints_progress_and_a_clean_summary() -> None:
    p = _demo("--transport", "in-process")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "in-process transport" in p.stdout
    progress = [x for x in p.stdout.splitlines() if x.startswith("[")]
    assert len(progress) >= 2 and "gbr" in progress[0] and "release" in progress[0]
    rows = [x.split() for x in p.stdout.splitlines() if x.startswith("us-secret-to-")]
    assert len(rows) == 5
    for row in rows:  # sent released redacted quarantined blocked spillage lost duplicates
        sent, rel, red, qua, blk, spill, lost, dup = map(int, row[1:9])
        assert sent == 80 and rel + red + qua + blk == sent
        assert spill == lost == dup == 0
    assert "audit verified: yes" in p.stdout


def test_demo_on_mosquitto_json_summary() -> None:
    p = _demo("--transport", "mosquitto", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads(p.stdout)
    assert set(result) >= KEYS
    assert result["transport"] == "mosquitto" and "mosquitto brokers" in p.stderr
    assert len(result["flows"]) == 5 and result["sent"] == 400
    assert result["spillage"] == result["lost"] == result["duplicates"] == 0
    assert result["audit_verified"] is True and result["msgs_per_s"] > 50
    blocked = sum(f["blocked"] for f in result["flows"].values())
    released = sum(f["released"] + f["redacted"] for f in result["flows"].values())
    assert blocked > 50 and released > 100
