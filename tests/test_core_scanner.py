"""Scanner behaviour: evasions, clean words, patterns, encoded runs, spans, batch, threads."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.scanner import FLAG_INVALID_UTF8, FLAG_NUL, FLAG_OVERSIZE, Scanner
from guard.terms import TermList

DIRTY = TermList("dirty", "dirty", ["NOFORN", "blue heron", "~rainbow", "secret", "ab"])
CLEAN = TermList("clean", "clean", ["Secretary", "~rainbows end"])
PII = TermList("pii", "pattern", [r"us-ssn = \d{3}-\d{2}-\d{4}", r"us-passport = \a\d{8}",
                                  r"code = X\d{2,4}"])


@pytest.fixture(scope="module")
def sc() -> Scanner:
    return Scanner([DIRTY, CLEAN, PII], leet=True, encoded_min_len=32)


def terms(sc: Scanner, data: bytes) -> list[tuple[str, bytes]]:
    return [(m.term, data[m.start:m.end]) for m in sc.scan(data).matches]


@pytest.mark.parametrize("body", [
    b"NOFORN", b"noforn", b"N.O.F.O.R.N", b"N O F O R N", b"NO-FORN", b"NO\nFORN",
    b"NO\r\nFORN", b"n0f0rn", b"N0F0RN", "ＮＯＦＯＲＮ".encode(), "NОFОRN".encode(),
    "ΝΟFΟRΝ".encode(), "NO\u200bFO\u200dRN".encode(), "NO\u00adFORN".encode(),
    "N\u202eOFORN".encode(), "NÓFÖRN".encode(), b"N-O-F-O-R-N",
])
def test_evasions_of_one_word_are_found_with_exact_spans(sc: Scanner, body: bytes) -> None:
    data = b"text before " + body + b" text after"
    found = terms(sc, data)
    assert found == [("NOFORN", body)]


def test_whole_words_and_substrings(sc: Scanner) -> None:
    assert terms(sc, b"NOFORNS and preNOFORN") == []
    assert terms(sc, b"a rainbowfish") == [("rainbow", b"rainbow")]
    assert terms(sc, b"the secret secretive") == [("secret", b"secret")]
    assert terms(sc, b"abc ab") == [("ab", b"ab")]


def test_loose_gaps_join_only_single_letters(sc: Scanner) -> None:
    assert terms(sc, b"say NO FORN now") == []
    assert terms(sc, b"NOF ORN") == []
    assert terms(sc, b"NO\n\nFORN") == []  # a paragraph break is never joined
    assert terms(sc, b"N          OFORN") == []  # a long separator run is never joined


def test_phrases(sc: Scanner) -> None:
    assert terms(sc, b"a blue heron.") == [("blue heron", b"blue heron")]
    assert terms(sc, b"blue\nheron") == [("blue heron", b"blue\nheron")]
    assert terms(sc, b"blue and heron") == []


def test_clean_words_override_overlapping_dirty(sc: Scanner) -> None:
    assert terms(sc, b"the Secretary spoke") == []
    assert terms(sc, b"at rainbows end we met") == []
    assert terms(sc, b"rainbows end rainbow") == [("rainbow", b"rainbow")]


def test_patterns_are_whole_words(sc: Scanner) -> None:
    data = b"ssn 123-45-6789, passport A12345678 and X123 but 1123-45-6789 X12345"
    found = terms(sc, data)
    assert ("us-ssn", b"123-45-6789") in found
    assert ("us-passport", b"A12345678") in found
    assert ("code", b"X123") in found
    assert len(found) == 3
    assert terms(sc, "ssn １２３-４５-６７８９".encode()) == [
        ("us-ssn", "１２３-４５-６７８９".encode())]


def test_encoded_runs(sc: Scanner) -> None:
    inner = b"the plan is NOFORN and more words follow here"
    for enc in (base64.b64encode(inner), inner.hex().encode(),
                base64.encodebytes(inner * 3).strip()):
        data = b"see: " + enc + b" end"
        r = sc.scan(data)
        assert [m.term for m in r.matches] == ["NOFORN"]
        m = r.matches[0]
        assert data[m.start:m.end] == enc and r.encoded == []
    binary = base64.b64encode(bytes(range(64)))
    r = sc.scan(b"blob " + binary)
    assert r.matches == [] and [m.term for m in r.encoded] == ["base64"]
    assert (r.encoded[0].start, r.encoded[0].end) == (5, 5 + len(binary))
    clean = base64.b64encode(b"a perfectly ordinary sentence about the weather today")
    assert sc.scan(b"x " + clean).matches == [] and sc.scan(b"x " + clean).encoded == []
    nested = base64.b64encode(base64.b64encode(inner))
    assert [m.term for m in sc.scan(nested).matches] == ["NOFORN"]
    short = base64.b64encode(b"NOFORN")
    assert sc.scan(short).matches == []  # below encoded_min_len: not decoded


def test_bad_input_fails_closed_without_crashing(sc: Scanner) -> None:
    r = sc.scan(b"\xff\xfe NOFORN \xc3")
    assert [f.rule for f in r.findings] == ["core.invalid-utf8"]
    assert [m.term for m in r.matches] == ["NOFORN"]
    r = sc.scan(b"a\x00NOFORN")
    assert [f.rule for f in r.findings] == ["core.nul-byte"]
    assert [m.term for m in r.matches] == ["NOFORN"]
    r = sc.scan(b"")
    assert (r.matches, r.encoded, r.findings) == ([], [], [])


def test_oversize_is_a_finding_and_still_scanned() -> None:
    small = Scanner([DIRTY], max_bytes=1000)
    data = b"word " * 1000 + b"NOFORN"
    r = small.scan(data)
    assert [f.rule for f in r.findings] == ["core.oversize"]
    assert [m.term for m in r.matches] == ["NOFORN"]
    r = small.scan("ä".encode() * 600)
    assert [f.rule for f in r.findings] == ["core.oversize"]


def test_window_boundaries_do_not_lose_or_duplicate_matches() -> None:
    sc = Scanner([DIRTY])
    for pad in range(65536 - 20, 65536 + 4):
        data = b"x" * pad + b" N.O.F.O.R.N blue\nheron"
        got = [(m.term, m.start) for m in sc.scan(data).matches]
        assert got == [("NOFORN", pad + 1), ("blue heron", pad + 13)], pad


def test_empty_and_degenerate_lists() -> None:
    assert Scanner([]).scan(b"NOFORN").matches == []
    with pytest.raises(ValueError):
        Scanner([TermList("d", "dirty", ["---"])])
    with pytest.raises(ValueError):
        TermList("d", "weird", [])


def _pack(msgs: list[bytes]) -> tuple[bytes, np.ndarray]:
    offsets = np.zeros(len(msgs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in msgs])
    return b"".join(msgs), offsets


BODIES = [b"NOFORN here", "ＮＯＦＯＲＮ there".encode(), b"", b"clean text", b"\xffNO-FORN",
          b"a\x00b", b"ssn 123-45-6789", b"z " + base64.b64encode(bytes(range(40))),
          b"the Secretary", b"blue heron and N O F O R N"]


def test_batch_equals_single_scans(sc: Scanner) -> None:
    buf, offsets = _pack(BODIES)
    br = sc.scan_batch(buf, offsets)
    assert br.msg.dtype == np.int32 and br.list_id.dtype == np.int16
    assert br.term_id.dtype == np.int32 and br.start.dtype == np.int64
    assert br.flags.dtype == np.uint32 and len(br.flags) == len(BODIES)
    for i, body in enumerate(BODIES):
        single = sc.scan(body)
        assert br.result_for(i) == single, body
        assert sorted(br.matches_for(i), key=lambda m: (m.start, m.term)) == sorted(
            single.matches + single.encoded, key=lambda m: (m.start, m.term))
    assert br.flags[4] & FLAG_INVALID_UTF8 and br.flags[5] & FLAG_NUL
    assert not br.flags[0] and not br.flags[1]


def test_batch_rejects_bad_offsets(sc: Scanner) -> None:
    with pytest.raises(ValueError):
        sc.scan_batch(b"abc", np.array([0, 5], dtype=np.int64))
    with pytest.raises(ValueError):
        sc.scan_batch(b"abc", np.array([2, 1], dtype=np.int64))


def test_batch_oversize_flag() -> None:
    small = Scanner([DIRTY], max_bytes=10)
    br = small.scan_batch(*_pack([b"NOFORN", b"NOFORN and more words"]))
    assert br.flags.tolist() == [0, FLAG_OVERSIZE]


def test_threads_give_the_same_results(sc: Scanner) -> None:
    msgs = [b"filler words " * 50 + BODIES[i % len(BODIES)] for i in range(400)]
    buf, offsets = _pack(msgs)
    expected = sc.scan_batch(buf, offsets)
    results = []

    def work() -> None:
        results.append(sc.scan_batch(buf, offsets))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r.start, expected.start)
        assert np.array_equal(r.term_id, expected.term_id)
        assert np.array_equal(r.flags, expected.flags)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.sampled_from(BODIES), max_size=12))
def test_batch_equals_single_on_arbitrary_bytes(msgs: list[bytes]) -> None:
    sc = Scanner([DIRTY, CLEAN, PII], leet=True, encoded_min_len=32)
    br = sc.scan_batch(*_pack(msgs))
    for i, body in enumerate(msgs):
        assert br.result_for(i) == sc.scan(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_spans_are_inside_the_data(data: bytes) -> None:
    sc = Scanner([DIRTY, CLEAN, PII], leet=True, encoded_min_len=16)
    r = sc.scan(data)
    for m in r.matches + r.encoded:
        assert 0 <= m.start < m.end <= len(data)


RUN = __import__("re").compile(rb"[A-Za-z0-9+/=_-]{%d,}" % 20)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([b"A" * 7, b"b" * 15, b"0f" * 9, b"+/", b"=", b" ", b".",
                                 b"\n", "é".encode(), b"Z" * 40, b"word"]), max_size=80))
def test_encoded_run_detection_matches_regex_in_both_paths(parts: list[bytes]) -> None:
    """The run finder (AVX-512 block skipping, or the portable counter) finds exactly the
    maximal runs of the base64 alphabet that a regex finds."""
    from guard import _core

    data = b"".join(parts)
    sc = Scanner([DIRTY], encoded_min_len=20)
    expected = [(m.start(), m.end()) for m in RUN.finditer(data)]
    before = _core.scan_simd()
    try:
        for mode in (True, False):
            _core.scan_simd(mode)
            _hits, runs = sc._core.scan(data, as_lists=True)
            assert [(s, e) for _k, s, e in runs] == expected, mode
    finally:
        _core.scan_simd(before)


def test_scan_batch_releases_the_gil() -> None:
    """While one thread is inside long scans, another thread keeps running Python code
    in the middle of them; with the GIL held it could not run at all until a scan ended.
    (Timestamps inside the scans, rather than a bound on the longest pause: that bound
    failed on a loaded 2-core machine, where the scheduler alone pauses a thread for
    tens of milliseconds.)"""
    import sys
    import time

    sc = Scanner([DIRTY, CLEAN])
    # near-misses of the dirty words: every word start is probed, so each scan is long
    msgs = [b"NOFORX herox NOFORX secrex blue herox " * 90] * 8000
    buf, offsets = _pack(msgs)
    spans: list[tuple[float, float]] = []

    def work() -> None:
        for _ in range(4):
            t0 = time.perf_counter()
            sc.scan_batch(buf, offsets)
            spans.append((t0, time.perf_counter()))

    stamps: list[float] = []
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    # a thread holding the GIL still lets the other run for up to one switch interval
    # around the call: only the middle of each scan, away from those edges, counts
    edge = 3 * sys.getswitchinterval()
    assert max(e - s for s, e in spans) > 4 * edge  # long enough to mean something
    stamps_arr = np.array(stamps)
    inside = [int(((stamps_arr > s + max(edge, (e - s) / 4))
                   & (stamps_arr < e - max(edge, (e - s) / 4))).sum()) for s, e in spans]
    assert sum(inside) > 0, (inside, spans)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8),
       st.lists(st.binary(max_size=120) | st.text(max_size=60).map(str.encode), max_size=4),
       st.booleans())
def test_arbitrary_terms_and_bodies_never_crash(terms: list[str], bodies: list[bytes],
                                               leet: bool) -> None:
    """Any term list either compiles or is refused with ValueError; any body scans."""
    lists = [TermList("d", "dirty", [t.strip() or "x" for t in terms]),
             TermList("c", "clean", [t[::-1].strip() or "y" for t in terms])]
    try:
        sc = Scanner(lists, leet=leet, encoded_min_len=16)
    except ValueError:
        return
    for body in bodies:
        r = sc.scan(body)
        for m in r.matches + r.encoded:
            assert 0 <= m.start < m.end <= len(body)
    br = sc.scan_batch(*_pack(bodies))
    for i, body in enumerate(bodies):
        assert br.result_for(i) == sc.scan(body)
