"""Flow policies: one readable YAML file per flow, validated strictly on load.

A policy says what may cross from a source domain to one destination: its accreditation,
the countries or groups every member of which must be covered, the SCI/SAP it may receive,
the term lists with an action each, whether portions and tearlines may be released on
their own, topic lanes, limits, and the review deadline. ``load_policy`` rejects unknown
keys, wrong types, hostile values and paths escaping the policy directory, naming
``file:line`` for every problem (positions come from ``yaml.compose`` node marks, so the
file is never executed or constructed by YAML itself).

``Policy.sha256`` is a BUNDLE hash, recorded in every decision: it pins the YAML file and
every term, pattern and lane-indicator file it references, so that a decision record's
policy hash proves which lists were used. It is the SHA-256 of a canonical manifest
(``bundle_manifest``)::

    guard-policy-bundle/1\n
    <sha256 of the YAML bytes> <YAML file name>\n
    <sha256 of a referenced file> <its path relative to the policy directory>\n   (sorted
                                                                     by path, once each)

The referenced files' digests are kept in ``Policy.files``; ``verified_bytes`` re-reads
a file and refuses it when it no longer matches, so a pipeline never compiles lists other
than those the hash covers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from guard.markings import Marking
    from guard.terms import TermList

__all__ = [
    "ACTIONS",
    "CLASSIFICATIONS",
    "Lane",
    "Policy",
    "PolicyError",
    "TermListSpec",
    "bundle_manifest",
    "bundle_sha256",
    "load_list",
    "load_policy",
    "verified_bytes",
]

#: Accreditation names and their rank, comparable with ``markings.classification_rank``.
CLASSIFICATIONS: dict[str, int] = {
    "UNCLASSIFIED": 0,
    "RESTRICTED": 1,
    "CONFIDENTIAL": 2,
    "SECRET": 3,
    "TOP SECRET": 4,
}
#: What a term list hit, an encoded run or a banner mismatch does.
ACTIONS = ("block", "redact", "quarantine")
TERM_KINDS = ("dirty", "clean", "pattern")
TERM_RULES = ("dirty-term", "pii", "us-person")
TERM_SCOPES = ("message", "released")

MAX_POLICY_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024   # hostile-value ceiling for limits.max_message_bytes
MAX_PORTIONS = 100_000
MAX_BUDGET_MS = 60_000
MAX_DEADLINE_HOURS = 24 * 90
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_CODE = re.compile(r"^[A-Z]{3,4}$")
_CONTROL = re.compile(r"^[A-Z][A-Z0-9-]{0,31}$")


class PolicyError(ValueError):
    """A policy file is invalid; ``errors`` lists ``file:line: message`` strings."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


BUNDLE_VERSION = "guard-policy-bundle/1"


