"""The markings engine: parse, validate, render and roll up CAPCO-2016 markings, decide
releasability, and recognise portion marks inside message bodies.

See ``guard.markings.rules`` for the list of rule ids every finding carries.
"""

from __future__ import annotations

from guard.markings.model import Compartment, Control, Marking, ParseResult
from guard.markings.parse import parse
from guard.markings.recognize import PortionHit, recognize_portions
from guard.markings.release import Releasability, group_members, releasable
from guard.markings.render import render_banner, render_portion
from guard.markings.rollup import check_banner, rollup
from guard.markings.vocab import LEVELS


def classification_rank(m: Marking) -> int:
    """0 UNCLASSIFIED, 1 RESTRICTED, 2 CONFIDENTIAL, 3 SECRET, 4 TOP SECRET, whatever the
    origin (US, non-US, NATO, JOINT)."""
    return LEVELS.get(m.classification, 4)  # unknown: treat as the highest (fail closed)


__all__ = [
    "Compartment",
    "Control",
    "Marking",
    "ParseResult",
    "PortionHit",
    "Releasability",
    "check_banner",
    "classification_rank",
    "group_members",
    "parse",
    "recognize_portions",
    "releasable",
    "render_banner",
    "render_portion",
    "rollup",
]
