"""Run a function on the core's SIMD path and on its portable reference path."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from guard import _core

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
