"""``guard audit verify|show|stats``: check and read signed audit logs."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime

from guard.audit.keys import load_public_keys
from guard.audit.merkle import MerkleTree, verify_consistency, verify_inclusion
from guard.audit.records import AuditError
from guard.audit.verify import analyse


def _keys(args: argparse.Namespace) -> dict | None:
    if not args.pubkey:
        return None
    try:
        return load_public_keys(args.pubkey)
    except AuditError as exc:
        print(f"guard audit: {exc}", file=sys.stderr)
        return None


def _verify(args: argparse.Namespace) -> int:
    if not args.pubkey:
        print("guard audit verify: give the public key(s) with --pubkey FILE|DIR "
              "(signatures are never taken from the log itself)", file=sys.stderr)
        return 2
    keys = _keys(args)
    if keys is None:
        return 2
    reports = [analyse(d, keys, allow_tail=args.allow_tail) for d in args.dirs]
    ok = all(r.ok for r in reports)
    if args.json:
        print(json.dumps({"ok": ok, "logs": [r.to_dict() for r in reports]}))
    else:
        for r in reports:
            if r.ok:
                print(f"OK   {r.directory}: {r.records} records, {r.heads} signed heads, "
                      f"keys {', '.join(r.key_ids) or '-'}")
            else:
                print(f"FAIL {r.directory}: {r.problems[0]}")
                for p in r.problems[1:]:
                    print(f"     also: {p}")
    return 0 if ok else 1


def _show(args: argparse.Namespace) -> int:
    rep = analyse(args.dir, _keys(args), allow_tail=True)
    if not rep.head_list:
        print(f"guard audit show: {args.dir}: no signed head", file=sys.stderr)
        return 1
    head = rep.head_list[-1]
    tree = MerkleTree(rep.leaves[: head.tree_size])
    out = []
    for i, s in enumerate(rep.parsed):
        if s is None or s.record.message_id != args.message_id:
            continue
        item: dict[str, object] = {"record": s.to_dict(), "leaf_index": i}
        if i < head.tree_size:
            proof = tree.inclusion_proof(i, head.tree_size)
            item["inclusion_proof"] = {
                "tree_size": head.tree_size, "root_hash": head.root_hash,
                "leaf_hash": rep.leaves[i].hex(), "path": [p.hex() for p in proof],
                "verified": verify_inclusion(rep.leaves[i], i, head.tree_size, proof,
                                             bytes.fromhex(head.root_hash)),
            }
        else:
            item["inclusion_proof"] = None  # not yet covered by a signed head
        out.append(item)
    result = {"directory": args.dir, "message_id": args.message_id, "head": head.to_dict(),
              "log_ok": rep.ok, "signatures_checked": rep.signatures_checked,
              "problems": [p.to_dict() for p in rep.problems], "records": out}
    print(json.dumps(result, indent=None if args.json else 2))
    if not out:
        print(f"guard audit show: no record with message id {args.message_id!r}",
              file=sys.stderr)
        return 1
    return 0 if rep.ok and all(o["inclusion_proof"] for o in out) else 1


def _consistency(args: argparse.Namespace) -> int:
    rep = analyse(args.dir, _keys(args), allow_tail=True)
    sizes = {h.tree_size: h for h in rep.head_list}
    new = rep.head_list[-1] if rep.head_list and args.to is None else sizes.get(args.to or -1)
    old = sizes.get(args.from_size)
    if old is None or new is None or old.tree_size > new.tree_size or rep.tree is None:
        print("guard audit consistency: --from/--to must be tree sizes of signed heads "
              f"(have {sorted(sizes)})", file=sys.stderr)
        return 1
    proof = rep.tree.consistency_proof(old.tree_size, new.tree_size)
    ok = verify_consistency(old.tree_size, new.tree_size, bytes.fromhex(old.root_hash),
                            bytes.fromhex(new.root_hash), proof)
    print(json.dumps({"directory": args.dir, "old": old.to_dict(), "new": new.to_dict(),
                      "proof": [p.hex() for p in proof], "verified": ok,
                      "log_ok": rep.ok, "signatures_checked": rep.signatures_checked}))
    return 0 if ok and rep.ok else 1


def _stats(args: argparse.Namespace) -> int:
    per: Counter[tuple[str, str]] = Counter()
    total, bad, first, last = 0, 0, None, None
    for d in args.dirs:
        rep = analyse(d, None, allow_tail=True)
        bad += not rep.ok
        for s in rep.parsed:
            if s is None:
                continue
            per[(s.record.flow, s.record.verdict)] += 1
            total += 1
            t = s.record.time
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
    flows: dict[str, dict[str, int]] = {}
    for (flow, verdict), n in sorted(per.items()):
        flows.setdefault(flow, {})[verdict] = n

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

    result = {"records": total, "flows": flows, "first": iso(first), "last": iso(last),
              "damaged_logs": bad}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{total} decisions, {iso(first)} .. {iso(last)}")
        for flow, verdicts in flows.items():
            print(f"  {flow}: " + ", ".join(f"{v} {n}" for v, n in verdicts.items()))
        if bad:
            print(f"  WARNING: {bad} log(s) damaged; run guard audit verify")
    return 0 if not bad else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard audit``."""
    parser = sub.add_parser("audit", help="verify, show and summarise signed audit logs")
    cmds = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    cmds.required = True
    p = cmds.add_parser("verify", help="verify chains, proofs and signatures of log dirs")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="log directories (one per worker)")
    p.add_argument("--pubkey", action="append", default=[], metavar="FILE|DIR",
                   help="public key PEM file or key directory (repeatable; old keys too)")
    p.add_argument("--allow-tail", action="store_true",
                   help="accept a torn last line / records not yet signed (a live or crashed log)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_verify)
    p = cmds.add_parser("show", help="print a message's record(s) with inclusion proofs")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--message-id", required=True)
    p.add_argument("--pubkey", action="append", default=[], metavar="FILE|DIR",
                   help="also check head signatures")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=_show)
    p = cmds.add_parser("consistency", help="RFC 9162 consistency proof between two heads")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--from", dest="from_size", type=int, required=True, metavar="SIZE",
                   help="tree size of the older signed head")
    p.add_argument("--to", type=int, default=None, metavar="SIZE",
                   help="tree size of the newer head (default: the latest)")
    p.add_argument("--pubkey", action="append", default=[], metavar="FILE|DIR")
    p.set_defaults(func=_consistency)
    p = cmds.add_parser("stats", help="decisions per flow and verdict")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)
