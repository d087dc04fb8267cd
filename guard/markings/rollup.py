"""Banner roll-up (CAPCO-2016 D.2 and Table 3) and banner-vs-portions checking.

Decisions where the manual leaves room (documented here, tested in
tests/test_markings_rollup.py):

- an UNCLASSIFIED US portion without any FD&R marking does not take part in the FD&R
  roll-up (it needs no foreign-disclosure decision); every other portion without FD&R
  makes the banner NOFORN when some portion carries FD&R (Table 3 rules 12, 16, 19);
- Table 3 rule 17 (RELIDO with portions without FD&R: "NOFORN or RELIDO, depending on
  origination date") rolls up to NOFORN: the guard cannot see origination dates and
  fails closed;
- REL TO / DISPLAY ONLY lists intersect after expanding every decomposable tetragraph
  (the manual allows it for FVEY, ACGU, TEYE and, per originator, others such as ISAF);
  a tetragraph present in every list is kept as the tetragraph. Release implies
  disclosure (rule 26), so a REL TO country also counts for DISPLAY ONLY;
- the portion abbreviation ``REL`` means "the banner's list": in ``check_banner`` it
  takes the banner's list; in a bare roll-up it does not narrow the list (JOINT
  portions: the co-owners);
- SBU NOFORN / LES NOFORN roll up to NOFORN (IC dissem) plus SBU / LES (rules 3-8,
  LES NOFORN template), except in an unclassified document with no other FD&R;
- a foreign RESTRICTED portion in a US document rolls up to CONFIDENTIAL (the US has
  no RESTRICTED level; Appendix A treats it at CONFIDENTIAL);
- a document of NATO portions only keeps a NATO banner; where Table 3 would give
  NOFORN it carries no FD&R marking (NOFORN is a US control; the information stays with
  its owner); a document of JOINT portions only keeps the JOINT banner, whose REL TO
  always includes the co-owners.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields as dataclass_fields

from guard.findings import Finding
from guard.markings import vocab
from guard.markings.model import Compartment, Control, Marking
from guard.markings.vocab import LEVELS

_REG = vocab.register()
_ORDER = {k: e.order for k, e in _REG.items()}
_LEVEL_BY_RANK = {v: k for k, v in LEVELS.items()}
_NF_LIKE = {"SBU-NF", "LES-NF", "XD", "ND"}


def _merge_controls(groups: Iterable[Sequence[Control]]) -> tuple[Control, ...]:
    systems: dict[str, dict[str, set[str]]] = {}
    for controls in groups:
        for c in controls:
            comps = systems.setdefault(c.name, {})
            for comp in c.compartments:
                comps.setdefault(comp.name, set()).update(comp.subs)
    return tuple(
        Control(name, tuple(Compartment(cn, tuple(sorted(subs)))
                            for cn, subs in sorted(comps.items())))
        for name, comps in sorted(systems.items()))


def _expand(codes: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for code in codes:
        members = vocab.group_members(code)
        out.update(members if members else (code,))
    out.discard("USA")
    return frozenset(out)


def _compress(countries: frozenset[str], lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Keep tetragraphs common to every list as tetragraphs; the rest as codes."""
    common = set(lists[0]) if lists else set()
    for lst in lists[1:]:
        common &= set(lst)
    tetras = {c for c in common if vocab.is_tetragraph(c) and vocab.group_members(c)
              and (vocab.group_members(c) - {"USA"}) <= countries}
    covered: set[str] = set()
    for t in tetras:
        covered |= vocab.group_members(t)
    rest = {c for c in countries if c not in covered}
    return vocab.sort_list(rest | tetras)


def _has_fdr(m: Marking) -> bool:
    return bool("NF" in m.dissem or "RELIDO" in m.dissem or m.rel_to or m.rel_abbrev or
                m.display_only or m.eyes or _NF_LIKE & set(m.non_ic))


def _neutral(m: Marking) -> bool:
    """An UNCLASSIFIED US portion without FD&R takes no part in the FD&R roll-up."""
    return m.origin == "US" and m.classification == "U" and not _has_fdr(m)


