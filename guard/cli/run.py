"""``guard run --config FILE [--workers N]``: the guard daemon (see guard.daemon)."""

from __future__ import annotations

import argparse
import sys

from guard.audit.records import AuditError


def _run(args: argparse.Namespace) -> int:
    from guard.daemon import DaemonError, run
    from guard.daemon_config import ConfigError, load_config

    if args.workers < 1:
        print("guard run: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        return run(config, workers=args.workers, worker=args.worker)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"guard run: {problem}", file=sys.stderr)
        return 2
    except (DaemonError, AuditError) as exc:
        print(f"guard run: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard run``."""
    p = sub.add_parser("run", help="run the guard daemon between the configured brokers")
    p.add_argument("--config", required=True, metavar="FILE", help="daemon configuration (YAML)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes sharing each flow (MQTT 5 shared subscriptions)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)
