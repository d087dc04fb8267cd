"""Release stamps: proof for a low-side receiver that a message passed this guard.

A stamp is a list of MQTT 5 user properties (``(name, value)`` string pairs)::

    guard-stamp           "2" (format version)
    guard-key-id          id of the signing key (first 16 hex of SHA-256 of the raw public key)
    guard-policy-sha256   the policy the decision was made under
    guard-decision-id     the audit record of the decision
    guard-flow            the flow (e.g. high-to-fvey)
    guard-message-id      the message id
    guard-payload-sha256  SHA-256 of the released bytes
    guard-batch           "<index>/<size>": this release's leaf in its signing batch
    guard-batch-path      base64 RFC 9162 inclusion path of that leaf (empty for size 1)
    guard-signature       base64 Ed25519 signature over the batch's Merkle root

Why batches: one Ed25519 signature costs ~27 us, as much as deciding a 4 KB message,
so the guard signs once per batch of releases of one flow. Each release is a leaf,
``SHA-256(0x00 || leaf_bytes(fields))``, of an RFC 9162 Merkle tree, and the signature
covers ``batch_bytes(size, root)``; a receiver recomputes the leaf from the stamp,
walks the inclusion path to the root and checks the signature: a stamp still stands
on its own. The leaf covers a length-prefixed encoding of every field, so no value
can be shifted into another, and ``verify_stamp`` recomputes the payload hash, so a
payload changed by one byte, any edited property, a leaf moved to another index or
batch, or an unknown key is rejected. A batch never mixes flows, so a path only
holds hashes of releases to the same destination.

Version "1" stamps (one signature per message over ``signed_bytes``, no batch
properties) from earlier guards still verify. The envelope form
(``wrap``/``unwrap``) carries payload and stamp in one byte string for the
in-process transport.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Sequence
from typing import NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from guard.audit.keys import PublicKeys, Signer, verify_signature
from guard.audit.merkle import leaf_hash, root_and_paths, root_from_inclusion

VERSION = "2"
VERSIONS = ("1", "2")
FIELDS = ("key-id", "policy-sha256", "decision-id", "flow", "message-id", "payload-sha256")
BATCH_FIELDS = ("batch", "batch-path")
PREFIX = "guard-"
_NAMES = tuple(PREFIX + k for k in FIELDS)
STAMP = "guard-stamp"
SIGNATURE = "guard-signature"
_DOMAIN = b"guard-release-stamp-v1\x00"
_LEAF_DOMAIN = b"guard-release-stamp-v2\x00"
_BATCH_DOMAIN = b"guard-release-batch-v2\x00"
_ENVELOPE_MAGIC = b"GUARDENV1\n"
_MAX_HEADER = 64 * 1024
MAX_BATCH = 1 << 16  # releases under one signature (a path of at most 16 hashes)
_BATCH_RE = re.compile(r"(0|[1-9][0-9]{0,5})/([1-9][0-9]{0,5})")


class Release(NamedTuple):
    """What a stamp attests: one released payload (by its SHA-256 hex) and its decision."""

    payload_sha256: str
    decision_id: str
    flow: str
    message_id: str
    policy_sha256: str


def _encode(domain: bytes, fields: Sequence[str]) -> bytes:
    """``domain``, then each field (in ``FIELDS`` order) as u32 length + UTF-8."""
    parts = [domain]
    for value in fields:
        raw = value.encode("utf-8", "surrogatepass")
        parts.append(len(raw).to_bytes(4, "big"))
        parts.append(raw)
    return b"".join(parts)


def signed_bytes(values: dict[str, str]) -> bytes:
    """Version 1: the bytes signed, domain then each field as u32 length + UTF-8."""
    return _encode(_DOMAIN, [values[name] for name in FIELDS])


def leaf_bytes(values: dict[str, str]) -> bytes:
    """Version 2: a release's Merkle leaf entry (same encoding, its own domain)."""
    return _encode(_LEAF_DOMAIN, [values[name] for name in FIELDS])


def batch_bytes(size: int, root: bytes) -> bytes:
    """Version 2: the bytes signed for a batch, its domain, u32 size and Merkle root."""
    return _BATCH_DOMAIN + struct.pack(">I", size) + root