def bundle_manifest(yaml_name: str, yaml_sha256: str,
                    files: tuple[tuple[str, str], ...]) -> bytes:
    """The canonical manifest hashed into ``Policy.sha256``: a version line, the YAML
    first, then each referenced file once, sorted by its relative path (POSIX form)."""
    lines = [BUNDLE_VERSION, f"{yaml_sha256} {yaml_name}"]
    lines += [f"{digest} {rel}" for rel, digest in sorted(set(files))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def verified_bytes(policy: Policy, path: Path) -> bytes:
    """The bytes of a file the policy references, refused (``PolicyError``) unless they
    still have the digest the policy's bundle hash covers."""
    return _verified(policy, path)[0]


def _verified(policy: Policy, path: Path) -> tuple[bytes, str, str]:
    """``verified_bytes`` with the file's resolved path and (verified) digest."""
    base = policy.path.resolve().parent
    full = Path(path).resolve()
    rel = full.relative_to(base).as_posix()
    want = dict(policy.files).get(rel)
    data = full.read_bytes()
    if want is None or hashlib.sha256(data).hexdigest() != want:
        raise PolicyError([f"{policy.path}:1: referenced file {rel} changed since the policy "
                           "was loaded (its bundle hash no longer covers it): load it again"])
    return data, str(full), want


def bundle_sha256(path: str | Path) -> str | None:
    """The bundle hash (``Policy.sha256``) of the policy file at ``path``, or None when
    it does not load: what a decision record's ``policy_sha256`` is compared with."""
    try:
        return load_policy(path).sha256
    except PolicyError:
        return None


#: Terms parsed from a referenced file, by (resolved path, kind, SHA-256 of the bytes
#: parsed): each parse was bracketed by two reads with that digest, so a file that
#: hashes the same again parses to the same terms. A pipeline builds its lists twice
#: (the first pass and the re-check) right after the policy load parsed them: each build
#: still reads and verifies every file, but parses none again.
_PARSED: dict[tuple[str, str, str], tuple[str, ...]] = {}
_PARSED_MAX = 1024


def _remember(full: str, kind: str, digest: str, terms: Sequence[str]) -> None:
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[(full, kind, digest)] = tuple(terms)


def load_list(policy: Policy, path: Path, name: str, kind: str) -> TermList:
    """Load a referenced term/pattern/indicator file as a ``TermList``, refusing it
    (``PolicyError``) unless its bytes are those the bundle hash covers, before and after
    the load (so the compiled lists are the hashed lists); a file whose verified bytes
    were parsed before gives the terms of that parse (``_PARSED``)."""
    from guard.terms import TermList, load_patterns, load_terms

    _data, full, digest = _verified(policy, path)
    terms = _PARSED.get((full, kind, digest))
    if terms is not None:
        return TermList(name, kind, terms)
    tl = load_patterns(path, name) if kind == "pattern" else load_terms(path, name, kind)
    _verified(policy, path)
    _remember(full, kind, digest, tl.terms)
    return tl


@dataclass(frozen=True, slots=True)
class TermListSpec:
    """One term list the policy uses, with what a hit does."""

    name: str
    path: Path
    kind: str            # dirty | clean | pattern
    rule: str            # finding rule id for hits (dirty-term | pii | us-person); "" for clean
    action: str          # block | redact | quarantine; "" for clean
    scope: str           # message: a hit anywhere counts; released: only in text to be released


@dataclass(frozen=True, slots=True)
class Lane:
    """A low-risk topic lane, detected from content (see policies/README in the YAML)."""

    name: str
    indicators: Path
    max_rank: int
    uncaveated: bool      # uncaveated portions in the lane are releasable to the destination
    auto_release: bool    # quarantined messages wholly in the lane release at the deadline


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated flow policy (immutable)."""

    path: Path
    sha256: str
    flow: str
    description: str
    destination_name: str
    accreditation: str
    accreditation_rank: int
    release_to: tuple[str, ...]
    members: frozenset[str]
    public: bool
    allowed_sci: frozenset[str]
    allowed_sap: frozenset[str]
    portion_release: bool
    tearline_release: bool
    uncaveated_release: bool
    restrictive_controls: frozenset[str]
    banner_mismatch: str
    term_lists: tuple[TermListSpec, ...]
    lanes: tuple[Lane, ...]
    leet: bool
    encoded_min_length: int
    encoded_action: str
    max_message_bytes: int
    max_portions: int
    time_budget_ms: int
    review_deadline_hours: float
    on_deadline: str
    reviewers_required: int
    #: (path relative to the policy directory, SHA-256 of its bytes) of every referenced
    #: file, sorted by path: the part of the bundle hash beyond the YAML itself
    files: tuple[tuple[str, str], ...] = ()
    yaml_sha256: str = ""     # SHA-256 of the YAML file bytes alone

    @property
    def destination(self) -> tuple[str, ...]:
        """The codes every member of which must be covered (``("PUBLIC",)`` for public)."""
        return ("PUBLIC",) if self.public else self.release_to

    def uncaveated(self, m: Marking) -> bool:
        """True when ``m`` carries no foreign-disclosure marking, no code word (SCI/SAP),
        no AEA or FGI, and none of ``restrictive_controls``: what ``release.uncaveated:
        release`` (YESFORN) and the topic lanes may release. Policy semantics, defined once
        and used by the first pass and the re-check alike."""
        ctl = set(m.dissem) | set(m.non_ic)
        return (m.origin == "US" and not (m.rel_to or m.rel_abbrev or m.display_only or m.eyes
                or m.sci or m.sap or m.aea or m.fgi or m.fgi_marked)
                and "NF" not in ctl and not (ctl & self.restrictive_controls))


# --------------------------------------------------------------------------- loading

class _Ctx:
    """Collects errors with file:line positions while walking composed YAML nodes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []

    def err(self, node: yaml.Node | None, msg: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.errors.append(f"{self.path}:{line}: {msg}")


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


def _mapping(ctx: _Ctx, node: yaml.Node | None, what: str,
             allowed: dict[str, bool]) -> dict[str, yaml.Node]:
    """Keys of a mapping node; unknown, duplicate or missing required keys are errors.

    ``None`` (a section that is absent: already reported by its parent) gives ``{}``.
    """
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode) or node.tag != _MAP:
        ctx.err(node, f"{what} must be a mapping")
        return {}
    out: dict[str, yaml.Node] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag != _STR:
            ctx.err(k, f"{what}: keys must be plain strings")
            continue
        if k.value not in allowed:
            ctx.err(k, f"{what}: unknown key {k.value!r} (allowed: {', '.join(sorted(allowed))})")
            continue
        if k.value in out:
            ctx.err(k, f"{what}: duplicate key {k.value!r}")
            continue
        out[k.value] = v
    for key, required in allowed.items():
        if required and key not in out:
            ctx.err(node, f"{what}: missing required key {key!r}")
    return out


def _str(ctx: _Ctx, node: yaml.Node | None, what: str, default: str = "",
         pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = (),
         max_len: int = 4096) -> str:
    if node is None:
        return default
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
        ctx.err(node, f"{what} must be a string")
        return default
    value = str(node.value)
    if len(value) > max_len:
        ctx.err(node, f"{what} is too long ({len(value)} > {max_len} characters)")
        return default
    if choices and value not in choices:
        ctx.err(node, f"{what} must be one of {', '.join(choices)}, not {value!r}")
        return default
    if pattern is not None and not pattern.match(value):
        ctx.err(node, f"{what} {value!r} is not well formed")
        return default
    return value


def _bool(ctx: _Ctx, node: yaml.Node | None, what: str, default: bool) -> bool:
    if node is None:
        return default
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
        ctx.err(node, f"{what} must be true or false")
        return default
    return node.value.lower() in ("true", "yes", "on")


def _num(ctx: _Ctx, node: yaml.Node | None, what: str, default: float, lo: float, hi: float,
         integer: bool = True) -> float:
    if node is None:
        return default
    tags = (_INT,) if integer else (_INT, _FLOAT)
    if not isinstance(node, yaml.ScalarNode) or node.tag not in tags:
        ctx.err(node, f"{what} must be {'an integer' if integer else 'a number'}")
        return default
    try:
        value: float = (int(node.value.replace("_", ""), 0) if node.tag == _INT
                        else float(node.value))
    except ValueError:
        ctx.err(node, f"{what} is not a valid number")
        return default
    if not (lo <= value <= hi) or value != value:
        ctx.err(node, f"{what} must be between {lo:g} and {hi:g}, not {node.value}")
        return default
    return value


def _list(ctx: _Ctx, node: yaml.Node | None, what: str, item: Callable[[yaml.Node, str], Any],
          max_items: int = 1000) -> list[Any]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode) or node.tag != _SEQ:
        ctx.err(node, f"{what} must be a list")
        return []
    if len(node.value) > max_items:
        ctx.err(node, f"{what} has too many entries ({len(node.value)} > {max_items})")
        return []
    return [item(n, f"{what}[{i}]") for i, n in enumerate(node.value)]


