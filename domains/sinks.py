"""Low-side sinks: independent checks of everything the guard delivers to a domain.

A ``Sink`` belongs to one low-side domain and checks each received message on its own
authority, never trusting the guard:

- the release stamp verifies (``guard.audit.stamp.verify_stamp`` with the guard's
  public keys);
- spillage: every banner and portion mark in the received bytes is parsed twice, by
  the markings engine (``parse`` / ``recognize_portions``, ``classification_rank``,
  ``releasable``) and by this module's own small ``re`` parser, and nothing may be above
  the domain's accreditation, carry SCI/SAP/AEA controls, or lack a positive release
  to the domain (for ``PUBLIC``: nothing but plain ``(U)``). A line that is neither a
  banner, a portion, the tearline nor blank is unmarked content and counts too: the
  sink fails closed, so a bug in the markings engine cannot hide spillage;
- against the generators' ledger and the guard's decisions (``reconcile``): loss (a
  message decided release/redact that never arrived, or a sent message with no
  decision at all) and duplicates (the same message id received twice).

``receive`` is thread-safe (paho calls it from its network thread).
"""

from __future__ import annotations

import json
import re
import threading
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from guard.domains.generators import GROUPS, LedgerEntry

VERDICTS = ("release", "redact", "quarantine", "block")
DELIVERED = ("release", "redact")


