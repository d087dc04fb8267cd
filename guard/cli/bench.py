"""``guard bench NAME [--json]``: run one benchmark from bench/ and print its figures.

Every benchmark module in ``guard.bench`` (the repository's bench/ folder) defines
``add_arguments(parser)`` and ``run(args) -> dict``; the dict is printed as one
JSON object with ``--json``, or as aligned ``key: value`` lines otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil

import guard.bench as bench_pkg


def _print(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=False))
        return
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard bench`` with one sub-command per benchmark module."""
    parser = sub.add_parser("bench", help="run a benchmark and print its figures as JSON")
    names = parser.add_subparsers(dest="bench", metavar="NAME")
    names.required = True
    for info in sorted(pkgutil.iter_modules(bench_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{bench_pkg.__name__}.{info.name}")
        if not hasattr(module, "run"):
            continue
        doc = (module.__doc__ or "").strip().splitlines()
        p = names.add_parser(info.name, help=doc[0] if doc else info.name)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(p)
        p.set_defaults(func=lambda args, m=module: _print(m.run(args), args.json) or 0)