def make_stamps(releases: Sequence[Release], signer: Signer) -> list[list[tuple[str, str]]]:
    """Stamps for a batch of releases of one flow under one signature, in order.

    Raises ``ValueError`` for an empty batch, a batch over ``MAX_BATCH`` or mixed flows.
    """
    n = len(releases)
    if not 0 < n <= MAX_BATCH:
        raise ValueError(f"a stamp batch holds 1..{MAX_BATCH} releases, not {n}")
    if len({r.flow for r in releases}) != 1:
        raise ValueError("a stamp batch must not mix flows")
    kid = signer.key_id
    # each release's fields in FIELDS order: key id, policy, decision, flow, message, payload
    fields = [(kid, r.policy_sha256, r.decision_id, r.flow, r.message_id, r.payload_sha256)
              for r in releases]
    root, paths = root_and_paths([leaf_hash(_encode(_LEAF_DOMAIN, f)) for f in fields])
    sig = base64.b64encode(signer.sign(batch_bytes(n, root))).decode()
    b64 = base64.b64encode
    return [[(STAMP, VERSION), *zip(_NAMES, f, strict=True), ("guard-batch", f"{i}/{n}"),
             ("guard-batch-path", b64(b"".join(path)).decode()), (SIGNATURE, sig)]
            for i, (f, path) in enumerate(zip(fields, paths, strict=True))]


def make_stamp(
    payload: bytes, *, decision_id: str, flow: str, message_id: str, policy_sha256: str,
    signer: Signer,
) -> list[tuple[str, str]]:
    """Sign one released ``payload`` (a batch of one); returns MQTT 5 user properties."""
    release = Release(hashlib.sha256(payload).hexdigest(), decision_id, flow, message_id,
                      policy_sha256)
    return make_stamps([release], signer)[0]


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
    version = seen[STAMP]
    if version not in VERSIONS:
        return None, f"unknown stamp version {version!r}"
    names = (*FIELDS, *(BATCH_FIELDS if version == "2" else ()), "signature")
    out: dict[str, str] = {"stamp": version}
    for k in names:
        if PREFIX + k not in seen:
            return None, f"stamp property {PREFIX + k} is missing"
        out[k] = seen[PREFIX + k]
    unknown = set(seen) - {STAMP} - {PREFIX + k for k in names}
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
    if values["stamp"] == "1":
        signed = signed_bytes(values)
    else:
        signed, why = _batch_signed(values)
        if signed is None:
            return False, why
    if not _verified(key, sig, signed):
        return False, "signature does not verify: a stamp property was altered or forged"
    return True, (f"released by key {values['key-id']} under policy "
                  f"{values['policy-sha256']} (decision {values['decision-id']})")


def _batch_signed(values: dict[str, str]) -> tuple[bytes | None, str]:
    """The signed batch bytes a version 2 stamp's leaf and path lead to, or (None, why)."""
    m = _BATCH_RE.fullmatch(values["batch"])
    if m is None:
        return None, "guard-batch is not <index>/<size>"
    index, size = int(m.group(1)), int(m.group(2))
    if not index < size <= MAX_BATCH:
        return None, "guard-batch index or size out of range"
    try:
        path = base64.b64decode(values["batch-path"], validate=True)
    except (binascii.Error, ValueError):
        return None, "guard-batch-path is not base64"
    if len(path) % 32 or len(path) > 32 * 16:
        return None, "guard-batch-path is not a list of SHA-256 hashes"
    proof = [path[i:i + 32] for i in range(0, len(path), 32)]
    leaf = leaf_hash(leaf_bytes(values))
    root = root_from_inclusion(leaf, index, size, proof)
    if root is None:
        return None, "guard-batch-path does not fit its index and size"
    return batch_bytes(size, root), ""


# Signatures that verified, so that the other releases of a batch cost a hash walk, not
# an Ed25519 verification (~60 us). Keyed by the raw public key, the signature and the
# signed bytes: a hit is exactly the same check. Only successes are kept; bounded.
_VERIFIED: dict[tuple[bytes, bytes, bytes], None] = {}
_VERIFIED_MAX = 4096


def _verified(key: Ed25519PublicKey, sig: bytes, signed: bytes) -> bool:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    k = (raw, sig, signed)
    if k in _VERIFIED:
        return True
    if not verify_signature(key, sig, signed):
        return False
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[k] = None
    return True


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
