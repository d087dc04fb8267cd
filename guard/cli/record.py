"""``guard record``: capture a domain's traffic into a capture file (see guard/capture.py).

From a broker::

    GUARD_MQTT_PASSWORD=... guard record --host H --port P --flow us-secret-to-fvey \\
        [--user guard] [--topic T] [--count N] [--duration S] [--idle S] OUT

The topic and user default from the topology (the flow's inbound topic; the guard
user of its source domain, the one role allowed to read it). The password is read
from ``--password-env VAR`` (default GUARD_MQTT_PASSWORD) or ``--password-file``,
never from the command line.

From a generator::

    guard record --generate N --seed S --flow us-secret-to-fvey OUT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from guard.capture import CaptureError, CaptureWriter


def _err(msg: str) -> int:
    print(f"guard record: {msg}", file=sys.stderr)
    return 2


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"guard record: cannot read the password file: {exc}", file=sys.stderr)
            return None
    pw = os.environ.get(args.password_env)
    if pw is None:
        print(f"guard record: no password: set ${args.password_env} or give --password-file",
              file=sys.stderr)
    return pw


def _from_topology(args: argparse.Namespace) -> tuple[str, str, str] | str:
    """(topic, user, flow) from the options and the topology; an error text otherwise."""
    topic, user, flow = args.topic, args.user, args.flow or ""
    if topic and user:
        return topic, user, flow
    if not flow:
        return "give --flow (to look the topic and user up in the topology) or --topic and --user"
    from guard.domains.topology import TopologyError, load_topology

    try:
        topo = load_topology(args.topology) if args.topology else load_topology()
        f = topo.flow(flow)
    except (TopologyError, KeyError, OSError) as exc:
        return f"flow {flow!r}: {exc}"
    src = topo.domains[f.source]
    guards = [u.name for u in src.users if u.role == "guard"]
    if not user and not guards:
        return f"domain {src.name} has no guard user; give --user"
    return topic or f.inbound_topic, user or guards[0], flow


async def _record_broker(args: argparse.Namespace, topic: str, user: str, flow: str,
                         password: str) -> int:
    from guard.domains.mqtt_client import MqttConnection
    from guard.domains.transport import TransportError
    from guard.recorder import record_topic

    meta = {"source": "broker", "host": args.host, "port": args.port, "user": user,
            "topic": topic, "flow": flow}
    try:
        conn = await MqttConnection.connect(args.host, args.port, user, password)
    except TransportError as exc:
        return _err(str(exc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        with CaptureWriter(args.out, meta, overwrite=args.force, fsync=True,
                           block_records=args.block_records,
                           compress=not args.no_compress) as w:
            st = await record_topic(conn, topic, w, flow=flow, count=args.count,
                                    duration=args.duration, idle=args.idle, stop=stop)
    except FileExistsError:
        return _err(f"{args.out} exists (use --force to overwrite)")
    except (TransportError, CaptureError, OSError) as exc:
        return _err(str(exc))
    finally:
        await conn.close()
    _done(args, st.messages, st.bytes, st.stopped)
    return 0


def _done(args: argparse.Namespace, n: int, size: int, why: str) -> None:
    out = {"capture": str(args.out), "messages": n, "bytes": size,
           "file_bytes": Path(args.out).stat().st_size, "stopped": why}
    print(json.dumps(out) if args.json else
          f"recorded {n} messages ({size:,} bytes) into {args.out} "
          f"({out['file_bytes']:,} bytes on disk; stopped: {why})")


def _run(args: argparse.Namespace) -> int:
    if args.generate is not None:
        if not args.flow:
            return _err("--generate needs --flow")
        if args.generate < 0:
            return _err("--generate needs a count >= 0")
        from guard.recorder import record_generated

        try:
            st = record_generated(args.out, args.flow, args.generate, args.seed,
                                  rate_per_s=args.rate, json_share=args.json_share,
                                  overwrite=args.force, compress=not args.no_compress)
        except FileExistsError:
            return _err(f"{args.out} exists (use --force to overwrite)")
        except (ValueError, OSError) as exc:
            return _err(str(exc))
        _done(args, st.messages, st.bytes, st.stopped)
        return 0
    if not args.host or not args.port:
        return _err("give --host and --port of the broker, or --generate N")
    got = _from_topology(args)
    if isinstance(got, str):
        return _err(got)
    pw = _password(args)
    if pw is None:
        return 2
    if args.count is None and args.duration is None and args.idle is None:
        print("guard record: recording until interrupted (Ctrl-C)", file=sys.stderr)
    return asyncio.run(_record_broker(args, *got, pw))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``guard record``."""
    p = sub.add_parser("record", help="capture a domain's traffic (broker topic or generator)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="CAPTURE", help="capture file to create")
    p.add_argument("--flow", help="flow name (topology flow; recorded with each message)")
    p.add_argument("--force", action="store_true", help="overwrite an existing capture")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--no-compress", action="store_true",
                   help="store blocks uncompressed (bigger file, about half the read cost)")
    g = p.add_argument_group("from a generator")
    g.add_argument("--generate", type=int, metavar="N", help="record N generated messages")
    g.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    g.add_argument("--rate", type=float, metavar="MSG_PER_S",
                   help="arrival rate for the timestamps (default: N messages over one day)")
    g.add_argument("--json-share", type=float, default=0.0,
                   help="share of messages generated as JSON documents")
    b = p.add_argument_group("from a broker")
    b.add_argument("--host", help="broker host")
    b.add_argument("--port", type=int, help="broker port")
    b.add_argument("--user", help="broker user (default: the guard user of the flow's source)")
    b.add_argument("--topic", help="topic or filter (default: the flow's inbound topic)")
    b.add_argument("--topology", help="domains directory (default: the shipped one)")
    b.add_argument("--password-env", default="GUARD_MQTT_PASSWORD", metavar="VAR",
                   help="environment variable holding the password (default %(default)s)")
    b.add_argument("--password-file", metavar="FILE", help="file holding the password")
    b.add_argument("--count", type=int, help="stop after this many messages")
    b.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    b.add_argument("--idle", type=float, metavar="S", help="stop after S seconds of silence")
    b.add_argument("--block-records", type=int, default=256,
                   help="messages per block (a crash loses at most one block)")
    p.set_defaults(func=_run)
