"""Seeded traffic generators for the simulated high side, with an append-only ledger.

A ``Generator`` produces the message stream of one flow: finished intelligence and raw
reports, OSINT and climate-security items, tearline reports, correctly and wrongly
marked messages, dirty words taken from a term list file, US-person data, evasion
attempts, malformed and oversized messages, in a chosen category and size mix and at a
chosen rate. Everything random comes from one ``random.Random(seed)`` per generator,
so a seed gives the same stream byte for byte.

Messages are plain text exactly as in the domain brief (banner first and last line,
``(S//REL TO USA, GBR) ...`` paragraphs, an optional ``TEARLINE`` section with its own
banner) or, with ``json_share > 0``, JSON documents in the shape ``guard.messages``
accepts. Each message carries MQTT 5 user properties ``message-id`` and ``flow``.

The ledger records, per message: id, flow, kind, category, variant, format, size,
the markings the generator used, the SHA-256 of the payload and the generator's own
expectation class (``releasable-to-GBR``, ``should-block-noforn`` ...). The expectation
is for statistics only: the guard's policy decides, the sinks check the guard.

The generator deliberately has its own tiny marking model (``Mark``) instead of using
``guard.markings``: test traffic must not share the bugs of the code under test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# -- a small, independent marking model ---------------------------------------------

_CLS_RANK = {"U": 0, "C": 2, "S": 3, "TS": 4}
_CLS_NAME = {"U": "UNCLASSIFIED", "C": "CONFIDENTIAL", "S": "SECRET", "TS": "TOP SECRET"}
_DISSEM_NAME = {"FOUO": "FOR OFFICIAL USE ONLY", "OC": "ORCON", "NF": "NOFORN"}
_DISSEM_ORDER = ["FOUO", "OC", "NF"]

#: Group memberships the generator needs (from the domain brief; NATO 2024: 32 members).
GROUPS: Mapping[str, frozenset[str]] = {
    "FVEY": frozenset({"USA", "GBR", "CAN", "AUS", "NZL"}),
    "ACGU": frozenset({"USA", "GBR", "CAN", "AUS"}),
    "NATO": frozenset(
        {
            "ALB",
            "BEL",
            "BGR",
            "CAN",
            "HRV",
            "CZE",
            "DNK",
            "EST",
            "FIN",
            "FRA",
            "DEU",
            "GRC",
            "HUN",
            "ISL",
            "ITA",
            "LVA",
            "LTU",
            "LUX",
            "MKD",
            "MNE",
            "NLD",
            "NOR",
            "POL",
            "PRT",
            "ROU",
            "SVK",
            "SVN",
            "ESP",
            "SWE",
            "TUR",
            "GBR",
            "USA",
        }
    ),
}


def expand(codes: Iterable[str]) -> frozenset[str]:
    """Countries covered by a list of trigraphs and tetragraphs."""
    out: set[str] = set()
    for c in codes:
        out |= GROUPS.get(c, {c})
    return frozenset(out)


def _rel_order(codes: Iterable[str]) -> tuple[str, ...]:
    """CAPCO order: USA first, then trigraphs, then tetragraphs, each alphabetical."""
    codes = set(codes)
    rest = sorted(c for c in codes if c != "USA")
    return (
        (("USA",) if "USA" in codes else ())
        + tuple(sorted(c for c in rest if len(c) == 3))
        + tuple(sorted(c for c in rest if len(c) == 4))
    )


@dataclass(frozen=True)
class Mark:
    """A US marking in the generator's own model: enough for the traffic it produces."""

    cls: str
    sci: tuple[str, ...] = ()
    dissem: tuple[str, ...] = ()  # FOUO, OC, NF (portion abbreviations)
    rel: tuple[str, ...] = ()  # REL TO list, USA first

    def portion(self) -> str:
        """The portion mark, e.g. ``(S//REL TO USA, GBR)``."""
        return "(" + self._render(self.cls, "/".join(self.sci), list(self.dissem)) + ")"

    def banner(self) -> str:
        """The banner line, e.g. ``SECRET//REL TO USA, GBR``."""
        return self._render(
            _CLS_NAME[self.cls], "/".join(self.sci), [_DISSEM_NAME[d] for d in self.dissem]
        )

    def _render(self, cls: str, sci: str, dissem: list[str]) -> str:
        parts = [cls]
        if sci:
            parts.append(sci)
        if self.rel:
            dissem = [*dissem, "REL TO " + ", ".join(self.rel)]
        if dissem:
            parts.append("/".join(dissem))
        return "//".join(parts)

    def releasable_to(self, dest: str) -> bool:
        """Positive release to every member of ``dest`` (``PUBLIC``: plain UNCLASSIFIED)."""
        if dest == "PUBLIC":
            return self.cls == "U" and not self.dissem and not self.sci and not self.rel
        if self.cls == "U" and not self.dissem and not self.sci:
            return True
        if "NF" in self.dissem or "OC" in self.dissem or "FOUO" in self.dissem:
            return False
        return bool(self.rel) and expand([dest]) <= expand(self.rel)


