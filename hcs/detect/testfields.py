"""Synthetic nuclear-stain fields with exact truth masks, for detector tests and benchmarks.

A field holds random elliptical nuclei (random size, elongation, orientation and brightness), a
share of them placed as touching pairs, blurred by a Gaussian point-spread function, multiplied
by a radial vignetting profile, on a background with Poisson-Gaussian camera noise. The truth label
mask is the rasterised ellipses; where a touching pair overlaps, each pixel goes to the nucleus
whose (normalised) elliptical distance is smaller.

This is deliberately simpler than :mod:`hcs.synth` (whole simulated screens): it exists so the
detector can be scored against exact nucleus masks.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from hcs.detect import Detections

__all__ = ["nuclei_field"]


def nuclei_field(
    shape: tuple[int, int] = (1080, 1080),
    n_nuclei: int = 150,
    *,
    pixel_size_um: float = 0.598,
    diameter_um: tuple[float, float] = (8.0, 14.0),
    elongation: tuple[float, float] = (1.0, 1.5),
    touching_fraction: float = 0.3,
    overlap: float = 0.12,
    background: float = 450.0,
    signal: tuple[float, float] = (2000.0, 8000.0),
    read_noise: float = 12.0,
    gain: float = 2.0,
    psf_sigma_px: float = 1.2,
    vignetting: float = 0.35,
    seed: int = 0,
) -> tuple[np.ndarray, Detections]:
    """Render one field; returns ``(uint16 image, truth Detections with label mask)``.

    Parameters
    ----------
    shape
        Field size (rows, columns).
    n_nuclei
        Number of nuclei attempted (placement gives up on a nucleus that finds no free spot).
    pixel_size_um, diameter_um, elongation
        Nucleus size: mean diameter drawn uniformly in ``diameter_um``, major/minor axis ratio
        uniformly in ``elongation``.
    touching_fraction
        Share of nuclei placed as the second member of a touching pair.
    overlap
        How far a touching pair overlaps, as a share of the sum of their radii along the line
        joining the centres (0 = just touching).
    background, signal, read_noise, gain
        Camera model: counts = Poisson((background + signal * shape) / gain) * gain + Normal(0,
        read_noise), before vignetting.
    psf_sigma_px
        Gaussian blur of the rendered nuclei.
    vignetting
        Relative intensity loss at the field corners (quadratic radial fall-off).
    seed
        Random seed; the same arguments give the same field.

    Examples
    --------
    >>> img, truth = nuclei_field((128, 128), 6, seed=1)
    >>> img.dtype, img.shape, len(truth) > 0, int(truth.labels.max()) == len(truth)
    (dtype('uint16'), (128, 128), True, True)
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ideal = np.zeros(shape, np.float32)
    owner = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    placed: list[tuple[float, float, float]] = []  # (y, x, radius) of every nucleus

    def free(cy: float, cx: float, r: float, partner: int | None) -> bool:
        for k, (py, px, pr) in enumerate(placed):
            if k == partner:
                continue
            if math.hypot(cy - py, cx - px) < (r + pr) * 1.15:
                return False
        return r <= cy < h - r and r <= cx < w - r

    label = 0
    for _ in range(n_nuclei):
        d_px = rng.uniform(*diameter_um) / pixel_size_um
        e = rng.uniform(*elongation)
        a, b = d_px / 2 * math.sqrt(e), d_px / 2 / math.sqrt(e)
        theta = rng.uniform(0, math.pi)
        pair = placed and rng.random() < touching_fraction
        for _ in range(50):
            if pair:
                partner = int(rng.integers(len(placed)))
                py, px, pr = placed[partner]
                ang = rng.uniform(0, 2 * math.pi)
                # distance along the joining line at which the two footprints overlap by `overlap`
                dist = (1 - overlap) * (pr + _radius_along(a, b, theta, ang))
                cy, cx = py + dist * math.sin(ang), px + dist * math.cos(ang)
                ok = free(cy, cx, b, partner)
            else:
                cy, cx = rng.uniform(a, h - a), rng.uniform(a, w - a)
                ok = free(cy, cx, a, None)
            if ok:
                break
        else:
            continue
        label += 1
        placed.append((cy, cx, a))
        r0, r1 = max(int(cy - a - 2), 0), min(int(cy + a + 3), h)
        c0, c1 = max(int(cx - a - 2), 0), min(int(cx + a + 3), w)
        dy, dx = yy[r0:r1, c0:c1] - cy, xx[r0:r1, c0:c1] - cx
        u = (dx * math.cos(theta) + dy * math.sin(theta)) / a
        v = (-dx * math.sin(theta) + dy * math.cos(theta)) / b
        rho = np.sqrt(u * u + v * v)
        inside = rho <= 1.0
        # brighter centre, dimmer rim: a domed nucleus seen in widefield
        ideal[r0:r1, c0:c1] += rng.uniform(*signal) * inside * (1.0 - 0.3 * rho**2)
        sub_best, sub_owner = best[r0:r1, c0:c1], owner[r0:r1, c0:c1]
        take = inside & (rho < sub_best)
        sub_best[take] = rho[take]
        sub_owner[take] = label

    blurred = ndi.gaussian_filter(ideal, psf_sigma_px) if psf_sigma_px > 0 else ideal
    r2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    expected = (background + blurred) * (1.0 - vignetting * r2)
    counts = rng.poisson(np.maximum(expected, 0) / gain) * gain
    counts = counts + rng.normal(0, read_noise, shape)
    image = np.clip(np.round(counts), 0, 65535).astype(np.uint16)
    return image, Detections.from_labels(owner)


def _radius_along(a: float, b: float, theta: float, ang: float) -> float:
    """Radius of an ellipse (semi-axes a, b, rotated by theta) in direction ``ang``."""
    phi = ang - theta
    return a * b / math.sqrt((b * math.cos(phi)) ** 2 + (a * math.sin(phi)) ** 2)
