"""The spillage invariant, as a property over generated messages and every shipped policy.

Whatever is released or redacted (and whatever a quarantine would release after review)
never contains a portion above the destination's accreditation, a portion not releasable
to every member of the destination, a dirty term or a PII match.

The ORACLE is independent of the pipeline: it reads the policy YAML and the term files
itself (yaml.safe_load, plain text), takes group membership from the third-party ODNI
vectors, parses the output's portion marks with its own regular expressions, finds terms
with pyahocorasick and PII with ``re``. It implements the release rules as the policies'
comments state them (CAPCO REL TO / NOFORN; YESFORN "uncaveated"; content lanes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import ahocorasick
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.decide import Pipeline
from guard.markings import parse, render_banner, rollup
from guard.policy import load_policy

POLICIES = Path(__file__).resolve().parents[1] / "policies"
NAMES = ["us-secret-to-gbr", "us-secret-to-fvey", "us-secret-to-nato", "us-secret-to-jpn",
         "us-secret-to-public", "us-secret-to-fvey-yesforn"]
RANK = {"U": 0, "R": 1, "C": 2, "S": 3, "TS": 4}
ACC = {"UNCLASSIFIED": 0, "RESTRICTED": 1, "CONFIDENTIAL": 2, "SECRET": 3, "TOP SECRET": 4}
SCI = {"SI", "TK", "HCS"}

# (portion mark, ISM attributes) — the generator's vocabulary of markings
POOL: list[tuple[str, dict[str, Any]]] = [
    ("U", {"classification": "U"}),
    ("U//FOUO", {"classification": "U", "disseminationControls": ["FOUO"]}),
    ("C", {"classification": "C"}),
    ("S", {"classification": "S"}),
    ("TS", {"classification": "TS"}),
    ("S//NF", {"classification": "S", "disseminationControls": ["NF"]}),
    ("C//NF", {"classification": "C", "disseminationControls": ["NF"]}),
    ("S//OC/NF", {"classification": "S", "disseminationControls": ["OC", "NF"]}),
    ("S//OC/REL TO USA, FVEY", {"classification": "S", "disseminationControls": ["OC", "REL"],
                                "releasableTo": ["USA", "FVEY"]}),
    ("S//RELIDO", {"classification": "S", "disseminationControls": ["RELIDO"]}),
    ("TS//SI//NF", {"classification": "TS", "SCIcontrols": ["SI"],
                    "disseminationControls": ["NF"]}),
    ("S//SI//REL TO USA, FVEY", {"classification": "S", "SCIcontrols": ["SI"],
                                 "disseminationControls": ["REL"],
                                 "releasableTo": ["USA", "FVEY"]}),
]
for _cls in ("C", "S", "TS"):
    for _rel in (["USA", "GBR"], ["USA", "FVEY"], ["USA", "NATO"], ["USA", "JPN"],
                 ["USA", "GBR", "JPN"], ["USA", "AUS", "CAN", "GBR", "NZL"]):
        POOL.append((f"{_cls}//REL TO {', '.join(_rel)}",
                     {"classification": _cls, "disseminationControls": ["REL"],
                      "releasableTo": _rel}))

PLAIN = ["convoy", "port", "harbor", "radar", "brigade", "the", "near", "was", "seen",
         "supply", "route", "weather", "clear", "officials", "said", "ministry", "fuel"]
# plain words five times as likely as the special ones (dirty terms, PII, lane and
# US-person indicators), so that releases and redactions are common, not just blocks
WORDS = PLAIN * 5 + [
         "NIGHTJAR", "blue heron", "clandestine source", "sources and methods", "noforn",
         "U.S. person", "green card holder", "123-45-6789", "987 65 4321", "C12345678",
         "202-555-0143", "drought", "sea level", "OSINT", "press report", "commercial imagery"]


def _oracle_members(vectors: Path) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    tsv = vectors / "odni-ism-cve" / "tetragraph_membership.tsv"
    for line in tsv.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) > 3 and cols[1] == "Yes":
            groups[cols[0]] = set(cols[3].split())
    groups["NATO"] |= {"FIN", "SWE"}  # joined 2023 / 2024 (the domain brief)
    return groups


def _terms(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


PII = [re.compile(r"(?<![0-9A-Za-z])" + p + r"(?![0-9A-Za-z])") for p in (
    r"\d{3}-\d{2}-\d{4}", r"\d{3} \d{2} \d{4}", r"[A-Za-z]\d{8}", r"A-\d{3}-\d{3}-\d{3}",
    r"\d{3}-\d{3}-\d{4}")]


class Oracle:
    """The spillage check, from the policy file and public data only."""

    def __init__(self, name: str, groups: dict[str, set[str]]) -> None:
        path = POLICIES / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text())
        dest = doc["destination"]
        self.acc = ACC[dest["accreditation"]]
        self.public = bool(dest.get("public"))
        self.members: set[str] = set()
        for code in dest.get("release_to", []):
            self.members |= groups.get(code, {code})
        self.members.discard("USA")
        rel = doc["release"]
        self.uncaveated = rel.get("uncaveated") == "release"
        self.restrictive = set(rel.get("restrictive_controls", []))
        self.lanes = []
        for lane in doc.get("lanes", []):
            words = [w.lower() for w in _terms(POLICIES / lane["indicators"])]
            self.lanes.append((words, ACC[lane["max_classification"]],
                               lane.get("uncaveated") == "release"))
        self.terms: dict[str, list[str]] = {}
        for t in doc["terms"]:
            if t["kind"] == "dirty":
                self.terms.setdefault(t["action"], []).extend(
                    _terms(POLICIES / t["file"]))
        self.auto: dict[str, ahocorasick.Automaton] = {}
        for action, words in self.terms.items():
            a = ahocorasick.Automaton()
            for w in words:
                w = w.lower()
                a.add_word(w.lstrip("~"), (w.startswith("~"), w.lstrip("~")))
            a.make_automaton()
            self.auto[action] = a

    @staticmethod
    def _split(mark: str) -> tuple[str, set[str], set[str], set[str]]:
        parts = mark.split("//")
        cls, sci, dissem, rel = parts[0], set(), set(), set()
        for part in parts[1:]:
            for tok in part.split("/"):
                if tok.startswith("REL TO "):
                    rel = set(tok[7:].split(", "))
                elif tok in SCI:
                    sci.add(tok)
                else:
                    dissem.add(tok)
        return cls, sci, dissem, rel

    def _has_word(self, text: str, words: list[str]) -> bool:
        for w in words:
            for m in re.finditer(re.escape(w), text):
                s, e = m.start(), m.end()
                if (s == 0 or not text[s - 1].isalnum()) and (e == len(text) or
                                                              not text[e].isalnum()):
                    return True
        return False

    def portion_problem(self, mark: str, text: str, groups: dict[str, set[str]]) -> str:
        cls, sci, dissem, rel = self._split(mark)
        if RANK[cls] > self.acc:
            return "above accreditation"
        if sci:
            return "SCI"
        if self.public:
            return "" if mark == "U" else "not plain (U) for public"
        covered: set[str] = set()
        for code in rel:
            covered |= groups.get(code, {code})
        fd_ok = "NF" not in dissem and "OC" not in dissem and "RELIDO" not in dissem
        if rel and fd_ok and self.members <= covered:
            return ""
        if mark == "U":
            return ""
        uncaveated = not rel and "NF" not in dissem and not (dissem & self.restrictive)
        if uncaveated and self.uncaveated:
            return ""
        low = text.lower()
        for words, max_rank, unc in self.lanes:
            if unc and uncaveated and RANK[cls] <= max_rank and self._has_word(low, words):
                return ""
        return f"not releasable to every member ({mark})"

    def term_problem(self, text: str, allow_quarantine: bool) -> str:
        low = text.lower()
        for action, auto in self.auto.items():
            if allow_quarantine and action == "quarantine":
                continue
            for end, (substring, w) in auto.iter(low):
                s = end - len(w) + 1
                if substring or ((s == 0 or not low[s - 1].isalnum()) and
                                 (end + 1 == len(low) or not low[end + 1].isalnum())):
                    return f"dirty term ({action})"
        for rx in PII:
            if rx.search(text):
                return "PII"
        return ""

    def check(self, output: bytes, groups: dict[str, set[str]],
              allow_quarantine: bool = False) -> list[str]:
        s = output.decode("utf-8")
        portions: list[tuple[str, str]] = []
        if s.lstrip().startswith("{"):
            doc = json.loads(s)
            for sec in [doc, *doc.get("tearlines", [])]:
                for p in sec["portions"]:
                    portions.append((_ism_mark(p), p["text"]))
        else:
            for line in s.splitlines():
                m = re.match(r"^\(([^)]*)\) ?(.*)$", line)
                if m:
                    portions.append((m.group(1), m.group(2)))
        problems = []
        for mark, text in portions:
            why = self.portion_problem(mark, text, groups) or self.term_problem(
                text, allow_quarantine)
            if why:
                problems.append(f"{why}: ({mark}) {text}")
        if not portions:
            problems.append("no portions in the output")
        return problems


def _ism_mark(p: dict[str, Any]) -> str:
    parts = [p["classification"]]
    if p.get("SCIcontrols"):
        parts.append("/".join(p["SCIcontrols"]))
    dissem = []
    for d in p.get("disseminationControls", []):
        dissem.append("REL TO " + ", ".join(p["releasableTo"]) if d == "REL" else d)
    if dissem:
        parts.append("/".join(dissem))
    return "//".join(parts)


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(NAMES))
    sections = []
    for k in range(draw(st.integers(1, 3)) if draw(st.booleans()) else 1):
        items = []
        for _ in range(draw(st.integers(1, 4 if k else 6))):
            mark, ism = draw(st.sampled_from(POOL))
            words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))
            items.append((mark, ism, " ".join(words) + "."))
        sections.append(items)
    as_json = draw(st.integers(0, 3)) == 0
    wrong_banner = draw(st.integers(0, 5)) == 0

    def banner_of(items: list[tuple[str, dict[str, Any], str]]) -> str:
        ms = [parse(m, "portion").marking for m, _, _ in items]
        return render_banner(rollup(ms))  # type: ignore[arg-type]

    all_items = [it for sec in sections for it in sec]
    doc_banner = "SECRET//REL TO USA, FVEY" if wrong_banner else banner_of(all_items)
    if as_json:
        def ism_banner(b: str) -> dict[str, Any]:
            m = parse(b, "banner").marking
            from guard.messages import marking_to_ism
            return marking_to_ism(m)  # type: ignore[arg-type]

        doc: dict[str, Any] = {
            "banner": ism_banner(doc_banner),
            "portions": [dict(ism, text=t) for _, ism, t in sections[0]]}
        if len(sections) > 1:
            doc["tearlines"] = [{"banner": ism_banner(banner_of(sec)),
                                 "portions": [dict(ism, text=t) for _, ism, t in sec]}
                                for sec in sections[1:]]
        return name, json.dumps(doc).encode()
    lines = [doc_banner]
    for k, sec in enumerate(sections):
        if k:
            lines += ["-" * 8 + " TEARLINE " + "-" * 8, banner_of(sec)]
        lines += [f"({m}) {t}" for m, _, t in sec]
    lines.append(doc_banner)
    return name, ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def world(vectors: Path) -> tuple[dict, dict, dict]:
    groups = _oracle_members(vectors)
    pipes = {n: Pipeline(load_policy(POLICIES / f"{n}.yaml")) for n in NAMES}
    oracles = {n: Oracle(n, groups) for n in NAMES}
    return groups, pipes, oracles


def test_oracle_sees_what_it_must(world: tuple[dict, dict, dict]) -> None:
    """The oracle itself can fail: it flags known spills."""
    groups, _, oracles = world
    o = oracles["us-secret-to-fvey"]
    assert o.check(b"S\n(S//REL TO USA, GBR) x.\nS\n", groups)
    assert o.check(b"S\n(S//NF) x.\nS\n", groups)
    assert o.check(b"S\n(S//REL TO USA, FVEY) NIGHTJAR.\nS\n", groups)
    assert o.check(b"S\n(S//REL TO USA, FVEY) ssn 123-45-6789.\nS\n", groups)
    assert not o.check(b"S\n(S//REL TO USA, FVEY) convoy.\nS\n", groups)
    assert oracles["us-secret-to-public"].check(b"U\n(U//FOUO) x.\nU\n", groups)
    assert oracles["us-secret-to-nato"].check(b"S\n(S//REL TO USA, FVEY) x.\nS\n", groups)
    assert not oracles["us-secret-to-nato"].check(b"C\n(C) drought.\nC\n", groups)


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(messages())
def test_spillage_invariant(world: tuple[dict, dict, dict], case: tuple[str, bytes]) -> None:
    groups, pipes, oracles = world
    name, data = case
    d = pipes[name].decide(data)
    if d.verdict in ("release", "redact"):
        assert d.output is not None
        assert oracles[name].check(d.output, groups) == [], (d.verdict, d.findings)
    elif d.verdict == "quarantine":
        assert d.output is None and d.candidate is not None
        assert oracles[name].check(d.candidate, groups, allow_quarantine=True) == []
    else:
        assert d.output is None and d.findings
    if d.verdict != "release":
        assert d.findings
