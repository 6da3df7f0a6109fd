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


@pytest.fixture(scope="module")
def scheduler():
    """Address of an in-process Dask cluster (threads, one per test module): runs reach it with
    ``scheduler=`` / ``--scheduler`` and pay no worker start-up or torch import per test.
    (tests/test_engine.py overrides it with a 2-process cluster.)"""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()
