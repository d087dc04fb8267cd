"""Hypothesis properties: render/parse round trip, roll-up algebra, release monotonicity."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from guard.markings import (
    Compartment,
    Control,
    Marking,
    parse,
    releasable,
    render_banner,
    render_portion,
    rollup,
    vocab,
)

_ORDER = {k: e.order for k, e in vocab.register().items()}
TRIGRAPHS = ["AUS", "CAN", "DEU", "FRA", "GBR", "IRQ", "ISR", "JPN", "KOR", "NLD", "NOR", "NZL"]
TETRAGRAPHS = ["ACGU", "FVEY", "NATO", "TEYE"]
DESTS = [*TRIGRAPHS, *TETRAGRAPHS, "ESP", "FIN", "SWE"]
# explicit per-test settings: a global profile would change other helpers' tests too
PROPS = settings(max_examples=150, deadline=None)


def _codes(min_size: int = 1) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(TRIGRAPHS + TETRAGRAPHS), min_size=min_size, max_size=4,
                    unique=True).map(lambda cs: vocab.sort_list(cs))


@st.composite
def valid_markings(draw: st.DrawFn) -> Marking:
    level = draw(st.sampled_from(["TS", "S", "C", "U"]))
    classified = level != "U"
    sci: tuple[Control, ...] = ()
    sap: tuple[Control, ...] = ()
    aea: tuple[str, ...] = ()
    sigma: tuple[int, ...] = ()
    dissem: set[str] = set()
    non_ic: set[str] = set()
    # GAMMA requires ORCON, which cannot be used with RELIDO
    fdr = draw(st.sampled_from(["none", "NF", "REL", "RELREL", "RELIDO", "DISPLAY"]))
    if level in ("TS", "S") and draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["SI", "TK"]), min_size=1, unique=True))
        sci = tuple(Control(n) for n in sorted(names))
        if level == "TS" and draw(st.booleans()) and fdr not in ("RELREL", "RELIDO"):
            subs = tuple(sorted(set(draw(st.lists(
                st.text("ABCDEFGH", min_size=4, max_size=4), max_size=3)))))
            sci = tuple(sorted({*sci, Control("SI", (Compartment("G", subs),))},
                               key=lambda c: c.name))
            sci = tuple({c.name: c for c in sci}.values())
            dissem.add("OC")
    if classified and draw(st.booleans()):
        progs = draw(st.lists(st.text("ABCDEFGHJK", min_size=2, max_size=3), min_size=1,
                              max_size=3, unique=True))
        sap = tuple(Control(p) for p in sorted(progs))
    if classified and draw(st.booleans()):
        aea = ("RD",)
        if level in ("TS", "S") and draw(st.booleans()):
            aea = ("RD", "CNWDI")
        if level in ("TS", "S"):
            sigma = tuple(sorted(set(draw(st.lists(st.integers(1, 99), max_size=3)))))
    fgi_marked = draw(st.booleans())
    fgi = tuple(sorted(c for c in draw(_codes(0)) if c != "USA")) if fgi_marked else ()
    fgi = tuple(sorted(fgi, key=vocab.plain_sort_key))
    rel_to: tuple[str, ...] = ()
    display: tuple[str, ...] = ()
    if fdr == "NF":
        dissem.add("NF")
    elif fdr in ("REL", "RELREL"):
        rel_to = vocab.sort_list(("USA", *draw(_codes())))
        if fdr == "RELREL":
            dissem.add("RELIDO")
    elif fdr == "RELIDO":
        dissem.add("RELIDO")
    elif fdr == "DISPLAY":
        display = draw(_codes())
    if "RELIDO" in dissem:
        dissem.discard("OC")  # ORCON cannot be used with RELIDO
    extra = {"PR", "FISA", "DSEN"}
    if level in ("TS", "S"):
        extra |= {"RS", "IMC"}
    if classified and "RELIDO" not in dissem:
        extra.add("OC")
    if not classified:
        extra.add("FOUO")
    dissem |= set(draw(st.lists(st.sampled_from(sorted(extra)), max_size=2)))
    if "OC" in dissem and "RELIDO" in dissem:
        dissem.discard("OC")
    non_ic |= set(draw(st.lists(st.sampled_from(["LES", "SSI"]), max_size=1)))
    if "NF" in dissem and draw(st.booleans()):
        non_ic.add(draw(st.sampled_from(["XD", "ND"])))
    return Marking(
        classification=level, sci=sci, sap=sap, aea=aea, sigma=sigma,
        fgi_marked=fgi_marked, fgi=fgi,
        dissem=tuple(sorted(dissem, key=_ORDER.__getitem__)), rel_to=rel_to,
        display_only=display, non_ic=tuple(sorted(non_ic, key=_ORDER.__getitem__)),
    )


@st.composite
def foreign_markings(draw: st.DrawFn) -> Marking:
    """Non-US (a country, NATO, concealed FGI) and JOINT markings."""
    kind = draw(st.sampled_from(["country", "nato", "concealed", "joint"]))
    level = draw(st.sampled_from(["TS", "S", "C", "R", "U"]))
    rel: tuple[str, ...] = ()
    dissem: tuple[str, ...] = ()
    if kind == "joint":
        level = level if level != "R" else "S"
        owners = vocab.sort_list({"USA", *draw(st.lists(st.sampled_from(TRIGRAPHS),
                                                        min_size=1, max_size=2))})
        owners = tuple(sorted(owners, key=vocab.plain_sort_key))
        rel = vocab.sort_list(("USA", *draw(_codes())))
        return Marking(level, origin="JOINT", owners=owners, rel_to=rel)
    if kind == "country":
        owners = tuple(sorted(set(draw(st.lists(st.sampled_from(TRIGRAPHS), min_size=1,
                                                max_size=2)))))
    elif kind == "nato":
        owners = ("NATO",)
    else:
        owners = ()
    fdr = draw(st.sampled_from(["none", "REL", "NF"] if kind != "nato" else ["none", "REL"]))
    if fdr == "REL":
        rel = vocab.sort_list(("USA", *draw(_codes())))
    elif fdr == "NF":
        dissem = ("NF",)
    controls = ("ATOMAL",) if kind == "nato" and level in ("TS", "S", "C") and \
        draw(st.booleans()) else ()
    return Marking(level, origin="NON-US", owners=owners, dissem=dissem, rel_to=rel,
                   non_us_controls=controls,
                   fgi_marked=kind == "concealed")  # "//FGI S": concealed source


def any_markings() -> st.SearchStrategy[Marking]:
    return st.one_of(valid_markings(), valid_markings(), valid_markings(), foreign_markings())


@PROPS
@given(any_markings())
def test_parse_render_round_trip(m: Marking) -> None:
    banner = parse(render_banner(m), "banner")
    portion = parse(render_portion(m), "portion")
    assert portion.valid, (render_portion(m), [e.message for e in portion.errors])
    assert portion.marking == m
    assert banner.marking == m
    if m.origin == "NON-US" and not m.owners:
        # concealed FGI has a portion form only; its banner is SECRET//FGI (roll-up)
        assert [e.rule for e in banner.errors] == ["class-fgi-banner"]
        assert parse(render_banner(rollup([m])), "banner").valid
    else:
        assert banner.valid, (render_banner(m), [e.message for e in banner.errors])


@PROPS
@given(st.lists(any_markings(), min_size=1, max_size=6), st.randoms())
def test_rollup_is_independent_of_portion_order(portions: list[Marking], rnd) -> None:
    shuffled = list(portions)
    rnd.shuffle(shuffled)
    assert rollup(shuffled) == rollup(portions)


@PROPS
@given(st.lists(any_markings(), min_size=1, max_size=6))
def test_rollup_is_idempotent(portions: list[Marking]) -> None:
    banner = rollup(portions)
    assert rollup([banner]) == banner
    assert rollup([*portions, banner]) == banner
    assert rollup(portions + portions) == banner


@PROPS
@given(st.lists(any_markings(), min_size=1, max_size=6))
def test_rollup_is_at_least_as_restrictive_as_each_portion(portions: list[Marking]) -> None:
    banner = rollup(portions)
    for dest in ("GBR", "FVEY", "NATO", "JPN"):
        if releasable(banner, dest).releasable:
            # whatever the banner lets go, every classified portion lets go too
            for p in portions:
                if p.classification != "U":
                    assert releasable(p, dest).releasable, (render_portion(p), dest)


@PROPS
@given(valid_markings(), st.data())
def test_removing_a_code_from_rel_to_never_grants_release(m: Marking, data) -> None:
    assume(len(m.rel_to) > 1)
    removed = data.draw(st.sampled_from([c for c in m.rel_to if c != "USA"]))
    narrower = replace(m, rel_to=tuple(c for c in m.rel_to if c != removed))
    for dest in DESTS:
        if releasable(narrower, dest).releasable:
            assert releasable(m, dest).releasable, (removed, dest)
    # and the removed code itself is no longer covered unless another entry covers it
    if removed in vocab.countries() and not any(
            removed in vocab.group_members(c) for c in narrower.rel_to):
        refusal = releasable(narrower, removed)
        assert not refusal.releasable and refusal.reasons


@PROPS
@given(any_markings(), st.sampled_from(DESTS))
def test_every_refusal_has_a_reason(m: Marking, dest: str) -> None:
    answer = releasable(m, dest)
    assert answer.releasable is (not answer.reasons)


@PROPS
@given(st.lists(any_markings(), min_size=1, max_size=6))
def test_rollup_of_valid_portions_is_a_valid_banner(portions: list[Marking]) -> None:
    banner = render_banner(rollup(portions))
    result = parse(banner, "banner")
    assert result.valid, (banner, [e.message for e in result.errors])
