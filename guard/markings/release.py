"""Releasability of a marking to a foreign destination (a country or a group).

A marking may go to a destination only with an explicit positive release decision
covering it: a REL TO (or EYES ONLY) list naming it, or a group containing it, or -
for foreign-owned or JOINT information - its owner or co-owners. For a group destination every
member must be covered (least-trusted-member rule). Controls that need the
originator's or a disclosure official's decision (NOFORN and the NOFORN-like non-IC
controls, ORCON, PROPIN, RELIDO alone, DISPLAY ONLY, DEA SENSITIVE, EXDIS/NODIS, AEA
information) refuse release: the guard cannot take that decision, so it fails closed.
Plain UNCLASSIFIED US information with no controls at all is releasable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.markings import vocab
from guard.markings.model import Marking

# control -> why it blocks automatic release
_BLOCKERS = {
    "NF": "NOFORN: not releasable to foreign nationals",
    "OC": "ORCON: release needs the originator's approval",
    "OC-USGOV": "ORCON-USGOV: dissemination limited to the US Government",
    "PR": "PROPIN: release needs the originator's approval",
    "DSEN": "DEA SENSITIVE requires USA country affiliation",
    "FOUO": "FOR OFFICIAL USE ONLY without a REL TO decision is for US Government use",
    "XD": "EXDIS: exclusive distribution, NOFORN",
    "ND": "NODIS: no distribution, NOFORN",
    "DS": "LIMDIS requires USA country affiliation",
    "SBU-NF": "SBU NOFORN: not releasable to foreign nationals",
    "LES-NF": "LES NOFORN: not releasable to foreign nationals",
    "RD": "RESTRICTED DATA: foreign release needs an Atomic Energy Act agreement",
    "FRD": "FORMERLY RESTRICTED DATA: foreign release needs DOE approval",
    "CNWDI": "CNWDI: foreign release needs an Atomic Energy Act agreement",
    "DCNI": "DOD UCNI requires US Government affiliation",
    "UCNI": "DOE UCNI requires US Government affiliation",
    "TFNI": "TFNI: foreign release needs DOE approval",
}


@dataclass(slots=True)
class Releasability:
    """The answer of ``releasable``: ``reasons`` explains every refusal."""

    releasable: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The ``guard markings releasable --json`` object."""
        return {"releasable": self.releasable, "reasons": list(self.reasons)}


def group_members(code: str) -> frozenset[str]:
    """``"FVEY"`` -> the five countries; a trigraph -> itself; unknown -> empty."""
    return vocab.group_members(code)


def _covered(m: Marking) -> tuple[frozenset[str], frozenset[str]]:
    """(countries covered, codes named) by the marking's positive release decisions."""
    codes: set[str] = set(m.rel_to) | set(m.eyes)
    if m.origin in ("NON-US", "JOINT"):
        codes |= set(m.owners)  # information may go back to its owner(s)
        if m.nac:
            codes.add(m.nac)
    countries: set[str] = set()
    for c in codes:
        members = vocab.group_members(c)
        countries |= members
    return frozenset(countries), frozenset(codes)


def releasable(m: Marking, dest: str) -> Releasability:
    """May ``m`` be released to ``dest`` (trigraph or tetragraph)? Fails closed."""
    reasons: list[str] = []
    if not isinstance(m, Marking):
        return Releasability(False, ["no valid marking: release needs a valid marking"])
    dest = (dest or "").strip().upper()
    members = vocab.group_members(dest)
    named = dest in _covered(m)[1]
    if not members and named and vocab.is_tetragraph(dest):
        members = frozenset((dest,))  # named as itself: its membership does not matter
    if not members:
        if vocab.is_tetragraph(dest):
            reasons.append(f"{dest} is not a decomposable group: its members are not "
                           "known, so the least-trusted member cannot be checked")
        else:
            reasons.append(f"{dest!r} is not a known country trigraph or tetragraph")
        return Releasability(False, reasons)
    foreign = sorted(members - {"USA"}, key=vocab.list_sort_key)
    if not foreign:
        return Releasability(True, [])  # release to the US itself
    for key in (*m.dissem, *m.non_ic, *m.aea):
        why = _BLOCKERS.get(key)
        if why is not None and not (key == "FOUO" and (m.rel_to or m.eyes)):
            reasons.append(why)
    if m.sigma and "SIGMA" not in reasons:
        reasons.append("SIGMA: foreign release needs an Atomic Energy Act agreement")
    if any(c.name == "HCS" for c in m.sci):
        reasons.append("HCS information requires NOFORN")
    plain_u = (m.classification == "U" and m.origin == "US" and not m.dissem and
               not m.non_ic and not m.aea and not m.sci and not m.sap and not m.fgi_marked
               and not m.rel_to and not m.display_only and not m.eyes)
    if plain_u:
        return Releasability(not reasons, reasons)
    if m.rel_abbrev and not m.rel_to:
        reasons.append("the portion says REL (the banner's list): decide on the banner")
    countries, codes = _covered(m)
    if dest in codes and vocab.is_tetragraph(dest):
        pass  # the group itself is named: every member is covered
    else:
        missing = [c for c in foreign if c not in countries]
        if missing:
            if not m.rel_to and not m.eyes and m.origin == "US":
                if "RELIDO" in m.dissem:
                    reasons.append("RELIDO alone is not a release decision: a foreign "
                                   "disclosure official must decide")
                elif m.display_only:
                    reasons.append("DISPLAY ONLY allows showing, not releasing")
                else:
                    reasons.append("no REL TO marking: release needs an explicit positive "
                                   "release decision")
            elif len(members) > 1:
                reasons.append(
                    f"not releasable to every member of {dest} (least trusted member "
                    f"rule): {', '.join(missing)} not covered by "
                    f"{'REL TO ' + ', '.join(m.rel_to) if m.rel_to else 'the marking'}")
            else:
                reasons.append(
                    f"{dest} is not covered by "
                    f"{'REL TO ' + ', '.join(m.rel_to) if m.rel_to else 'the marking'}")
    return Releasability(not reasons, reasons)
