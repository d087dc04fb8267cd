"""The compiled audit hot path (guard/_audit.pxi, guard/sha256.h) against the Python one.

SHA-256 is checked against hashlib on every implementation this CPU runs (SHA-NI and
the portable C code), the Merkle frontier against ``merkle.MerkleTree``, the record
encoder byte for byte (and error for error) against ``RecordEncoder.encode``, and
whole logs: written fast, they are identical to logs written by the Python path and
verify with the hashlib-only verifier, even when the extension cannot be imported.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guard import _core
from guard.audit import AuditError, AuditLog, DecisionRecord, Signer, accel
from guard.audit.merkle import Frontier, MerkleTree, node_hash
from guard.audit.records import RecordEncoder
from guard.audit.verify import analyse
from guard.findings import Finding

SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}
H = hashlib.sha256(b"payload").hexdigest()
P = hashlib.sha256(b"policy").hexdigest()
IMPLS = _core.audit_sha256_available()
BOUNDARIES = [0, 1, 54, 55, 56, 57, 63, 64, 65, 118, 119, 120, 121, 127, 128, 129, 191, 192]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on each SHA-256 implementation the CPU supports, then restore."""
    before = _core.audit_sha256_impl()
    _core.audit_sha256_impl(request.param)
    try:
        yield request.param
    finally:
        _core.audit_sha256_impl(before)


def rec(i: int, **kw: object) -> DecisionRecord:
    fields: dict = dict(decision_id=f"d-{i}", time=1_700_000_000.25 + i, flow="high-to-nato",
                        message_id=f"m-{i}", input_sha256=H, output_sha256=H, policy_sha256=P,
                        verdict="release")
    fields.update(kw)
    return DecisionRecord(**fields)


# -- SHA-256 ---------------------------------------------------------------------------------


def test_the_fast_implementation_is_chosen_when_the_cpu_has_it() -> None:
    flags = ""
    if Path("/proc/cpuinfo").exists():
        flags = Path("/proc/cpuinfo").read_text()
    has_sha = " sha_ni" in flags
    assert ("sha-ni" in IMPLS) == has_sha
    assert IMPLS[-1] == "portable"
    with pytest.raises(ValueError):
        _core.audit_sha256_impl("md5")


def test_sha256_at_every_padding_boundary(impl: str) -> None:
    for n in [*BOUNDARIES, *range(0, 300)]:
        data = bytes((7 * k + n) & 0xFF for k in range(n))
        assert _core.audit_sha256(data) == hashlib.sha256(data).digest(), (impl, n)
    assert _core.audit_sha256(b"abc").hex() == (  # FIPS 180-4 example
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_batch_hex_digests_equal_hashlib(impl: str) -> None:
    datas: list = [bytes((5 * k + n) & 0xFF for k in range(n)) for n in [*BOUNDARIES, 4096]]
    datas += [bytearray(b"mutable"), memoryview(b"a view of bytes")[2:], b""]
    assert _core.audit_sha256_hex_many(datas) == [hashlib.sha256(d).hexdigest() for d in datas]
    assert _core.audit_sha256_hex_many([]) == []
    with pytest.raises(TypeError):
        _core.audit_sha256_hex_many(["text is not bytes"])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(min_size=0, max_size=2000),
                      st.sampled_from(BOUNDARIES).flatmap(
                          lambda n: st.binary(min_size=n, max_size=n))))
def test_sha256_matches_hashlib(impl: str, data: bytes) -> None:
    assert _core.audit_sha256(data) == hashlib.sha256(data).digest()
    assert _core.audit_sha256(memoryview(bytearray(data))) == hashlib.sha256(data).digest()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=300), max_size=40),
       left=st.binary(min_size=32, max_size=32), right=st.binary(min_size=32, max_size=32))
def test_leaf_and_node_hashes_are_rfc9162(impl: str, lines: list[bytes], left: bytes,
                                          right: bytes) -> None:
    want = b"".join(hashlib.sha256(b"\x00" + line).digest() for line in lines)
    assert _core.audit_leaf_hashes(lines) == want
    assert _core.audit_leaf_hashes([bytearray(x) for x in lines]) == want
    assert _core.audit_node_hash(left, right) == node_hash(left, right)
    assert _core.audit_node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        _core.audit_node_hash(b"x" * 31, b"y" * 32)
    f = accel.FastFrontier()
    with pytest.raises(ValueError):
        f.extend_packed(b"z" * 33)
    with pytest.raises(ValueError):
        _core.audit_frontier_extend(bytearray(10), 0, b"")
    with pytest.raises(TypeError):
        _core.audit_sha256("text is not bytes")