def rollup(marks: Sequence[Mark]) -> Mark:
    """Banner marking of a set of portions (CAPCO D.2, the cases the generator uses)."""
    cls = max((m.cls for m in marks), key=_CLS_RANK.__getitem__)
    sci = tuple(sorted({s for m in marks for s in m.sci}))
    dissem = {d for m in marks for d in m.dissem}
    if cls == "U":
        return Mark("U", sci, tuple(d for d in _DISSEM_ORDER if d in dissem))
    dissem.discard("FOUO")  # FOUO does not roll up into a classified banner
    # Uncaveated unclassified portions do not restrict release; every other portion
    # must carry REL TO or the banner is NOFORN.
    restricting = [m for m in marks if not (m.cls == "U" and not m.dissem and not m.sci)]
    rel: tuple[str, ...] = ()
    if "NF" not in dissem:
        if any(not m.rel for m in restricting):
            dissem.add("NF")
        else:
            common = set.intersection(*(set(m.rel) for m in restricting))
            covered = frozenset.intersection(*(expand(m.rel) for m in restricting))
            tetras = {c for c in common if len(c) == 4}
            inside = set().union(*(GROUPS[t] for t in tetras)) if tetras else set()
            codes = tetras | {c for c in covered if c not in inside or c == "USA"}
            if codes - {"USA"}:
                rel = _rel_order(codes)
            else:
                dissem.add("NF")
    return Mark(cls, sci, tuple(d for d in _DISSEM_ORDER if d in dissem), rel)


# -- text material --------------------------------------------------------------------

_PLACES = [
    "the Strait of Hormuz",
    "the Baltic approaches",
    "the Gulf of Aden",
    "the Black Sea",
    "the South China Sea",
    "the Sahel",
    "the Horn of Africa",
    "the eastern Mediterranean",
    "the Arctic shipping lanes",
    "the Taiwan Strait",
    "the Red Sea",
    "the Caspian region",
    "the northern border crossings",
    "the Sea of Japan",
    "the Korean peninsula",
    "the Bab el-Mandeb",
    "the Lake Chad basin",
    "the Andaman Sea",
]
_ACTORS = [
    "Naval units",
    "A logistics convoy",
    "Air defence batteries",
    "Coast guard vessels",
    "A state-owned shipping company",
    "Militia groups",
    "Fishing fleets",
    "Border guard detachments",
    "Transport aircraft",
    "Engineering units",
    "Customs authorities",
    "A private security company",
    "Survey ships",
]
_ACTIONS = [
    "increased activity near",
    "conducted a short-notice exercise in",
    "moved additional equipment toward",
    "resumed patrols in",
    "withdrew from",
    "established a temporary staging area near",
    "escorted merchant traffic through",
    "announced new restrictions on movement in",
    "reinforced positions along",
    "reduced their presence in",
]
_TIMES = [
    "on 12 May",
    "over the past week",
    "during the night of 3 June",
    "since early April",
    "on 27 October",
    "late last month",
    "between 4 and 9 March",
    "earlier this quarter",
]
_ASSESS = [
    "We assess with moderate confidence that",
    "We judge it likely that",
    "Analysts assess with low confidence that",
    "It is almost certain that",
    "We cannot yet determine whether",
    "Available reporting indicates that",
]
_CONSEQ = [
    "the activity is linked to a planned exercise",
    "regional tensions will persist",
    "commercial traffic will face delays",
    "the deployment is temporary",
    "local authorities will tighten controls",
    "the pattern will repeat next season",
    "the change reflects budget pressure rather than intent",
]
_OSINT = [
    "Open-source reporting from a regional news agency states that",
    "Commercial satellite imagery published this week shows that",
    "Press reporting citing port officials indicates that",
    "Social media posts geolocated by independent researchers suggest that",
    "State media announced that",
    "Publicly available shipping data shows that",
]
_CLIMATE = [
    "Prolonged drought has reduced river levels across {p}, and crop failure is likely in "
    "the coming season.",
    "Storm surge and coastal flooding near {p} displaced several thousand residents.",
    "Sea-level rise continues to threaten low-lying infrastructure around {p}.",
    "A record heat wave strained power grids in {p}, with water scarcity expected to grow.",
    "Wildfire smoke disrupted air traffic over {p} for several days.",
    "Glacier retreat is changing seasonal water supply for communities near {p}.",
    "A weak monsoon raised concern about food prices and migration from {p}.",
]
_WEATHER = [
    "Weather in the area was clear.",
    "Visibility was reduced by fog in the mornings.",
    "Sea state was moderate with winds from the northwest.",
    "Heavy rain limited movement on unpaved roads.",
]
# Only inside not-releasable (NOFORN) portions: realistic source descriptions.
_SOURCES = [
    "The reporting comes from a sensitive technical source.",
    "A clandestine source with direct access provided this information.",
    "This information was obtained from intercepted communications.",
    "Liaison service reporting corroborates the account.",
]

