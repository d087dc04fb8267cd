"""Signed tree heads: one JSON line per head in ``heads.jsonl``.

A head says "the first ``tree_size`` records of log ``log_id`` have Merkle root
``root_hash`` (and the last of them has leaf hash ``last_leaf``)", signed with
Ed25519 by key ``key_id`` over ``signed_bytes()``: a fixed ASCII text, one
``name=value`` per line, so that the signature never depends on JSON details.
``last_leaf`` lets a verifier name the last record of a batch when only that
record was altered (no later record carries its hash yet).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from guard.audit.keys import PublicKeys, Signer, verify_signature
from guard.audit.records import AuditError

HEAD_FIELDS = (
    "tree_size", "root_hash", "last_leaf", "timestamp_us", "key_id", "log_id", "signature",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_DOMAIN = b"guard-audit-tree-head-v1\n"


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A signed tree head."""

    tree_size: int
    root_hash: str
    last_leaf: str
    timestamp_us: int
    key_id: str
    log_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers."""
        return _DOMAIN + (
            f"log_id={self.log_id}\ntree_size={self.tree_size}\nroot_hash={self.root_hash}\n"
            f"last_leaf={self.last_leaf}\ntimestamp_us={self.timestamp_us}\nkey_id={self.key_id}\n"
        ).encode()

    def to_line(self) -> bytes:
        """The canonical JSON line (no newline)."""
        sig = base64.b64encode(self.signature).decode()
        return (
            f'{{"tree_size":{self.tree_size},"root_hash":"{self.root_hash}",'
            f'"last_leaf":"{self.last_leaf}","timestamp_us":{self.timestamp_us},'
            f'"key_id":"{self.key_id}","log_id":"{self.log_id}","signature":"{sig}"}}'
        ).encode()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (signature in base64)."""
        return {
            "tree_size": self.tree_size, "root_hash": self.root_hash,
            "last_leaf": self.last_leaf, "timestamp_us": self.timestamp_us,
            "key_id": self.key_id, "log_id": self.log_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    def verify(self, public_keys: PublicKeys) -> str | None:
        """None if the signature verifies with the key named by ``key_id``, else why not."""
        key = public_keys.get(self.key_id)
        if key is None:
            return f"key id {self.key_id} is not among the public keys given"
        if not verify_signature(key, self.signature, self.signed_bytes()):
            return f"signature does not verify with key {self.key_id}"
        return None


def sign_head(
    signer: Signer, *, log_id: str, tree_size: int, root: bytes, last_leaf: bytes,
    timestamp_us: int,
) -> TreeHead:
    """Build and sign a head for the first ``tree_size`` records."""
    unsigned = TreeHead(
        tree_size, root.hex(), last_leaf.hex(), timestamp_us, signer.key_id, log_id, b""
    )
    sig = signer.sign(unsigned.signed_bytes())
    return TreeHead(
        tree_size, unsigned.root_hash, unsigned.last_leaf, timestamp_us, signer.key_id, log_id,
        sig,
    )


def parse_head(line: bytes) -> TreeHead:
    """Strictly parse one head line; ``AuditError`` says what is wrong."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuditError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or tuple(obj) != HEAD_FIELDS:
        raise AuditError(f"a head must be a JSON object with the fields {list(HEAD_FIELDS)}")
    size, ts = obj["tree_size"], obj["timestamp_us"]
    if type(size) is not int or size < 1:
        raise AuditError("tree_size must be a positive integer")
    if type(ts) is not int:
        raise AuditError("timestamp_us must be an integer")
    for name, rx in (("root_hash", _HEX64), ("last_leaf", _HEX64), ("key_id", _KEY_ID),
                     ("log_id", _HEX32)):
        if not isinstance(obj[name], str) or not rx.fullmatch(obj[name]):
            raise AuditError(f"{name} is malformed")
    try:
        sig = base64.b64decode(obj["signature"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise AuditError("signature is not base64") from None
    if len(sig) != 64:
        raise AuditError("signature is not 64 bytes")
    head = TreeHead(size, obj["root_hash"], obj["last_leaf"], ts, obj["key_id"], obj["log_id"],
                    sig)
    if head.to_line() != line:
        raise AuditError("not in canonical form (bytes differ from the re-encoded head)")
    return head
