"""The histogram percentiles that normalise model inputs equal numpy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from hcs.classify.crops import percentiles, rescale_0_255


def _cases(rng: np.random.Generator):
    for t in range(600):
        dt = (np.uint8, np.uint16)[t % 2]
        top = np.iinfo(dt).max
        n = int(rng.integers(1, 4000))
        kind = t % 5
        if kind == 0:
            v = rng.integers(0, top + 1, n)
        elif kind == 1:  # a camera-like skewed distribution
            v = rng.gamma(2, 300, n).clip(0, top)
        elif kind == 2:  # a constant plane
            v = np.full(n, rng.integers(0, 200))
        elif kind == 3:  # few distinct values: ties at every order statistic
            v = rng.integers(0, 3, n)
        else:  # values at the top of the range
            v = rng.integers(top - 5, top + 1, n)
        q = ([1, 99.8], [0, 100], [5], [50], [1, 99.9], list(rng.uniform(0, 100, 3)))[t % 6]
        yield v.astype(dt), q


def test_percentiles_match_numpy_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    for v, q in _cases(rng):
        ref = np.percentile(v.astype(np.float32), q)
        got = percentiles(v, q)
        assert got.dtype == ref.dtype and np.array_equal(got, ref), (v.dtype, v.size, q)


def test_rescale_matches_the_sorting_version() -> None:
    rng = np.random.default_rng(3)
    plane = rng.gamma(2, 300, (300, 400)).astype(np.uint16)
    f = plane.astype(np.float32)
    lo, hi = np.percentile(f, [1.0, 99.8])
    ref = np.clip((f - lo) / (hi - lo) * 255.0, 0, 255).astype(np.float32)
    assert np.array_equal(rescale_0_255(plane), ref)
    ref_z = rescale_0_255(f, reference=plane.astype(np.float64))  # float data: numpy's path
    assert np.array_equal(rescale_0_255(f, reference=plane), ref_z)


def test_other_dtypes_and_bad_percentiles() -> None:
    v = np.array([-3, 0, 5, 9], np.int16)
    assert np.array_equal(percentiles(v, [10, 90]), np.percentile(v.astype(np.float32), [10, 90]))
    with pytest.raises(ValueError, match="range"):
        percentiles(np.arange(5, dtype=np.uint8), [101])
