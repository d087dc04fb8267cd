"""Minimal human review of quarantined messages: a directory of JSON records.

A quarantined decision is submitted with its input and its candidate output (what would
leave, already re-checked with the quarantine lists allowed). ``approve`` and ``deny`` record
who and when. A message is released only when the policy's number of DISTINCT reviewers
(two at least) have approved it, and only after the candidate passes the independent
re-check again under the same policy (same SHA-256; a changed policy needs re-inspection).
One denial denies. At the deadline (``review.deadline_hours``) a pending message is denied,
unless the policy says ``on_deadline: release-lanes`` and the decision was wholly in a lane
that allows automatic release (no code words: those block before review). Released bytes
are written to ``DIR/released/ID.out``. Records are written atomically, under a lock.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from guard.decide import Decision
from guard.policy import Policy, load_policy
from guard.recheck import Rechecker

__all__ = ["ReviewError", "ReviewStore"]

_ID = re.compile(r"^[0-9a-f]{32}$")


class ReviewError(Exception):
    """A review action that cannot be done (unknown id, not pending, same reviewer...)."""


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


class ReviewStore:
    """The review queue in directory ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "released").mkdir(exist_ok=True, mode=0o700)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _path(self, rid: str) -> Path:
        if not _ID.match(rid):
            raise ReviewError(f"not a review id: {rid!r}")
        return self.root / f"{rid}.json"

    def _write(self, rec: dict[str, Any]) -> None:
        path = self._path(rec["id"])
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load(self, rid: str) -> dict[str, Any]:
        """The record of review ``rid``."""
        try:
            with open(self._path(rid), encoding="utf-8") as fh:
                rec: dict[str, Any] = json.load(fh)
        except FileNotFoundError:
            raise ReviewError(f"no such review: {rid}") from None
        return rec

    def submit(self, decision: Decision, data: bytes, policy: Policy,
               now: float | None = None) -> str:
        """Queue a quarantined decision; returns its review id."""
        if decision.verdict != "quarantine" or decision.candidate is None:
            raise ReviewError("only quarantined decisions with a candidate output are queued")
        now = time.time() if now is None else now
        rid = uuid.uuid4().hex
        rec = {
            "id": rid, "created": now, "deadline": now + policy.review_deadline_hours * 3600,
            "flow": policy.flow, "policy_path": str(Path(policy.path).resolve()),
            "policy_sha256": policy.sha256, "message_id": decision.message_id,
            "input": _b64(data), "candidate": _b64(decision.candidate),
            "banner": decision.banner, "findings": [f.to_dict() for f in decision.findings],
            "auto_release": decision.auto_release, "lanes": list(decision.lanes),
            "status": "pending", "actions": [],
        }
        with self._locked():
            self._write(rec)
        return rid

    def list(self, now: float | None = None) -> list[dict[str, Any]]:
        """Summaries of every record (deadlines are applied first)."""
        self.process_deadlines(now)
        out = []
        for p in sorted(self.root.glob("*.json")):
            rec = self.load(p.stem)
            out.append({k: rec[k] for k in ("id", "flow", "message_id", "status", "created",
                                            "deadline")} | {"approvals": _approvers(rec)})
        return out

    def _release(self, rec: dict[str, Any], who: str, now: float) -> None:
        policy = load_policy(rec["policy_path"])
        if policy.sha256 != rec["policy_sha256"]:
            raise ReviewError("the policy changed since the message was quarantined; "
                              "inspect the message again")
        candidate = base64.b64decode(rec["candidate"])
        problems = Rechecker(policy).check(candidate, allow_quarantine=True)
        if problems:
            rec["status"] = "denied"
            rec["actions"].append({"who": "guard:recheck", "when": now, "action": "deny",
                                   "note": "; ".join(f.message for f in problems)[:500]})
            return
        out = self.root / "released" / f"{rec['id']}.out"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(candidate)
        rec["status"] = "released"
        rec["released_by"] = who
        rec["output_path"] = str(out)

    def _act(self, rid: str, reviewer: str, action: str, note: str, now: float | None) -> dict:
        reviewer = reviewer.strip()
        if not reviewer or reviewer.startswith("guard:") or len(reviewer) > 128:
            raise ReviewError("a reviewer name is required (not 'guard:...', at most 128 chars)")
        now = time.time() if now is None else now
        with self._locked():
            rec = self.load(rid)
            self._expire(rec, now)
            if rec["status"] != "pending":
                self._write(rec)
                raise ReviewError(f"review {rid} is {rec['status']}, not pending")
            if any(a["who"] == reviewer for a in rec["actions"]):
                raise ReviewError(f"{reviewer} has already acted on review {rid}")
            rec["actions"].append({"who": reviewer, "when": now, "action": action,
                                   "note": note, "os_user": getpass.getuser()})
            if action == "deny":
                rec["status"] = "denied"
            else:
                policy_needs = _required(rec)
                if len(_approvers(rec)) >= policy_needs:
                    self._release(rec, f"reviewers:{','.join(_approvers(rec))}", now)
            self._write(rec)
            return rec

    def approve(self, rid: str, reviewer: str, note: str = "", now: float | None = None) -> dict:
        """Record an approval; releases when enough distinct reviewers approved."""
        return self._act(rid, reviewer, "approve", note, now)

    def deny(self, rid: str, reviewer: str, note: str = "", now: float | None = None) -> dict:
        """Record a denial (final)."""
        return self._act(rid, reviewer, "deny", note, now)

    def _expire(self, rec: dict[str, Any], now: float) -> bool:
        if rec["status"] != "pending" or now < rec["deadline"]:
            return False
        try:
            policy = load_policy(rec["policy_path"])
            auto = (rec.get("auto_release") and policy.on_deadline == "release-lanes"
                    and policy.sha256 == rec["policy_sha256"])
        except Exception:
            auto = False
        if auto:
            rec["actions"].append({"who": "guard:deadline", "when": now, "action": "approve",
                                   "note": "deadline passed; lane allows automatic release"})
            try:
                self._release(rec, "guard:deadline", now)
            except ReviewError:
                rec["status"] = "expired"
        else:
            rec["status"] = "expired"
            rec["actions"].append({"who": "guard:deadline", "when": now, "action": "deny",
                                   "note": "deadline passed; the policy denies"})
        return True

    def process_deadlines(self, now: float | None = None) -> list[str]:
        """Apply the deadline to every pending record; returns the ids that changed."""
        now = time.time() if now is None else now
        changed = []
        with self._locked():
            for p in sorted(self.root.glob("*.json")):
                rec = self.load(p.stem)
                if self._expire(rec, now):
                    self._write(rec)
                    changed.append(rec["id"])
        return changed


def _approvers(rec: dict[str, Any]) -> list[str]:
    return sorted({a["who"] for a in rec["actions"]
                   if a["action"] == "approve" and not a["who"].startswith("guard:")})


def _required(rec: dict[str, Any]) -> int:
    try:
        return max(2, load_policy(rec["policy_path"]).reviewers_required)
    except Exception:
        return 2
