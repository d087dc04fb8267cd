"""``guard demo [--seconds N] [--json]``: domains, generators, the guard and the sinks, live."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys


def _run(args: argparse.Namespace) -> int:
    from guard.demo import failed, print_summary, run_demo

    if args.seconds <= 0 or args.rate <= 0 or args.workers < 1:
        print("guard demo: --seconds, --rate and --workers must be positive", file=sys.stderr)
        return 2
    # with --json the live progress goes to stderr so that stdout is one JSON object
    progress = sys.stderr if args.json else sys.stdout
    try:
        result = asyncio.run(run_demo(seconds=args.seconds, rate=args.rate, seed=args.seed,
                                      transport=args.transport, workers=args.workers,
                                      out=progress if not args.quiet else io.StringIO()))
    except Exception as exc:  # the demo failing to run is a failure, said plainly
        print(f"guard demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print_summary(result, sys.stdout)
    return 1 if failed(result) else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard demo``."""
    p = sub.add_parser("demo", help="run simulated domains through the guard and check them")
    p.add_argument("--seconds", type=float, default=10.0, help="traffic duration (default 10)")
    p.add_argument("--rate", type=float, default=50.0,
                   help="messages per second per flow (default 50)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="guard worker processes")
    p.add_argument("--transport", choices=("auto", "mosquitto", "in-process"), default="auto",
                   help="auto: mosquitto when installed, else the in-process transport")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    p.set_defaults(func=_run)