# -- the Merkle frontier -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 300), cuts=st.lists(st.integers(0, 300), max_size=6),
       resume=st.integers(0, 300))
def test_fast_frontier_matches_the_tree(impl: str, n: int, cuts: list[int], resume: int) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    tree = MerkleTree(leaves)
    resume = min(resume, n)  # continue from a frontier the Python code built (a reopened log)
    py = Frontier()
    py.extend(leaves[:resume])
    fast = accel.FastFrontier(py)
    assert fast.root() == py.root() == tree.root(resume)
    pos = resume
    for cut in [*sorted(c for c in cuts if c > resume), n]:
        cut = min(cut, n)
        fast.extend_packed(b"".join(leaves[pos:cut]))
        pos = max(pos, cut)
        assert fast.size == pos and fast.root() == tree.root(pos)


# -- record lines ------------------------------------------------------------------------------

_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=12),  # controls, DEL, '"', '\\'
    st.text(max_size=12),  # anything: non-ASCII, lone surrogates
    st.integers(),  # not a string at all
)
_hex = st.one_of(st.just(H), st.just(P), st.just(H.upper()), st.just(H[:63]),
                 st.just(H[:63] + "g"), st.none(), st.just(b"\x00" * 64))
_time = st.one_of(
    st.floats(min_value=0, max_value=4e9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-2**70, 2**70).map(lambda k: k / 2 / 1_000_000),  # exact ties at .5 us
    st.integers(0, 2**40),  # int, not float
    st.just(float("nan")), st.just(-0.0), st.just(9.3e12), st.none(),
)
_findings = st.one_of(
    st.just([]), st.just(()), st.none(),
    st.just([{"rule": "dirty-word", "message": "term \u2018X\u2019", "start": 1, "end": 2}]),
    st.just([Finding("marking", "NOFORN \u2014 not releasable", 0, 6)]),
    st.just([{"x": float("nan")}]), st.just(["not a dict"]), st.just("[]"),
    st.lists(st.dictionaries(  # flat dicts (encoded in C) and anything else (in Python)
        st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=6),
                  st.text(max_size=4), st.integers(-3, 3)),
        st.one_of(st.text(max_size=8), st.integers(-2**64, 2**64), st.integers(-9, 9),
                  st.booleans(), st.none(), st.floats(), st.lists(st.integers(), max_size=2)),
        max_size=4), max_size=3),
)


@st.composite
def _records(draw: st.DrawFn) -> DecisionRecord:
    return DecisionRecord(
        decision_id=draw(_text), time=draw(_time),
        flow=draw(st.one_of(st.sampled_from(["high-to-nato", "h\u00f6gh", 'q"uote']), _text)),
        message_id=draw(_text),
        input_sha256=draw(st.one_of(st.just(H), _hex)),
        output_sha256=draw(st.one_of(st.just(H), _hex)),
        policy_sha256=draw(st.one_of(st.just(P), _hex)),
        verdict=draw(st.one_of(st.sampled_from(
            ["release", "redact", "quarantine", "block", "error"]),
            st.sampled_from(["Release", "relea", "", "blocked"]), st.none())),
        findings=draw(_findings),
    )


def _copy(r: DecisionRecord) -> DecisionRecord:
    return DecisionRecord(r.decision_id, r.time, r.flow, r.message_id, r.input_sha256,
                          r.output_sha256, r.policy_sha256, r.verdict, r.findings)


def _run(records: list[DecisionRecord], seq: int, prev: bytes,
         fast: bool) -> tuple[bytes, bytes] | str:
    enc = RecordEncoder(SIGNER.key_id)
    # a warm flow cache, as in a running log (a flow's first record goes through Python)
    flows = {f for f in (getattr(r, "flow", None) for r in records) if isinstance(f, str) and f}
    enc.encode_packed([rec(0, flow=f) for f in flows], 0, bytes(32), fast=False)
    try:
        return enc.encode_packed(records, seq, prev, fast=fast)
    except AuditError as exc:
        return f"AuditError: {exc}"


@settings(max_examples=400, deadline=None)
@given(records=st.lists(_records(), max_size=6), seq=st.integers(0, 2**40),
       prev=st.binary(min_size=32, max_size=32))
