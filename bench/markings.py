"""Markings engine: distinct parses per second and portion marks recognised in 4 KB bodies.

- ``distinct_parses_per_s``: ``parse`` on distinct marking strings (a realistic mix of
  banners and portion marks with varying lists, compartments and programs); ``parse``
  itself has no cache, and every string is different, so nothing is reused. Each
  result is used and dropped; ``distinct_parses_per_s_all_kept`` keeps all of them
  alive (the cost of CPython's cyclic GC over a growing heap shows there).
  ``distinct_invalid_parses_per_s``: invalid markings take the full parser, which
  reports every finding with its span (slower; invalid markings are the exception).
- ``portion_marks_per_s_in_bodies``: ``recognize_portions`` on 4 KB bodies whose
  paragraphs start with portion marks drawn from a few hundred distinct markings (as
  real traffic repeats them); recognition = finding every mark in the Cython core and
  resolving it to its cached parse. The cache is warmed first (steady state).
- peer: the same recognition done with a Python ``re`` multiline pattern plus the same
  dict cache, measured in the same run (``re_portion_marks_per_s``, ratio).
- ``*_per_cpu_s``: the same runs per second of this process's CPU time; on the shared
  2-core machines other jobs steal wall-clock time, so both are reported (medians).
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import time

from guard.markings import parse, recognize_portions
from guard.markings import recognize as rec

_TRI = ["AUS", "CAN", "DEU", "DNK", "ESP", "FRA", "GBR", "ITA", "JPN", "KOR", "NLD", "NOR",
        "NZL", "POL", "SWE", "FIN", "IRQ", "ISR", "JOR", "TUR"]
_TETRA = ["ACGU", "FVEY", "NATO", "TEYE"]
_TEXT = (
    "naval activity increased near the strait reporting indicates that the unit moved north "
    "on 12 May weather was clear sources say analysts assess with moderate confidence the "
    "exercise will continue through the week"
)
_WORDS = tuple(_TEXT.split())


def _rel(rng: random.Random, k: int) -> str:
    tri = sorted(rng.sample(_TRI, k))
    tetra = sorted(rng.sample(_TETRA, rng.randint(0, 1)))
    return "REL TO " + ", ".join(["USA", *tri, *tetra])


def _marking(rng: random.Random, i: int) -> str:
    """A valid-looking marking; ``i`` makes every string distinct."""
    banner = rng.random() < 0.3
    lvl = rng.choice(["TS", "S", "C", "U"])
    names = {"TS": "TOP SECRET", "S": "SECRET", "C": "CONFIDENTIAL", "U": "UNCLASSIFIED"}
    cats = [names[lvl] if banner else lvl]
    gamma = False
    if lvl in ("TS", "S") and rng.random() < 0.4:
        sci = ["SI", "TK"][: rng.randint(1, 2)]
        if lvl == "TS" and rng.random() < 0.5:
            sci[0] = "SI-G " + "".join(rng.choice("ABCDEFGH") for _ in range(4))
            gamma = True
        cats.append("/".join(sci))
    if lvl != "U" and rng.random() < 0.15:
        cats.append("SAR-" + "".join(rng.choice("ABCDEFGHJK") for _ in range(3)))
    if lvl in ("TS", "S") and rng.random() < 0.1:
        cats.append(f"{'RD-SIGMA' if banner else 'RD-SG'} {rng.randint(1, 99)}")
    fdr = rng.random()
    if fdr < 0.35:
        dissem = ["NOFORN" if banner else "NF"]
    elif fdr < 0.85:
        dissem = [_rel(rng, 1 + i % 6)]
    else:
        dissem = ["RELIDO"]
    if gamma and dissem[0] == "RELIDO":
        dissem = ["NOFORN" if banner else "NF"]
    if lvl != "U" and (gamma or rng.random() < 0.2) and dissem[0] != "RELIDO":
        dissem.insert(0, "ORCON" if banner else "OC")
    cats.append("/".join(dissem))
    text = "//".join(cats)
    return text if banner else f"({text})"


def _distinct(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    i = 0
    while len(seen) < n:
        seen[_marking(rng, i)] = None
        i += 1
    return list(seen)


def _bodies(count: int, pool: list[str], seed: int, size: int = 4096) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts: list[str] = []
        total = 0
        while True:
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 40)))
            para = f"{rng.choice(pool)} {words}.\n"
            if total + len(para) > size:
                break
            parts.append(para)
            total += len(para)
        body = "".join(parts)
        out.append((body + " " * (size - len(body))).encode("ascii"))
    return out


_RE = re.compile(rb"^[ \t]*(\([^()\n]{1,256}\))", re.M)


def _re_recognize(body: bytes, cache: dict[bytes, object]) -> int:
    n = 0
    for m in _RE.finditer(body):
        raw = m.group(1)
        if raw not in cache:
            cache[raw] = parse(raw.decode("utf-8", "replace"), "portion")
        n += 1
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sizes of the runs."""
    parser.add_argument("--distinct", type=int, default=50000, help="distinct markings")
    parser.add_argument("--bodies", type=int, default=2000, help="4 KB bodies")
    parser.add_argument("--repeat", type=int, default=3, help="runs (median reported)")


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure and return the figures."""
    parse_rates = []
    parse_cpu = []
    kept_rates = []
    valid = 0
    for r in range(args.repeat):
        strings = _distinct(args.distinct, seed=1000 + r)  # new strings each run
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        valid = 0
        for s in strings:  # each result is used, then dropped (as a bounded cache would)
            valid += parse(s).valid
        parse_rates.append(len(strings) / (time.perf_counter() - t0))
        parse_cpu.append(len(strings) / max(time.process_time() - c0, 1e-9))
        gc.collect()
        t0 = time.perf_counter()
        kept = [parse(s) for s in strings]  # every result kept alive: GC pressure
        kept_rates.append(len(strings) / (time.perf_counter() - t0))
        del kept
    # the full parser's explanations: the same strings made invalid (lower-cased tail)
    bad = [s[:-4] + s[-4:].lower() for s in _distinct(args.distinct // 5, seed=999)]
    gc.collect()
    t0 = time.perf_counter()
    invalid = sum(not parse(s).valid for s in bad)
    bad_rate = len(bad) / (time.perf_counter() - t0)
    pool = _distinct(300, seed=7)
    bodies = _bodies(args.bodies, pool, seed=8)
    rec._cache.clear()
    marks = sum(len(recognize_portions(b)) for b in bodies)  # warm the cache
    rates = []
    rates_cpu = []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in bodies:
            recognize_portions(b)
        rates.append(marks / (time.perf_counter() - t0))
        rates_cpu.append(marks / max(time.process_time() - c0, 1e-9))
    peer_cache: dict[bytes, object] = {}
    for b in bodies:
        _re_recognize(b, peer_cache)
    peer_rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for b in bodies:
            _re_recognize(b, peer_cache)
        peer_rates.append(marks / (time.perf_counter() - t0))
    ours = statistics.median(rates)
    peer = statistics.median(peer_rates)
    total_bytes = sum(len(b) for b in bodies)
    return {
        "distinct_parses_per_s": round(statistics.median(parse_rates)),
        "distinct_parses_per_cpu_s": round(statistics.median(parse_cpu)),
        "distinct_parses_per_s_all_kept": round(statistics.median(kept_rates)),
        "distinct_invalid_parses_per_s": round(bad_rate),
        "invalid_fraction_of_those": round(invalid / len(bad), 3),
        "distinct_markings": args.distinct,
        "distinct_valid_fraction": round(valid / args.distinct, 3),
        "portion_marks_per_s_in_bodies": round(ours),
        "portion_marks_per_cpu_s_in_bodies": round(statistics.median(rates_cpu)),
        "marks_per_4kb_body": round(marks / len(bodies), 1),
        "bodies_mb_per_s": round(ours / marks * total_bytes / 1e6, 1),
        "re_portion_marks_per_s": round(peer),
        "ratio_vs_re": round(ours / peer, 2),
    }
