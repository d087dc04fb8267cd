"""``guard bench NAME [--json] [ARGS]``: run one benchmark from bench/ and print its figures.

Every benchmark module in ``guard.bench`` (the repository's bench/ folder) defines
``add_arguments(parser)`` and ``run(args) -> dict``; the dict is printed as one
JSON object with ``--json``, or as aligned ``key: value`` lines otherwise.

Modules are listed without being imported (their help line is read from the
source's docstring), and only the one asked for is imported: benchmarks pull in
heavy peers (hyperscan, brokers) that no other command should pay for or depend on.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import pkgutil
from pathlib import Path

import guard.bench as bench_pkg


def _print(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=False))
        return
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def _summary(name: str) -> str:
    """First docstring line of bench/NAME.py, read from source without importing it."""
    for root in bench_pkg.__path__:
        path = Path(root) / f"{name}.py"
        if path.is_file():
            try:
                doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            except SyntaxError:
                return f"{name} (does not parse)"
            return doc.strip().splitlines()[0] if doc.strip() else name
    return name


def _run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"{bench_pkg.__name__}.{name}")
    parser = argparse.ArgumentParser(prog=f"guard bench {name}", description=module.__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    _print(module.run(args), args.json)
    return 0


def benchmark_names() -> list[str]:
    """Names of the benchmark modules in bench/ (those not starting with ``_``)."""
    found = pkgutil.iter_modules(bench_pkg.__path__)
    return sorted(info.name for info in found if not info.name.startswith("_"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard bench`` with one sub-command per benchmark module."""
    parser = sub.add_parser("bench", help="run a benchmark and print its figures as JSON")
    names = parser.add_subparsers(dest="bench", metavar="NAME")
    names.required = True
    for name in benchmark_names():
        # The module's own parser takes the rest of the line (see guard.cli.main).
        p = names.add_parser(name, help=_summary(name), add_help=False)
        p.set_defaults(func=lambda args, n=name: _run(n, args.extra), takes_extra=True)
