"""``guard policy check FILE...``: validate flow policies; errors name file:line."""

from __future__ import annotations

import argparse
import sys

from guard.policy import PolicyError, load_policy


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard policy check``."""
    p = sub.add_parser("policy", help="validate flow policies")
    s = p.add_subparsers(dest="policy_cmd", metavar="ACTION")
    s.required = True
    c = s.add_parser("check", help="validate policy files (exit 1 if any is invalid)")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    """Print ``OK flow sha256`` or every error as ``file:line: message``."""
    status = 0
    for path in args.files:
        try:
            pol = load_policy(path)
        except PolicyError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            status = 1
            continue
        print(f"OK {path} flow={pol.flow} sha256={pol.sha256}")
    return status
