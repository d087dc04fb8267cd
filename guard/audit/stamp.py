"""Release stamps: proof for a low-side receiver that a message passed this guard.

A stamp is a list of MQTT 5 user properties (``(name, value)`` string pairs)::

    guard-stamp           "1" (format version)
    guard-key-id          id of the signing key (first 16 hex of SHA-256 of the raw public key)
    guard-policy-sha256   the policy the decision was made under
    guard-decision-id     the audit record of the decision
    guard-flow            the flow (e.g. high-to-fvey)
    guard-message-id      the message id
    guard-payload-sha256  SHA-256 of the released bytes
    guard-signature       base64 Ed25519 signature over ``signed_bytes(...)``

The signature covers a length-prefixed encoding of every field, so no value can be
shifted into another. ``verify_stamp`` recomputes the payload hash, so a payload
changed by one byte, any edited property, or an unknown key is rejected.
The envelope form (``wrap``/``unwrap``) carries payload and stamp in one byte
string for the in-process transport.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Sequence

from guard.audit.keys import PublicKeys, Signer, verify_signature

VERSION = "1"
FIELDS = ("key-id", "policy-sha256", "decision-id", "flow", "message-id", "payload-sha256")
PREFIX = "guard-"
STAMP = "guard-stamp"
SIGNATURE = "guard-signature"
_DOMAIN = b"guard-release-stamp-v1\x00"
_ENVELOPE_MAGIC = b"GUARDENV1\n"
_MAX_HEADER = 64 * 1024


def signed_bytes(values: dict[str, str]) -> bytes:
    """Canonical bytes the signature covers: domain, then each field as u32 length + UTF-8."""
    parts = [_DOMAIN]
    for name in FIELDS:
        raw = values[name].encode("utf-8", "surrogatepass")
        parts.append(struct.pack(">I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def make_stamp(
    payload: bytes, *, decision_id: str, flow: str, message_id: str, policy_sha256: str,
    signer: Signer,
) -> list[tuple[str, str]]:
    """Sign the released ``payload``; returns MQTT 5 user properties."""
    values = {
        "key-id": signer.key_id, "policy-sha256": policy_sha256, "decision-id": decision_id,
        "flow": flow, "message-id": message_id,
        "payload-sha256": hashlib.sha256(payload).hexdigest(),
    }
    sig = base64.b64encode(signer.sign(signed_bytes(values))).decode()
    return [(STAMP, VERSION), *((PREFIX + k, values[k]) for k in FIELDS), (SIGNATURE, sig)]


def stamp_fields(props: Sequence[tuple[str, str]]) -> tuple[dict[str, str] | None, str]:
    """The stamp's fields (without prefix) from user properties, or (None, why not).

    Other user properties are allowed; each stamp property must appear exactly once.
    """
    seen: dict[str, str] = {}
    try:
        for name, value in props:
            if not isinstance(name, str) or not isinstance(value, str):
                return None, "user properties must be string pairs"
            if name.startswith(PREFIX):
                if name in seen:
                    return None, f"property {name} appears more than once"
                seen[name] = value
    except (TypeError, ValueError):
        return None, "user properties must be (name, value) pairs"
    if STAMP not in seen:
        return None, "no release stamp"
    if seen[STAMP] != VERSION:
        return None, f"unknown stamp version {seen[STAMP]!r}"
    out: dict[str, str] = {}
    for k in (*FIELDS, "signature"):
        if PREFIX + k not in seen:
            return None, f"stamp property {PREFIX + k} is missing"
        out[k] = seen[PREFIX + k]
    unknown = set(seen) - {STAMP} - {PREFIX + k for k in (*FIELDS, "signature")}
    if unknown:
        return None, f"unknown stamp properties {sorted(unknown)}"
    return out, ""


def verify_stamp(
    payload: bytes, props: Sequence[tuple[str, str]], public_keys: PublicKeys
) -> tuple[bool, str]:
    """Check a stamp: (True, "ok ...") or (False, the reason it is rejected)."""
    values, why = stamp_fields(props)
    if values is None:
        return False, why
    key = public_keys.get(values["key-id"])
    if key is None:
        return False, f"key id {values['key-id']} is not a trusted guard key"
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        return False, "payload must be bytes"
    if hashlib.sha256(payload).hexdigest() != values["payload-sha256"]:
        return False, "payload differs from what the guard released (SHA-256 mismatch)"
    try:
        sig = base64.b64decode(values["signature"], validate=True)
    except (binascii.Error, ValueError):
        return False, "signature is not base64"
    if not verify_signature(key, sig, signed_bytes(values)):
        return False, "signature does not verify: a stamp property was altered or forged"
    return True, (f"released by key {values['key-id']} under policy "
                  f"{values['policy-sha256']} (decision {values['decision-id']})")


def wrap(payload: bytes, props: Sequence[tuple[str, str]]) -> bytes:
    """Envelope: magic, u32 header length, JSON list of properties, then the payload."""
    header = json.dumps([list(p) for p in props], ensure_ascii=True).encode()
    return _ENVELOPE_MAGIC + struct.pack(">I", len(header)) + header + bytes(payload)


def unwrap(data: bytes) -> tuple[bytes, list[tuple[str, str]]] | None:
    """Payload and properties of an envelope, or None if it is not a well-formed envelope."""
    m = len(_ENVELOPE_MAGIC)
    if len(data) < m + 4 or data[:m] != _ENVELOPE_MAGIC:
        return None
    (n,) = struct.unpack(">I", data[m:m + 4])
    if n > _MAX_HEADER or len(data) < m + 4 + n:
        return None
    try:
        items = json.loads(data[m + 4:m + 4 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(items, list) or not all(
        isinstance(i, list) and len(i) == 2 and all(isinstance(x, str) for x in i) for i in items
    ):
        return None
    return bytes(data[m + 4 + n:]), [(a, b) for a, b in items]


def make_envelope(
    payload: bytes, *, decision_id: str, flow: str, message_id: str, policy_sha256: str,
    signer: Signer,
) -> bytes:
    """Stamp ``payload`` and wrap both in one envelope."""
    props = make_stamp(payload, decision_id=decision_id, flow=flow, message_id=message_id,
                       policy_sha256=policy_sha256, signer=signer)
    return wrap(payload, props)


def open_envelope(data: bytes, public_keys: PublicKeys) -> tuple[bool, str, bytes | None]:
    """(ok, reason, payload): the payload only when the stamp verifies (fail closed)."""
    got = unwrap(data)
    if got is None:
        return False, "not a guard envelope", None
    payload, props = got
    ok, why = verify_stamp(payload, props, public_keys)
    return ok, why, payload if ok else None
