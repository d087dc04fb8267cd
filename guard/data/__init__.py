"""Data shipped with the package: vocabularies, group membership, sample messages."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """Path of a file shipped in ``guard/data``."""
    return Path(str(resources.files(__name__).joinpath(name)))
