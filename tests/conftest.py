"""Shared pytest fixtures. Shared data lives in $GTPT_SHARED (default: ../shared next to the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder (fixtures/, data/, docs/); skips the test when it is absent."""
    path = Path(os.environ.get("GTPT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found; set GTPT_SHARED")
    return path
