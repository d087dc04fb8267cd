# cython: language_level=3
"""guard._core: the compiled hot paths.

One extension module, assembled from one include file per concept so that each
concept stays small and readable:

- ``_ints.pxi``: the byte offsets of Matches, findings and lines as shared int objects;
- ``_portions.pxi``: recognising portion marks such as ``(S//REL TO USA, GBR)``
  at the start of paragraphs inside message bodies;
- ``_scan.pxi``: normalising and scanning bodies for dirty words, clean words,
  patterns and encoded runs, one message or a batch at a time;
- ``_audit.pxi``: the audit log writer's SHA-256 chain, leaf and Merkle hashing and
  record-line encoding, one call per batch;
- ``_fold.pxi``: folding bodies that are not pure ASCII to their Latin skeleton with a
  map back to the original bytes (the C twin of ``guard.normalize.fold``);
- ``_message.pxi``: indexing batches of messages (banner, portion lines and interned
  portion marks) for the decision pipeline and its independent re-check;
- ``_capture.pxi``: decoding a capture block's records into lists in one pass, and the
  task counter a replay's forked workers share.
"""

include "_ints.pxi"
include "_portions.pxi"
include "_fold.pxi"
include "_scan.pxi"
include "_audit.pxi"
include "_message.pxi"
include "_capture.pxi"
