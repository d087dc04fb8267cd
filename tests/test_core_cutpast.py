"""Candidates cut before verification: a word start whose first word has 1..4 letters drops
the prefix classes whose terms must run past that word when the separator run after it is
hard, or loose after 2+ letters and no 5..7-character term of that prefix has a word break
there; a candidate of the class of 8+ characters is dropped when no
term of its key goes on with the text's next letters (both in sc_cand_cut). Whatever the
separators, the SIMD path must find exactly what the portable path (which probes every
Bloom pass) finds, also where the next letters lie past a window's look-ahead.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.scanner import Scanner
from guard.terms import TermList
from tests.simd_paths import both_paths

# 5..7-character terms with and without a word break after 2, 3 or 4 letters, and longer
# and shorter terms sharing their prefixes (all distinct once squeezed)
TERMS = ["theis", "the isx", "ab cde", "abcdef", "abc dey", "abcd ez", "ofsea", "of seat",
         "to stand", "tost", "the", "ab", "abcdefgh", "ab cdefgh x", "t heix",
         "complete thie", "complete", "complete s", "completes t", "complete thi",
         "completesthing", "complete t-he", "stand up", "standu", "sta ndupx"]
SCANNER = Scanner([TermList("d", "dirty", TERMS)])
WORDS = ["the", "is", "isx", "heix", "th", "eis", "thei", "s", "ab", "cde", "abc", "de",
         "abcd", "e", "complete", "thie", "st", "hing", "thing", "of", "sea", "to", "stand",
         "t", "h", "a", "b", "c", "fgh", "x", "word", "abcde", "abcdef", "abcdefg", "ofsea",
         "ofseat", "theisx", "standup", "standu", "up", "p", "ndupx", "sta"]
SEPS = [" ", "  ", "-", "\n", "\n\n", ".", ". ", " - ", "_", "         ", "\t", "/"]


def _rows(sc: Scanner, msgs: list[bytes]) -> list[tuple]:
    offsets = np.zeros(len(msgs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in msgs])
    res = sc.scan_batch(b"".join(msgs), offsets)
    return sorted(zip(res.msg.tolist(), res.term_id.tolist(), res.start.tolist(),
                      res.end.tolist(), strict=True))


@pytest.mark.parametrize("sep", SEPS)
def test_each_separator_after_a_short_first_word(sep: str) -> None:
    msgs = [f"x {a}{sep}{b} y".encode() for a in WORDS for b in WORDS]
    msgs.append(f"{'the'}{sep}".encode())  # the text ends inside the separator run
    simd, portable = both_paths(lambda: _rows(SCANNER, msgs))
    assert simd == portable
    assert simd  # the terms are found at all


def test_loose_gap_rejects_unbroken_term_only() -> None:
    msgs = [b"on the is ok", b"on the isx ok", b"on the-is ok", b"on the         isx"]
    simd, portable = both_paths(lambda: _rows(SCANNER, msgs))
    assert simd == portable
    found = [{TERMS[t] for m, t, _s, _e in simd if m == k} for k in range(4)]
    # after a loose gap only the term with a word break there, after a tight one both;
    # a hard gap ends every term at the first word
    assert found == [{"the"}, {"the", "the isx"}, {"the", "theis"}, {"the"}]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPS)), min_size=1,
                max_size=300))
def test_random_texts_identical_in_both_paths(parts: list[tuple[str, str]]) -> None:
    text = "".join(w + s for w, s in parts).encode()
    simd, portable = both_paths(lambda: _rows(SCANNER, [text, text.rstrip(), text[::-1]]))
    assert simd == portable


@pytest.mark.parametrize("tail", ["", "s", "st", "the", "thie", "thing"])
def test_tails_at_a_window_seam(tail: str) -> None:
    # the letters after an 8-letter key lie at or past the end of the first window
    msgs = []
    for at in range(65536 - 16, 65536 + 70, 3):
        pad = ("word " * (at // 5 + 1))[:at - 1] + " "
        body = f"{pad}complete {tail}".encode()
        msgs.append(body + b" " + ("x" * 100).encode())
        msgs.append(body)
    simd, portable = both_paths(lambda: _rows(SCANNER, msgs))
    assert simd == portable
    assert len({m for m, *_ in simd}) == len(msgs)  # "complete" itself in every body
