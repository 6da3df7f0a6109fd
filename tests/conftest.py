"""Shared test fixtures: the real instrument data in ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(name: str) -> Path:
    """Path of a folder in ../shared/data, skipping the test with a clear reason if absent."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(
            f"real data {name!r} not found at {p} (set HCS_SHARED_DATA to the shared/data folder)"
        )
    return p


@pytest.fixture
def phenix_v5() -> Path:
    return shared("harmony-phenix-v5")


@pytest.fixture
def operetta_cls() -> Path:
    return shared("harmony-operetta-cls")


@pytest.fixture
def scanr_sample() -> Path:
    return shared("scanr")


@pytest.fixture
def plate_row_gfp() -> Path:
    return shared("plate-row-gfp")


@pytest.fixture
def livedead_ldc() -> Path:
    return shared("livedead-ldc")