@dataclass
class FlowSummary:
    """Counts for one flow as seen by its destination sink."""

    flow: str
    sent: int = 0
    received: int = 0
    released: int = 0
    redacted: int = 0
    quarantined: int = 0
    blocked: int = 0
    spillage: int = 0
    lost: int = 0
    duplicates: int = 0
    stamp_failures: int = 0
    unexpected: int = 0  # arrived although not in the ledger or decided block/quarantine

    @property
    def ok(self) -> bool:
        """No spillage, loss, duplicate, stamp failure or unexpected arrival."""
        return not (
            self.spillage or self.lost or self.duplicates or self.stamp_failures or self.unexpected
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class Incident:
    """One problem found by a sink."""

    kind: str  # spillage | stamp | loss | duplicate | unexpected
    flow: str
    message_id: str
    detail: str


# -- independent portion / banner check (re only) -----------------------------------

_RANK = {
    "U": 0, "NU": 0, "UNCLASSIFIED": 0, "NATO UNCLASSIFIED": 0,
    "R": 1, "NR": 1, "RESTRICTED": 1, "NATO RESTRICTED": 1,
    "C": 2, "NC": 2, "CONFIDENTIAL": 2, "NATO CONFIDENTIAL": 2,
    "S": 3, "NS": 3, "SECRET": 3, "NATO SECRET": 3,
    "TS": 4, "CTS": 4, "TOP SECRET": 4, "COSMIC TOP SECRET": 4,
}  # fmt: skip
# Controls that forbid release to any foreign or public audience.
_BLOCKING = {
    "NF", "NOFORN", "OC", "ORCON", "OC-USGOV", "ORCON-USGOV", "IMC", "IMCON", "RS", "RSEN",
    "FISA", "DS", "LIMDIS", "EXDIS", "NODIS", "PR", "PROPIN", "FOUO", "FOR OFFICIAL USE ONLY",
    "LES", "LES-NF", "SBU", "SBU-NF", "SSI", "DSEN", "DEA SENSITIVE", "FRD", "RD",
}  # fmt: skip
# Tokens that neither grant nor forbid release on their own.
_NEUTRAL = {"RELIDO", "FGI"}
_PORTION = re.compile(r"^\(([^()\n]*)\)")
_TEARLINE = re.compile(r"^\s*-{3,}\s*TEARLINE\s*-{3,}\s*$", re.IGNORECASE)
_BANNER = re.compile(
    r"^(?://)?(?:[A-Z]{3,4} )?(UNCLASSIFIED|RESTRICTED|CONFIDENTIAL|SECRET|TOP SECRET|"
    r"COSMIC TOP SECRET|NATO (?:UNCLASSIFIED|RESTRICTED|CONFIDENTIAL|SECRET)|"
    r"JOINT (?:UNCLASSIFIED|CONFIDENTIAL|SECRET|TOP SECRET)[A-Z ]*)(//.*)?$"
)
_REL = re.compile(r"^REL TO ((?:[A-Z]{3,4})(?:, [A-Z]{3,4})*)$")
_CODE = re.compile(r"^[A-Z]{3,4}$")
_NEWLINE = re.compile("\n")


def _covers(rel: Sequence[str], dest: str) -> bool:
    covered: set[str] = set()
    for code in rel:
        covered |= GROUPS.get(code, {code}) if len(code) == 4 else {code}
    want = GROUPS.get(dest, {dest}) if len(dest) == 4 else {dest}
    if len(dest) == 4 and dest not in GROUPS:
        return dest in rel  # a group we do not know: only literal coverage
    return want <= covered


def _classification(head: str) -> str | None:
    """The classification word(s) of a marking's first category, or None."""
    if head in _RANK:
        return head
    words = head.split(" ")
    if words[0] == "JOINT":  # JOINT <classification> <trigraph> <trigraph> ...
        for k in range(len(words), 1, -1):
            cls = " ".join(words[1:k])
            if cls in _RANK and all(re.fullmatch(r"[A-Z]{3}", w) for w in words[k:]):
                return cls
        return None
    rest = " ".join(words[1:])
    if len(words) > 1 and _CODE.match(words[0]) and rest in _RANK:
        return rest  # foreign government information: "GBR S", "DEU SECRET"
    return None


def _check_mark(body: str, dest: str, rank: int) -> str | None:
    """Why the marking text ``body`` may not go to ``dest`` (None if it may)."""
    tokens = body.split("//")
    if tokens and tokens[0] == "" and len(tokens) > 1:
        tokens = tokens[1:]  # non-US or JOINT: "//GBR S//..."
    head = tokens[0].strip() if tokens else ""
    cls = _classification(head)
    if cls is None:
        return f"unrecognised classification {head!r}"
    if _RANK[cls] > rank:
        return f"classification {cls} above the domain's accreditation"
    rel: list[str] | None = None
    controls: list[str] = []
    for tok in tokens[1:]:
        tok = tok.strip()
        relm = _REL.match(tok)
        if relm:
            rel = relm.group(1).split(", ")
            continue
        for item in tok.split("/"):
            item = item.strip()
            relm = _REL.match(item)
            if relm:
                rel = relm.group(1).split(", ")
            elif item:
                controls.append(item)
    for c in controls:
        if c in _BLOCKING:
            return f"control {c} forbids release"
        if c.split(" ")[0] in _NEUTRAL or c.startswith("DISPLAY ONLY"):
            continue
        return f"control {c!r} (SCI, SAP or unknown) may not reach a low-side domain"
    if dest == "PUBLIC":
        if _RANK[cls] != 0 or rel is not None:
            return "only plain UNCLASSIFIED may reach the public"
        return None
    if _RANK[cls] == 0 and rel is None:
        return None
    if rel is None:
        return "classified content without a positive release marking (REL TO)"
    if not all(_CODE.match(c) for c in rel):
        return f"malformed REL TO list {rel!r}"
    if not _covers(rel, dest):
        return f"REL TO {', '.join(rel)} does not cover every member of {dest}"
    return None


def independent_check(text: str, dest: str, rank: int) -> list[str]:
    """Problems in a plain-text report for ``dest`` found with ``re`` alone."""
    problems: list[str] = []
    seen: dict[str, str | None] = {}  # a report repeats few distinct marks
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip() or _TEARLINE.match(line):
            continue
        if line.startswith("("):
            pm = _PORTION.match(line)
            if pm is None:
                problems.append(f"line {n}: unterminated portion mark")
                continue
            body = pm.group(1)
            if body not in seen:
                seen[body] = _check_mark(body, dest, rank)
            why = seen[body]
        elif _BANNER.match(line):
            why = _check_mark(line, dest, rank)
        else:
            why = "unmarked line (neither banner, portion, tearline nor blank)"
        if why:
            problems.append(f"line {n}: {why}: {line[:80]!r}")
    return problems


# -- check with the markings engine ---------------------------------------------------


def _marking_fields_empty(m: Any, names: Iterable[str]) -> bool:
    return not any(getattr(m, n, None) for n in names)


def engine_check(text: str, dest: str, rank: int, markings: Any) -> list[str]:
    """Problems found with the markings engine (``markings``: the ``guard.markings`` API)."""
    problems: list[str] = []
    spans: list[tuple[int, Any]] = []
    starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]
    for hit in markings.recognize_portions(text):
        spans.append((bisect_right(starts, hit.start), hit.result))
    portion_lines = {n for n, _ in spans}
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if n in portion_lines or not line.strip() or _TEARLINE.match(line):
            continue
        if line.startswith("("):
            problems.append(f"line {n}: portion mark not recognised by the markings engine")
            continue
        spans.append((n, markings.parse(line, "banner")))
    verdicts: dict[str, str | None] = {}
    for n, result in spans:
        key = result.input
        if key not in verdicts:
            verdicts[key] = _engine_verdict(result, dest, rank, markings)
        if verdicts[key]:
            problems.append(f"line {n}: {verdicts[key]}")
    return problems


