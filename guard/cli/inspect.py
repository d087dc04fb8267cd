"""``guard inspect --policy FILE [--json] MESSAGE_FILE|-``: decide one message and explain.

Exit status: 0 release, 3 redact, 4 quarantine, 1 block (including an internal error),
5 the policy or the message file could not be read (2 is argparse's usage error). A
quarantined message is also queued for review when ``--queue DIR`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys

from guard.decide import Pipeline
from guard.policy import PolicyError, load_policy

EXIT = {"release": 0, "block": 1, "redact": 3, "quarantine": 4}
EXIT_INPUT = 5
MAX_READ = 64 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard inspect``."""
    p = sub.add_parser("inspect", help="decide one message under a policy and explain why")
    p.add_argument("--policy", required=True, help="policy YAML file")
    p.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    p.add_argument("--queue", metavar="DIR", help="queue a quarantined message for review here")
    p.add_argument("--message-id", default="", help="identifier recorded with the decision")
    p.add_argument("message", help="message file, or - for standard input")
    p.set_defaults(func=run)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read(MAX_READ + 1)
    with open(path, "rb") as fh:
        return fh.read(MAX_READ + 1)


def run(args: argparse.Namespace) -> int:
    """Decide and print; the exit status says the verdict (see the module docstring)."""
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INPUT
    try:
        data = _read(args.message)
    except OSError as exc:
        print(f"guard inspect: cannot read {args.message}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    decision = Pipeline(policy).decide(data, args.message_id or args.message)
    queued = None
    if args.queue and decision.verdict == "quarantine":
        from guard.review import ReviewStore

        queued = ReviewStore(args.queue).submit(decision, data, policy)
    if args.json:
        out = decision.to_dict()
        if queued:
            out["review_id"] = queued
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(f"verdict: {decision.verdict}")
        print(f"policy:  {policy.flow} sha256={decision.policy_sha256}")
        if decision.banner:
            print(f"banner:  {decision.banner}")
        for f in decision.findings:
            print(f"  [{f.rule}] {f.start}-{f.end}: {f.message}")
        if queued:
            print(f"queued for review as {queued}")
        if decision.output is not None:
            print("--- output ---")
            sys.stdout.write(decision.output.decode("utf-8", "replace"))
    return EXIT[decision.verdict]
