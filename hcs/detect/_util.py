"""Helpers shared by the classical detectors (:mod:`hcs.detect.threshold`,
:mod:`hcs.detect.cells`): input validation, micrometre-to-pixel conversion and the foreground
threshold held above the noise floor."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from hcs.detect.background import background_level
from hcs.errors import InputError

__all__ = ["THRESHOLD_METHODS", "as_float_image", "fill_holes", "foreground", "px",
           "threshold_li", "valid_pixel_size"]

THRESHOLD_METHODS = ("otsu", "li", "triangle", "local")


def as_float_image(image: np.ndarray, name: str) -> np.ndarray:
    """Validate a 2-D numeric image and return it as float32 (one clear InputError if not)."""
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # e.g. ragged lists
            raise InputError(f"{name}: cannot be read as an array ({exc})") from None
    if image.ndim != 2:
        raise InputError(f"{name}: expected a 2-D image (one channel, one plane), "
                         f"got shape {image.shape}")
    if image.size == 0:
        raise InputError(f"{name}: the image is empty (shape {image.shape})")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputError(f"{name}: unsupported pixel type {image.dtype}")
    out = image.astype(np.float32, copy=False)
    if np.issubdtype(image.dtype, np.floating):
        bad = ~np.isfinite(out)
        if bad.any():
            raise InputError(f"{name}: {int(bad.sum())} of {out.size} pixels are NaN or "
                             f"infinite; mask or fill them before detection")
    return out


def valid_pixel_size(pixel_size_um: float | None) -> float | None:
    """Validated pixel size; NaN (unknown in the acquisition metadata) means None."""
    if pixel_size_um is None:
        return None
    message = f"pixel_size_um must be a positive number, got {pixel_size_um!r}"
    try:
        value = float(pixel_size_um)
    except (TypeError, ValueError):
        raise InputError(message) from None
    if math.isnan(value):
        return None
    if not (value > 0 and math.isfinite(value)):
        raise InputError(message)
    return value


def px(um: float | None, pixel_size_um: float | None, default_px: float) -> float:
    """A length in micrometres as pixels, or the pixel default when the pixel size is unknown."""
    if um is None or pixel_size_um is None:
        return float(default_px)
    return float(um) / float(pixel_size_um)


def foreground(
    smoothed: np.ndarray,
    noise: float,
    threshold: str | float,
    min_contrast: float,
    local_block_px: int,
    raw_noise: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Foreground mask and background level.

    The automatic threshold is never allowed below ``background + min_contrast * max(noise,
    spread)`` (background and spread of the sigma-clipped image), so a field with nothing in it
    gives an empty mask instead of half the field.
    """
    if isinstance(threshold, int | float) and not isinstance(threshold, bool):
        t = float(threshold)
        below = smoothed[smoothed <= t]
        background = float(np.median(below)) if below.size else float(smoothed.min())
        return smoothed > t, background
    if threshold not in THRESHOLD_METHODS:
        raise InputError(f"threshold must be a number or one of {', '.join(THRESHOLD_METHODS)}, "
                         f"got {threshold!r}")
    # a few saturated specks must not drag the automatic threshold up: the histogram is
    # clipped at the 99.9th percentile (the specks stay foreground, they are only clipped)
    hi = float(np.percentile(smoothed[::2, ::2], 99.9))
    clipped = np.minimum(smoothed, hi) if hi > float(smoothed.min()) else smoothed
    background, spread = background_level(smoothed)
    floor = background + min_contrast * max(noise, spread)
    if threshold == "local":
        # local background = Gaussian-weighted mean over the block; an object must stand
        # min_contrast *raw* noise sigmas above its surroundings (background texture is spatially
        # correlated, so the smoothed-noise floor would let it through)
        block = max(3, int(local_block_px) | 1)
        local = filters.threshold_local(smoothed, block_size=block, method="gaussian")
        return smoothed > local + min_contrast * raw_noise, background
    if threshold == "li":
        t_global = float(threshold_li(clipped))
    elif threshold == "triangle":
        t_global = float(filters.threshold_triangle(clipped))
    else:
        t_global = float(filters.threshold_otsu(clipped))
    return smoothed > max(t_global, floor), background


def threshold_li(image: np.ndarray, max_iter: int = 200) -> float:
    """:func:`skimage.filters.threshold_li` of a finite float image, the same number bit for bit
    without sorting the whole image.

    scikit-image stops Li's iteration when the threshold moves by less than half the smallest
    gap between two distinct pixel values, which it finds with ``np.unique`` (a sort of every
    pixel: most of its time). The iteration is repeated here exactly (same float32 arithmetic on
    the same 1-D array), stopping where the threshold moves by no more than the smallest gap of
    a subsample, which is at least scikit-image's. When it stops because the threshold no longer
    moves at all, scikit-image stops at the same step; otherwise (a step that the two
    tolerances may judge differently, an iteration that does not settle, an integer image) the
    answer is scikit-image's own.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 5, (200, 200)).astype(np.float32)
    >>> img[50:90, 50:90] += 60
    >>> from skimage import filters
    >>> threshold_li(img) == float(filters.threshold_li(img))
    True
    """
    flat = np.ravel(image)
    if flat.dtype.kind != "f" or flat.size < 2 or not np.isfinite(flat).all():
        return float(filters.threshold_li(image))
    lo = np.min(flat)
    if np.all(flat == lo):
        return float(lo)
    x = flat - lo
    sub = np.unique(x[::16])
    # the smallest gap of a subset is >= the smallest gap of the whole: an upper bound of
    # scikit-image's tolerance
    tol_up = np.min(np.diff(sub)) / 2 if sub.size > 1 else np.inf
    t_next = np.mean(x)
    t_curr = None
    for _ in range(max_iter):
        if t_curr is not None and abs(t_next - t_curr) <= tol_up:
            if t_next == t_curr:  # a fixed point: scikit-image stops here too
                return float(t_next + lo)
            break  # a small step that the exact tolerance may judge otherwise
        t_curr = t_next
        fore = x > t_curr
        mean_fore = np.mean(x[fore])
        mean_back = np.mean(x[~fore])
        if mean_back == 0.0:
            break
        t_next = (mean_back - mean_fore) / (np.log(mean_back) - np.log(mean_fore))
    return float(filters.threshold_li(image))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """:func:`scipy.ndimage.binary_fill_holes` of a 2-D mask (its default 4-connectivity), the
    same pixels: the background components that do not touch the image border are filled.

    One labelling pass instead of scipy's dilation repeated until nothing changes (several
    times faster on a 1080 x 1080 field).

    Examples
    --------
    >>> ring = np.zeros((7, 7), bool); ring[1:6, 1:6] = True; ring[3, 3] = False
    >>> bool(fill_holes(ring)[3, 3]), int(fill_holes(ring).sum())
    (True, 25)
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or min(mask.shape) < 3:
        return ndi.binary_fill_holes(mask)
    background, n = ndi.label(~mask)
    hole = np.ones(n + 1, bool)
    hole[0] = False
    hole[background[0]] = hole[background[-1]] = False
    hole[background[:, 0]] = hole[background[:, -1]] = False
    return mask | hole[background]
