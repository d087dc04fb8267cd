"""Filtering core throughput vs pyahocorasick, Python re and hyperscan, in one run.

Corpus (seeded): English-like text drawn from a Zipf-weighted list of common words, with
a sprinkling of dirty terms (about one per 2 KB) in varied case, numbers (about 1.5% of
words) and now and then an SSN-like figure; terms are generated code words and two-word
phrases that do not collide with the vocabulary. The core figure is a full inspection as
the decision pipeline runs it: the dirty terms plus the shipped US PII patterns and clean
words, encoded-run detection (64+), evasion-aware normalisation and whole-word matching,
through ``Scanner.scan_batch`` (one buffer + offsets, GIL released), then the Match
objects of every message that has any (``BatchResult.matches_by_message``: the objects
``matches_for`` gives, built in one pass). Also reported: ``core_arrays`` (the same full
inspection read as numpy arrays, no Match objects), ``core_terms_only`` (dirty terms
only, scan_batch, no Match objects: the previous definition) and the per-message
``Scanner.scan`` figure. Peers see the same bytes:
pyahocorasick ``Automaton.iter`` per message on the lower-cased str, hyperscan caseless
literals in block mode, and Python ``re`` alternation of the escaped terms (very slow, so
timed on a small sample only).
"""

from __future__ import annotations

import argparse
import random
import re
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from guard import _core
from guard.scanner import Scanner
from guard.terms import TermList

WORDS_TEXT = (
    "the of and to a in is it you that he was for on are with as his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your "
    "how said an each she which do their time if will way about many then them write would "
    "like so these her long make thing see him two has look more day could go come did number "
    "sound no most people my over know water than call first who may down side been now find "
    "any new work part take get place made live where after back little only round man year "
    "came show every good me give our under name very through just form sentence great think "
    "say help low line differ turn cause much mean before move right boy old too same tell "
    "does set three want air well also play small end put home read hand port large spell add "
    "even land here must big high such follow act why ask men change went light kind off need "
    "house picture try us again animal point mother world near build self earth father head "
    "stand own page should country found answer school grow study still learn plant cover "
    "food sun four between state keep eye never last let thought city tree cross farm hard "
    "start might story saw far sea draw left late run while press close night real life few "
    "north open seem together next white children begin got walk example ease paper group "
    "always music those both mark often letter until mile river car feet care second book "
    "carry took science eat room friend began idea fish mountain stop once base hear horse "
    "cut sure watch color face wood main enough plain girl usual young ready above ever red "
    "list though feel talk bird soon body dog family direct pose leave song measure door "
    "product black short numeral class wind question happen complete ship area half rock "
    "order fire south problem piece told knew pass since top whole king space heard best hour "
    "better during hundred five remember step early hold west ground interest reach fast verb "
    "sing listen six table travel less morning ten simple several vowel toward war lay "
    "against pattern slow center love person money serve appear road map rain rule govern "
    "pull cold notice voice unit power town fine certain fly fall lead cry dark machine note "
    "wait plan figure star box noun field rest correct able pound done beauty drive stood "
    "contain front teach week final gave green oh quick develop ocean warm free minute strong "
    "special mind behind clear tail produce fact street inch multiply nothing course stay "
    "wheel full force blue object decide surface deep moon island foot system busy test "
    "record boat common gold possible plane stead dry wonder laugh thousand ago ran check "
    "game shape equate miss brought heat snow tire bring yes distant fill east paint language "
    "among naval vessel report source activity strait weather analyst release partner signal "
    "imagery "
)
WORDS = tuple(WORDS_TEXT.split())
_ONSET_TEXT = (
    "b c d f g h j k l m n p r s t v w z bl br ch cl cr dr fl fr gl gr kr pl pr qu sc sh sk "
    "sl sm sn sp st str sw th tr tw wh "
)
_ONSET = tuple(_ONSET_TEXT.split())
_VOWEL = ["a", "e", "i", "o", "u", "y", "ai", "au", "ea", "ee", "ei", "ie", "oa", "oo", "ou"]
_CODA = ["", "", "n", "r", "s", "t", "l", "m", "ck", "nd", "ng", "st", "x", "rk", "lt", "sh"]


def _pseudo_word(rng: random.Random) -> str:
    return "".join(
        rng.choice(_ONSET) + rng.choice(_VOWEL) + rng.choice(_CODA)
        for _ in range(rng.randint(1, 3))
    )


def make_terms(n: int, seed: int = 7) -> list[str]:
    """n distinct code words / two-word phrases (pseudo-English, not vocabulary words)."""
    rng = random.Random(seed)
    vocab = set(WORDS)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = _pseudo_word(rng)
        if w in vocab or w in seen or len(w) < 4:
            continue
        if rng.random() < 0.15:
            w = f"{rng.choice(WORDS)} {w}"
        seen.add(w)
        out.append(w.upper() if rng.random() < 0.5 else w)
    return out


