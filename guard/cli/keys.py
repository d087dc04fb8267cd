"""``guard keys init|rotate``: create or replace the Ed25519 audit signing key."""

from __future__ import annotations

import argparse
import os
import sys

from guard.audit.keys import PRIVATE_NAME, PUBLIC_NAME, init_key, rotate_key
from guard.audit.records import AuditError

DEFAULT_DIR = os.environ.get("GUARD_KEY_DIR", "keys")


def _init(args: argparse.Namespace) -> int:
    try:
        kid = init_key(args.dir, force=args.force)
    except (AuditError, OSError) as exc:
        print(f"guard keys init: {exc}", file=sys.stderr)
        return 1
    # only the key id and file names: the private key is never printed
    print(kid)
    print(f"private key: {os.path.join(args.dir, PRIVATE_NAME)} (mode 0600)", file=sys.stderr)
    print(f"public key:  {os.path.join(args.dir, PUBLIC_NAME)}", file=sys.stderr)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    try:
        old, new = rotate_key(args.dir)
    except (AuditError, OSError) as exc:
        print(f"guard keys rotate: {exc}", file=sys.stderr)
        return 1
    print(new)
    print(f"retired key {old}: its public key stays in {os.path.join(args.dir, 'pub')}",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard keys``."""
    parser = sub.add_parser("keys", help="create or rotate the audit signing key")
    cmds = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    cmds.required = True
    p = cmds.add_parser("init", help="create a signing key (mode 0600) and export its public key")
    p.add_argument("--dir", default=DEFAULT_DIR, help="key directory (default: $GUARD_KEY_DIR "
                   "or ./keys)")
    p.add_argument("--force", action="store_true", help="replace an existing private key")
    p.set_defaults(func=_init)
    p = cmds.add_parser("rotate", help="replace the signing key; old public keys are kept")
    p.add_argument("--dir", default=DEFAULT_DIR)
    p.set_defaults(func=_rotate)
