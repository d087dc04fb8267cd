"""Traffic generators: determinism, coverage of every category, ledger, content checks.

Generated markings are cross-checked against the markings engine (the generator has
its own small marking model on purpose) and JSON documents against guard.messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guard.markings as markings
from guard.domains.generators import (
    CATEGORIES,
    FlowTarget,
    Generator,
    GeneratorConfig,
    Ledger,
    LedgerEntry,
    Mark,
    interleave,
    publish_stream,
    read_ledger,
    rollup,
    targets_from_topology,
)
from guard.domains.topology import load_topology
from guard.messages import parse_message

REPO = Path(__file__).resolve().parents[1]
TERMS = REPO / "policies" / "terms"
CODEWORDS = TERMS / "codewords.txt"
SMALL = GeneratorConfig(oversize_bytes=80_000)
TARGETS = targets_from_topology(load_topology())
GBR = next(t for t in TARGETS if t.dest == "GBR")


def _gen(target: FlowTarget = GBR, seed: int = 1, **kw) -> Generator:
    return Generator(target, seed, CODEWORDS, GeneratorConfig(oversize_bytes=80_000, **kw))


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = [(m.payload, m.entry) for m in _gen(seed=42).take(150)]
    b = [(m.payload, m.entry) for m in _gen(seed=42).take(150)]
    c = [(m.payload, m.entry) for m in _gen(seed=43).take(150)]
    assert a == b
    assert sum(x[0] == y[0] for x, y in zip(a, c, strict=True)) < 10


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_every_category_appears_with_unique_ids_and_faithful_ledger(target: FlowTarget) -> None:
    msgs = _gen(target, seed=7).take(700)
    cats = Counter(m.entry.category for m in msgs)
    assert set(cats) == set(CATEGORIES)
    ids = [m.message_id for m in msgs]
    assert len(set(ids)) == len(ids)
    expects = {m.entry.expect for m in msgs}
    dest = target.dest
    assert {
        f"releasable-to-{dest}",
        f"releasable-after-redaction-to-{dest}",
        f"releasable-tearline-to-{dest}",
        "should-block-noforn",
        "should-block-spillage-risk",
        "should-block-dirty-word",
        "should-stop-us-person",
        "should-block-evasion",
        "should-block-malformed",
        "should-block-oversize",
        "should-block-bad-marking",
        "should-block-not-releasable",
        "should-block-above-accreditation",
    } <= expects
    for m in msgs:
        e = m.entry
        assert (e.message_id, e.flow, e.size) == (m.message_id, target.name, len(m.payload))
        assert m.topic == target.topic
        assert dict(m.properties) == {"message-id": m.message_id, "flow": target.name}
        assert e.kind == CATEGORIES[e.category]


def test_sizes_follow_the_mix_and_padding_stays_under_target() -> None:
    g = _gen(sizes={512: 0.5, 4096: 0.3, 65536: 0.2})
    msgs = [g.next(category="clean-finished") for _ in range(300)]
    by_target = Counter(m.entry.target_size for m in msgs)
    assert set(by_target) == {512, 4096, 65536}
    assert 110 < by_target[512] < 190
    for m in msgs:
        e = m.entry
        base_too_big = e.size > e.target_size  # a report longer than the target is not cut
        assert base_too_big or e.target_size - 48 <= e.size <= e.target_size
        if e.target_size == 65536:
            assert e.size >= 65536 - 48
    over = g.next(category="oversize")
    assert over.entry.size > 79_000 and over.entry.target_size == 80_000


def _lines(payload: bytes) -> list[str]:
    return payload.decode("utf-8").rstrip("\n").split("\n")


CORRECTLY_MARKED = [
    "clean-finished", "clean-osint", "clean-climate", "mixed-portions", "tearline",
    "raw-noforn", "above-accreditation", "not-releasable", "dirty-word", "us-person", "oversize",
]  # fmt: skip


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_correct_markings_agree_with_the_markings_engine(target: FlowTarget) -> None:
    g = _gen(target, seed=11)
    for cat in CORRECTLY_MARKED:
        for _ in range(6):
            m = g.next(category=cat, size=512)
            lines = _lines(m.payload)
            assert lines[0] == lines[-1] == m.entry.banner
            banner = markings.parse(lines[0], "banner")
            assert banner.valid, (cat, lines[0], banner.errors)
            hits = markings.recognize_portions(m.payload)
            assert hits and all(h.result.valid for h in hits), cat
            assert {h.result.input for h in hits} == set(m.entry.portions)
            assert markings.check_banner(banner.marking, [h.result.marking for h in hits]) == []
            parsed = parse_message(m.payload)
            assert parsed.ok, (cat, parsed.findings)
            if cat == "tearline":
                i = lines.index(next(x for x in lines if "TEARLINE" in x))
                tear = markings.parse(lines[i + 1], "banner")
                assert tear.valid
                if target.dest == "PUBLIC":
                    assert lines[i + 1] == "UNCLASSIFIED"
                else:
                    assert markings.releasable(tear.marking, target.dest).releasable


def test_wrong_markings_are_wrong_for_the_engine() -> None:
    g = _gen(seed=5)
    seen = set()
    for _ in range(60):
        m = g.next(category="bad-portion-mark", size=512)
        seen.add(m.entry.variant)
        assert not parse_message(m.payload).ok, m.entry.variant
    assert len(seen) >= 6
    for _ in range(40):
        m = g.next(category="banner-mismatch", size=512)
        lines = _lines(m.payload)
        top = markings.parse(lines[0], "banner").marking
        portions = [h.result.marking for h in markings.recognize_portions(m.payload)]
        assert lines[0] != lines[-1] or markings.check_banner(top, portions), m.entry.variant


def _term_regexes() -> list[re.Pattern[str]]:
    out = []
    for f in TERMS.glob("*.txt"):
        if f.name.startswith("lane-") or f.name == "clean.txt":
            continue
        for raw in f.read_text().splitlines():
            t = raw.strip()
            if not t or t.startswith("#"):
                continue
            if t.startswith("~"):
                out.append(re.compile(re.escape(t[1:]), re.IGNORECASE))
            else:
                out.append(re.compile(rf"\b{re.escape(t)}\b", re.IGNORECASE))
    return out


def test_releasable_text_has_no_term_and_no_pii_and_dirty_words_come_from_the_list(
    tmp_path: Path,
) -> None:
    terms = _term_regexes()
    pii = re.compile(r"\b(\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|[A-Za-z]\d{8}|\d{3}-\d{3}-\d{4})\b")
    clean_words = re.compile(r"Secretar", re.IGNORECASE)
    for target in TARGETS:
        g = _gen(target, seed=3)
        for cat in ["clean-finished", "clean-osint", "clean-climate"]:
            for _ in range(25):
                text = g.next(category=cat).payload.decode()
                body = "\n".join(x.split(")", 1)[1] for x in text.split("\n") if x.startswith("("))
                assert not clean_words.search(body)
                hit = [t.pattern for t in terms if t.search(body)]
                assert hit == [], (cat, hit)
                assert not pii.search(body)
    words = tmp_path / "words.txt"
    words.write_text("# test list\nZEPHYR LANTERN\n~PROJ-99\n\n")
    g = Generator(GBR, 1, words, SMALL)
    for _ in range(20):
        text = g.next(category="dirty-word").payload.decode()
        assert "ZEPHYR LANTERN" in text or "PROJ-99" in text
    for _ in range(20):
        m = g.next(category="us-person")
        assert m.entry.variant == "phrase" or pii.search(m.payload.decode())


def test_evasion_and_malformed_variants_are_what_they_claim() -> None:
    g = _gen(seed=9)
    seen = Counter()
    for _ in range(150):
        m = g.next(category="evasion", size=512)
        v = m.entry.variant
        seen[v] += 1
        text = m.payload.decode("utf-8")
        if v == "zero-width" or v == "marking-zero-width":
            assert re.search("[\u200b\u200c\u200d\u2060]", text)
        elif v == "homoglyph":
            assert re.search("[\u0400-\u04ff]", text)
        elif v == "fullwidth":
            assert re.search("[\uff01-\uff5e]", text)
        elif v == "base64":
            assert re.search(r"[A-Za-z0-9+/]{64,}", text)
    assert len(seen) == 7
    for _ in range(120):
        m = g.next(category="malformed")
        v = m.entry.variant
        seen[v] += 1
        assert m.entry.expect == "should-block-malformed"
        if v == "invalid-utf8":
            with pytest.raises(UnicodeDecodeError):
                m.payload.decode("utf-8")
        elif v == "empty":
            assert m.payload == b""
        elif v == "nul-bytes":
            assert b"\x00" in m.payload
        assert not parse_message(m.payload).ok, v
    assert {"invalid-utf8", "binary", "no-banner", "truncated", "portion-first"} <= set(seen)


def test_json_documents_parse_with_guard_messages() -> None:
    g = _gen(seed=4, json_share=1.0)
    n = 0
    for cat in ["clean-finished", "mixed-portions", "tearline", "raw-noforn", "dirty-word"]:
        for _ in range(5):
            m = g.next(category=cat, size=4096)
            assert m.entry.format == "json"
            doc = json.loads(m.payload)
            assert set(doc) <= {"banner", "portions", "tearlines"}
            parsed = parse_message(m.payload)
            assert parsed.format == "json" and parsed.ok, (cat, parsed.findings)
            assert m.entry.size <= 4096 or len(doc["portions"]) <= 4
            n += 1
    assert n == 25
    # text-only defects stay text
    assert g.next(category="bad-portion-mark").entry.format == "text"


def test_ledger_round_trips_appends_and_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    msgs = _gen(seed=2).take(40)
    with Ledger(path) as led:
        for m in msgs[:20]:
            led.append(m.entry)
    with Ledger(path, fsync=True) as led:  # reopening appends, never truncates
        led.extend(m.entry for m in msgs[20:])
    assert read_ledger(path) == [m.entry for m in msgs]
    with path.open("a") as fh:
        fh.write('{"message_id": "torn')
    assert len(read_ledger(path)) == 40
    path.write_text(path.read_text().replace('{"message_id": "torn', "") + "not json\n")
    with pytest.raises(ValueError, match=r"ledger\.jsonl:41:"):
        read_ledger(path)
    with pytest.raises(ValueError):
        LedgerEntry.from_json('{"message_id": "x"}')


def test_rate_gives_schedule_constant_or_poisson() -> None:
    msgs = _gen(rate_per_s=200).take(5)
    assert [m.at for m in msgs] == pytest.approx([0.005 * (i + 1) for i in range(5)])
    poisson = _gen(rate_per_s=200, poisson=True).take(400)
    gaps = [b.at - a.at for a, b in itertools.pairwise(poisson)]
    assert len(set(gaps)) > 300 and 0.003 < sum(gaps) / len(gaps) < 0.007


def test_generator_rollup_model() -> None:
    fvey = Mark("S", rel=("USA", "FVEY"))
    gbr = Mark("S", rel=("USA", "GBR"))
    assert rollup([fvey, gbr]).banner() == "SECRET//REL TO USA, GBR"
    assert rollup([fvey, Mark("U")]).banner() == "SECRET//REL TO USA, FVEY"
    assert rollup([fvey, Mark("S", dissem=("NF",))]).banner() == "SECRET//NOFORN"
    assert rollup([Mark("S", rel=("USA", "AUS")), gbr]).banner() == "SECRET//NOFORN"
    assert rollup([Mark("S")]).banner() == "SECRET//NOFORN"
    assert fvey.releasable_to("GBR") and not gbr.releasable_to("FVEY")
    assert not Mark("U", dissem=("FOUO",)).releasable_to("PUBLIC")
    with pytest.raises(ValueError):
        Generator(GBR, 1, CODEWORDS, GeneratorConfig(weights={"nonsense": 1.0}))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**64), st.sampled_from(TARGETS))
def test_any_seed_gives_consistent_messages(seed: int, target: FlowTarget) -> None:
    for m in Generator(target, seed, CODEWORDS, SMALL).take(12):
        e = m.entry
        assert e.size == len(m.payload) and e.sha256 == hashlib.sha256(m.payload).hexdigest()
        assert LedgerEntry.from_json(e.to_json()) == e


def test_interleaved_flows_are_published_in_schedule_order_with_ledger_first(
    tmp_path: Path,
) -> None:
    gens = [Generator(t, 1, CODEWORDS, GeneratorConfig(rate_per_s=500, poisson=True))
            for t in TARGETS]  # fmt: skip
    msgs = interleave(gens, 20)
    assert len(msgs) == 100 and [m.at for m in msgs] == sorted(m.at for m in msgs)
    assert {m.flow for m in msgs} == {t.name for t in TARGETS}

    class Recorder:
        def __init__(self, ledger_path: Path) -> None:
            self.path = ledger_path
            self.seen: list[tuple[str, int]] = []

        async def publish(self, topic, payload, properties) -> None:
            # the ledger already holds this message when it is published
            self.seen.append((topic, len(read_ledger(self.path))))

    path = tmp_path / "ledger.jsonl"
    rec = Recorder(path)
    with Ledger(path) as led:
        start = time.monotonic()
        n = asyncio.run(publish_stream(rec, msgs, led))
        elapsed = time.monotonic() - start
    assert n == 100 and [k for _, k in rec.seen] == list(range(1, 101))
    assert [t for t, _ in rec.seen] == [m.topic for m in msgs]
    assert elapsed >= max(m.at for m in msgs) - 0.01  # paced, not a burst
    assert [e.message_id for e in read_ledger(path)] == [m.message_id for m in msgs]
