"""``guard replay``: what-if a policy changed, or confirm recorded decisions reproduce.

    guard replay --policy NEW [--baseline OLD] CAPTURE [--report DIR] [--json]
    guard replay --audit DIR [--audit DIR ...] [--policy P] CAPTURE [--json]

Exit status: 0 done (audit: every recorded verdict reproduced); 1 audit found a
verdict that is not reproduced (or no record to check); 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import sys

from guard.replay import ReplayError, audit_replay, replay
from guard.report import markdown, summary, write_report


def _err(msg: str) -> int:
    print(f"guard replay: {msg}", file=sys.stderr)
    return 2


def _audit(args: argparse.Namespace) -> int:
    if args.baseline:
        return _err("--baseline does not apply to --audit")
    try:
        res = audit_replay(args.capture, args.audit, policies=args.policy or (),
                           workers=args.workers)
    except ReplayError as exc:
        return _err(str(exc))
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        for p in res.problems:
            print(f"warning: {p}", file=sys.stderr)
        print(f"{res.records} recorded decisions about captured messages, {res.reproduced} "
              f"reproduced, {len(res.mismatches)} not ({res.not_in_capture} records about "
              f"messages not in the capture, {res.unaudited} captured messages without a "
              f"record; {res.seconds:.2f} s)")
        for sha, path in res.policies.items():
            print(f"  policy {sha[:16]}... = {path}")
        for m in res.mismatches:
            print(f"NOT REPRODUCED {m.message_id}: recorded {m.recorded}, reproduced "
                  f"{m.reproduced}" + (f" ({m.why})" if m.why else ""))
        if not res.records:
            print("nothing to check: no record is about a captured message", file=sys.stderr)
    return 0 if res.ok else 1


def _run(args: argparse.Namespace) -> int:
    if args.audit:
        return _audit(args)
    if not args.policy:
        return _err("give --policy NEW (and optionally --baseline OLD), or --audit DIR")
    if len(args.policy) > 1:
        return _err("give one --policy (the new policy) outside --audit")
    try:
        res = replay(args.capture, args.policy[0], args.baseline, workers=args.workers,
                     flows=args.flow or None)
    except ReplayError as exc:
        return _err(str(exc))
    if res.torn:
        print(f"guard replay: warning: {res.torn}", file=sys.stderr)
    if args.report:
        try:
            paths = write_report(res, args.report)
        except OSError as exc:
            return _err(f"cannot write the report: {exc}")
        if not args.json:
            print("report: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    if args.json:
        print(json.dumps(summary(res)))
    else:
        sys.stdout.write(markdown(res, max_changes=None if args.all else 20))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard replay``."""
    p = sub.add_parser("replay", help="replay a capture under a new policy, or audit it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture", metavar="CAPTURE", help="capture file (guard record)")
    p.add_argument("--policy", action="append", metavar="FILE",
                   help="the new policy (with --audit: extra places to find recorded policies)")
    p.add_argument("--baseline", metavar="FILE", help="today's policy, to compare against")
    p.add_argument("--audit", action="append", metavar="DIR",
                   help="audit log directory whose recorded verdicts must reproduce")
    p.add_argument("--report", metavar="DIR", help="write report.md, report.html, summary.json")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.add_argument("--all", action="store_true",
                   help="print every changed message (default: the first 20; the report "
                   "files always hold all)")
    p.add_argument("--flow", action="append", help="replay only messages of this flow")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=_run)