def _fdr(portions: list[Marking], classified: bool) -> tuple[bool, tuple[str, ...], bool,
                                                              tuple[str, ...], tuple[str, ...]]:
    """(noforn, rel_to, relido, display_only, eyes) of the banner."""
    active = [p for p in portions if not _neutral(p)]
    if not any(_has_fdr(p) for p in active):
        return False, (), False, (), ()
    if any("NF" in p.dissem or _NF_LIKE & set(p.non_ic) for p in active):
        return True, (), False, (), ()
    if any(not _has_fdr(p) for p in active):
        return True, (), False, (), ()  # rules 12, 16, 17 (fail closed), 19
    relido = all("RELIDO" in p.dissem for p in active)
    rel_lists: list[tuple[str, ...]] = []
    disp_lists: list[tuple[str, ...]] = []
    release: frozenset[str] | None = None
    display: frozenset[str] | None = None
    all_eyes = all(p.eyes and not p.rel_to for p in active)
    for p in active:
        rel = p.rel_to or p.eyes
        if not rel and p.rel_abbrev and p.origin == "JOINT" and p.owners:
            rel = p.owners
        if rel:
            rel_lists.append(rel)
            r = _expand(rel)
        elif p.rel_abbrev:
            r = None  # the banner's own list: does not narrow it
        else:
            r = frozenset()
        d = _expand(p.display_only) | (r or frozenset())
        if p.display_only:
            disp_lists.append(p.display_only)
        if r is not None:
            release = r if release is None else release & r
        if r is not None or p.display_only:
            display = d if display is None else display & d
    if release is None and display is None:
        # only REL abbreviations: the list is the banner's, unknown here
        return False, (), relido, (), ()
    release = release or frozenset()
    display = (display or frozenset()) - release
    if relido and not release and not display and not rel_lists and not disp_lists:
        return False, (), True, (), ()  # rule 24
    if not release and not display:
        return True, (), False, (), ()  # rules 9, 10, 11, 18, 20
    rel = ("USA", *_compress(release, rel_lists)) if release else ()
    disp = _compress(display, disp_lists) if display else ()
    if all_eyes and rel:
        return False, (), relido, disp, rel
    return False, rel, relido, disp, ()


def rollup(portions: Iterable[Marking]) -> Marking:
    """The banner marking the portions require (CAPCO D.2, Table 3). No portions gives
    UNCLASSIFIED."""
    ps = [p for p in portions if p is not None]
    if not ps:
        return Marking("U")
    rank = max(LEVELS.get(p.classification, 0) for p in ps)
    origins = {(p.origin, p.owners, p.nac) for p in ps}
    origin, owners, nac = "US", (), ""
    if len(origins) == 1:
        origin, owners, nac = next(iter(origins))
        if origin == "NON-US" and not owners:
            origin, owners, nac = "US", (), ""  # concealed FGI is a US document marked FGI
    if origin == "US" and rank == LEVELS["R"]:
        rank = LEVELS["C"]
    level = _LEVEL_BY_RANK[rank]
    classified = rank > 0
    # FGI
    fgi_marked = False
    fgi: set[str] = set()
    concealed = False
    if origin == "US":
        for p in ps:
            if p.origin == "NON-US":
                fgi_marked = True
                if not p.owners:
                    concealed = True
                fgi.update(p.owners)
                if p.nac:
                    fgi.add(p.nac)
            elif p.fgi_marked:
                fgi_marked = True
                if not p.fgi:
                    concealed = True
                fgi.update(p.fgi)
    fgi_list = () if concealed else tuple(sorted(fgi, key=vocab.plain_sort_key))
    # SCI, SAP, AEA
    sci = _merge_controls(p.sci for p in ps)
    sap = _merge_controls(p.sap for p in ps)
    aea = set().union(*(p.aea for p in ps))
    if "RD" in aea:
        aea -= {"FRD", "TFNI"}  # RD takes precedence
    sigma = tuple(sorted(set().union(*(p.sigma for p in ps))))
    non_us_controls = tuple(sorted(set().union(*(p.non_us_controls for p in ps)),
                                   key=_ORDER.__getitem__))
    # dissemination controls other than FD&R
    dissem = set().union(*(p.dissem for p in ps)) - {"NF", "RELIDO"}
    non_ic = set().union(*(p.non_ic for p in ps))
    noforn, rel_to, relido, display, eyes = _fdr(ps, classified)
    if "OC" in dissem:
        dissem.discard("OC-USGOV")
    if {"XD", "ND"} <= non_ic:
        non_ic.discard("XD")  # NODIS has priority
    nf_like_only = not classified and not (
        any("NF" in p.dissem or p.rel_to or p.rel_abbrev or p.display_only or p.eyes or
            "RELIDO" in p.dissem for p in ps) or {"XD", "ND"} & non_ic)
    for key, plain in (("SBU-NF", "SBU"), ("LES-NF", "LES")):
        if key in non_ic:
            if nf_like_only:
                non_ic.discard(plain)  # SBU NOFORN supersedes SBU
                noforn = False
            else:
                non_ic.discard(key)
                non_ic.add(plain)
                noforn = True
    if classified:
        dissem.discard("FOUO")
        non_ic -= {"DS", "SBU"}
    if dissem & {"PR", "DSEN"} or non_ic & {"DS", "SBU", "SBU-NF", "LES", "LES-NF", "SSI"}:
        dissem.discard("FOUO")
    if origin == "NON-US" and "NATO" in owners and noforn and "NF" not in set().union(
            *(p.dissem for p in ps)):
        # NATO information carries no US NOFORN: without a common release decision it
        # stays with its owner (no FD&R marking), which is what releasable() applies
        noforn, rel_to, display, eyes, relido = False, (), (), (), False
    if origin == "JOINT":
        # the co-owners always hold their own information: JOINT keeps REL TO them
        noforn = False
        rel_to = vocab.sort_list({"USA", *owners, *rel_to})
    if noforn:
        dissem.add("NF")
        rel_to, display, eyes, relido = (), (), (), False
    if relido:
        dissem.add("RELIDO")
    return Marking(
        classification=level, origin=origin, owners=owners, nac=nac,
        non_us_controls=non_us_controls, sci=sci, sap=sap,
        aea=tuple(sorted(aea, key=_ORDER.__getitem__)), sigma=sigma,
        fgi_marked=fgi_marked, fgi=fgi_list,
        dissem=tuple(sorted(dissem, key=_ORDER.__getitem__)),
        rel_to=rel_to, eyes=eyes, display_only=display,
        non_ic=tuple(sorted(non_ic, key=_ORDER.__getitem__)),
    )


