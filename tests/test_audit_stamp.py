"""Release stamps: a receiver accepts exactly the bytes the guard released, under
the named policy, signed by a trusted key; anything else is rejected with a reason."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.audit import Signer
from guard.audit.stamp import (
    Release,
    make_envelope,
    make_stamp,
    make_stamps,
    open_envelope,
    signed_bytes,
    unwrap,
    verify_stamp,
    wrap,
)

SIGNER = Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}
POLICY = hashlib.sha256(b"policy fvey v3").hexdigest()
PAYLOAD = b"SECRET//REL TO USA, FVEY\n(S//REL TO USA, FVEY) Naval activity increased.\n"


def stamp(payload: bytes = PAYLOAD, signer: Signer = SIGNER) -> list[tuple[str, str]]:
    return make_stamp(payload, decision_id="w1-000042", flow="high-to-fvey",
                      message_id="msg-42", policy_sha256=POLICY, signer=signer)


def test_valid_stamp_names_key_policy_and_decision() -> None:
    props = stamp()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props)
    ok, why = verify_stamp(PAYLOAD, props, KEYS)
    assert ok and POLICY in why and "w1-000042" in why and SIGNER.key_id in why
    # other user properties travel alongside without harm
    assert verify_stamp(PAYLOAD, [("trace", "abc"), *props], KEYS)[0]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_changed_payload_byte_is_rejected(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(PAYLOAD) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != PAYLOAD[pos]))
    tampered = PAYLOAD[:pos] + bytes([new]) + PAYLOAD[pos + 1:]
    ok, why = verify_stamp(tampered, stamp(), KEYS)
    assert not ok and "payload" in why


def test_appended_or_truncated_payload_is_rejected() -> None:
    props = stamp()
    for p in (PAYLOAD + b"x", PAYLOAD[:-1], b""):
        assert not verify_stamp(p, props, KEYS)[0]


@pytest.mark.parametrize("name", ["guard-key-id", "guard-policy-sha256", "guard-decision-id",
                                  "guard-flow", "guard-message-id", "guard-payload-sha256",
                                  "guard-signature", "guard-stamp", "guard-batch",
                                  "guard-batch-path"])
def test_any_changed_property_is_rejected(name: str) -> None:
    props = stamp()
    def tweak(v: str) -> str:  # an empty path (batch of one) gets a hash it does not have
        return v[:-1] + ("0" if v[-1] != "0" else "1") if v else base64.b64encode(
            bytes(32)).decode()

    changed = [(k, tweak(v) if k == name else v) for k, v in props]
    ok, why = verify_stamp(PAYLOAD, changed, KEYS)
    assert not ok and why


def test_policy_swapped_for_another_valid_hash_is_rejected() -> None:
    other = hashlib.sha256(b"permissive policy").hexdigest()
    props = [(k, other if k == "guard-policy-sha256" else v) for k, v in stamp()]
    ok, why = verify_stamp(PAYLOAD, props, KEYS)
    assert not ok and "signature" in why


def test_wrong_or_unknown_key_is_rejected() -> None:
    mallory = Signer.generate()
    ok, why = verify_stamp(PAYLOAD, stamp(signer=mallory), KEYS)
    assert not ok and "not a trusted" in why
    # a stamp by mallory relabelled with our key id fails the signature
    props = [(k, SIGNER.key_id if k == "guard-key-id" else v) for k, v in stamp(signer=mallory)]
    ok, why = verify_stamp(PAYLOAD, props, KEYS)
    assert not ok and "signature" in why
    assert not verify_stamp(PAYLOAD, stamp(), {})[0]


def test_missing_duplicated_or_malformed_properties_are_rejected() -> None:
    props = stamp()
    for i in range(len(props)):
        assert not verify_stamp(PAYLOAD, props[:i] + props[i + 1:], KEYS)[0]
    assert not verify_stamp(PAYLOAD, [*props, props[3]], KEYS)[0]
    assert not verify_stamp(PAYLOAD, [*props, ("guard-extra", "1")], KEYS)[0]
    assert not verify_stamp(PAYLOAD, [], KEYS)[0]
    assert not verify_stamp(PAYLOAD, [("guard-stamp",)], KEYS)[0]  # type: ignore[list-item]
    assert not verify_stamp(PAYLOAD, [(b"guard-stamp", b"1")], KEYS)[0]  # type: ignore[list-item]
    sig = [(k, "***" if k == "guard-signature" else v) for k, v in props]
    assert not verify_stamp(PAYLOAD, sig, KEYS)[0]


def test_field_boundaries_cannot_shift() -> None:
    # moving characters between adjacent fields keeps the concatenation, not the signature
    a = make_stamp(PAYLOAD, decision_id="ab", flow="c", message_id="m", policy_sha256=POLICY,
                   signer=SIGNER)
    b = dict(a)
    b["guard-decision-id"], b["guard-flow"] = "a", "bc"
    assert not verify_stamp(PAYLOAD, list(b.items()), KEYS)[0]


def test_envelope_round_trip_and_tamper() -> None:
    env = make_envelope(PAYLOAD, decision_id="d", flow="f", message_id="m",
                        policy_sha256=POLICY, signer=SIGNER)
    ok, why, payload = open_envelope(env, KEYS)
    assert ok and payload == PAYLOAD
    ok, why, payload = open_envelope(env[:-1] + b"X", KEYS)
    assert not ok and payload is None
    for junk in (b"", b"GUARDENV1\n", b"GUARDENV1\n\xff\xff\xff\xff", b"random bytes" * 10,
                 wrap(PAYLOAD, [])[:14] + b"[[1,2]]"):
        ok, why, payload = open_envelope(junk, KEYS)
        assert not ok and payload is None and why
    assert unwrap(wrap(b"\x00\xff", [("a", "b")])) == (b"\x00\xff", [("a", "b")])


def _batch(n: int, flow: str = "high-to-fvey") -> tuple[list[bytes], list[list[tuple[str, str]]]]:
    payloads = [PAYLOAD + str(i).encode() for i in range(n)]
    releases = [Release(hashlib.sha256(p).hexdigest(), f"w1-{i}", flow, f"msg-{i}", POLICY)
                for i, p in enumerate(payloads)]
    return payloads, make_stamps(releases, SIGNER)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 100])
def test_every_stamp_of_a_batch_verifies_on_its_own_under_one_signature(n: int) -> None:
    payloads, stamps = _batch(n)
    assert len({dict(s)["guard-signature"] for s in stamps}) == 1
    for i, (p, s) in enumerate(zip(payloads, stamps, strict=True)):
        assert dict(s)["guard-batch"] == f"{i}/{n}"
        ok, why = verify_stamp(p, s, KEYS)
        assert ok, why
        # a stamp is only good for its own payload, not a sibling's
        assert not verify_stamp(payloads[(i + 1) % n], s, KEYS)[0] or n == 1


def test_a_leaf_moved_to_another_index_or_batch_is_rejected() -> None:
    payloads, stamps = _batch(6)
    s = dict(stamps[2])
    for batch in ("3/6", "2/7", "2/5", "0/6"):
        assert not verify_stamp(payloads[2], list({**s, "guard-batch": batch}.items()), KEYS)[0]
    # another batch's path or signature does not fit this leaf
    alien = dict(_batch(7)[1][2])
    for name in ("guard-batch-path", "guard-signature"):
        assert not verify_stamp(payloads[2], list({**s, name: alien[name]}.items()), KEYS)[0]


@pytest.mark.parametrize("value", ["", "1", "/6", "2/", "02/6", "-1/6", "6/6", "2/0", " 2/6",
                                   "2/6 ", "2/65537", "2/1000000", "١/6"])
def test_malformed_batch_properties_are_rejected(value: str) -> None:
    payloads, stamps = _batch(6)
    s = dict(stamps[2])
    ok, why = verify_stamp(payloads[2], list({**s, "guard-batch": value}.items()), KEYS)
    assert not ok and why
    for path in ("***", s["guard-batch-path"][:-4], base64.b64encode(b"x" * 31).decode(),
                 base64.b64encode(b"x" * 32 * 17).decode()):
        ok, why = verify_stamp(payloads[2], list({**s, "guard-batch-path": path}.items()), KEYS)
        assert not ok and why


def test_a_batch_must_not_mix_flows_and_must_not_be_empty() -> None:
    r = Release(hashlib.sha256(PAYLOAD).hexdigest(), "d", "high-to-fvey", "m", POLICY)
    with pytest.raises(ValueError, match="mix flows"):
        make_stamps([r, r._replace(flow="high-to-gbr")], SIGNER)
    with pytest.raises(ValueError):
        make_stamps([], SIGNER)


def test_version_1_stamps_of_earlier_guards_still_verify() -> None:
    values = {"key-id": SIGNER.key_id, "policy-sha256": POLICY, "decision-id": "d1",
              "flow": "high-to-fvey", "message-id": "m1",
              "payload-sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    sig = base64.b64encode(SIGNER.sign(signed_bytes(values))).decode()
    v1 = [("guard-stamp", "1"), *(("guard-" + k, v) for k, v in values.items()),
          ("guard-signature", sig)]
    assert verify_stamp(PAYLOAD, v1, KEYS)[0]
    assert not verify_stamp(PAYLOAD + b"!", v1, KEYS)[0]
    # version 1 has no batch properties; a v2 signature under "1" does not verify
    assert not verify_stamp(PAYLOAD, [*v1, ("guard-batch", "0/1")], KEYS)[0]
    v2 = dict(stamp())
    as_v1 = [(k, "1" if k == "guard-stamp" else v) for k, v in v2.items()
             if k not in ("guard-batch", "guard-batch-path")]
    assert not verify_stamp(PAYLOAD, as_v1, KEYS)[0]


def test_a_remembered_signature_never_vouches_for_other_bytes() -> None:
    payloads, stamps = _batch(4)
    assert verify_stamp(payloads[0], stamps[0], KEYS)[0]  # now remembered
    mallory = Signer.generate()
    # same key id relabelled, other key: the remembered success is keyed by the raw key
    assert not verify_stamp(payloads[0], stamps[0], {SIGNER.key_id: mallory.public_key})[0]
    forged = [(k, v[:-1] + ("0" if v[-1] != "0" else "1") if k == "guard-decision-id" else v)
              for k, v in stamps[0]]
    assert not verify_stamp(payloads[0], forged, KEYS)[0]


def test_stamping_a_batch_leaves_no_reference_cycles() -> None:
    # the daemon keeps the collector's passes rare: a cycle per batch would pile up
    import gc

    gc.collect()
    gc.disable()
    try:
        for n in (1, 7, 64):
            _batch(n)
        assert gc.collect() == 0
    finally:
        gc.enable()
