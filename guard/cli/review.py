"""``guard review list|show|approve|deny``: the human review queue of quarantined messages.

The queue directory is ``--store DIR`` (default ``$GUARD_REVIEW_DIR`` or ``./review``).
Two distinct reviewers must approve before a message is released; one denial denies.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

from guard.review import ReviewError, ReviewStore


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard review``."""
    p = sub.add_parser("review", help="list, show, approve or deny quarantined messages")
    p.add_argument("--store", default=os.environ.get("GUARD_REVIEW_DIR", "review"),
                   help="review queue directory (default $GUARD_REVIEW_DIR or ./review)")
    s = p.add_subparsers(dest="review_cmd", metavar="ACTION")
    s.required = True
    ls = s.add_parser("list", help="list reviews (deadlines applied first)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    sh = s.add_parser("show", help="show one review with its findings and candidate output")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_show)
    for name, helptext in (("approve", "approve (release needs two distinct reviewers)"),
                           ("deny", "deny (final)")):
        a = s.add_parser(name, help=helptext)
        a.add_argument("id")
        a.add_argument("--reviewer", required=True, help="who is acting (recorded)")
        a.add_argument("--note", default="", help="reason, recorded with the action")
        a.set_defaults(func=_act, action=name)


def _list(args: argparse.Namespace) -> int:
    rows = ReviewStore(args.store).list()
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']}  {r['status']:<9} {r['flow']:<28} approvals={len(r['approvals'])}"
                  f"  {r['message_id']}")
    return 0


def _show(args: argparse.Namespace) -> int:
    store = ReviewStore(args.store)
    store.process_deadlines()
    try:
        rec = store.load(args.id)
    except ReviewError as exc:
        print(f"guard review: {exc}", file=sys.stderr)
        return 1
    view = {k: v for k, v in rec.items() if k not in ("input", "candidate")}
    view["candidate"] = base64.b64decode(rec["candidate"]).decode("utf-8", "replace")
    if args.json:
        print(json.dumps(view, ensure_ascii=False))
        return 0
    for k in ("id", "status", "flow", "policy_sha256", "message_id", "banner", "lanes"):
        print(f"{k}: {view.get(k)}")
    for f in rec["findings"]:
        print(f"  [{f['rule']}] {f['start']}-{f['end']}: {f['message']}")
    for a in rec["actions"]:
        print(f"  {a['action']} by {a['who']} at {a['when']:.0f} {a.get('note', '')}")
    print("--- candidate output ---")
    sys.stdout.write(view["candidate"])
    return 0


def _act(args: argparse.Namespace) -> int:
    store = ReviewStore(args.store)
    try:
        fn = store.approve if args.action == "approve" else store.deny
        rec = fn(args.id, args.reviewer, args.note)
    except ReviewError as exc:
        print(f"guard review: {exc}", file=sys.stderr)
        return 1
    print(f"{rec['id']}: {rec['status']}" + (f" -> {rec['output_path']}"
                                             if rec.get("output_path") else ""))
    return 0