@example(records=[rec(0, time=0.5e-6), rec(1, time=1.5e-6), rec(2, time=-2.5e-6)], seq=0,
         prev=bytes(32))
@example(records=[rec(0, time=float("inf"))], seq=0, prev=bytes(32))
@example(records=[rec(0, decision_id="a\x7fb", message_id='q"\\\t\n\x1f~ ')], seq=5,
         prev=bytes(32))
def test_fast_encoder_is_byte_identical_to_python(records: list[DecisionRecord], seq: int,
                                                  prev: bytes) -> None:
    fast = _run([_copy(r) for r in records], seq, prev, True)
    slow = _run([_copy(r) for r in records], seq, prev, False)
    assert fast == slow
    if isinstance(fast, tuple):  # and the pure path is the RFC 9162 definition
        data, leaves = fast
        lines = data.split(b"\n")
        assert lines[-1] == b"" and len(leaves) == 32 * (len(lines) - 1) == 32 * len(records)
        link = prev
        for k, line in enumerate(lines[:-1]):
            assert json.loads(line)["prev"] == link.hex()
            link = hashlib.sha256(b"\x00" + line).digest()
            assert leaves[32 * k:32 * k + 32] == link


_ascii = st.text(alphabet=st.characters(max_codepoint=127), max_size=12)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.builds(  # valid records: the compiled encoder's own ground
    rec, st.integers(0, 10**6), decision_id=st.one_of(_ascii, st.text(max_size=8)),
    message_id=st.one_of(_ascii, st.text(max_size=8)),
    time=st.one_of(st.floats(0, 4e9), st.integers(-2**60, 2**60).map(lambda k: k / 2e6)),
    flow=st.sampled_from(["high-to-nato", "h\u00f6gh", 'q"uote']),
    output_sha256=st.sampled_from([H, None]),
    verdict=st.sampled_from(["release", "redact", "quarantine", "block", "error"]),
    findings=_findings), min_size=1, max_size=5))
def test_fast_encoder_on_valid_records(records: list[DecisionRecord]) -> None:
    fast = _run([_copy(r) for r in records], 3, bytes(32), True)
    assert fast == _run([_copy(r) for r in records], 3, bytes(32), False)


def test_fast_encoder_names_the_bad_record_like_python() -> None:
    for bad in (dict(time=float("nan")), dict(verdict="maybe"), dict(input_sha256=H.upper()),
                dict(flow=""), dict(findings=[object()]), dict(policy_sha256=None)):
        batch = [rec(i) for i in range(3)] + [rec(3, **bad)] + [rec(4)]
        fast, slow = _run(batch, 10, bytes(32), True), _run(batch, 10, bytes(32), False)
        assert isinstance(fast, str) and fast == slow and "record 3 of the batch" in fast, bad


@dataclass(slots=True)
class _Sub(DecisionRecord):
    extra: int = 0


class _Duck:
    """Not a DecisionRecord: fields in an instance dict, read through getattr."""

    def __init__(self, r: DecisionRecord, flow: str | None = None) -> None:
        self.__dict__.update({k: getattr(r, k) for k in DecisionRecord.__slots__})
        if flow is not None:
            self.flow = flow


def test_other_record_classes_encode_the_same() -> None:
    def batch() -> list:
        a, b = rec(1), rec(2, verdict="block", output_sha256=None)
        sub = _Sub(**{k: getattr(a, k) for k in DecisionRecord.__slots__}, extra=7)
        return [a, sub, _Duck(b), rec(3), _Duck(a, flow="h\u00f6gh"), sub, rec(4)]

    fast, slow = batch(), batch()
    assert _run(fast, 3, bytes(32), True) == _run(slow, 3, bytes(32), False)
    assert all(r.key_id == SIGNER.key_id for r in fast)
    unset = rec(9)
    del unset.flow  # an unset slot is reported, not read
    for fast_path in (True, False):
        got = _run([rec(8), unset], 0, bytes(32), fast_path)
        assert isinstance(got, str) and "record 1 of the batch" in got and "flow" in got


def test_fast_encoder_fills_in_the_key_id() -> None:
    records = [rec(i) for i in range(4)]
    RecordEncoder(SIGNER.key_id).encode_packed(records, 0, bytes(32), fast=True)
    assert all(r.key_id == SIGNER.key_id for r in records)


