"""Policy loading: shipped policies validate; every kind of bad policy names file:line."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import pytest

from guard.cli import policy as policy_cli
from guard.policy import PolicyError, load_policy

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
SHIPPED = ["us-secret-to-gbr", "us-secret-to-fvey", "us-secret-to-nato", "us-secret-to-jpn",
           "us-secret-to-public", "us-secret-to-fvey-yesforn"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policy_loads(name: str) -> None:
    path = POLICIES / f"{name}.yaml"
    pol = load_policy(path)
    assert pol.flow == name
    assert pol.yaml_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # the bundle hash covers the YAML and every referenced file, recomputed independently
    refs = sorted({s.path for s in pol.term_lists} | {ln.indicators for ln in pol.lanes})
    manifest = "guard-policy-bundle/1\n" + f"{pol.yaml_sha256} {path.name}\n" + "".join(
        f"{hashlib.sha256(r.read_bytes()).hexdigest()} {r.relative_to(POLICIES).as_posix()}\n"
        for r in refs)
    assert pol.sha256 == hashlib.sha256(manifest.encode()).hexdigest()
    assert pol.sha256 != pol.yaml_sha256
    assert pol.allowed_sci == frozenset() and pol.allowed_sap == frozenset()
    assert pol.reviewers_required >= 2
    assert any(s.kind == "pattern" and s.rule == "pii" for s in pol.term_lists)


def test_destinations() -> None:
    fvey = load_policy(POLICIES / "us-secret-to-fvey.yaml")
    assert fvey.members == {"USA", "GBR", "CAN", "AUS", "NZL"}
    nato = load_policy(POLICIES / "us-secret-to-nato.yaml")
    assert len(nato.members) == 32 and {"FIN", "SWE", "TUR"} <= nato.members
    pub = load_policy(POLICIES / "us-secret-to-public.yaml")
    assert pub.public and pub.accreditation_rank == 0 and pub.destination == ("PUBLIC",)
    yes = load_policy(POLICIES / "us-secret-to-fvey-yesforn.yaml")
    assert yes.uncaveated_release and {"NF", "OC", "RELIDO"} <= yes.restrictive_controls


@pytest.fixture()
def pdir(tmp_path: Path) -> Path:
    shutil.copytree(POLICIES / "terms", tmp_path / "terms")
    return tmp_path


BASE = (POLICIES / "us-secret-to-gbr.yaml").read_text()


def _write(pdir: Path, text: str, name: str = "p") -> Path:
    text = text.replace("flow: us-secret-to-gbr", f"flow: {name}")
    path = pdir / f"{name}.yaml"
    path.write_text(text)
    return path


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


BAD = [
    ("unknown key", ("  tearlines: true", "  tearlines: true\n  teerlines: false"),
     "unknown key 'teerlines'", "teerlines"),
    ("wrong type", ("  portions: true ", "  portions: 'yes' "), "must be true or false",
     "portions:"),
    ("huge size", ("max_message_bytes: 1048576", "max_message_bytes: 99999999999"),
     "must be between", "max_message_bytes"),
    ("negative budget", ("time_budget_ms: 2000", "time_budget_ms: -5"), "must be between",
     "time_budget_ms"),
    ("escaping path", ("file: terms/codewords.txt", "file: ../../etc/passwd"),
     "must be a relative path inside", "../../etc/passwd"),
    ("absolute path", ("file: terms/codewords.txt", "file: /etc/passwd"),
     "must be a relative path inside", "/etc/passwd"),
    ("missing file", ("file: terms/codewords.txt", "file: terms/nope.txt"), "does not exist",
     "terms/nope.txt"),
    ("bad accreditation", ("accreditation: SECRET ", "accreditation: SEKRIT "),
     "must be one of", "accreditation:"),
    ("unknown country", ("release_to: [GBR]", "release_to: [QQQ]"), "not a known country",
     "release_to: [QQQ]"),
    ("bad action", ("action: block, scope: message}", "action: shred, scope: message}"),
     "must be one of", "action: shred"),
    ("duplicate key", ("  tearlines: true", "  tearlines: true\n  tearlines: false"),
     "duplicate key", "tearlines: false"),
    ("reviewers below two", ("reviewers_required: 2", "reviewers_required: 1"),
     "must be between", "reviewers_required"),
    ("alias", ("  sci: []", "  sci: &x []\n  sap: *x"), "anchors and aliases", "sci: &x"),
    ("python tag", ("  sci: []", "  sci: !!python/object:os.system []"), "not allowed",
     "python/object"),
    ("clean with action", ("kind: clean}", "kind: clean, action: block}"), "makes no sense",
     "kind: clean"),
    ("auto release without lane", ("on_deadline: deny ", "on_deadline: release-lanes "),
     "release-lanes needs a lane", "on_deadline"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_policy_names_file_and_line(pdir: Path, case: tuple) -> None:
    _name, (old, new), message, line_needle = case
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = _write(pdir, text)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    errors = exc.value.errors
    want_line = _line_of(text, line_needle)
    assert any(e.startswith(f"{path}:") and message in e for e in errors), errors
    assert any(e.startswith(f"{path}:{want_line}:") for e in errors), (want_line, errors)


def test_missing_section_and_flow_mismatch(pdir: Path) -> None:
    text = BASE.replace("review:", "reviewx:")
    path = pdir / "other-name.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    msg = str(exc.value)
    assert "missing required key 'review'" in msg
    assert "must match the file name" in msg


@pytest.mark.parametrize("raw", [b"\xff\xfe garbage", b"", b"[1, 2", b"- a\n- b\n",
                                 b"a: [" * 5000, b"a: " + b"[" * 20000 + b"]" * 20000])
def test_garbage_policy_is_an_error_not_a_crash(pdir: Path, raw: bytes) -> None:
    path = pdir / "g.yaml"
    path.write_bytes(raw)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert all(e.startswith(f"{path}:") for e in exc.value.errors)


def test_symlink_escape_refused(pdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "words.txt"
    outside.write_text("SECRETWORD\n")
    (pdir / "terms" / "link.txt").symlink_to(outside)
    path = _write(pdir, BASE.replace("file: terms/codewords.txt", "file: terms/link.txt"))
    with pytest.raises(PolicyError, match="escapes"):
        load_policy(path)


def test_policy_check_cli(pdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    policy_cli.register(parser.add_subparsers())
    good = str(POLICIES / "us-secret-to-gbr.yaml")
    bad = _write(pdir, BASE.replace("  tearlines: true", "  tearlines: 3"))
    args = parser.parse_args(["policy", "check", good, str(bad)])
    assert args.func(args) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"OK {good} flow=us-secret-to-gbr sha256=")
    assert f"{bad}:{_line_of(bad.read_text(), 'tearlines: 3')}: release.tearlines" in err
    args = parser.parse_args(["policy", "check", good])
    assert args.func(args) == 0


def test_bundle_hash_pins_term_files(pdir: Path) -> None:
    """Changing any referenced term, pattern or indicator file changes the policy hash,
    with the YAML unchanged; the same bytes give the same hash wherever they live."""
    path = _write(pdir, BASE)
    first = load_policy(path)
    assert load_policy(path).sha256 == first.sha256
    for rel in sorted({s.path for s in first.term_lists}):
        before = rel.read_bytes()
        rel.write_bytes(before + b"\nanother term\n" if rel.suffix == ".txt"
                        else before + b"\nextra = \\d{9}\n")
        changed = load_policy(path)
        assert changed.yaml_sha256 == first.yaml_sha256
        assert changed.sha256 != first.sha256, rel
        rel.write_bytes(before)
        assert load_policy(path).sha256 == first.sha256


def test_pipeline_refuses_a_term_file_changed_after_load(pdir: Path) -> None:
    from guard.decide import Pipeline

    path = _write(pdir, BASE)
    pol = load_policy(path)
    words = pdir / "terms" / "codewords.txt"
    words.write_bytes(words.read_bytes() + b"\nnew code word\n")
    with pytest.raises(PolicyError, match="changed since the policy was loaded"):
        Pipeline(pol)
    fresh = load_policy(path)
    assert fresh.sha256 != pol.sha256
    msg = b"SECRET//REL TO USA, GBR\n(S//REL TO USA, GBR) Convoy.\nSECRET//REL TO USA, GBR\n"
    assert Pipeline(fresh).decide(msg).policy_sha256 == fresh.sha256  # records the bundle


def test_lists_of_remembered_parses_equal_fresh_parses(pdir: Path) -> None:
    """build_lists takes the terms of a file whose verified bytes were parsed before
    (by the policy load): the very lists a fresh parse gives; a changed file is parsed
    again (its new bytes, under a fresh policy) and never given the old terms."""
    from guard import policy as policy_mod
    from guard.recheck import build_lists
    from guard.terms import load_patterns, load_terms

    path = _write(pdir, BASE)
    pol = load_policy(path)

    def fresh(p: policy_mod.Policy) -> list[tuple[str, str, tuple[str, ...]]]:
        specs = [(s.path, s.name, s.kind) for s in p.term_lists]
        specs += [(ln.indicators, ln.name, "dirty") for ln in p.lanes]
        return [(n, k, tuple((load_patterns(f, n) if k == "pattern" else
                              load_terms(f, n, k)).terms)) for f, n, k in specs]

    def got(p: policy_mod.Policy) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(t.name, t.kind, tuple(t.terms)) for t in build_lists(p)]

    old = fresh(pol)
    assert got(pol) == old == got(pol)
    words = pdir / "terms" / "codewords.txt"
    words.write_bytes(words.read_bytes() + b"\nnew code word\n")
    with pytest.raises(PolicyError, match="changed since the policy was loaded"):
        build_lists(pol)
    new = load_policy(path)
    assert got(new) == fresh(new) != old
    assert any("new code word" in t for _n, _k, ts in got(new) for t in ts)
    policy_mod._PARSED.clear()  # parsed afresh: the same lists
    assert got(new) == fresh(new)
