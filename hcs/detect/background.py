"""Background and noise estimates for the classical detectors.

:func:`noise_sigma` (white-noise sigma from neighbour differences), :func:`background_surface`
(smooth polynomial background through low block percentiles: vignetting, uneven illumination)
and the sigma-clipped background level used for the detection floor.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["noise_sigma", "background_surface", "background_level"]


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of the per-pixel noise standard deviation.

    The median absolute deviation of horizontal neighbour differences (scaled by
    1.4826 / sqrt(2)); objects only affect the few differences at their edges, so dense and
    sparse fields give the same estimate. Falls back to the standard deviation of the
    differences when more than half of them are zero (noise-free or heavily quantised images).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> bool(abs(noise_sigma(rng.normal(100, 5, (256, 256))) - 5.0) < 0.15)
    True
    """
    img = np.asarray(image)
    if img.dtype.kind in "iub" and img.dtype.itemsize <= 2:
        # 8/16-bit counts: differences and their median are exact in int32 (at twice the
        # value, so a median halfway between two integers stays an integer), the same numbers
        # as in float64 at a fraction of the cost
        img = img.astype(np.int32)
        d = np.diff(img[:: 2 if img.shape[0] > 64 else 1], axis=1).ravel()
        if d.size == 0:
            d = np.diff(img, axis=0).ravel()
        if d.size == 0:
            return 0.0
        d2 = 2 * d
        mad = float(np.median(np.abs(d2 - int(2 * np.median(d))))) / 2
        sigma = 1.4826 * mad / math.sqrt(2.0)
        if sigma == 0.0:
            sigma = float(d.astype(np.float64).std()) / math.sqrt(2.0)
        return sigma
    img = np.asarray(image, dtype=np.float64)
    # every other row is plenty for a median and halves the cost
    d = np.diff(img[:: 2 if img.shape[0] > 64 else 1], axis=1).ravel()
    if d.size == 0:
        d = np.diff(img, axis=0).ravel()
    if d.size == 0:
        return 0.0
    mad = float(np.median(np.abs(d - np.median(d))))
    sigma = 1.4826 * mad / math.sqrt(2.0)
    if sigma == 0.0:
        sigma = float(d.std()) / math.sqrt(2.0)
    return sigma


