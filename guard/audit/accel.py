"""The audit writer's compiled hot path (``guard/_audit.pxi``), when the extension is built.

One call per batch encodes the record lines, chains and hashes them (SHA-256 with
x86 SHA extensions when the CPU has them) and extends the Merkle frontier, where
the Python path pays several interpreter calls per record. The Python path
(``RecordEncoder.encode``, ``merkle.Frontier``) stays the reference and the
fallback: both give the same bytes. The verifier (``guard.audit.verify``) never
uses this module: it recomputes every hash with hashlib, so an independent
implementation checks the fast one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from guard.audit.merkle import Frontier

try:
    from guard._core import (  # type: ignore[attr-defined]
        audit_encode_chain as encode_chain,
    )
    from guard._core import (  # type: ignore[attr-defined]
        audit_frontier_extend as _frontier_extend,
    )
    from guard._core import (  # type: ignore[attr-defined]
        audit_frontier_root as _frontier_root,
    )
    from guard._core import (  # type: ignore[attr-defined]
        audit_sha256_hex_many as _sha256_hex_many,
    )

    AVAILABLE = True
except ImportError:  # extension not built (or built without _audit.pxi): pure Python
    AVAILABLE = False
    encode_chain = None
    _sha256_hex_many = None


def sha256_hex_many(datas: Sequence[bytes]) -> list[str]:
    """SHA-256 hex digests of a batch, in C holding the GIL when built (see
    ``audit_sha256_hex_many`` for why), else with hashlib."""
    if _sha256_hex_many is not None:
        return _sha256_hex_many(datas)  # type: ignore[no-any-return]
    return [hashlib.sha256(d).hexdigest() for d in datas]

_SLOTS = 64


class FastFrontier:
    """``merkle.Frontier`` with its nodes in one bytearray and the hashing in C.

    Slot ``k`` (32 bytes) holds the root of a perfect subtree of ``2**k`` leaves
    when bit ``k`` of ``size`` is set, exactly as ``Frontier.nodes[k]``.
    """

    __slots__ = ("buf", "size")

    def __init__(self, frontier: Frontier | None = None) -> None:
        if not AVAILABLE:
            raise RuntimeError("guard._core was built without the audit hot path")
        self.buf = bytearray(32 * _SLOTS)
        self.size = 0
        if frontier is not None:
            self.size = frontier.size
            for k, node in enumerate(frontier.nodes):
                if node is not None and self.size >> k & 1:
                    self.buf[32 * k:32 * k + 32] = node

    def extend_packed(self, leaves: bytes) -> None:
        """Append packed 32-byte leaf hashes (in order)."""
        self.size = _frontier_extend(self.buf, self.size, leaves)

    def root(self) -> bytes:
        """MTH of all leaves so far."""
        return _frontier_root(self.buf, self.size)