_HOMOGLYPHS = {
    "A": "\u0410",
    "B": "\u0412",
    "C": "\u0421",
    "E": "\u0415",
    "H": "\u041d",
    "K": "\u041a",
    "M": "\u041c",
    "O": "\u041e",
    "P": "\u0420",
    "T": "\u0422",
    "X": "\u0425",
    "a": "\u0430",
    "c": "\u0441",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
}
_ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060"]
TEARLINE = "-" * 28 + " TEARLINE " + "-" * 28
_TEXT_ONLY_CATEGORIES = ("bad-portion-mark", "banner-mismatch")

# -- categories -------------------------------------------------------------------------

#: Category -> content kind.
CATEGORIES: Mapping[str, str] = {
    "clean-finished": "finished-intel",
    "clean-osint": "osint",
    "clean-climate": "climate",
    "mixed-portions": "finished-intel",
    "tearline": "tearline-report",
    "raw-noforn": "raw-report",
    "above-accreditation": "finished-intel",
    "not-releasable": "finished-intel",
    "bad-portion-mark": "finished-intel",
    "banner-mismatch": "finished-intel",
    "dirty-word": "finished-intel",
    "us-person": "raw-report",
    "evasion": "finished-intel",
    "malformed": "malformed",
    "oversize": "finished-intel",
}
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "clean-finished": 0.20,
    "clean-osint": 0.10,
    "clean-climate": 0.10,
    "mixed-portions": 0.08,
    "tearline": 0.08,
    "raw-noforn": 0.08,
    "above-accreditation": 0.04,
    "not-releasable": 0.05,
    "bad-portion-mark": 0.04,
    "banner-mismatch": 0.04,
    "dirty-word": 0.05,
    "us-person": 0.04,
    "evasion": 0.05,
    "malformed": 0.03,
    "oversize": 0.01,
}
DEFAULT_SIZES: Mapping[int, float] = {512: 0.5, 4096: 0.4, 65536: 0.1}


@dataclass(frozen=True)
class FlowTarget:
    """What a generator needs to know about its flow."""

    name: str
    dest: str  # trigraph, tetragraph or PUBLIC
    accreditation_rank: int  # 0 UNCLASSIFIED .. 4 TOP SECRET
    topic: str


@dataclass(frozen=True)
class GeneratorConfig:
    """Category mix, size mix, rate and format of a stream."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    sizes: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    rate_per_s: float | None = None  # None: as fast as the consumer takes them
    poisson: bool = False  # exponential gaps instead of a constant interval
    oversize_bytes: int = 1_310_720  # above every policy's 1 MiB max_message_bytes
    json_share: float = 0.0  # fraction of messages sent as JSON documents
    run_id: str | None = None  # part of every message id; default "s<seed>"


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the generators' ledger (JSON)."""

    message_id: str
    flow: str
    seq: int
    kind: str
    category: str
    variant: str
    format: str  # text | json | binary
    size: int
    target_size: int
    banner: str | None
    portions: list[str]
    expect: str
    sha256: str
    at: float  # scheduled send time, seconds from the start of the stream

    def to_json(self) -> str:
        """One JSON line (no newline)."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=True)

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        """Parse one ledger line; ``ValueError`` if it is not a ledger entry."""
        data = json.loads(line)
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError(f"not a ledger entry: {line[:80]!r}")
        return cls(**data)


@dataclass(frozen=True)
class GeneratedMessage:
    """A message ready to publish, with its ledger entry."""

    message_id: str
    flow: str
    topic: str
    payload: bytes
    properties: tuple[tuple[str, str], ...]
    entry: LedgerEntry

    @property
    def at(self) -> float:
        """Scheduled send time (seconds from the start of the stream)."""
        return self.entry.at


class Ledger:
    """Append-only JSON-lines ledger; each append is flushed (``fsync`` optional)."""

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._fh = self.path.open("a", encoding="utf-8")

    def append(self, entry: LedgerEntry) -> None:
        """Write one entry as one line."""
        self._fh.write(entry.to_json() + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def extend(self, entries: Iterable[LedgerEntry]) -> None:
        """Write several entries, flushing once."""
        for e in entries:
            self._fh.write(e.to_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ledger(path: Path | str) -> list[LedgerEntry]:
    """All entries of a ledger file; ``ValueError`` naming the line if one is damaged.

    A final line without newline (a writer killed mid-line) is ignored.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]  # torn last write
    out = []
    for n, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            out.append(LedgerEntry.from_json(line))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
    return out