def make_corpus(
    size: int, count: int, terms: list[str], seed: int = 11, hit_every: int = 2048
) -> list[bytes]:
    """count messages of about size bytes of English-like ASCII text with sprinkled terms
    (about one term per hit_every bytes, upper or lower case, some punctuation)."""
    rng = random.Random(seed * 1_000_003 + size)
    weights = [1.0 / (i + 1) for i in range(len(WORDS))]
    need = size * count // 4 + 64
    words = rng.choices(WORDS, weights, k=need)
    p_hit = 6.0 / hit_every
    msgs = []
    k = 0
    for _ in range(count):
        parts: list[str] = []
        n = 0
        while n < size:
            w = words[k % need]
            k += 1
            r = rng.random()
            if r < p_hit:
                w = rng.choice(terms)
                w = w.upper() if r < p_hit / 2 else w.lower()
            elif r < p_hit + 0.015:
                w = str(rng.randint(0, 2100))
            elif r < p_hit + 0.0153:
                w = f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
            elif r > 0.92:
                w += ".,;:"[int(r * 1000) % 4]
            parts.append(w)
            n += len(w) + 1
        msgs.append(" ".join(parts).encode("ascii")[:size])
    return msgs


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _rate(nbytes: int, nmsgs: int, seconds: float) -> tuple[float, float]:
    return round(nbytes / seconds / 1e6, 1), round(nmsgs / seconds, 1)


def _pack(msgs: list[bytes]) -> tuple[bytes, np.ndarray]:
    offsets = np.zeros(len(msgs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in msgs])
    return b"".join(msgs), offsets


def _core_threads(scanner: Scanner, msgs: list[bytes], repeat: int) -> float:
    half = len(msgs) // 2
    packs = [_pack(msgs[:half]), _pack(msgs[half:])]
    with ThreadPoolExecutor(2) as pool:

        def run() -> None:
            list(pool.map(lambda p: inspect_batch(scanner, *p), packs))

        return _best(run, repeat)


def _pyahocorasick(terms: list[str]) -> Callable[[list[bytes]], int]:
    import ahocorasick

    auto = ahocorasick.Automaton()
    for i, t in enumerate(terms):
        auto.add_word(t.lower(), i)
    auto.make_automaton()

    def scan(msgs: list[bytes]) -> int:
        n = 0
        for m in msgs:
            for _ in auto.iter(m.decode("utf-8").lower()):
                n += 1
        return n

    return scan


def _hyperscan(terms: list[str]) -> Callable[[list[bytes]], int] | None:
    try:
        import hyperscan
    except ImportError:
        return None
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    pats = [re.escape(t).encode() for t in terms]
    db.compile(
        expressions=pats, ids=list(range(len(pats))), flags=[hyperscan.HS_FLAG_CASELESS] * len(pats)
    )
    scratch = hyperscan.Scratch(db)
    count = [0]

    def on_match(_id: int, _f: int, _t: int, _flags: int, _ctx: object) -> None:
        count[0] += 1

    def scan(msgs: list[bytes]) -> int:
        for m in msgs:
            db.scan(m, match_event_handler=on_match, scratch=scratch)
        return count[0]

    return scan


def _re(terms: list[str]) -> Callable[[list[bytes]], int]:
    rx = re.compile(
        "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE
    )

    def scan(msgs: list[bytes]) -> int:
        return sum(len(rx.findall(m.decode("ascii"))) for m in msgs)

    return scan


# The shipped policies' US PII patterns and clean words (policies/terms/), inlined so that
# the installed benchmark does not depend on the source tree.
PII_PATTERNS = (
    r"us-ssn = \d{3}-\d{2}-\d{4}", r"us-ssn-spaced = \d{3} \d{2} \d{4}",
    r"us-passport = \a\d{8}", r"us-alien-number = A-\d{3}-\d{3}-\d{3}",
    r"us-phone = \d{3}-\d{3}-\d{4}",
)
CLEAN_WORDS = (
    "Secretary", "Secretaries", "Secretary of State", "Secretary of Defense",
    "Secretary-General", "Secretariat", "Under Secretary", "Secret Service", "secretion",
    "secretive",
)


def full_lists(terms: list[str]) -> list[TermList]:
    """The term lists of a full inspection: dirty terms, PII patterns, clean words."""
    return [TermList("bench", "dirty", terms), TermList("pii", "pattern", PII_PATTERNS),
            TermList("clean", "clean", CLEAN_WORDS)]


def inspect_batch(sc: Scanner, buf: bytes, offsets: np.ndarray) -> int:
    """Full inspection of a batch as the pipeline consumes it: scan_batch, then the Match
    objects of every message that has any (``matches_by_message``: the same objects as
    ``matches_for`` per message, built in one pass). Returns the number of matches."""
    res = sc.scan_batch(buf, offsets)
    return sum(map(len, res.matches_by_message()))


