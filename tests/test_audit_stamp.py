"""Release stamps: a receiver accepts exactly the bytes the guard released, under
the named policy, signed by a trusted key; anything else is rejected with a reason."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.audit import Signer
from guard.audit.stamp import (
    make_envelope,
    make_stamp,
    open_envelope,
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
                                  "guard-signature", "guard-stamp"])
def test_any_changed_property_is_rejected(name: str) -> None:
    props = stamp()
    changed = [(k, (v[:-1] + ("0" if v[-1] != "0" else "1")) if k == name else v)
               for k, v in props]
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
