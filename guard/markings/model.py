"""The parsed form of a CAPCO marking: ``Marking`` and the result of parsing text.

A ``Marking`` holds canonical values only (portion-mark keys such as ``NF``, ``OC``,
``TK``; lists in CAPCO order), never the spelling it was written in, so that a
banner and its portion-mark equivalent parse to equal markings.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from guard.findings import Finding


@dataclass(frozen=True, slots=True)
class Compartment:
    """An SCI compartment or SAP compartment and its sub-compartments."""

    name: str
    subs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Control:
    """An SCI control system (``SI``, ``TK``, ``HCS``, unpublished ``ANB``...) or a SAP
    program identifier, with its compartments."""

    name: str
    compartments: tuple[Compartment, ...] = ()

    def text(self) -> str:
        """``SI-G ABCD EFGH-XYZ`` form."""
        parts = [self.name]
        for c in self.compartments:
            parts.append(" ".join((c.name, *c.subs)))
        return "-".join(parts)


@dataclass(frozen=True, slots=True)
class Marking:
    """One marking: a banner line or a portion mark, in canonical form.

    ``origin`` is ``"US"``, ``"NON-US"`` (a foreign or NATO classification; ``owners``
    holds the trigraphs / tetragraphs, empty when the source is concealed ``//FGI S``)
    or ``"JOINT"`` (``owners`` the co-owners). ``rel_abbrev`` is the portion ``REL``
    abbreviation (the list is the banner's and unknown here).
    """

    classification: str
    origin: str = "US"
    owners: tuple[str, ...] = ()
    nac: str = ""
    non_us_controls: tuple[str, ...] = ()
    sci: tuple[Control, ...] = ()
    sap: tuple[Control, ...] = ()
    aea: tuple[str, ...] = ()
    sigma: tuple[int, ...] = ()
    fgi_marked: bool = False
    fgi: tuple[str, ...] = ()
    dissem: tuple[str, ...] = ()
    rel_to: tuple[str, ...] = ()
    rel_abbrev: bool = False
    eyes: tuple[str, ...] = ()
    display_only: tuple[str, ...] = ()
    non_ic: tuple[str, ...] = ()

    @property
    def fgi_concealed(self) -> bool:
        """FGI whose source countries are not named."""
        return (self.fgi_marked and not self.fgi) or (self.origin == "NON-US" and not self.owners)

    def has(self, key: str) -> bool:
        """True when the marking carries the control ``key`` (a Register key)."""
        if key == "REL":
            return bool(self.rel_to) or self.rel_abbrev
        if key == "DISPLAY":
            return bool(self.display_only)
        if key == "EYES":
            return bool(self.eyes)
        return key in self.dissem or key in self.non_ic or key in self.aea

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "classification": self.classification,
            "origin": self.origin,
            "owners": list(self.owners),
            "nac": self.nac,
            "non_us_controls": list(self.non_us_controls),
            "sci": [c.text() for c in self.sci],
            "sap": [c.text() for c in self.sap],
            "aea": list(self.aea),
            "sigma": list(self.sigma),
            "fgi": list(self.fgi) if self.fgi_marked or self.fgi else None,
            "dissem": list(self.dissem),
            "rel_to": list(self.rel_to) if self.rel_to else ("REL" if self.rel_abbrev else None),
            "eyes": list(self.eyes),
            "display_only": list(self.display_only),
            "non_ic": list(self.non_ic),
        }


def marking_from_values(values: tuple[Any, ...]) -> Marking:
    """A ``Marking`` from every field's value, positionally in field order, built
    without the dataclass ``__init__``: the parse fast path makes one per distinct
    string, and the generated frozen ``__init__`` (a global lookup and an
    ``object.__setattr__`` call per field) costs more than the rest of the parse of a
    short marking. The result is an ordinary, equal and hashable ``Marking``."""
    return _build(*values)


def _unrolled_builder(cls: type) -> Any:
    """``build(v0, ..., vN)`` for the frozen slotted dataclass ``cls``, no ``__init__``.

    The fields are plain attribute stores on a mutable draft class with exactly
    ``cls``'s slots (CPython specialises them to direct slot writes), then the object
    becomes a ``cls`` by ``__class__`` assignment, which CPython allows only between
    identical layouts (a mismatch raises, checked once at import). About 3x cheaper
    than one slot-descriptor ``__set__`` call per field."""
    names = [f.name for f in fields(cls)]
    draft = type(f"_{cls.__name__}Draft", (), {"__slots__": tuple(names)})
    args = ", ".join(f"v{i}" for i in range(len(names)))
    body = "".join(f"    m.{n} = v{i}\n" for i, n in enumerate(names))
    src = f"def build({args}):\n    m = new(Draft)\n{body}    m.__class__ = Final\n    return m\n"
    scope: dict[str, Any] = {"new": object.__new__, "Draft": draft, "Final": cls}
    exec(src, scope)  # generated from the field list only, never from input
    build = scope["build"]
    defaults = [f.default for f in fields(cls) if f.default is not MISSING]
    build.__defaults__ = tuple(defaults) or None  # trailing fields, as in __init__
    build(*[None] * len(names))  # a layout mismatch raises here, at import
    return build


@dataclass(slots=True)
class ParseResult:
    """What ``parse`` says about one input string.

    ``marking`` is set whenever the classification could be read, even if there are
    errors, so that callers can say more; callers deciding anything must check ``valid``.
    """

    input: str
    kind: str
    marking: Marking | None
    errors: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """No errors."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The ``guard markings check --json`` object."""
        return {
            "input": self.input,
            "kind": self.kind,
            "valid": self.valid,
            "errors": [e.to_dict() for e in self.errors],
            "parsed": self.marking.to_dict() if self.marking is not None else None,
        }


_build = _unrolled_builder(Marking)  # used by marking_from_values and the fast path
# ``Control(name, compartments=())`` and ``Compartment(name, subs=())`` for the fast path
new_control = _unrolled_builder(Control)
new_compartment = _unrolled_builder(Compartment)
