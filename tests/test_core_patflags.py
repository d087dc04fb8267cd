"""The pattern-start prefilter of the fused fold pass also requires the next four bytes to
be able to come second..fifth in some match (or after a shorter one, or past the text's
end). The flags are derived from the NFAs; whatever the patterns (one- and two-byte
matches, optional runs), the SIMD path must find exactly what the portable path finds,
at block seams, window seams and the text's end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.scanner import Scanner
from guard.terms import TermList
from tests.simd_paths import both_paths

PATTERNS = [r"ssn = \d{3}-\d{2}-\d{4}", r"two = Q\d", r"opt = \a{1,2}-\d{2,5}", r"one = #",
            r"tri = \d\d\a", r"pp = \a\d{8}", r"w = \w{2,3}!"]
# a term list makes the SIMD path fold with the pattern masks (the fused pass)
SCANNER = Scanner([TermList("d", "dirty", ["noforn"]), TermList("p", "pattern", PATTERNS)])
TOKENS = ["Q1", "Q12", "ab-12", "a-12345", "x-1", "123-45-6789", "123-45-678", "#", "##",
          "12a", "1", "12", "123", "1234", " ", "-", "x", "\n", ".", "ab!", "a1!", "A12345678",
          "noforn"]


def _rows(msgs: list[bytes]) -> list[tuple]:
    offsets = np.zeros(len(msgs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in msgs])
    res = SCANNER.scan_batch(b"".join(msgs), offsets)
    return list(zip(res.msg.tolist(), res.term_id.tolist(), res.list_id.tolist(),
                    res.start.tolist(), res.end.tolist(), strict=True))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=80).map("".join), min_size=1,
                max_size=8))
def test_random_bodies_identical_in_both_paths(bodies: list[str]) -> None:
    msgs = [b.encode() for b in bodies]
    simd, portable = both_paths(lambda: _rows(msgs))
    assert simd == portable


@pytest.mark.parametrize("tok", ["Q1", "#", "12a", "ab-12", "a-12345", "123-45-6789", "ab!"])
def test_matches_at_every_block_seam_and_the_end(tok: str) -> None:
    msgs = []
    for at in (*range(56, 72), *range(120, 136), 65530, 65536, 65540):
        head = ("z " * (at // 2 + 1))[:at - 1] + " "
        msgs.append(f"{head}{tok}".encode())          # the match ends the text
        msgs.append(f"{head}{tok} z".encode())
        msgs.append(f"{head}{tok}{tok}".encode())
    simd, portable = both_paths(lambda: _rows(msgs))
    assert simd == portable
    found = {m for m, *_ in simd}
    assert all(k in found for k in range(len(msgs)) if k % 3 != 2)


def test_flags_drop_numbers_that_no_pattern_can_continue() -> None:
    simd, portable = both_paths(lambda: _rows([b"1234 the 123 and 12 x 123-45-6789"]))
    assert simd == portable
    assert [(s, e) for _m, _t, _l, s, e in simd] == [(22, 33)]
