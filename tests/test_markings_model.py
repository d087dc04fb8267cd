"""The fast path's builders (no dataclass ``__init__``) make ordinary frozen objects."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from guard.markings import parse
from guard.markings.model import (
    Compartment,
    Control,
    Marking,
    marking_from_values,
    new_compartment,
    new_control,
)


def test_builders_match_the_dataclass_constructors() -> None:
    comp = new_compartment("G", ("ABCD",))
    ctl = new_control("SI", (comp,))
    assert type(comp) is Compartment and comp == Compartment("G", ("ABCD",))
    assert type(ctl) is Control and ctl == Control("SI", (Compartment("G", ("ABCD",)),))
    assert new_control("TK") == Control("TK") and new_compartment("O") == Compartment("O")
    ref = Marking("TS", sci=(Control("SI", (Compartment("G", ("ABCD",)),)),), dissem=("NF",))
    values = tuple(getattr(ref, f.name) for f in dataclasses.fields(Marking))
    built = marking_from_values(values)
    assert type(built) is Marking
    assert built == ref and hash(built) == hash(ref) and repr(built) == repr(ref)
    assert pickle.loads(pickle.dumps(built)) == ref


def test_built_objects_stay_frozen() -> None:
    m = parse("(TS//SI-G ABCD//OC/NF)").marking
    assert m is not None and type(m) is Marking
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.classification = "U"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sci[0].name = "TK"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sci[0].compartments[0].subs = ()  # type: ignore[misc]
