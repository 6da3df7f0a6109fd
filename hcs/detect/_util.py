"""Helpers shared by the classical detectors (:mod:`hcs.detect.threshold`,
:mod:`hcs.detect.cells`): input validation, micrometre-to-pixel conversion and the foreground
threshold held above the noise floor."""

from __future__ import annotations

import math

import numpy as np
from skimage import filters

from hcs.detect.background import background_level
from hcs.errors import InputError

__all__ = ["THRESHOLD_METHODS", "as_float_image", "foreground", "px", "valid_pixel_size"]

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
        t_global = float(filters.threshold_li(clipped))
    elif threshold == "triangle":
        t_global = float(filters.threshold_triangle(clipped))
    else:
        t_global = float(filters.threshold_otsu(clipped))
    return smoothed > max(t_global, floor), background