def _engine_verdict(result: Any, dest: str, rank: int, markings: Any) -> str | None:
    """Why one parsed marking may not go to ``dest`` according to the engine, or None."""
    m = result.marking
    if m is None or not result.valid:
        return f"marking does not parse: {result.input[:80]!r}"
    r = markings.classification_rank(m)
    if r > rank:
        return f"classification rank {r} above accreditation {rank}"
    if not _marking_fields_empty(m, ("sci", "sap", "aea", "sigma")):
        return "SCI/SAP/AEA controls may not reach a low-side domain"
    if dest == "PUBLIC":
        if r != 0 or not _marking_fields_empty(
            m, ("dissem", "rel_to", "display_only", "non_ic", "fgi", "non_us_controls", "eyes")
        ):
            return "only plain UNCLASSIFIED may reach the public"
        return None
    rel = markings.releasable(m, dest)
    if not rel.releasable:
        return f"not releasable to {dest}: {'; '.join(rel.reasons)}"
    return None


def json_to_text(data: bytes) -> str:
    """Render a JSON document (``guard.messages`` shape) as marked text, for checking.

    Raises ``ValueError`` if it is not such a document.
    """
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")

    def mark(a: Any) -> str:
        if not isinstance(a, dict) or not isinstance(a.get("classification"), str):
            raise ValueError("portion or banner without classification")
        parts = [a["classification"]]
        sci = a.get("SCIcontrols") or []
        if sci:
            parts.append("/".join(sci))
        dissem = [d for d in (a.get("disseminationControls") or []) if d != "REL"]
        rel = a.get("releasableTo") or []
        if rel:
            dissem.append("REL TO " + ", ".join(rel))
        if dissem:
            parts.append("/".join(dissem))
        return "//".join(parts)

    # Banners are written in portion form too: the checks only need the marking.
    lines = [f"({mark(doc.get('banner'))})"]
    for section in [doc, *(doc.get("tearlines") or [])]:
        if section is not doc:
            lines += ["--- TEARLINE ---", f"({mark(section.get('banner'))})"]
        for p in section.get("portions") or []:
            text = str(p.get("text", "")).replace("\n", " ")
            lines.append(f"({mark(p)}) {text}")
    return "\n".join(lines)


# -- the sink ------------------------------------------------------------------------------