def background_surface(
    image: np.ndarray, block_px: int, percentile: float = 10.0, degree: int = 4
) -> np.ndarray:
    """Smooth background estimate: a polynomial surface through low block percentiles.

    A block of ``block_px`` (several nucleus diameters) nearly always holds some background, so
    its 10th percentile follows vignetting and uneven illumination but not the nuclei. The block
    values are fitted by least squares with a 2-D polynomial of total degree ``degree`` (at most
    the number of blocks per side minus one; the model of the Opera Phenix flatfield profiles),
    refitting without blocks more than 3 robust sigmas above the surface (blocks crowded with
    nuclei).

    Examples
    --------
    >>> yy, xx = np.mgrid[:512, :512] / 512.0
    >>> vignetted = 400 * (1 - 0.35 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) * 2)
    >>> bool(np.abs(background_surface(vignetted, 64, percentile=50) - vignetted).max() < 2)
    True
    """
    img = np.asarray(image, np.float32)
    h, w = img.shape
    b = int(max(4, min(block_px, h, w)))
    ny, nx = -(-h // b), -(-w // b)
    padded = np.pad(img, ((0, ny * b - h), (0, nx * b - w)), mode="reflect")
    blocks = padded.reshape(ny, b, nx, b).transpose(0, 2, 1, 3).reshape(ny, nx, b * b)
    grid = np.percentile(blocks[:, :, ::3], percentile, axis=2)
    deg = min(degree, ny - 1, nx - 1)
    if deg <= 0:
        return np.full(img.shape, float(np.median(grid)), np.float32)
    # block centres (clipped to the image) in [-1, 1] coordinates
    yc = np.minimum((np.arange(ny) + 0.5) * b, h - 1) / max(h - 1, 1) * 2 - 1
    xc = np.minimum((np.arange(nx) + 0.5) * b, w - 1) / max(w - 1, 1) * 2 - 1
    terms = [(i, j) for i in range(deg + 1) for j in range(deg + 1 - i)]
    gy, gx = np.meshgrid(yc, xc, indexing="ij")
    design = np.stack([gy.ravel() ** i * gx.ravel() ** j for i, j in terms], axis=1)
    values = grid.ravel()
    keep = np.ones(values.size, bool)
    for _ in range(3):  # refit without blocks far above the surface (crowded with nuclei)
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        resid = values - design @ coef
        spread = 1.4826 * float(np.median(np.abs(resid[keep]))) + 1e-12
        new_keep = resid <= 3 * spread
        if new_keep.sum() < len(terms) or (new_keep == keep).all():
            break
        keep = new_keep
    cmat = np.zeros((deg + 1, deg + 1))
    for c, (i, j) in zip(coef, terms, strict=True):
        cmat[i, j] = c
    vy = np.vander(np.linspace(-1, 1, h), deg + 1, increasing=True)
    vx = np.vander(np.linspace(-1, 1, w), deg + 1, increasing=True)
    return (vy @ cmat @ vx.T).astype(np.float32)


def background_level(smoothed: np.ndarray) -> tuple[float, float]:
    """Background intensity and spread: median and MAD sigma after iterative 3-sigma clipping.

    Unbiased on an empty (noise-only) field, unlike the median below an Otsu split; the spread
    includes what the white-noise estimate misses (residual shading, out-of-focus haze).

    The values are sorted once: each clipped set is then a prefix of the sorted values, its
    median two look-ups, and the median of the absolute deviations a selection from two sorted
    runs (below and above the median), so every number is the one ``np.median`` gives on the
    clipped values without a partition of them per step.
    """
    values = np.sort(smoothed[::2, ::2].ravel())
    if values.dtype.kind != "f" or values.size == 0 or not np.isfinite(values[[0, -1]]).all():
        return _background_level_median(smoothed)
    n = values.size
    med = _sorted_median(values[:n])
    sd = 1.4826 * _mad(values[:n], med)
    for _ in range(5):
        kept = int(np.count_nonzero(values[:n] <= med + 3 * sd))  # a prefix: values are sorted
        if kept == n or kept < 16:
            break
        n = kept
        med = _sorted_median(values[:n])
        sd = 1.4826 * _mad(values[:n], med)
    return med, sd


def _background_level_median(smoothed: np.ndarray) -> tuple[float, float]:
    """:func:`background_level` with ``np.median`` on every clipped set (the reference)."""
    values = smoothed[::2, ::2].ravel()
    med = float(np.median(values))
    sd = 1.4826 * float(np.median(np.abs(values - med)))
    for _ in range(5):
        kept = values[values <= med + 3 * sd]
        if kept.size == values.size or kept.size < 16:
            break
        values = kept
        med = float(np.median(values))
        sd = 1.4826 * float(np.median(np.abs(values - med)))
    return med, sd


def _sorted_median(ordered: np.ndarray) -> float:
    """``np.median`` of sorted values (the mean of the middle two, in their dtype, as it)."""
    k = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[k])
    return float(np.mean(ordered[k - 1:k + 1]))


def _mad(ordered: np.ndarray, med: float) -> float:
    """``np.median(np.abs(ordered - med))`` of sorted values: the deviations of the values
    below the median fall and those above it rise (rounding is monotonic), so the middle ones
    are a selection from two sorted runs."""
    split = int(np.searchsorted(ordered, med, side="left"))
    below = np.abs(ordered[:split] - med)[::-1]  # ascending
    above = np.abs(ordered[split:] - med)  # ascending
    n = ordered.size
    k = n // 2
    if n % 2:
        return float(_kth_of_two(below, above, k))
    pair = np.array([_kth_of_two(below, above, k - 1), _kth_of_two(below, above, k)],
                    ordered.dtype)
    return float(np.mean(pair))


def _kth_of_two(a: np.ndarray, b: np.ndarray, k: int) -> np.generic:
    """The ``k``-th smallest (from 0) of the union of two ascending arrays."""
    lo, hi = max(0, k + 1 - b.size), min(k + 1, a.size)
    while lo < hi:  # i values from a and k + 1 - i from b are the k + 1 smallest
        i = (lo + hi) // 2
        if a[i] < b[k - i]:
            lo = i + 1
        else:
            hi = i
    i, j = lo, k + 1 - lo
    if i == 0:
        return b[j - 1]
    if j == 0:
        return a[i - 1]
    return max(a[i - 1], b[j - 1])
