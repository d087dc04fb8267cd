"""Run a function on the core's SIMD path and on its portable reference path."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from guard import _core
from guard.scanner import Scanner

T = TypeVar("T")


def both_paths(fn: Callable[[], T]) -> list[T]:
    """``[fn() on the SIMD path, fn() on the portable path]``; the mode is restored."""
    before = _core.scan_simd()
    try:
        out = []
        for mode in (True, False):
            _core.scan_simd(mode)
            out.append(fn())
        return out
    finally:
        _core.scan_simd(before)


def batch_arrays(sc: Scanner, msgs: list[bytes]) -> tuple[list[int], ...]:
    """``sc.scan_batch`` of ``msgs`` as plain lists (msg, list, term, start, end, kind,
    flags), for comparing the two paths."""
    offsets = np.zeros(len(msgs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in msgs])
    res = sc.scan_batch(b"".join(msgs), offsets)
    return (res.msg.tolist(), res.list_id.tolist(), res.term_id.tolist(), res.start.tolist(),
            res.end.tolist(), res.kind.tolist(), res.flags.tolist())