MAX_DEPTH = 16
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: fast


def _too_deep(text: str) -> int:
    """Line of the first place flow or block nesting exceeds MAX_DEPTH (0 if none).

    A cheap pre-pass, so that a hostile file cannot make the YAML parser recurse or crawl.
    Every bracket counts, even in quotes or comments: that can only over-count (stricter),
    never hide nesting from the check.
    """
    depth = 0
    for n, line in enumerate(text.splitlines(), 1):
        if len(line) - len(line.lstrip(" -")) > 2 * MAX_DEPTH:
            return n
        for ch in line:
            if ch in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return n
            elif ch in "]}":
                depth = max(0, depth - 1)
    return 0


def _check_safe_yaml(ctx: _Ctx, text: str) -> None:
    """Refuse anchors/aliases (billion laughs) and non-core tags before composing."""
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            ctx.err(_Pos(event), "anchors and aliases are not allowed in policies")
            return
        tag = getattr(event, "tag", None)
        if tag not in (None, "!", _STR, _INT, _FLOAT, _BOOL, _NULL, _MAP, _SEQ):
            ctx.err(_Pos(event), f"tag {tag!r} is not allowed")
            return


class _Pos:
    """Adapter giving a parser event the ``start_mark`` a node has."""

    def __init__(self, event: yaml.Event) -> None:
        self.start_mark = event.start_mark