@dataclass
class _Received:
    flow: str
    count: int = 0


@dataclass
class Sink:
    """Independent checker for one low-side domain.

    ``dest`` is the domain's release target (trigraph, tetragraph or ``PUBLIC``),
    ``rank`` its accreditation (0..4), ``flows`` the flows delivered to it.
    ``verify`` is ``guard.audit.stamp.verify_stamp`` and ``markings`` the
    ``guard.markings`` module unless given (tests may pass stand-ins while those
    modules do not exist yet).
    """

    domain: str
    dest: str
    rank: int
    flows: Sequence[str]
    public_keys: Any
    verify: Callable[[bytes, Sequence[tuple[str, str]], Any], tuple[bool, str]] | None = None
    markings: Any = None
    incidents: list[Incident] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verify is None:
            from guard.audit.stamp import verify_stamp

            self.verify = verify_stamp
        if self.markings is None:
            import guard.markings

            self.markings = guard.markings
        self._lock = threading.Lock()
        self._received: dict[str, _Received] = {}
        self._summary: dict[str, FlowSummary] = {f: FlowSummary(f) for f in self.flows}

    @classmethod
    def for_domain(cls, topology: Any, domain: str, public_keys: Any, **kw: Any) -> Sink:
        """A sink for ``domain`` of a ``Topology``."""
        d = topology.domains[domain]
        flows = [f.name for f in topology.flows_to(domain)]
        return cls(domain, d.dest, d.rank, flows, public_keys, **kw)

    def _flow_of(self, topic: str, props: Sequence[tuple[str, str]]) -> str:
        for k, v in props:
            if k in ("guard-flow", "flow") and v in self._summary:
                return v
        last = topic.rsplit("/", 1)[-1]
        return last if last in self._summary else topic

    def check_content(self, payload: bytes) -> list[str]:
        """Spillage problems in ``payload`` for this domain (both parsers)."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [f"not valid UTF-8 ({exc.reason}): cannot show it is releasable"]
        if "\x00" in text:
            return ["NUL characters: cannot show it is releasable"]
        if text.lstrip().startswith("{"):
            try:
                text = json_to_text(payload)
            except (ValueError, TypeError, AttributeError) as exc:
                return [f"JSON document not understood ({exc}): cannot show it is releasable"]
        if not text.strip():
            return []
        problems = independent_check(text, self.dest, self.rank)
        try:
            problems += [
                f"engine: {p}" for p in engine_check(text, self.dest, self.rank, self.markings)
            ]
        except Exception as exc:  # the engine failing must not hide anything: fail closed
            problems.append(f"engine: markings check failed: {type(exc).__name__}: {exc}")
        return problems

    def receive(
        self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]]
    ) -> list[Incident]:
        """Check one delivered message; returns (and records) the incidents it raised."""
        props = tuple(properties)
        # The id inside the signed stamp is authoritative; the generator's is a fallback.
        ids = dict(p for p in props if isinstance(p, tuple) and len(p) == 2)
        mid = ids.get("guard-message-id") or ids.get("message-id") or ""
        flow = self._flow_of(topic, props)
        found: list[Incident] = []
        try:
            ok, reason = self.verify(bytes(payload), props, self.public_keys)  # type: ignore[misc]
        except Exception as exc:  # a crashing verifier is a failed verification
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            found.append(Incident("stamp", flow, mid, f"release stamp does not verify: {reason}"))
        problems = self.check_content(bytes(payload))
        if problems:
            found.append(Incident("spillage", flow, mid, "; ".join(problems[:5])))
        with self._lock:
            s = self._summary.setdefault(flow, FlowSummary(flow))
            s.received += 1
            s.stamp_failures += not ok
            s.spillage += bool(problems)
            rec = self._received.setdefault(mid, _Received(flow))
            rec.count += 1
            if rec.count > 1:
                s.duplicates += 1
                found.append(Incident("duplicate", flow, mid, f"received {rec.count} times"))
            self.incidents.extend(found)
        return found

    def reconcile(
        self, ledger: Iterable[LedgerEntry], decisions: Iterable[Any]
    ) -> dict[str, FlowSummary]:
        """Per-flow summary against the ledger and the guard's decisions.

        ``decisions``: objects or dicts with ``message_id`` and ``verdict`` (a message
        decided more than once, e.g. after a restart, counts by its last verdict, and is
        expected to arrive if any verdict released it).
        """
        sent: dict[str, str] = {}
        for e in ledger:
            if e.flow in self._summary:
                sent[e.message_id] = e.flow
        last: dict[str, str] = {}
        delivered: set[str] = set()
        for d in decisions:
            mid = d["message_id"] if isinstance(d, Mapping) else d.message_id
            verdict = d["verdict"] if isinstance(d, Mapping) else d.verdict
            if mid not in sent:
                continue
            last[mid] = verdict
            if verdict in DELIVERED:
                delivered.add(mid)
        with self._lock:
            out = {f: FlowSummary(f) for f in self._summary}
            for f, s in self._summary.items():
                o = out[f]
                o.received, o.spillage = s.received, s.spillage
                o.duplicates, o.stamp_failures = s.duplicates, s.stamp_failures
            counts = Counter((sent[m], v) for m, v in last.items())
            for (flow, verdict), n in counts.items():
                if verdict in VERDICTS:
                    key = {
                        "release": "released",
                        "redact": "redacted",
                        "quarantine": "quarantined",
                        "block": "blocked",
                    }[verdict]
                    setattr(out[flow], key, getattr(out[flow], key) + n)
            incidents: list[Incident] = []
            for mid, flow in sent.items():
                out[flow].sent += 1
                if mid not in last:
                    out[flow].lost += 1
                    incidents.append(Incident("loss", flow, mid, "sent but never decided"))
                elif mid in delivered and mid not in self._received:
                    out[flow].lost += 1
                    incidents.append(
                        Incident("loss", flow, mid, f"decided {last[mid]} but never arrived")
                    )
            for mid, rec in self._received.items():
                if mid not in sent or mid not in delivered:
                    flow = rec.flow if rec.flow in out else next(iter(out), rec.flow)
                    why = "not in the ledger" if mid not in sent else f"decided {last.get(mid)}"
                    if flow in out:
                        out[flow].unexpected += 1
                    incidents.append(Incident("unexpected", rec.flow, mid, f"arrived but {why}"))
            self.incidents.extend(incidents)
        return out


def merge_summaries(parts: Iterable[Mapping[str, FlowSummary]]) -> dict[str, FlowSummary]:
    """Combine per-sink summaries into one per-flow table (flows are sink-disjoint)."""
    out: dict[str, FlowSummary] = {}
    for part in parts:
        for flow, s in part.items():
            if flow in out:
                o = out[flow]
                for k, v in asdict(s).items():
                    if k != "flow":
                        setattr(o, k, getattr(o, k) + v)
            else:
                out[flow] = FlowSummary(**asdict(s))
    return out


def totals(summaries: Mapping[str, FlowSummary]) -> dict[str, int]:
    """Sum of every counter over all flows."""
    acc: dict[str, int] = defaultdict(int)
    for s in summaries.values():
        for k, v in asdict(s).items():
            if k != "flow":
                acc[k] += v
    return dict(acc)


async def consume(conn: Any, sink: Sink, topics: Sequence[str]) -> int:
    """Subscribe ``conn`` (a ``transport.Connection``) to ``topics`` and check every
    delivered message with ``sink``, acknowledging it only after the check, until the
    connection closes. Returns the number of messages checked."""
    for t in topics:
        await conn.subscribe(t)
    n = 0
    async for msg in conn.messages():
        sink.receive(msg.topic, msg.payload, msg.properties)
        await conn.ack(msg)
        n += 1
    return n