def load_term_list(path: Path | str) -> list[str]:
    """Terms of a term list file (``# comments``, blank lines, ``~`` substring prefix)."""
    terms = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        terms.append(line.lstrip("~").strip())
    if not terms:
        raise ValueError(f"{path}: no terms")
    return terms


# -- the generator ------------------------------------------------------------------------


class Generator:
    """Deterministic message stream of one flow (see module docstring)."""

    def __init__(
        self,
        flow: FlowTarget,
        seed: int,
        terms_path: Path | str,
        config: GeneratorConfig | None = None,
    ) -> None:
        self.flow = flow
        self.seed = seed
        self.config = config or GeneratorConfig()
        self.terms = load_term_list(terms_path)
        self._rng = random.Random(f"{seed}:{flow.name}")
        self._seq = 0
        self._clock = 0.0
        self._run = self.config.run_id or f"s{seed}"
        unknown = set(self.config.weights) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories: {', '.join(sorted(unknown))}")
        self._cats = [c for c, w in self.config.weights.items() if w > 0]
        self._cat_w = [self.config.weights[c] for c in self._cats]
        self._sizes = list(self.config.sizes)
        self._size_w = [self.config.sizes[s] for s in self._sizes]
        if not self._cats or not self._sizes:
            raise ValueError("empty category or size mix")

    # -- public ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[GeneratedMessage]:
        while True:
            yield self.next()

    def take(self, n: int) -> list[GeneratedMessage]:
        """The next ``n`` messages."""
        return [self.next() for _ in range(n)]

    def next(self, category: str | None = None, size: int | None = None) -> GeneratedMessage:
        """The next message, of a random (or the given) category and target size."""
        rng = self._rng
        cat = category or rng.choices(self._cats, self._cat_w)[0]
        if cat not in CATEGORIES:
            raise ValueError(f"unknown category {cat!r}")
        target = size or rng.choices(self._sizes, self._size_w)[0]
        if cat == "oversize":
            target = self.config.oversize_bytes
        self._seq += 1
        mid = f"m-{self.flow.name}-{self._run}-{self._seq:08d}"
        rate = self.config.rate_per_s
        if rate:
            self._clock += rng.expovariate(rate) if self.config.poisson else 1.0 / rate
        as_json = rng.random() < self.config.json_share
        doc, variant, expect = getattr(self, "_" + cat.replace("-", "_"))()
        # JSON carries markings as attributes: a text-only defect cannot be expressed.
        if (
            as_json
            and not isinstance(doc, bytes)
            and cat not in _TEXT_ONLY_CATEGORIES
            and variant != "marking-zero-width"
        ):
            payload, fmt = self._to_json(doc, target), "json"
        elif isinstance(doc, bytes):
            payload, fmt = doc, "binary" if variant == "binary" else "text"
        else:
            payload, fmt = self._to_text(doc, target), "text"
        entry = LedgerEntry(
            message_id=mid,
            flow=self.flow.name,
            seq=self._seq,
            kind=CATEGORIES[cat],
            category=cat,
            variant=variant,
            format=fmt,
            size=len(payload),
            target_size=target,
            banner=None if isinstance(doc, bytes) else doc.banner_line(),
            portions=[] if isinstance(doc, bytes) else doc.portion_marks(),
            expect=expect,
            sha256=hashlib.sha256(payload).hexdigest(),
            at=round(self._clock, 6),
        )
        props = (("message-id", mid), ("flow", self.flow.name))
        return GeneratedMessage(mid, self.flow.name, self.flow.topic, payload, props, entry)

    # -- helpers ----------------------------------------------------------------------
    @property
    def _dest(self) -> str:
        return self.flow.dest

    def _rel(self) -> tuple[str, ...]:
        """A REL TO list that covers the destination (several realistic shapes)."""
        d = self._dest
        rng = self._rng
        if d in ("FVEY", "NATO"):
            return ("USA", d)
        options = [("USA", d), _rel_order({"USA", d, "AUS"} if d != "AUS" else {"USA", d, "CAN"})]
        if d in GROUPS["FVEY"]:
            options.append(("USA", "FVEY"))
        if d in GROUPS["NATO"]:
            options.append(("USA", "NATO"))
        return rng.choice(options)

    def _other_rel(self) -> tuple[str, ...]:
        """A REL TO list that does NOT cover the destination."""
        d = self._dest
        if d == "FVEY":
            return ("USA", "GBR")  # not every member: least trusted member rule
        if d == "NATO":
            return ("USA", "FVEY")
        if d == "JPN":
            return self._rng.choice([("USA", "FVEY"), ("USA", "KOR")])
        return self._rng.choice([("USA", "AUS"), ("USA", "CAN", "NZL"), ("USA", "JPN")])

    def _ok_mark(self) -> Mark:
        """A portion marking releasable to the destination."""
        if self._dest == "PUBLIC":
            return Mark("U")
        return Mark(self._rng.choice(["S", "S", "C"]), rel=self._rel())

    def _sentence(self) -> str:
        r = self._rng
        return f"{r.choice(_ACTORS)} {r.choice(_ACTIONS)} {r.choice(_PLACES)} {r.choice(_TIMES)}."

    def _assessment(self) -> str:
        r = self._rng
        return f"{r.choice(_ASSESS)} {r.choice(_CONSEQ)}."

    def _paragraph(self, n: int | None = None) -> str:
        r = self._rng
        parts = [self._sentence() if r.random() < 0.6 else self._assessment()]
        for _ in range((n or r.randint(1, 4)) - 1):
            parts.append(r.choice([self._sentence, self._assessment])())
        return " ".join(parts)

    def _osint(self) -> str:
        r = self._rng
        s = self._sentence()
        return f"{r.choice(_OSINT)} {s[0].lower()}{s[1:]}"

    def _climate_text(self) -> str:
        return self._rng.choice(_CLIMATE).format(p=self._rng.choice(_PLACES))

    def _doc(
        self,
        paras: list[tuple[Mark, str]],
        tear: list[tuple[Mark, str]] | None = None,
        pad: Mark | None = None,
    ) -> _Doc:
        marks = [m for m, _ in paras] + [m for m, _ in (tear or [])]
        banner = rollup(marks).banner()
        tear_banner = rollup([m for m, _ in tear]).banner() if tear else None
        return _Doc(
            [(m.portion(), t, m) for m, t in paras],
            [(m.portion(), t, m) for m, t in (tear or [])],
            banner,
            banner,
            tear_banner,
            pad or paras[0][0],
            self._rng,
        )

    # -- categories: each returns (doc, variant, expectation) -------------------------
    def _clean_finished(self) -> tuple[_Doc, str, str]:
        if self._dest == "PUBLIC":
            paras = [(Mark("U"), self._osint()), (Mark("U"), self._paragraph())]
            return self._doc(paras), "unclassified", "releasable-to-PUBLIC"
        m = self._ok_mark()
        paras = [(m, self._paragraph()), (m, self._assessment())]
        if self._rng.random() < 0.5:
            paras.append((Mark("U"), self._rng.choice(_WEATHER)))
        return self._doc(paras), "rel-to", f"releasable-to-{self._dest}"

    def _clean_osint(self) -> tuple[_Doc, str, str]:
        paras = [(Mark("U"), self._osint()) for _ in range(self._rng.randint(1, 3))]
        return self._doc(paras), "unclassified", f"releasable-to-{self._dest}"

    def _clean_climate(self) -> tuple[_Doc, str, str]:
        if self._dest != "PUBLIC" and self._rng.random() < 0.4:
            m = self._ok_mark()
            paras = [(m, self._climate_text()), (Mark("U"), self._climate_text())]
            return self._doc(paras), "rel-to", f"releasable-to-{self._dest}"
        paras = [(Mark("U"), self._climate_text()) for _ in range(self._rng.randint(1, 3))]
        return self._doc(paras), "unclassified", f"releasable-to-{self._dest}"

    def _mixed_portions(self) -> tuple[_Doc, str, str]:
        ok = self._ok_mark()
        nf = Mark("S", dissem=self._rng.choice([("NF",), ("OC", "NF")]))
        paras = [
            (ok, self._paragraph()),
            (nf, self._rng.choice(_SOURCES)),
            (ok, self._assessment()),
        ]
        if self._dest == "PUBLIC":
            paras.insert(1, (Mark("S", rel=("USA", "FVEY")), self._sentence()))
        return (
            self._doc(paras, pad=ok),
            "noforn-portion",
            f"releasable-after-redaction-to-{self._dest}",
        )

    def _tearline(self) -> tuple[_Doc, str, str]:
        nf = Mark("S", dissem=("NF",))
        body = [(nf, self._paragraph()), (nf, self._rng.choice(_SOURCES))]
        tear_text = self._sentence()
        body.insert(0, (nf, tear_text))
        ok = self._ok_mark()
        tear = [(ok, tear_text), (ok, self._assessment())]
        return self._doc(body, tear, pad=nf), "tearline", f"releasable-tearline-to-{self._dest}"

    def _raw_noforn(self) -> tuple[_Doc, str, str]:
        r = self._rng
        variant = r.choice(["noforn", "orcon", "sci"])
        m = {
            "noforn": Mark("S", dissem=("NF",)),
            "orcon": Mark("S", dissem=("OC", "NF")),
            "sci": Mark("TS", sci=("SI",), dissem=("NF",)),
        }[variant]
        paras = [(m, self._sentence()), (m, r.choice(_SOURCES)), (m, self._paragraph())]
        return self._doc(paras), variant, "should-block-noforn"

    def _above_accreditation(self) -> tuple[_Doc, str, str]:
        if self._dest == "PUBLIC":
            m = Mark(self._rng.choice(["C", "S"]), rel=("USA", "FVEY"))
        else:
            m = Mark("TS", rel=self._rel())
        paras = [(m, self._paragraph()), (m, self._assessment())]
        return self._doc(paras), f"class-{m.cls}", "should-block-above-accreditation"

    def _not_releasable(self) -> tuple[_Doc, str, str]:
        if self._dest == "PUBLIC":
            m = Mark("U", dissem=("FOUO",))
            variant = "fouo"
        elif self._rng.random() < 0.3:
            m = Mark("S", sci=("SI",), rel=self._rel())
            variant = "sci"
        else:
            m = Mark("S", rel=self._other_rel())
            variant = "other-rel"
        paras = [(m, self._paragraph()), (m, self._assessment())]
        return self._doc(paras), variant, "should-block-not-releasable"

    def _bad_portion_mark(self) -> tuple[_Doc, str, str]:
        doc, _, _ = self._clean_finished()
        rel = ", ".join(self._rel()) if self._dest != "PUBLIC" else "USA, FVEY"
        bad = {
            "single-slash": "(S/NF)",
            "long-form": f"(SECRET//REL TO {rel})",
            "usa-not-first": "(S//REL TO " + ", ".join(reversed(rel.split(", "))) + ")",
            "missing-to": f"(S//REL {rel})",
            "unknown-class": f"(X//REL TO {rel})",
            "unknown-country": f"(S//REL TO {rel}, QQQ)",
            "no-comma": "(S//REL TO " + rel.replace(",", "") + ")",
            "unclosed": f"(S//REL TO {rel}",
        }
        variant = self._rng.choice(sorted(bad))
        i = self._rng.randrange(len(doc.body))
        _, text, m = doc.body[i]
        doc.body[i] = (bad[variant], text, m)
        return doc, variant, "should-block-bad-marking"

    def _banner_mismatch(self) -> tuple[_Doc, str, str]:
        r = self._rng
        ok = self._ok_mark() if self._dest != "PUBLIC" else Mark("S", rel=("USA", "FVEY"))
        variant = r.choice(["hidden-noforn", "understated", "closing-differs", "unclassified"])
        paras = [(ok, self._paragraph()), (ok, self._assessment())]
        if variant == "hidden-noforn":
            paras.insert(1, (Mark("S", dissem=("NF",)), r.choice(_SOURCES)))
        doc = self._doc(paras, pad=ok)
        if variant in ("hidden-noforn", "closing-differs"):
            claimed = Mark(ok.cls, rel=ok.rel).banner()
        elif variant == "understated":
            claimed = Mark("C", rel=ok.rel).banner() if ok.cls != "C" else "UNCLASSIFIED"
        else:
            claimed = "UNCLASSIFIED"
        if variant == "closing-differs":
            doc.bottom = "UNCLASSIFIED" if ok.cls != "U" else "SECRET//NOFORN"
        else:
            doc.top = doc.bottom = claimed
        return doc, variant, "should-block-spillage-risk"

    def _dirty_word(self) -> tuple[_Doc, str, str]:
        doc, _, _ = self._clean_finished()
        term = self._rng.choice(self.terms)
        i = self._rng.randrange(len(doc.body))
        mark, text, m = doc.body[i]
        form = self._rng.choice(["Operation {t}", "project {t}", "the {t} effort", "{t}"])
        doc.body[i] = (mark, f"{text} Reporting references {form.format(t=term)}.", m)
        return doc, "term", "should-block-dirty-word"

    def _us_person(self) -> tuple[_Doc, str, str]:
        r = self._rng
        doc, _, _ = self._clean_finished()
        variant = r.choice(["ssn", "ssn-spaced", "passport", "phrase"])
        area = r.randint(1, 898)
        area += area >= 666  # 666 is never issued
        ssn = f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
        text = {
            "ssn": f"The traveller's SSN {ssn} appears on the manifest.",
            "ssn-spaced": f"A record lists the number {ssn.replace('-', ' ')} for the account.",
            "passport": f"The passenger carried passport {r.choice('ACEFGHKLMNPRTXZ')}"
            f"{r.randint(10_000_000, 99_999_999)} at the crossing.",
            "phrase": r.choice(
                [
                    "One of the crew members is a U.S. person employed by a shipping agent.",
                    "The account holder is a US citizen living abroad.",
                    "The company director, a lawful permanent resident, arranged the charter.",
                ]
            ),
        }[variant]
        i = r.randrange(len(doc.body))
        mark, t, m = doc.body[i]
        doc.body[i] = (mark, f"{t} {text}", m)
        return doc, variant, "should-stop-us-person"

    def _evasion(self) -> tuple[_Doc, str, str]:
        r = self._rng
        doc, _, _ = self._clean_finished()
        term = r.choice(self.terms)
        variant = r.choice(
            [
                "homoglyph",
                "separator",
                "zero-width",
                "fullwidth",
                "case-mix",
                "marking-zero-width",
                "base64",
            ]
        )
        if variant == "homoglyph":
            hidden = "".join(_HOMOGLYPHS.get(c, c) if r.random() < 0.6 else c for c in term)
            if hidden == term:
                hidden = "".join(_HOMOGLYPHS.get(c, c) for c in term)
        elif variant == "separator":
            sep = r.choice(["-", ".", " ", "_", "*"])
            hidden = sep.join(c for c in term if c != " ")
        elif variant == "zero-width":
            hidden = "".join(c + r.choice(_ZERO_WIDTH) for c in term[:-1]) + term[-1]
        elif variant == "fullwidth":
            hidden = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in term)
        elif variant == "case-mix":
            hidden = "".join(c.upper() if r.random() < 0.5 else c.lower() for c in term)
        elif variant == "base64":
            blob = f"Operation {term}: " + self._paragraph(3)
            hidden = base64.b64encode(blob.encode()).decode()
        else:
            hidden = ""
        i = r.randrange(len(doc.body))
        mark, text, m = doc.body[i]
        if variant == "marking-zero-width":
            # A NOFORN portion whose control word is split by a zero-width character.
            doc.body.insert(i, ("(S//N\u200bF)", r.choice(_SOURCES), Mark("S", dissem=("NF",))))
        else:
            doc.body[i] = (mark, f"{text} Reporting references {hidden}.", m)
        return doc, variant, "should-block-evasion"

    def _malformed(self) -> tuple[bytes, str, str]:
        r = self._rng
        variant = r.choice(
            [
                "invalid-utf8",
                "binary",
                "no-banner",
                "nul-bytes",
                "truncated",
                "empty",
                "portion-first",
            ]
        )
        doc, _, _ = self._clean_finished()
        text = doc.render()
        if variant == "invalid-utf8":
            data = text.encode()
            cut = r.randrange(len(data) // 4, len(data) // 2)
            return (
                data[:cut] + r.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"]) + data[cut:],
                variant,
                "should-block-malformed",
            )
        if variant == "binary":
            return r.randbytes(r.choice([64, 512, 4096])), variant, "should-block-malformed"
        if variant == "no-banner":
            lines = text.split("\n")
            return "\n".join(lines[1:-2]).encode() + b"\n", variant, "should-block-malformed"
        if variant == "nul-bytes":
            data = text.encode()
            cut = r.randrange(1, len(data) - 1)
            return data[:cut] + b"\x00\x00" + data[cut:], variant, "should-block-malformed"
        if variant == "truncated":
            data = text.encode()
            return (
                data[: r.randrange(len(data) // 3, len(data) * 2 // 3)],
                variant,
                "should-block-malformed",
            )
        if variant == "empty":
            return b"", variant, "should-block-malformed"
        lines = text.split("\n")
        return "\n".join(lines[1:]).encode(), variant, "should-block-malformed"

    def _oversize(self) -> tuple[_Doc, str, str]:
        doc, _, _ = self._clean_finished()
        return doc, "padded", "should-block-oversize"

    # -- rendering -----------------------------------------------------------------------
    def _filler(self, doc: _Doc, room: int) -> None:
        """Add padding paragraphs (marked like the doc's padding mark) up to ``room`` bytes.

        The last paragraph is cut at a word boundary so that the message ends up a few
        bytes at most under the target size, never over it.
        """
        mark = doc.pad.portion()
        while room > 0:
            text = self._paragraph()
            # one line = mark + " " + text + "\n"
            fits = room - len(mark) - 2
            if fits < 16:
                break
            if len(text) > fits:
                text = text[: text.rfind(" ", 0, fits)].rstrip(" ,.") + "."
            doc.insert_padding(text)
            room -= len(mark) + len(text) + 2

    def _to_text(self, doc: _Doc, target: int) -> bytes:
        size = len(doc.render().encode())
        if size < target:
            self._filler(doc, target - size)
        return doc.render().encode()

    def _to_json(self, doc: _Doc, target: int) -> bytes:
        def attrs(m: Mark) -> dict[str, Any]:
            dissem = list(m.dissem) + (["REL"] if m.rel else [])
            return {
                "classification": m.cls,
                "ownerProducer": ["USA"],
                "releasableTo": list(m.rel),
                "disseminationControls": dissem,
                "SCIcontrols": list(m.sci),
            }

        def portion(mark: Mark, text: str) -> dict[str, Any]:
            return {"text": text, **attrs(mark)}

        def banner(marks: list[Mark]) -> dict[str, Any]:
            b = attrs(rollup(marks))
            del b["ownerProducer"]
            return b

        body = [(m, t) for _, t, m in doc.body]
        tear = [(m, t) for _, t, m in doc.tear]
        out: dict[str, Any] = {
            "banner": banner([m for m, _ in body + tear]),
            "portions": [portion(m, t) for m, t in body],
        }
        if tear:
            out["tearlines"] = [
                {
                    "banner": banner([m for m, _ in tear]),
                    "portions": [portion(m, t) for m, t in tear],
                }
            ]
        size = len(json.dumps(out, ensure_ascii=False).encode())
        while size < target:
            extra = portion(doc.pad, self._paragraph())
            grow = len(json.dumps(extra, ensure_ascii=False).encode()) + 2  # ", " separator
            if size + grow > target:
                break
            out["portions"].insert(self._rng.randint(1, len(out["portions"])), extra)
            size += grow
        return json.dumps(out, ensure_ascii=False).encode()


class _Doc:
    """A plain-text report under construction (body, optional tearline section)."""

    def __init__(
        self,
        body: list[tuple[str, str, Mark]],
        tear: list[tuple[str, str, Mark]],
        top: str,
        bottom: str,
        tear_banner: str | None,
        pad: Mark,
        rng: random.Random,
    ) -> None:
        self.body = body
        self.tear = tear
        self.top = top
        self.bottom = bottom
        self.tear_banner = tear_banner
        self.pad = pad
        self._rng = rng

    def insert_padding(self, text: str) -> None:
        """Insert a padding paragraph at a random place in the main body."""
        self.body.insert(self._rng.randint(1, len(self.body)), (self.pad.portion(), text, self.pad))

    def banner_line(self) -> str:
        return self.top

    def portion_marks(self) -> list[str]:
        """Distinct portion marks as written, in order of first use."""
        return list(dict.fromkeys(p for p, _, _ in self.body + self.tear))

    def render(self) -> str:
        lines = [self.top]
        lines += [f"{p} {t}" for p, t, _ in self.body]
        if self.tear:
            lines.append(TEARLINE)
            lines.append(self.tear_banner or "")
            lines += [f"{p} {t}" for p, t, _ in self.tear]
        lines.append(self.bottom)
        return "\n".join(lines) + "\n"


def targets_from_topology(topology: Any) -> list[FlowTarget]:
    """``FlowTarget`` for every flow of a ``guard.domains.topology.Topology``."""
    out = []
    for f in topology.flows:
        d = topology.domains[f.destination]
        out.append(FlowTarget(f.name, d.dest, d.rank, f.inbound_topic))
    return out


def interleave(generators: Sequence[Generator], n_each: int) -> list[GeneratedMessage]:
    """``n_each`` messages from every generator, merged by scheduled send time.

    Ties keep generator order, so the result is deterministic for given seeds.
    """
    streams = [g.take(n_each) for g in generators]
    return list(heapq.merge(*streams, key=lambda m: m.at))


async def publish_stream(
    conn: Any,
    messages: Iterable[GeneratedMessage],
    ledger: Ledger | None = None,
    *,
    pace: bool = True,
) -> int:
    """Publish ``messages`` on ``conn`` (a ``transport.Connection``), in order.

    Each ledger entry is written before its publish, so a message that was published
    is always in the ledger (a crash in between shows up as a loss, never as an
    unexplained arrival). With ``pace`` the schedule (``GeneratedMessage.at``) is kept
    relative to the first call. Returns the number published.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    for m in messages:
        if pace:
            delay = start + m.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if ledger is not None:
            ledger.append(m.entry)
        await conn.publish(m.topic, m.payload, m.properties)
        n += 1
    return n
