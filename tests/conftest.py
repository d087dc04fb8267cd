"""Shared fixtures: the third-party vectors folder, read in place at test time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def vectors_dir() -> Path:
    """``../shared/vectors`` beside the checkout (or ``$GUARD_VECTORS``).

    Missing vectors are an error, not a skip: a suite that silently skips its
    third-party vectors proves nothing.
    """
    path = Path(os.environ.get("GUARD_VECTORS", REPO.parent / "shared" / "vectors"))
    if not path.is_dir():
        raise RuntimeError(
            f"test vectors not found at {path}; set GUARD_VECTORS to the shared/vectors folder"
        )
    return path


@pytest.fixture(scope="session")
def vectors() -> Path:
    return vectors_dir()