def _compile_stats(terms: list[str]) -> tuple[float, float, float, Scanner]:
    """(compile seconds, compiled table MB, peak Python MB while compiling, scanner)."""
    t = time.perf_counter()
    sc = Scanner(full_lists(terms))
    dt = time.perf_counter() - t
    tracemalloc.start()
    Scanner(full_lists(terms))
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return dt, sc.nbytes / 1e6, peak / 1e6, sc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``guard bench core``."""
    parser.add_argument("--mb", type=float, default=2.0, help="MB of corpus per size (core)")
    parser.add_argument("--repeat", type=int, default=5, help="best of N timings")
    parser.add_argument("--seed", type=int, default=11)


def _race(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best time of each function over `repeat` rounds, the functions interleaved in every
    round so that a noisy neighbour slows all of them alike (ratios stay meaningful)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure the core and its peers; returns one flat dict of figures."""
    out: dict[str, object] = {}
    sizes = {"512": 512, "4k": 4096, "64k": 65536}
    repeat = max(1, args.repeat)
    for nterms, tag in ((2000, ""), (20000, "_20k")):
        terms = make_terms(nterms)
        dt, mb, peak, sc = _compile_stats(terms)
        out[f"compile_s{tag or '_2k'}"] = round(dt, 3)
        out[f"automaton_mb{tag or '_2k'}"] = round(mb, 2)
        out[f"compile_peak_mb{tag or '_2k'}"] = round(peak, 2)
        terms_only = Scanner([TermList("bench", "dirty", terms)])
        aho = _pyahocorasick(terms)
        hs = _hyperscan(terms)
        for sname, size in sizes.items():
            count = max(4, int(args.mb * 1e6 / size))
            msgs = make_corpus(size, count, terms, args.seed)
            total = sum(len(m) for m in msgs)
            buf, offsets = _pack(msgs)
            sample = msgs[: max(2, count // 4)]  # pyahocorasick is slow: a quarter
            stotal = sum(len(m) for m in sample)
            fns: dict[str, Callable[[], object]] = {
                "core": lambda sc=sc, b=buf, o=offsets: inspect_batch(sc, b, o),
                "terms": lambda t=terms_only, b=buf, o=offsets: t.scan_batch(b, o),
                "aho": lambda a=aho, s=sample: a(s),
            }
            if hs is not None:
                fns["hs"] = lambda h=hs, m=msgs: h(m)
            if sname == "4k":
                fns["scan"] = lambda sc=sc, m=msgs: [sc.scan(x) for x in m]
                fns["arrays"] = lambda sc=sc, b=buf, o=offsets: sc.scan_batch(b, o)
            best = _race(fns, repeat)
            mbs, mps = _rate(total, count, best["core"])
            out[f"core_mb_s_{sname}{tag}"] = mbs
            out[f"core_msgs_s_{sname}{tag}"] = mps
            out[f"core_terms_only_mb_s_{sname}{tag}"] = _rate(total, count, best["terms"])[0]
            if sname == "4k":
                out[f"core_scan_mb_s_4k{tag}"] = _rate(total, count, best["scan"])[0]
                out[f"core_arrays_mb_s_4k{tag}"] = _rate(total, count, best["arrays"])[0]
                t = _core_threads(sc, msgs, repeat)
                out[f"core_2threads_mb_s_4k{tag}"] = _rate(total, count, t)[0]
            aho_mbs = _rate(stotal, len(sample), best["aho"])[0]
            hs_mbs = _rate(total, count, best["hs"])[0] if hs is not None else None
            out[f"pyahocorasick_mb_s_{sname}{tag}"] = aho_mbs
            out[f"hyperscan_mb_s_{sname}{tag}"] = hs_mbs
            out[f"ratio_vs_pyahocorasick_{sname}{tag}"] = round(mbs / aho_mbs, 2)
            out[f"ratio_vs_hyperscan_{sname}{tag}"] = (
                None if hs_mbs is None else round(mbs / hs_mbs, 3)
            )
            if sname == "4k" and not tag:
                rx = _re(terms)
                tiny = msgs[:3]
                t = _best(lambda r=rx, t=tiny: r(t), 1)
                out["re_mb_s_4k"] = round(sum(map(len, tiny)) / t / 1e6, 4)
                out["re_note"] = "Python re alternation timed on 3 messages only (very slow)"
    for key in ("compile_s_20k", "automaton_mb_20k", "compile_peak_mb_20k"):
        out[key] = out.pop(key)
    out["simd"] = _core.scan_simd()
    out["note"] = (
        "core = full inspection as the pipeline runs it (dirty terms + US PII patterns + "
        "clean words + encoded runs, evasion-aware normalisation, whole-word matching, "
        "Match objects of messages with hits) via scan_batch, one thread unless named; "
        "core_arrays = the same full inspection read as arrays (no Match objects); "
        "core_terms_only = dirty terms only, scan_batch arrays; core_scan = Scanner.scan "
        "per message (full lists); peers are raw caseless literal scans of the same bytes"
    )
    return out
