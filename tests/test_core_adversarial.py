"""Adversarial corpus: generated evasions must be caught, near-misses must stay clean.

The generator is seeded. Every evasion trick of issue 3 appears on its own and in
combinations: case, full-width, Cyrillic/Greek look-alikes, combining marks, zero-width,
bidirectional controls and soft hyphens, leetspeak, separators inside a word (dots,
letter spacing, a hyphen, a line break), phrases split across lines, base64 and hex
encodings. Near-misses: a dirty word inside a longer word, one letter changed, letters
transposed or dropped, phrase words apart or reversed, clean words that contain a dirty
substring, PII-shaped numbers of the wrong shape, encoded clean text.
"""

from __future__ import annotations

import base64
import random

from guard.scanner import Scanner
from guard.terms import TermList

DIRTY = [
    "NOFORN",
    "ORCON",
    "kestrel",
    "nightjar",
    "tearline",
    "cobalt",
    "sandstorm",
    "blue heron",
    "granite shield",
    "ivy bells",
    "red kite",
    "operation lantern",
    "quartzite",
    "moonrise",
    "halcyon",
    "vortex",
    "emerald lake",
    "silent harbor",
    "bravo six",
    "copperhead",
]
DIRTY_SUB = ["~secret"]
CLEAN = ["secretary", "secretariat", "secrete", "secretion"]
PATTERNS = [r"us-ssn = \d{3}-\d{2}-\d{4}", r"us-passport = \a\d{8}"]
FILLER_TEXT = (
    "the report said that naval activity increased near the strait on monday while weather "
    "stayed clear and the analyst will send a summary to partners later "
)
FILLER = tuple(FILLER_TEXT.split())

HOMOGLYPH = {
    "a": "а",
    "c": "с",
    "e": "е",
    "o": "о",
    "p": "р",
    "x": "х",
    "y": "у",
    "i": "і",
    "s": "ѕ",
    "j": "ј",
    "h": "һ",
    "d": "ԁ",
    "l": "ӏ",
    "k": "κ",
    "n": "η",
    "t": "τ",
    "u": "υ",
    "v": "ν",
    "b": "в",
    "m": "м",
    "r": "г",
    "g": "ɡ",
    "q": "ԛ",
    "z": "ζ",
    "w": "ԝ",
}
HOMOGLYPH_UPPER = {"A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "I": "І", "J": "Ј", "K": "К",
                   "M": "М", "N": "Ν", "O": "О", "P": "Р", "S": "Ѕ", "T": "Т", "X": "Х", "Y": "Υ",
                   "Z": "Ζ"}
LEET = {"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7"}
LEET_SYM = {"a": "@", "s": "$"}
INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u202e",
    "\u202d",
    "\u200e",
    "\u200f",
    "\u2066",
    "\u2069",
    "\u061c",
    "\u034f",
]
MARKS = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0302", "\u030a"]


# ---- per-character tricks ------------------------------------------------------------------
def _case(rng: random.Random, w: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in w)


def _fullwidth(rng: random.Random, w: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and rng.random() < 0.7 else c for c in w)


def _glyph(c: str) -> str:
    """A look-alike of c from another script, of the same case when there is one."""
    if c.isupper() and c in HOMOGLYPH_UPPER:
        return HOMOGLYPH_UPPER[c]
    return HOMOGLYPH.get(c.lower(), c)  # a lower-case look-alike (visible case change)


def _homoglyph(rng: random.Random, w: str) -> str:
    out = [_glyph(c) if rng.random() < 0.6 else c for c in w]
    if out == list(w):  # make sure at least one letter is disguised
        i = next((i for i, c in enumerate(w) if c.lower() in HOMOGLYPH), None)
        if i is not None:
            out[i] = _glyph(w[i])
    return "".join(out)


def _marks(rng: random.Random, w: str) -> str:
    return "".join(c + rng.choice(MARKS) if c.isalpha() and rng.random() < 0.5 else c for c in w)


def _leet(rng: random.Random, w: str) -> str:
    out = []
    for c in w:
        lc = c.lower()
        if lc in LEET_SYM and rng.random() < 0.3:
            out.append(LEET_SYM[lc])
        elif lc in LEET and rng.random() < 0.7:
            out.append(LEET[lc])
        else:
            out.append(c)
    return "".join(out)


