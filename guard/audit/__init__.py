"""Signed audit trail: every decision recorded, hash-chained, Merkle-batched and signed.

On-disk format of one log directory (one writer, e.g. one per worker)::

    log.json       {"format": "guard-audit-log", "version": 1, "log_id": <32 hex>,
                    "created_us": int}
    records.jsonl  one decision record per line, ASCII JSON, no spaces, keys in this order:
                   seq, decision_id, time_us, flow, message_id, input_sha256,
                   output_sha256 (null when nothing was released), policy_sha256,
                   verdict (release|redact|quarantine|block|error), findings, key_id, prev
    heads.jsonl    one signed tree head per line: tree_size, root_hash, last_leaf,
                   timestamp_us, key_id, log_id, signature (base64 Ed25519)

Record ``seq`` is its line number minus one. Its leaf hash is RFC 9162's
``SHA-256(0x00 || line)`` over the line's bytes without the newline; ``prev`` is
the previous record's leaf hash in hex (64 zeros for the first), so the records
form a hash chain. All records of a directory form ONE growing RFC 9162 Merkle
tree; each head signs the root over the first ``tree_size`` records, so every
record has an inclusion proof against any later head and consecutive heads have
consistency proofs (``guard.audit.merkle``). The head signature covers the
text in ``TreeHead.signed_bytes()``. Lines are only ever appended; a reopened log
is validated, an unterminated final line (torn write) is cut, and records left
without a head by a crash are signed.
"""

from guard.audit.keys import Signer, load_public_keys, load_signer
from guard.audit.log import AuditLog
from guard.audit.records import AuditError, DecisionRecord

__all__ = [
    "AuditError",
    "AuditLog",
    "DecisionRecord",
    "Signer",
    "load_public_keys",
    "load_signer",
]
