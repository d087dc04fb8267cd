"""``replay._tally`` (column-wise counting) against a message-by-message reference."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.decide import Decision
from guard.findings import Finding
from guard.replay import RELEASED, VERDICTS, _tally

_RULES = ("dirty-term", "pii", "banner-rollup", "portion-invalid")

_decision = st.builds(
    lambda v, out, rules: Decision(v, [Finding(r, "m", 0, 1) for r in rules], out, None, "p"),
    st.sampled_from(VERDICTS), st.one_of(st.none(), st.binary(max_size=8)),
    st.lists(st.sampled_from(_RULES), max_size=3))


def _reference(ds: list[Decision], flows: list[str]) -> tuple[Counter, Counter, Counter]:
    counts: Counter[tuple[str, str]] = Counter()
    released: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    for d, f in zip(ds, flows, strict=True):
        counts[(f, d.verdict)] += 1
        if d.verdict in RELEASED and d.output is not None:
            released[f] += len(d.output)
        for r in {x.rule for x in d.findings}:
            rules[r] += 1
    return counts, released, rules


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_decision, st.sampled_from(("a", "b"))), max_size=30),
       st.booleans())
def test_tally_counts_as_message_by_message(pairs: list[tuple[Decision, str]],
                                            one_flow: bool) -> None:
    ds = [d for d, _ in pairs]
    flows = ["a" if one_flow else f for _, f in pairs]
    counts: Counter[tuple[str, str]] = Counter()
    released: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    _tally(ds, flows, counts, released, rules)
    want_counts, want_released, want_rules = _reference(ds, flows)
    assert counts == want_counts and rules == want_rules
    # the same keys too: a flow is listed once something of it was released, even 0 bytes
    assert dict(released) == dict(want_released)
    if one_flow:  # keys in the order of first appearance, as counting the pairs gives
        assert list(counts) == list(want_counts)
