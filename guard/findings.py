"""Findings: the one explanation type every stage of the pipeline reports.

A finding names a stable rule id, says in a sentence what is wrong, and points at
the character (or byte) span it concerns, so that a person can see it and
redaction can cut it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason a marking, message or decision is not a plain pass.

    ``start``/``end`` are offsets into the text the finding was made on,
    half-open; ``end == start`` marks a position rather than a range.
    """

    rule: str
    message: str
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: ``{"rule", "message", "start", "end"}``."""
        return asdict(self)

    def shifted(self, offset: int) -> Finding:
        """The same finding with its span moved by ``offset`` (for nested text)."""
        return Finding(self.rule, self.message, self.start + offset, self.end + offset)
