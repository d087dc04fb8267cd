"""Table-driven decisions: every shipped policy, every rule id of the decision engine.

Each row is (policy, message, expected verdict, rule ids that must be among the findings,
substrings the output must / must not contain). A final test checks that the rows cover
every rule id in ``guard.decide.RULES`` (the few that only a fault can produce are
covered in test_decide_faults.py and listed there).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from guard.decide import RULES, Pipeline
from guard.policy import load_policy

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
_PIPES: dict[str, Pipeline] = {}


def pipe(name: str) -> Pipeline:
    if name not in _PIPES:
        _PIPES[name] = Pipeline(load_policy(POLICIES / f"us-secret-to-{name}.yaml"))
    return _PIPES[name]


def rep(banner: str, *lines: str, bottom: str | None = None) -> bytes:
    """A plain-text report: banner, lines, banner (or ``bottom``)."""
    return ("\n".join([banner, *lines, bottom if bottom is not None else banner]) + "\n").encode()


TEAR = "-" * 12 + " TEARLINE " + "-" * 12
FV = "SECRET//REL TO USA, FVEY"
GB = "SECRET//REL TO USA, GBR"
BRIEF = rep(GB, "(S//REL TO USA, GBR) Naval activity increased near the strait on 12 May.",
            "(S//NF) The reporting comes from a sensitive technical source.",
            "(U) Weather in the area was clear.", TEAR, FV,
            "(S//REL TO USA, FVEY) Naval activity increased near the strait on 12 May.")
B64 = "QUJD" * 30

# (id, policy, message, verdict, rules, output must contain, output must not contain)
CASES = [
    ("plain-release-fvey", "fvey", rep(FV, "(S//REL TO USA, FVEY) Convoy seen.",
                                       "(U) Clear weather."), "release", [], ["Convoy"], []),
    ("plain-release-gbr", "gbr", rep(GB, "(S//REL TO USA, GBR) Convoy seen."), "release", [],
     ["Convoy"], []),
    ("gbr-covered-by-fvey", "gbr", rep(FV, "(S//REL TO USA, FVEY) Convoy seen."), "release",
     [], ["Convoy"], []),
    ("crlf-and-blank-lines", "gbr",
     f"\r\n{GB}\r\n\r\n(S//REL TO USA, GBR) Convoy seen.\r\n{GB}\r\n".encode(), "release",
     [], ["Convoy"], []),
    ("banner-whitespace", "gbr", f"  {GB}\n(S//REL TO USA, GBR) Convoy.\n{GB} \t\n".encode(),
     "release", [], ["Convoy"], []),
    ("jpn-release", "jpn", rep("SECRET//REL TO USA, JPN", "(S//REL TO USA, JPN) Radar."),
     "release", [], ["Radar"], []),
    ("jpn-not-fvey", "jpn", rep(FV, "(S//REL TO USA, FVEY) Radar.", "(U) Rain."), "redact",
     ["not-releasable"], ["Rain"], ["Radar"]),
    ("nato-release", "nato", rep("SECRET//REL TO USA, NATO", "(S//REL TO USA, NATO) Fleet."),
     "release", [], ["Fleet"], []),
    ("nato-least-trusted", "nato",
     rep("SECRET//REL TO USA, FVEY", "(S//REL TO USA, FVEY) Fleet.", "(U) Rain."),
     "redact", ["not-releasable"], ["Rain", "UNCLASSIFIED"], ["Fleet"]),
    ("public-plain-u", "public", rep("UNCLASSIFIED", "(U) Public statement."), "release", [],
     ["Public statement"], []),
    ("public-fouo-withheld", "public",
     rep("UNCLASSIFIED//FOUO", "(U//FOUO) Internal note.", "(U) Public statement."), "redact",
     ["not-releasable"], ["Public statement", "UNCLASSIFIED\n"], ["Internal note", "FOUO"]),
    ("public-classified", "public", rep(FV, "(S//REL TO USA, FVEY) Fleet.", "(U) Rain."),
     "redact", ["classification-exceeds"], ["Rain"], ["Fleet"]),
    ("brief-tearline-fvey", "fvey", BRIEF, "redact",
     ["tearline-release", "not-releasable", "banner-rollup"],
     ["SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) Naval"], ["sensitive", "Weather"]),
    ("brief-tearline-yesforn", "fvey-yesforn", BRIEF, "redact", ["tearline-release"],
     ["(S//REL TO USA, FVEY) Naval"], ["sensitive"]),
    ("brief-nato-unclass", "nato", BRIEF, "redact", ["not-releasable"],
     ["(U) Weather", "UNCLASSIFIED"], ["Naval", "sensitive"]),
    ("portion-redact-nf", "gbr",
     rep("SECRET//NOFORN", "(S//REL TO USA, GBR) Convoy.", "(S//NF) Source detail."),
     "redact", ["not-releasable"], ["Convoy", "SECRET//REL TO USA, GBR\n"],
     ["Source detail", "NOFORN"]),
    ("ts-above-accreditation", "gbr",
     rep("TOP SECRET//REL TO USA, GBR", "(TS//REL TO USA, GBR) Plans.",
         "(S//REL TO USA, GBR) Convoy."),
     "redact", ["classification-exceeds"], ["Convoy"], ["Plans"]),
    ("sci-removed", "gbr",
     rep("SECRET//SI//REL TO USA, GBR", "(S//SI//REL TO USA, GBR) Intercept.",
         "(S//REL TO USA, GBR) Convoy."),
     "redact", ["sci-not-allowed"], ["Convoy"], ["Intercept", "//SI"]),
    ("sap-removed", "fvey",
     rep("SECRET//SAR-BP//REL TO USA, FVEY", "(S//SAR-BP//REL TO USA, FVEY) Program detail.",
         "(S//REL TO USA, FVEY) Convoy."),
     "redact", ["sap-not-allowed"], ["Convoy"], ["Program detail"]),
    ("nothing-releasable", "fvey", rep("SECRET//NOFORN", "(S//NF) Everything."), "block",
     ["nothing-releasable", "not-releasable"], [], []),
    ("uncaveated-withheld", "fvey", rep("SECRET", "(S) Convoy seen."), "block",
     ["nothing-releasable"], [], []),
    ("yesforn-uncaveated", "fvey-yesforn", rep("SECRET", "(S) Convoy seen."), "release", [],
     ["Convoy"], []),
    ("yesforn-restrictive", "fvey-yesforn",
     rep("SECRET//ORCON/NOFORN", "(S//OC/NF) Source.", "(S) Convoy."), "redact",
     ["not-releasable"], ["Convoy"], ["Source"]),
    ("yesforn-explicit-rel-respected", "fvey-yesforn",
     rep(GB, "(S//REL TO USA, GBR) Bilateral only."), "block", ["not-releasable"], [], []),
    ("yesforn-codeword-blocks", "fvey-yesforn", rep("SECRET", "(S) Operation NIGHTJAR began."),
     "block", ["dirty-term"], [], []),
    *[(f"codeword-evasion-{k}", "fvey-yesforn", rep("SECRET", f"(S) Operation {w} began."),
       "block", ["dirty-term"], [], [])
      for k, w in enumerate(["N\u200bIGHTJAR", "NIGHTJ\u0410R", "n.i.g.h.t.j.a.r",
                             "NIGHT-JAR", "\uff2e\uff29\uff27\uff28\uff34\uff2a\uff21\uff32"])],
    ("codeword-in-withheld-portion-blocks", "gbr",
     rep("SECRET//NOFORN", "(S//REL TO USA, GBR) Convoy.", "(S//NF) Part of COPPER KETTLE."),
     "block", ["dirty-term"], [], []),
    ("sensitive-quarantine", "fvey",
     rep(FV, "(S//REL TO USA, FVEY) Seen by a clandestine source."), "quarantine",
     ["dirty-term"], [], []),
    ("sensitive-in-withheld-ignored", "gbr",
     rep("SECRET//NOFORN", "(S//REL TO USA, GBR) Convoy.", "(S//NF) A clandestine source."),
     "redact", ["not-releasable"], ["Convoy"], ["clandestine"]),
    ("classification-words-quarantine", "fvey",
     rep(FV, "(S//REL TO USA, FVEY) This part is noforn really."), "quarantine",
     ["dirty-term"], [], []),
    ("clean-word-overrides", "fvey",
     rep(FV, "(S//REL TO USA, FVEY) The Secretary of State visited."), "release", [],
     ["Secretary"], []),
    ("us-person-quarantine", "gbr",
     rep(GB, "(S//REL TO USA, GBR) The owner is a U.S. person."), "quarantine", ["us-person"],
     [], []),
    ("pii-ssn-redacted", "fvey", rep(FV, "(S//REL TO USA, FVEY) SSN 123-45-6789 on file."),
     "redact", ["pii"], ["[REDACTED]"], ["123-45-6789"]),
    ("pii-passport-redacted", "public", rep("UNCLASSIFIED", "(U) Passport C12345678 seen."),
     "redact", ["pii"], ["[REDACTED]"], ["C12345678"]),
    ("encoded-blocks", "fvey", rep(FV, f"(S//REL TO USA, FVEY) Blob {B64} end."), "block",
     ["encoded-content"], [], []),
    ("banner-rollup-recompute", "fvey",
     rep("SECRET//REL TO USA, FVEY", "(U) Rain only."), "redact", ["banner-rollup"],
     ["UNCLASSIFIED\n(U) Rain only.\nUNCLASSIFIED\n"], ["SECRET"]),
    ("lane-climate-nato", "nato", rep("CONFIDENTIAL", "(C) Drought cut the harvest by half."),
     "release", [], ["Drought"], []),
    ("lane-climate-too-high", "nato", rep("SECRET", "(S) Drought cut the harvest."), "block",
     ["nothing-releasable"], [], []),
    ("lane-needs-indicator", "nato", rep("CONFIDENTIAL", "(C) The harvest was cut."), "block",
     ["not-releasable"], [], []),
    ("lane-osint-jpn", "jpn", rep("UNCLASSIFIED", "(U) OSINT summary of port traffic."),
     "release", [], ["OSINT"], []),
    ("lane-no-nf-override", "nato", rep("CONFIDENTIAL//NOFORN", "(C//NF) Drought figures."),
     "block", ["not-releasable"], [], []),
    # not well formed
    ("invalid-utf8", "fvey", FV.encode() + b"\n(S//REL TO USA, FVEY) caf\xc3(\n" + FV.encode(),
     "block", ["message-encoding"], [], []),
    ("nul-byte", "fvey", rep(FV, "(S//REL TO USA, FVEY) a\x00b"), "block",
     ["message-encoding"], [], []),
    ("bare-carriage-return", "fvey", rep(FV, "(U) benign\r(S//NF) hidden"), "block",
     ["message-encoding"], [], []),
    ("unicode-line-separator", "fvey", rep(FV, "(U) benign\u2028(S//NF) looks marked"),
     "block", ["message-encoding"], [], []),
    ("bidi-override", "fvey", rep(FV, "(S//REL TO USA, FVEY) a\u202eb"), "block",
     ["message-encoding"], [], []),
    ("xml", "fvey", b"<report><p>hello</p></report>", "block", ["message-format"], [], []),
    ("empty", "fvey", b"", "block", ["message-format"], [], []),
    ("banner-missing", "fvey", b"(S//REL TO USA, FVEY) x\n(U) y\n(U) z\n", "block",
     ["banner-missing"], [], []),
    ("too-short", "fvey", f"{FV}\n{FV}\n".encode(), "block", ["banner-missing"], [], []),
    ("banner-invalid", "fvey", rep("SECRIT//REL TO USA, FVEY", "(U) x"), "block",
     ["banner-invalid"], [], []),
    ("banner-lookalike", "fvey", rep("SЕCRET//REL TO USA, FVEY", "(U) x"), "block",
     ["banner-invalid"], [], []),
    ("banner-mismatch", "fvey", rep(FV, "(S//REL TO USA, FVEY) x", bottom="SECRET"), "block",
     ["banner-mismatch"], [], []),
    ("portion-unmarked", "fvey", rep(FV, "(S//REL TO USA, FVEY) x", "wrapped line"), "block",
     ["portion-unmarked"], [], []),
    ("portion-invalid", "fvey", rep(FV, "(S//REL TO USA, FVEY) x", "(Q//ZZ) y"), "block",
     ["portion-invalid"], [], []),
    ("portion-unclosed", "fvey", rep(FV, "(S//REL TO USA, FVEY x"), "block",
     ["portion-invalid"], [], []),
    ("tearline-no-banner", "fvey", rep(FV, "(S//REL TO USA, FVEY) x", TEAR,
                                       "(S//REL TO USA, FVEY) y"), "block",
     ["tearline-format"], [], []),
    ("tearline-empty", "fvey", rep(FV, "(S//REL TO USA, FVEY) x", TEAR, FV), "block",
     ["tearline-format"], [], []),
    ("oversize", "fvey", rep(FV, "(S//REL TO USA, FVEY) " + "word " * 220_000), "block",
     ["message-size"], [], []),
    ("json-bad", "fvey", b'{"banner": ', "block", ["message-format"], [], []),
    ("json-unknown-key", "fvey", json.dumps({
        "banner": {"classification": "U"}, "portions": [{"text": "x", "classification": "U"}],
        "note": "hidden"}).encode(), "block", ["message-format"], [], []),
    ("json-nul-escape", "fvey", json.dumps({
        "banner": {"classification": "U"},
        "portions": [{"text": "a\u0000b", "classification": "U"}]}).encode(), "block",
     ["message-encoding"], [], []),
    ("json-release", "fvey", json.dumps({
        "banner": {"classification": "S", "releasableTo": ["USA", "FVEY"],
                   "disseminationControls": ["REL"]},
        "portions": [{"text": "Convoy seen.", "classification": "S",
                      "releasableTo": ["USA", "FVEY"], "disseminationControls": ["REL"]}]}
    ).encode(), "release", [], ["Convoy seen."], []),
    ("json-redact", "gbr", json.dumps({
        "banner": {"classification": "S", "disseminationControls": ["NF"]},
        "portions": [
            {"text": "Convoy\nseen, SSN 123-45-6789.", "classification": "S",
             "releasableTo": ["USA", "GBR"], "disseminationControls": ["REL"]},
            {"text": "Source.", "classification": "S", "disseminationControls": ["NF"]}]}
    ).encode(), "redact", ["not-releasable", "pii"], ['"releasableTo":["USA","GBR"]',
                                                      "[REDACTED]", "Convoy\\nseen"],
     ["Source", "123-45-6789", '"NF"']),
    ("json-portion-invalid", "fvey", json.dumps({
        "banner": {"classification": "S"},
        "portions": [{"text": "x", "classification": "Q"}]}).encode(),
     "block", ["portion-invalid"], [], []),
    ("json-rel-without-list", "fvey", json.dumps({
        "banner": {"classification": "U"},
        "portions": [{"text": "x", "classification": "S", "disseminationControls": ["REL"]}]}
    ).encode(), "block", ["message-format"], [], []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_decision_table(case: tuple) -> None:
    _id, pol, data, verdict, rules, want, unwanted = case
    d = pipe(pol).decide(data)
    got_rules = [f.rule for f in d.findings]
    assert d.verdict == verdict, (d.verdict, d.findings)
    for r in rules:
        assert r in got_rules, (r, d.findings)
    assert d.policy_sha256 == pipe(pol).policy.sha256
    if verdict != "release":
        assert d.findings, "every non-release decision must carry a finding"
    for f in d.findings:
        assert f.message and 0 <= f.start <= f.end
    if verdict in ("release", "redact"):
        assert d.output is not None
        text = d.output.decode()
        for w in want:
            assert w in text, (w, text)
        for w in unwanted:
            assert w not in text, (w, text)
    else:
        assert d.output is None
    if verdict == "release":
        assert d.output == data  # a plain release leaves the bytes untouched


def test_every_shipped_policy_has_rows() -> None:
    shipped = {p.name[len("us-secret-to-"):-len(".yaml")] for p in POLICIES.glob("*.yaml")}
    used = {c[1] for c in CASES}
    assert shipped <= used, shipped - used


# Rules only a faulty filter, a scanner flag or a policy variant can produce: exercised in
# test_decide_faults.py (internal-error, recheck-failed, scan-error) and below.
FAULT_ONLY = {"internal-error", "recheck-failed", "scan-error"}


def test_rows_cover_every_rule() -> None:
    covered = {r for c in CASES for r in c[4]} | {"partial-release-disallowed",
                                                  "message-limit"}
    assert set(RULES) - FAULT_ONLY <= covered, set(RULES) - FAULT_ONLY - covered


@pytest.fixture()
def policy_dir(tmp_path: Path) -> Path:
    shutil.copytree(POLICIES / "terms", tmp_path / "terms")
    return tmp_path


def _variant(policy_dir: Path, name: str, edits: dict[str, str]) -> Pipeline:
    text = (POLICIES / "us-secret-to-gbr.yaml").read_text()
    text = text.replace("flow: us-secret-to-gbr", f"flow: {name}")
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    path = policy_dir / f"{name}.yaml"
    path.write_text(text)
    return Pipeline(load_policy(path))


def test_partial_release_disallowed(policy_dir: Path) -> None:
    p = _variant(policy_dir, "whole", {"  portions: true ": "  portions: false "})
    d = p.decide(rep("SECRET//NOFORN", "(S//REL TO USA, GBR) Convoy.", "(S//NF) Source."))
    assert d.verdict == "block"
    assert {"partial-release-disallowed", "not-releasable"} <= {f.rule for f in d.findings}


def test_tearline_only_policy(policy_dir: Path) -> None:
    p = _variant(policy_dir, "tearonly", {"  portions: true ": "  portions: false "})
    d = p.decide(BRIEF)
    assert d.verdict == "redact" and d.output is not None
    assert b"Weather" not in d.output and b"(S//REL TO USA, FVEY) Naval" in d.output


def test_message_limit(policy_dir: Path) -> None:
    p = _variant(policy_dir, "few", {"max_portions: 10000": "max_portions: 3"})
    d = p.decide(rep(GB, *["(S//REL TO USA, GBR) x"] * 5))
    assert d.verdict == "block" and "message-limit" in {f.rule for f in d.findings}


@pytest.mark.parametrize(("action", "verdict"), [("block", "block"),
                                                 ("quarantine", "quarantine")])
def test_banner_mismatch_actions(policy_dir: Path, action: str, verdict: str) -> None:
    p = _variant(policy_dir, f"bm-{action}",
                 {"banner_mismatch: recompute": f"banner_mismatch: {action}"})
    d = p.decide(rep("SECRET//REL TO USA, GBR", "(U) Rain only."))
    assert d.verdict == verdict
    assert {f.rule for f in d.findings} == {"banner-rollup"}
    if verdict == "quarantine":
        assert d.candidate == rep("UNCLASSIFIED", "(U) Rain only.")


def test_encoded_redact_action(policy_dir: Path) -> None:
    p = _variant(policy_dir, "encredact", {"  action: block                  # content":
                                           "  action: redact                 # content"})
    d = p.decide(rep(GB, f"(S//REL TO USA, GBR) Blob {B64} end."))
    assert d.verdict == "redact" and d.output is not None
    assert B64.encode() not in d.output and b"[REDACTED]" in d.output


def test_batch_matches_single() -> None:
    p = pipe("fvey")
    msgs = [c[2] for c in CASES if c[1] == "fvey"]
    batch = p.decide_batch(msgs)
    for m, b in zip(msgs, batch, strict=True):
        s = p.decide(m)
        assert (s.verdict, s.output, [f.rule for f in s.findings]) == \
               (b.verdict, b.output, [f.rule for f in b.findings])


def test_decision_to_dict_and_findings_never_quote_terms() -> None:
    d = pipe("fvey-yesforn").decide(rep("SECRET", "(S) Operation NIGHTJAR began."))
    obj = d.to_dict()
    assert set(obj) >= {"verdict", "findings", "output", "banner", "policy_sha256"}
    assert all(set(f) == {"rule", "message", "start", "end"} for f in obj["findings"])
    assert "NIGHTJAR" not in json.dumps(obj["findings"]).upper()
    data = rep("SECRET", "(S) Operation NIGHTJAR began.")
    f = d.findings[0]
    assert data[f.start:f.end].upper() == b"NIGHTJAR"


def test_policy_replace_keeps_sha() -> None:
    pol = load_policy(POLICIES / "us-secret-to-gbr.yaml")
    assert dataclasses.replace(pol, time_budget_ms=5).sha256 == pol.sha256


def test_allowed_sci_variant(policy_dir: Path) -> None:
    msg = rep("TOP SECRET//SI//REL TO USA, GBR", "(TS//SI//REL TO USA, GBR) Intercept.",
              "(S//TK//REL TO USA, GBR) Imagery.")
    ts = {"accreditation: SECRET ": "accreditation: TOP SECRET "}
    strict = _variant(policy_dir, "strict", ts)
    d = strict.decide(msg)
    assert d.verdict == "block" and "sci-not-allowed" in {f.rule for f in d.findings}
    si = _variant(policy_dir, "si-ok", {**ts, "  sci: []  ": "  sci: [SI]  "})
    d = si.decide(msg)
    assert d.verdict == "redact" and d.output is not None
    assert b"Intercept" in d.output and b"Imagery" not in d.output
    assert d.banner == "TOP SECRET//SI//REL TO USA, GBR"


def test_batch_from_two_threads() -> None:
    import threading

    p = pipe("gbr")
    msgs = [c[2] for c in CASES if c[1] == "gbr"] * 20
    want = [d.verdict for d in p.decide_batch(msgs)]
    got: list[list[str]] = []

    def work() -> None:
        got.append([d.verdict for d in p.decide_batch(msgs)])

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [want, want]
