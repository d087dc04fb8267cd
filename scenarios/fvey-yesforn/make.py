"""Regenerate the FVEY / YESFORN scenario: one recorded day, two policies, one table.

    python scenarios/fvey-yesforn/make.py [--check] [--workers N]

1. Generates the day (``guard record --generate 10000 --seed 2026 --flow
   us-secret-to-fvey``: the seeded generator, Poisson arrivals over 24 h) into
   ``day.gcap``, and a second capture ``day-uncaveated.gcap`` in which a seeded
   30 % of the messages are written the way the YESFORN reform is about: the
   originator left the foreign-disclosure marking off (``(S//REL TO USA, FVEY)``
   becomes ``(S)``, ``SECRET//REL TO USA, FVEY`` becomes ``SECRET``). The
   generator itself never writes uncaveated classified portions, so on its own
   mix the two policies differ on nothing; the second capture shows what the
   reform changes where the habit exists.
2. Checks both captures' content (``guard.capture.content_sha256``: the messages,
   independent of the zlib build) against ``captures.sha256``; ``--update-hashes``
   rewrites it after a deliberate generator change.
3. Replays both under policies/us-secret-to-fvey.yaml (today: uncaveated = withhold)
   and policies/us-secret-to-fvey-yesforn.yaml, writes the reports under
   ``report/`` and ``report-uncaveated/``, and puts the tables in README.md
   between the ``table`` markers.

The captures are not committed (about 12 MB each): they are a pure function of the
generator code and the seed, pinned by the SHA-256 of their content.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from guard.capture import CapturedMessage, CaptureWriter, content_sha256
from guard.recorder import GENERATED_START, generated_messages
from guard.replay import replay
from guard.report import scenario_table, write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FLOW, N, SEED, SHARE = "us-secret-to-fvey", 10_000, 2026, 0.30
OLD = REPO / "policies" / "us-secret-to-fvey.yaml"
NEW = REPO / "policies" / "us-secret-to-fvey-yesforn.yaml"
CAPTURES = {"day": HERE / "day.gcap", "day-uncaveated": HERE / "day-uncaveated.gcap"}
HASHES = HERE / "captures.sha256"
_REL = re.compile(rb"//REL TO USA, FVEY(?=\)|\n)")


def uncaveated(msgs: list[CapturedMessage], share: float, seed: int) -> list[CapturedMessage]:
    """A seeded ``share`` of the text messages with REL TO USA, FVEY markings stripped."""
    rng = random.Random(f"{seed}:uncaveated")
    out = []
    for m in msgs:
        hit = rng.random() < share  # drawn for every message: the choice is stable
        if hit and m.payload.startswith(b"SECRET") and _REL.search(m.payload):
            m = CapturedMessage(m.message_id, m.flow, m.topic, m.time, m.properties,
                                _REL.sub(b"", m.payload))
        out.append(m)
    return out


def _write(path: Path, msgs: list[CapturedMessage], meta: dict) -> None:
    with CaptureWriter(path, meta, created=GENERATED_START, overwrite=True) as w:
        w.write_many(msgs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update-hashes", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    if not all(p.exists() for p in CAPTURES.values()) or args.update_hashes:
        base = generated_messages(FLOW, N, SEED)
        meta = {"source": "generator", "flow": FLOW, "messages": N, "seed": SEED,
                "start": GENERATED_START}
        _write(CAPTURES["day"], base, meta)
        _write(CAPTURES["day-uncaveated"], uncaveated(base, SHARE, SEED),
               {**meta, "uncaveated_share": SHARE})
    got = {name: content_sha256(p) for name, p in CAPTURES.items()}
    if args.update_hashes or not HASHES.exists():
        HASHES.write_text("".join(f"{h}  {CAPTURES[n].name}\n" for n, h in got.items()))
    want = dict(line.split()[::-1] for line in HASHES.read_text().splitlines() if line)
    bad = [n for n, h in got.items() if want.get(CAPTURES[n].name) != h]
    if bad:
        print(f"{', '.join(bad)}: the capture differs from {HASHES.name} (the generator "
              "changed?); delete the .gcap files to regenerate, or --update-hashes",
              file=sys.stderr)
        return 1
    tables = []
    for name, path in CAPTURES.items():
        res = replay(path, NEW, OLD, workers=args.workers)
        write_report(res, HERE / ("report" if name == "day" else "report-" +
                                  name.removeprefix("day-")))
        g = res.sharing_gained()["FVEY"]
        tables.append(f"**{path.name}** ({res.messages:,} messages, {res.bytes / 1e6:.0f} MB; "
                      f"{len(res.changes)} changed; newly released to FVEY: {g['messages']} "
                      f"messages, {g['bytes']:,} bytes):\n\n" + "\n".join(scenario_table(res)))
        risk = res.risk_added()
        if risk:
            tables[-1] += "\n\nRisk added (baseline finding of the newly released messages): " + \
                ", ".join(f"{rule} {v['messages']}" for rule, v in risk.items())
        print(f"{name}: {res.messages} messages, {len(res.changes)} changed, "
              f"{res.msgs_per_s:,.0f} msg/s", file=sys.stderr)
    readme = HERE / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    i, j = text.index(start) + len(start), text.index(end)
    readme.write_text(text[:i] + "\n" + "\n\n".join(tables) + "\n" + text[j:], encoding="utf-8")
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