def _with_banner_lists(p: Marking, banner: Marking) -> Marking:
    """Resolve the portion abbreviations REL and JOINT-without-list against the banner."""
    if p.rel_abbrev and not p.rel_to:
        p = Marking(**{**_fields(p), "rel_to": banner.rel_to, "rel_abbrev": False})
    if p.origin == "JOINT" and not p.owners and banner.origin == "JOINT":
        p = Marking(**{**_fields(p), "owners": banner.owners})
    return p


def _fields(m: Marking) -> dict:
    return {f.name: getattr(m, f.name) for f in dataclass_fields(m)}


_CHECKS = (
    ("classification", lambda m: (m.classification, m.origin, m.owners, m.nac)),
    ("sci", lambda m: m.sci),
    ("sap", lambda m: m.sap),
    ("aea", lambda m: (m.aea, m.sigma)),
    ("fgi", lambda m: (m.fgi_marked, m.fgi)),
    ("non-us", lambda m: m.non_us_controls),
    ("dissem", lambda m: (m.dissem, m.rel_to, m.eyes, m.display_only)),
    ("non-ic", lambda m: m.non_ic),
)


def check_banner(banner: Marking, portions: Sequence[Marking]) -> list[Finding]:
    """Findings where ``banner`` differs from the roll-up of ``portions``.

    Rule ids ``banner-rollup-<category>``; the message names both values. Spans are
    0..0: a ``Marking`` has no text (callers add the banner's offset)."""
    from guard.markings.render import render_banner

    required = rollup([_with_banner_lists(p, banner) for p in portions])
    out: list[Finding] = []
    if banner.rel_abbrev and not banner.rel_to:
        banner = Marking(**{**_fields(banner), "rel_to": required.rel_to})
    for name, get in _CHECKS:
        if get(banner) != get(required):
            out.append(Finding(
                f"banner-rollup-{name}",
                f"The banner's {name} markings do not match its portions: the banner says "
                f"'{render_banner(banner)}', the portions roll up to "
                f"'{render_banner(required)}'.", 0, 0))
    return out