def test_time_rounds_half_to_even_like_python() -> None:
    times = [k / 2 / 1_000_000 for k in range(-9, 10)] + [1_700_000_000.0000005, 2.5e-6]
    records = [rec(i, time=t) for i, t in enumerate(times)]
    data, _ = RecordEncoder(SIGNER.key_id).encode_packed(records, 0, bytes(32), fast=True)
    got = [json.loads(line)["time_us"] for line in data.splitlines()]
    assert got == [round(t * 1_000_000) for t in times]
    assert got[:3] == [-4, -4, -4] and got[9] == 0 and not math.isnan(got[0])


# -- whole logs --------------------------------------------------------------------------------


def _batches() -> list[list[DecisionRecord]]:
    odd = dict(message_id='quote " back\\slash \n nl \udc80', flow="h\u00f6gh", time=5)
    blocked = dict(verdict="block", output_sha256=None,
                   findings=[Finding("marking", "NOFORN \u2014 not releasable", 0, 6)])
    return [[rec(i + 10 * b, **(odd if i == 3 else blocked if i % 4 == 1 else {}))
             for i in range(1 + 3 * b)] for b in range(6)]


def _write(directory: Path, fast: bool, batches: list[list[DecisionRecord]]) -> None:
    # flush() closes every batch, so both logs get the same heads (size, root, last leaf)
    with AuditLog(directory, SIGNER, max_delay_s=3600, batch_max=10**6, accel=fast) as log:
        for b in batches:
            log.append_many(b)
            log.flush()


def _heads(directory: Path) -> list[tuple[object, ...]]:
    out = []
    for line in (directory / "heads.jsonl").read_bytes().splitlines():
        h = json.loads(line)
        out.append((h["tree_size"], h["root_hash"], h["last_leaf"]))
    return out


def test_fast_log_is_identical_to_python_log_and_verifies(tmp_path: Path, impl: str) -> None:
    fast_dir, slow_dir = tmp_path / "fast", tmp_path / "slow"
    _write(fast_dir, True, _batches())
    _write(slow_dir, False, _batches())
    assert (fast_dir / "records.jsonl").read_bytes() == (slow_dir / "records.jsonl").read_bytes()
    assert _heads(fast_dir) == _heads(slow_dir) and len(_heads(fast_dir)) == 6
    for d in (fast_dir, slow_dir):
        rep = analyse(d, KEYS)
        assert rep.ok and rep.records == rep.covered == sum(map(len, _batches())), rep.problems


def test_either_writer_continues_the_others_log(tmp_path: Path) -> None:
    batches = _batches()
    for first in (True, False):  # reopened after every batch, alternating the writers
        d = tmp_path / f"log-{first}"
        for k, b in enumerate(batches):
            _write(d, first if k % 2 == 0 else not first, [b])
        rep = analyse(d, KEYS)
        assert rep.ok and rep.records == sum(map(len, batches)), rep.problems
    assert (tmp_path / "log-True" / "records.jsonl").read_bytes() == \
        (tmp_path / "log-False" / "records.jsonl").read_bytes()


def test_hashlib_verifier_runs_without_the_extension(tmp_path: Path) -> None:
    _write(tmp_path, True, _batches())
    code = textwrap.dedent(f"""
        import sys
        sys.modules["guard._core"] = None  # any import of the compiled module fails
        from guard.audit import accel
        from guard.audit.verify import analyse, verify_logs
        assert not accel.AVAILABLE
        rep = analyse({str(tmp_path)!r}, None)
        assert rep.ok and rep.records == {sum(map(len, _batches()))}, rep.problems
        print("verified", rep.records)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("verified")


def test_a_flipped_byte_in_a_fast_log_is_found(tmp_path: Path) -> None:
    _write(tmp_path, True, _batches())
    path = tmp_path / "records.jsonl"
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"m-21"') + 3
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    rep = analyse(tmp_path, KEYS)
    assert not rep.ok
    assert rep.problems[0].record == raw[:at].count(b"\n")


def test_accel_true_without_the_extension_is_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "AVAILABLE", False)
    with pytest.raises(ValueError):
        AuditLog(tmp_path, SIGNER, accel=True)
    with AuditLog(tmp_path, SIGNER) as log:  # default: the Python path
        assert log.accel is False
        log.append(rec(0))
    assert analyse(tmp_path, KEYS).ok