# ---- separator tricks (between characters of one word) ------------------------------------
def _split_chars(word: str) -> list[str]:
    """Characters with their combining marks attached."""
    out: list[str] = []
    for c in word:
        if out and c in MARKS:
            out[-1] += c
        else:
            out.append(c)
    return out


def _invisible(rng: random.Random, w: str) -> str:
    chars = _split_chars(w)
    return (
        "".join(c + (rng.choice(INVISIBLE) if rng.random() < 0.5 else "") for c in chars[:-1])
        + chars[-1]
    )


def _dots(rng: random.Random, w: str) -> str:
    sep = rng.choice([".", ". ", "-", "_", "*", "/", "|"])
    return sep.join(_split_chars(w))


def _spaced(rng: random.Random, w: str) -> str:
    return rng.choice([" ", "  ", "\t"]).join(_split_chars(w))


def _hyphen(rng: random.Random, w: str) -> str:
    chars = _split_chars(w)
    i = rng.randint(1, len(chars) - 1)
    return "".join(chars[:i]) + rng.choice(["-", "--", "\u2010", "\u2013"]) + "".join(chars[i:])


def _linebreak(rng: random.Random, w: str) -> str:
    chars = _split_chars(w)
    i = rng.randint(1, len(chars) - 1)
    return "".join(chars[:i]) + rng.choice(["\n", "\r\n", "-\n", "\n  "]) + "".join(chars[i:])


CHAR_TRICKS = [_case, _fullwidth, _homoglyph, _marks, _leet]
SEP_TRICKS = [_invisible, _dots, _spaced, _hyphen, _linebreak]


def _sentence(rng: random.Random, core: str) -> str:
    before = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 6)))
    after = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 6)))
    return f"{before} {core} {after}.".strip()


def _evade_term(rng: random.Random, term: str, char_tricks, sep_trick) -> str:
    words = term.split(" ")
    out = []
    for w in words:
        # case first: the other tricks pick look-alikes of the letters as they will appear
        for t in sorted(char_tricks, key=lambda t: t is not _case):
            w = t(rng, w)
        if sep_trick is not None and len(_split_chars(w)) > 1:
            w = sep_trick(rng, w)
        out.append(w)
    joiner = rng.choice([" ", "\n", "  ", " \n", "\u00a0", "\u3000"])
    return joiner.join(out)


def evasion_cases(n: int, seed: int = 1234) -> list[tuple[str, bytes]]:
    """n (term, body) pairs; every trick alone first, then random combinations."""
    rng = random.Random(seed)
    cases: list[tuple[str, bytes]] = []
    singles = [([t], None) for t in CHAR_TRICKS] + [([], s) for s in SEP_TRICKS]
    for chars, sep in singles:
        for term in DIRTY:
            cases.append((term, _sentence(rng, _evade_term(rng, term, chars, sep)).encode()))
    while len(cases) < n - 40:
        term = rng.choice(DIRTY)
        chars = rng.sample(CHAR_TRICKS, rng.randint(1, 3))
        sep = rng.choice([*SEP_TRICKS, None])
        cases.append((term, _sentence(rng, _evade_term(rng, term, chars, sep)).encode()))
    while len(cases) < n:  # encoded: base64 or hex of a sentence with a (maybe evaded) term
        term = rng.choice(DIRTY)
        inner = _sentence(rng, _evade_term(rng, term, [_case], None) + " " * 0).encode()
        inner += b" and further routine text follows here"
        enc = base64.b64encode(inner) if rng.random() < 0.6 else inner.hex().encode()
        cases.append((term, _sentence(rng, "see attachment").encode() + b"\n" + enc + b"\n"))
    return cases


def _mutate(rng: random.Random, w: str) -> str:
    """A different word that looks like w."""
    kind = rng.randrange(5)
    i = rng.randrange(len(w))
    if kind == 0:  # change one letter
        c = rng.choice([x for x in "bdfgjkmpqvwxz" if x != w[i].lower()])
        return w[:i] + c + w[i + 1 :]
    if kind == 1 and len(w) > 3:  # transpose two neighbours (that differ)
        j = next((k for k in range(len(w) - 1) if w[k] != w[k + 1]), 0)
        return w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    if kind == 2 and len(w) > 4:  # drop one letter
        return w[:i] + w[i + 1 :]
    if kind == 3:  # a longer word that contains it
        return rng.choice(["pre", "un", "re", "x"]) + w + rng.choice(["s", "ed", "ing", "ic"])
    return w + rng.choice(["s", "ed", "ish", "er"])


