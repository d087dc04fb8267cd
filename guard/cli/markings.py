"""``guard markings check|rollup|releasable``: the markings engine on the command line.

Markings come from the arguments; ``-`` reads more from standard input, one per line.
Exit status 0 when every marking is valid (and, for ``releasable``, releasable),
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

from guard.findings import Finding
from guard.markings import (
    check_banner,
    parse,
    releasable,
    render_banner,
    rollup,
)


def _inputs(items: list[str]) -> Iterator[str]:
    for item in items:
        if item == "-":
            data = sys.stdin.buffer.read()
            for line in data.decode("utf-8", "replace").splitlines():
                if line.strip():
                    yield line
        else:
            yield item


def _errors_text(errors: list) -> str:
    return "\n".join(f"  {e.rule} [{e.start}:{e.end}] {e.message}" for e in errors)


def _error(finding: Finding, text: str) -> dict[str, object]:
    """A finding of one of several inputs: the message names the input its span is in."""
    return {**finding.to_dict(), "message": f"{text}: {finding.message}"}


def _check(args: argparse.Namespace) -> int:
    status = 0
    for text in _inputs(args.marking):
        result = parse(text, args.kind)
        if not result.valid:
            status = 1
        if args.json:
            print(json.dumps(result.to_dict()))
        else:
            print(f"{'valid  ' if result.valid else 'INVALID'} {result.kind:7} {text}")
            if result.errors:
                print(_errors_text(result.errors))
    return status


def _rollup(args: argparse.Namespace) -> int:
    results = [parse(t, "portion") for t in _inputs(args.portion)]
    errors = []
    for r in results:
        errors.extend(_error(e, r.input) for e in r.errors)
    marks = [r.marking for r in results if r.marking is not None]
    banner_marking = rollup(marks)
    banner = render_banner(banner_marking) if not errors and results else None
    if args.banner:
        b = parse(args.banner, "banner")
        errors.extend(_error(e, b.input) for e in b.errors)
        if b.marking is not None:
            errors.extend(_error(e, b.input) for e in check_banner(b.marking, marks))
    if not results:
        errors.append({"rule": "input-empty", "message": "No portion marks given.",
                       "start": 0, "end": 0})
    if args.json:
        print(json.dumps({"banner": banner, "errors": errors}))
    else:
        print(banner if banner is not None else "(no banner: the portions have errors)")
        for e in errors:
            print(f"  {e['rule']} [{e['start']}:{e['end']}] {e['message']}")
    return 0 if not errors else 1


def _releasable(args: argparse.Namespace) -> int:
    status = 0
    for text in _inputs(args.marking):
        result = parse(text, "auto")
        if result.marking is None or not result.valid:
            reasons = ["the marking is not valid: " + e.message for e in result.errors]
            answer = {"releasable": False, "reasons": reasons or ["the marking is not valid"]}
        else:
            answer = releasable(result.marking, args.to).to_dict()
        if not answer["releasable"]:
            status = 1
        if args.json:
            print(json.dumps(answer))
        else:
            print(f"{'RELEASABLE' if answer['releasable'] else 'REFUSED   '} to {args.to}: "
                  f"{text}")
            for reason in answer["reasons"]:
                print(f"  - {reason}")
    return status


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard markings`` and its sub-commands."""
    parser = sub.add_parser("markings", help="parse, validate and roll up CAPCO markings")
    cmds = parser.add_subparsers(dest="markings_command", metavar="SUBCOMMAND")
    cmds.required = True

    p = cmds.add_parser("check", help="validate banner lines and portion marks")
    p.add_argument("--json", action="store_true", help="one JSON object per marking")
    p.add_argument("--kind", choices=("auto", "banner", "portion"), default="auto",
                   help="auto: text in parentheses is a portion mark")
    p.add_argument("marking", nargs="+", metavar="MARKING", help="a marking, or - for stdin")
    p.set_defaults(func=_check)

    p = cmds.add_parser("rollup", help="the banner line a set of portion marks requires")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--banner", help="also check this banner against the roll-up")
    p.add_argument("portion", nargs="+", metavar="PORTION", help="a portion mark, or -")
    p.set_defaults(func=_rollup)

    p = cmds.add_parser("releasable", help="may a marking be released to a country/group")
    p.add_argument("--json", action="store_true", help="one JSON object per marking")
    p.add_argument("--to", required=True, metavar="DEST", help="trigraph or tetragraph")
    p.add_argument("marking", nargs="+", metavar="MARKING", help="a marking, or - for stdin")
    p.set_defaults(func=_releasable)
