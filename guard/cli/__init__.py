"""The ``guard`` command line.

Each module in this package that defines ``register(subparsers)`` adds one
top-level command (``markings``, ``bench``, ``audit`` ...). They are found by
discovery so that a new concept adds a file here rather than editing a list.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from guard import __version__


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every discovered command registered."""
    parser = argparse.ArgumentParser(
        prog="guard",
        description="Cross-domain guard: markings, content filtering, signed audit.",
    )
    parser.add_argument("--version", action="version", version=f"guard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``guard`` script; returns the process exit status."""
    parser = build_parser()
    # A command that sets ``takes_extra`` (``guard bench NAME``) parses the rest of
    # the line itself; for every other command an unknown argument is an error.
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        status = args.func(args)
    except BrokenPipeError:  # e.g. `guard ... | head`
        return 0
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