def clean_cases(n: int, seed: int = 4321) -> list[bytes]:
    """n near-miss bodies that must produce no match and no uninspectable run."""
    rng = random.Random(seed)
    out: list[bytes] = []
    while len(out) < n:
        kind = rng.randrange(7)
        term = rng.choice(DIRTY)
        words = term.split(" ")
        if kind <= 1:  # one word mutated, maybe also disguised
            i = rng.randrange(len(words))
            words[i] = _mutate(rng, words[i])
            text = " ".join(words)
            if rng.random() < 0.3:
                text = _homoglyph(rng, text)
            body = _sentence(rng, _case(rng, text))
        elif kind == 2 and len(words) > 1:  # phrase words apart or reversed
            body = _sentence(
                rng, rng.choice([f"{words[0]} and {words[1]}", " ".join(reversed(words))])
            )
        elif kind == 3:  # clean words containing a dirty substring
            body = _sentence(rng, _case(rng, rng.choice(CLEAN)))
        elif kind == 4:  # PII-shaped but wrong shape
            d = "".join(rng.choice("0123456789") for _ in range(10))
            body = _sentence(
                rng,
                rng.choice(
                    [
                        f"{d[:3]}-{d[3:5]}-{d[5:8]}",
                        f"{d[:4]}-{d[4:6]}-{d[6:10]}",
                        f"ab{d[:8]}",
                        f"A{d[:7]}",
                        f"{d[:3]}-{d[3:5]}-{d[5:9]}7",
                    ]
                ),
            )
        elif kind == 5:  # encoded clean text
            inner = " ".join(rng.choice(FILLER) for _ in range(20)).encode()
            enc = base64.b64encode(inner) if rng.random() < 0.5 else inner.hex().encode()
            body = _sentence(rng, "see attachment") + "\n" + enc.decode()
        else:  # a dirty word split across a paragraph, or glued into a compound
            w = words[0]
            cut = rng.randint(1, len(w) - 1)
            body = _sentence(
                rng, rng.choice([f"{w[:cut]}\n\n{w[cut:]}", f"{w}{rng.choice(FILLER)}"])
            )
        out.append(body.encode())
    return out


def make_scanner() -> Scanner:
    return Scanner(
        [
            TermList("dirty", "dirty", DIRTY + DIRTY_SUB),
            TermList("clean", "clean", CLEAN),
            TermList("pii", "pattern", PATTERNS),
        ],
        leet=True,
        encoded_min_len=48,
    )


def test_evasions_caught_and_near_misses_clean() -> None:
    sc = make_scanner()
    evasions = evasion_cases(420)
    cleans = clean_cases(420)
    assert len(evasions) >= 300 and len(cleans) >= 300
    missed = [(t, b) for t, b in evasions if t not in {m.term for m in sc.scan(b).matches}]
    false_pos = []
    for b in cleans:
        r = sc.scan(b)
        if r.matches or r.encoded or r.findings:
            false_pos.append((b, r))
    caught = 1 - len(missed) / len(evasions)
    fp = len(false_pos) / len(cleans)
    print(
        f"\nadversarial corpus: {len(evasions)} evasions, caught {caught:.2%}; "
        f"{len(cleans)} near-misses, false positives {fp:.2%}"
    )
    for t, b in missed[:10]:
        print("  missed", t, b)
    for b, r in false_pos[:10]:
        print("  false positive", b, r)
    assert caught >= 0.99
    assert fp <= 0.01


def test_match_spans_cover_the_disguised_term() -> None:
    """For non-encoded evasions the span, cut from the original bytes, is the term."""
    sc = make_scanner()
    for term, body in evasion_cases(420)[:300]:
        spans = [(m.start, m.end) for m in sc.scan(body).matches if m.term == term]
        assert spans, (term, body)
        s, e = spans[0]
        cut = body[s:e].decode("utf-8")
        # the cut starts and ends on letters of the term, not on filler or separators
        assert cut[:1].strip() and cut[-1:].strip(), (term, body, cut)
        rest = body[:s] + body[e:]
        assert term not in {m.term for m in sc.scan(rest).matches}, (term, body)


def test_every_trick_is_exercised() -> None:
    text = b"\n".join(b for _t, b in evasion_cases(420)).decode("utf-8")
    for probe in ["\uff2e", "\u0430", "\u200b", "\u202e", "\u00ad", "\u0301", "0", ".", "\n"]:
        assert probe in text or probe.upper() in text