def _rel_path(ctx: _Ctx, node: yaml.Node | None, what: str, root: Path) -> Path | None:
    """A path relative to the policy directory that must stay inside it and exist."""
    raw = _str(ctx, node, what, max_len=512)
    if not raw:
        if node is not None:
            ctx.err(node, f"{what} must not be empty")
        return None
    p = Path(raw)
    if p.is_absolute() or ".." in p.parts or "\x00" in raw:
        ctx.err(node, f"{what} {raw!r} must be a relative path inside {root}")
        return None
    full = (root / p).resolve()
    if not full.is_relative_to(root.resolve()):
        ctx.err(node, f"{what} {raw!r} escapes {root}")
        return None
    if not full.is_file():
        ctx.err(node, f"{what} {raw!r} does not exist")
        return None
    if full.stat().st_size > 8 * 1024 * 1024:
        ctx.err(node, f"{what} {raw!r} is larger than 8 MiB")
        return None
    return full


def _members(code: str) -> frozenset[str]:
    """Member countries of a destination code, from the markings engine (the authority);
    unknown or non-decomposable codes have none."""
    from guard.markings import group_members

    return frozenset(group_members(code))


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy file; raise ``PolicyError`` listing every problem.

    Term list files are loaded too (through ``guard.terms``), so a policy that loads
    is a policy that can be compiled into a scanner.
    """
    path = Path(path)
    ctx = _Ctx(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}:1: cannot read policy: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError([f"{path}:1: policy file larger than {MAX_POLICY_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}:1: policy is not UTF-8 ({exc.reason} at byte "
                           f"{exc.start})"]) from None
    deep = _too_deep(text)
    if deep:
        raise PolicyError([f"{path}:{deep}: the YAML is nested more than {MAX_DEPTH} levels"])
    try:
        _check_safe_yaml(ctx, text)
        if ctx.errors:
            raise PolicyError(ctx.errors)
        root_node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise PolicyError([f"{path}:{line}: YAML syntax error: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}:1: YAML error: {exc}"]) from None
    except RecursionError:
        raise PolicyError([f"{path}:1: the YAML is nested too deeply"]) from None
    if root_node is None:
        raise PolicyError([f"{path}:1: policy is empty"])
    policy = _build(ctx, root_node, path, raw)
    if ctx.errors or policy is None:
        raise PolicyError(ctx.errors or [f"{path}:1: invalid policy"])
    return policy


def _build(ctx: _Ctx, root: yaml.Node, path: Path, raw: bytes) -> Policy | None:
    base = path.resolve().parent
    top = _mapping(ctx, root, "policy", {
        "flow": True, "description": True, "source": False, "destination": True,
        "release": True, "terms": True, "lanes": False, "scan": False, "encoded": True,
        "limits": True, "review": True,
    })
    flow = _str(ctx, top.get("flow"), "flow", pattern=_NAME)
    if flow and flow != path.stem:
        ctx.err(top.get("flow"), f"flow {flow!r} must match the file name {path.stem!r}")
    description = _str(ctx, top.get("description"), "description")

    if "source" in top:
        src = _mapping(ctx, top["source"], "source", {"network": False, "classification": False})
        _str(ctx, src.get("network"), "source.network")
        _str(ctx, src.get("classification"), "source.classification",
             choices=tuple(CLASSIFICATIONS))

    dest = _mapping(ctx, top.get("destination"), "destination", {
        "name": True, "accreditation": True, "release_to": False, "public": False,
        "sci": False, "sap": False,
    })
    dest_name = _str(ctx, dest.get("name"), "destination.name")
    accreditation = _str(ctx, dest.get("accreditation"), "destination.accreditation",
                         default="UNCLASSIFIED", choices=tuple(CLASSIFICATIONS))
    public = _bool(ctx, dest.get("public"), "destination.public", False)
    codes = _list(ctx, dest.get("release_to"), "destination.release_to",
                  lambda n, w: (_str(ctx, n, w, pattern=_CODE), n), max_items=64)
    members: set[str] = set()
    for code, node in codes:
        if not code:
            continue
        try:
            got = _members(code)
        except Exception as exc:  # the markings engine refused the code
            ctx.err(node, f"destination code {code!r} is not known: {exc}")
            continue
        if not got:
            ctx.err(node, f"destination code {code!r} is not a known country or group")
        members |= got
    if public and codes:
        ctx.err(dest.get("release_to"), "a public destination has no release_to list")
    if not public and not codes:
        ctx.err(top.get("destination"), "destination.release_to is required unless public: true")
    if public and accreditation != "UNCLASSIFIED":
        ctx.err(dest.get("accreditation"), "a public destination must be UNCLASSIFIED")
    sci = _list(ctx, dest.get("sci"), "destination.sci",
                lambda n, w: _str(ctx, n, w, pattern=_CONTROL), max_items=64)
    sap = _list(ctx, dest.get("sap"), "destination.sap",
                lambda n, w: _str(ctx, n, w, max_len=64), max_items=64)

    rel = _mapping(ctx, top.get("release"), "release", {
        "portions": True, "tearlines": True, "banner_mismatch": True, "uncaveated": False,
        "restrictive_controls": False,
    })
    portion_release = _bool(ctx, rel.get("portions"), "release.portions", False)
    tearline_release = _bool(ctx, rel.get("tearlines"), "release.tearlines", False)
    banner_mismatch = _str(ctx, rel.get("banner_mismatch"), "release.banner_mismatch",
                           default="block", choices=("block", "quarantine", "recompute"))
    uncaveated = _str(ctx, rel.get("uncaveated"), "release.uncaveated", default="withhold",
                      choices=("withhold", "release"))
    restrictive = _list(ctx, rel.get("restrictive_controls"), "release.restrictive_controls",
                        lambda n, w: _str(ctx, n, w, pattern=_CONTROL), max_items=200)
    if uncaveated == "release" and not restrictive:
        ctx.err(rel.get("uncaveated"),
                "release.uncaveated: release needs a non-empty release.restrictive_controls")
    if uncaveated == "release" and public:
        ctx.err(rel.get("uncaveated"), "release.uncaveated: release is not allowed for public")

    term_specs: list[TermListSpec] = []
    names: set[str] = set()
    digests: dict[Path, str] = {}   # referenced file -> SHA-256 of the bytes validated

    def term(node: yaml.Node, what: str) -> None:
        m = _mapping(ctx, node, what, {"name": True, "file": True, "kind": True, "rule": False,
                                      "action": False, "scope": False})
        name = _str(ctx, m.get("name"), f"{what}.name", pattern=_NAME)
        if name in names:
            ctx.err(m.get("name"), f"{what}.name {name!r} is used twice")
        names.add(name)
        kind = _str(ctx, m.get("kind"), f"{what}.kind", choices=TERM_KINDS)
        fpath = _rel_path(ctx, m.get("file"), f"{what}.file", base)
        if kind == "clean":
            for key in ("rule", "action", "scope"):
                if key in m:
                    ctx.err(m[key], f"{what}.{key} makes no sense for a clean list")
            rule = action = scope = ""
        else:
            for key in ("rule", "action"):
                if key not in m:
                    ctx.err(node, f"{what}: missing required key {key!r}")
            rule = _str(ctx, m.get("rule"), f"{what}.rule", choices=TERM_RULES)
            action = _str(ctx, m.get("action"), f"{what}.action", choices=ACTIONS)
            scope = _str(ctx, m.get("scope"), f"{what}.scope",
                         default="message" if action == "block" else "released",
                         choices=TERM_SCOPES)
        if fpath is not None and kind:
            _try_load_terms(ctx, m.get("file"), fpath, name or "x", kind, digests)
            term_specs.append(TermListSpec(name, fpath, kind, rule, action, scope))

    _list(ctx, top.get("terms"), "terms", term, max_items=64)
    if not any(s.kind != "clean" for s in term_specs) and not ctx.errors:
        ctx.err(top.get("terms"), "terms: at least one dirty or pattern list is required")

    lanes: list[Lane] = []

    def lane(node: yaml.Node, what: str) -> None:
        m = _mapping(ctx, node, what, {"name": True, "indicators": True,
                                      "max_classification": True, "uncaveated": False,
                                      "auto_release_on_deadline": False})
        name = _str(ctx, m.get("name"), f"{what}.name", pattern=_NAME)
        if name in names:
            ctx.err(m.get("name"), f"{what}.name {name!r} is already used by a list or lane")
        names.add(name)
        ind = _rel_path(ctx, m.get("indicators"), f"{what}.indicators", base)
        cls = _str(ctx, m.get("max_classification"), f"{what}.max_classification",
                   default="UNCLASSIFIED", choices=tuple(CLASSIFICATIONS))
        unc = _str(ctx, m.get("uncaveated"), f"{what}.uncaveated", default="withhold",
                   choices=("withhold", "release"))
        auto = _bool(ctx, m.get("auto_release_on_deadline"),
                     f"{what}.auto_release_on_deadline", False)
        if CLASSIFICATIONS.get(cls, 0) > CLASSIFICATIONS.get(accreditation, 0):
            ctx.err(m.get("max_classification"),
                    f"{what}.max_classification is above the destination accreditation")
        if unc == "release" and public:
            ctx.err(m.get("uncaveated"), f"{what}: uncaveated release is not allowed for public")
        if ind is not None:
            _try_load_terms(ctx, m.get("indicators"), ind, name or "x", "dirty", digests)
            lanes.append(Lane(name, ind, CLASSIFICATIONS.get(cls, 0), unc == "release", auto))

    _list(ctx, top.get("lanes"), "lanes", lane, max_items=16)

    scan = _mapping(ctx, top.get("scan"), "scan", {"leet": False})
    leet = _bool(ctx, scan.get("leet"), "scan.leet", False)

    enc = _mapping(ctx, top.get("encoded"), "encoded", {"min_length": True, "action": True})
    enc_min = int(_num(ctx, enc.get("min_length"), "encoded.min_length", 64, 16, 65536))
    enc_action = _str(ctx, enc.get("action"), "encoded.action", default="block", choices=ACTIONS)

    lim = _mapping(ctx, top.get("limits"), "limits", {
        "max_message_bytes": True, "max_portions": True, "time_budget_ms": True})
    max_bytes = int(_num(ctx, lim.get("max_message_bytes"), "limits.max_message_bytes",
                         1 << 20, 64, MAX_MESSAGE_BYTES))
    max_portions = int(_num(ctx, lim.get("max_portions"), "limits.max_portions", 10_000, 1,
                            MAX_PORTIONS))
    budget = int(_num(ctx, lim.get("time_budget_ms"), "limits.time_budget_ms", 2000, 1,
                      MAX_BUDGET_MS))

    rev = _mapping(ctx, top.get("review"), "review", {
        "deadline_hours": True, "on_deadline": True, "reviewers_required": False})
    deadline = float(_num(ctx, rev.get("deadline_hours"), "review.deadline_hours", 168, 0.01,
                          MAX_DEADLINE_HOURS, integer=False))
    on_deadline = _str(ctx, rev.get("on_deadline"), "review.on_deadline", default="deny",
                       choices=("deny", "release-lanes"))
    reviewers = int(_num(ctx, rev.get("reviewers_required"), "review.reviewers_required", 2, 2,
                         9))
    if on_deadline == "release-lanes" and not any(ln.auto_release for ln in lanes):
        ctx.err(rev.get("on_deadline"),
                "review.on_deadline: release-lanes needs a lane with auto_release_on_deadline")

    if ctx.errors:
        return None
    # the bundle: the YAML and, once each, every referenced file (the bytes just loaded)
    files = tuple(sorted({(p.relative_to(base).as_posix(), digests[p])
                          for p in [*(s.path for s in term_specs),
                                    *(ln.indicators for ln in lanes)]}))
    yaml_sha = hashlib.sha256(raw).hexdigest()
    bundle = hashlib.sha256(bundle_manifest(path.name, yaml_sha, files)).hexdigest()
    return Policy(
        path=path, sha256=bundle, flow=flow, description=description,
        destination_name=dest_name, accreditation=accreditation,
        accreditation_rank=CLASSIFICATIONS[accreditation],
        release_to=tuple(c for c, _ in codes), members=frozenset(members), public=public,
        allowed_sci=frozenset(sci), allowed_sap=frozenset(sap),
        portion_release=portion_release, tearline_release=tearline_release,
        uncaveated_release=uncaveated == "release", restrictive_controls=frozenset(restrictive),
        banner_mismatch=banner_mismatch, term_lists=tuple(term_specs), lanes=tuple(lanes),
        leet=leet, encoded_min_length=enc_min, encoded_action=enc_action,
        max_message_bytes=max_bytes, max_portions=max_portions, time_budget_ms=budget,
        review_deadline_hours=deadline, on_deadline=on_deadline, reviewers_required=reviewers,
        files=files, yaml_sha256=yaml_sha,
    )


def _try_load_terms(ctx: _Ctx, node: yaml.Node | None, path: Path, name: str, kind: str,
                    digests: dict[Path, str]) -> None:
    """Load a term file through guard.terms so that a bad list fails the policy check,
    and record the digest of the bytes validated (read before and after the load: a file
    changing meanwhile is an error, not a silently unpinned list)."""
    try:
        from guard.terms import load_patterns, load_terms

        before = hashlib.sha256(path.read_bytes()).hexdigest()
        tl = load_patterns(path, name) if kind == "pattern" else load_terms(path, name, kind)
        if hashlib.sha256(path.read_bytes()).hexdigest() != before:
            ctx.err(node, f"term file {path.name} changed while it was being loaded")
            return
        if not tl.terms:
            ctx.err(node, f"term file {path.name} has no entries")
        else:
            _remember(str(path.resolve()), kind, before, tl.terms)
        digests[path] = before
    except Exception as exc:
        ctx.err(node, f"term file {path.name} is invalid: {exc}")
