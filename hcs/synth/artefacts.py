"""Artefacts real screens have: vignetting, camera noise, background, defocus, saturation, debris,
edge-well effects.

Vignetting uses the Harmony flatfield model (FORMATS.md 1.7): a degree-4 polynomial in
normalised coordinates, coefficient rows grouped by degree, ``coeff[n][k] * x**(n-k) * y**k``.
The default coefficients are the real HOECHST 33342 Background profile of the Opera Phenix sample
in ``../shared/data/harmony-phenix-v5`` (centre 1.25, corners ~0.5). The export carries the same
profile as ``FlatfieldProfile`` text, so a reader that divides by it recovers flat images.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

#: Real Phenix HOECHST 33342 background profile (pe2loaddata Version1 sample, BSD-3).
PHENIX_HOECHST_COEFFS: list[list[float]] = [
    [1.2543],
    [-0.0365, -0.032],
    [-1.3621, -0.0908, -1.0758],
    [-0.2659, 0.2408, 0.0679, 0.0407],
    [-2.3042, 0.0537, 1.5665, 0.4683, -2.6611],
]


def flatfield_surface(coeffs: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Evaluate a Harmony polynomial flatfield profile on an image of ``shape`` (y, x).

    Coordinates are ``(index - (N - 1) / 2) / N`` (Harmony ``Origin`` and ``Scale``); row ``n``
    of ``coeffs`` holds the degree-``n`` terms ``x**(n-k) * y**k`` for k = 0..n.

    Examples
    --------
    >>> s = flatfield_surface(PHENIX_HOECHST_COEFFS, (1080, 1080))
    >>> round(float(s[539, 539]), 2), bool(s[0, 0] < 0.7)
    (1.25, True)
    """
    h, w = shape
    y = ((np.arange(h) - (h - 1) / 2) / h)[:, None]
    x = ((np.arange(w) - (w - 1) / 2) / w)[None, :]
    out = np.zeros((h, w), dtype=np.float64)
    for n, row in enumerate(coeffs):
        for k, c in enumerate(row):
            out = out + c * x ** (n - k) * y**k
    return out.astype(np.float32)


def flatfield_profile_text(
    coeffs: list[list[float]] | None,
    shape: tuple[int, int],
    channel_id: int,
    channel_name: str,
    mean: float = 0.0,
    noise_const: float = 1.3,
) -> str:
    """Harmony ``FlatfieldProfile`` text for one channel (``None`` coeffs -> Identity).

    Examples
    --------
    >>> flatfield_profile_text(None, (8, 8), 3, "Brightfield")[:40]
    '{Background: {Character: Null, Profile: '
    """
    if coeffs is None:
        return (
            "{Background: {Character: Null, Profile: {Type: Identity}, Quality: 1}, "
            f"Channel: {channel_id}, ChannelName: {_yaml_name(channel_name)}, "
            "Foreground: {Character: Flat, Profile: {Type: Identity}, Quality: 1}, "
            "Version: Acapella:2013}"
        )
    h, w = shape
    rows = ", ".join("[" + ", ".join(f"{c:.4f}" for c in row) + "]" for row in coeffs)
    prof = (
        f"Profile: {{Coefficients: [{rows}], Dims: [{h}, {w}], "
        f"Origin: [{(h - 1) / 2}, {(w - 1) / 2}], Scale: [{1 / h:.11g}, {1 / w:.11g}], "
        "Type: Polynomial}"
    )
    return (
        f"{{Background: {{Character: NonFlat, Mean: {mean:.5f}, NoiseConst: {noise_const}, {prof}, "
        f"Quality: 1.0}}, Channel: {channel_id}, ChannelName: {_yaml_name(channel_name)}, "
        f"Foreground: {{Character: NonFlat, {prof}, Quality: 1.0}}, Version: Acapella:2013}}"
    )


def _yaml_name(name: str) -> str:
    if any(ch in name for ch in ",:{}[]\"'#&*!|>%@`"):
        return '"' + name.replace('"', "'") + '"'
    return name


def perturbed_coeffs(rng: np.random.Generator, base: list[list[float]]) -> list[list[float]]:
    """Per-channel variant of a profile: the same shape, each coefficient jittered by ~5%."""
    return [[round(c * (1 + rng.normal(0, 0.05)), 4) for c in row] for row in base]


def brightfield_illumination(shape: tuple[int, int], tilt: tuple[float, float]) -> np.ndarray:
    """Gentle transmitted-light gradient: ~3% brighter towards the corners and a slight tilt
    (as in the real Phenix brightfield, which Harmony does not flatfield-correct)."""
    h, w = shape
    y = ((np.arange(h) - (h - 1) / 2) / h)[:, None]
    x = ((np.arange(w) - (w - 1) / 2) / w)[None, :]
    return (1.0 + 0.06 * (x * x + y * y) + tilt[0] * y + tilt[1] * x).astype(np.float32)


def periodic_noise(
    shape: tuple[int, int], sigma_px: float, amplitude: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth, periodic Gaussian noise of standard deviation ``amplitude`` (FFT-filtered).

    Examples
    --------
    >>> n = periodic_noise((64, 64), 4.0, 0.01, np.random.default_rng(0))
    >>> n.dtype.name, round(float(n.std()), 4)
    ('float32', 0.01)
    """
    h, w = shape
    k2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2
    spec = np.fft.rfft2(rng.standard_normal((h, w))) * np.exp(-2 * (np.pi * sigma_px) ** 2 * k2)
    out = np.fft.irfft2(spec, s=(h, w))
    out = (out - out.mean()) / (out.std() + 1e-12) * amplitude
    return out.astype(np.float32)


def camera(
    expected: np.ndarray,
    rng: np.random.Generator,
    *,
    gain: float,
    read_noise: float,
    offset: float,
) -> np.ndarray:
    """Camera read-out of ``expected`` counts (above offset) as uint16.

    Shot noise is Poisson in photons (``expected / gain``); it is drawn as a Gaussian of the same
    variance (exact to well under 1% above ~20 photons, which every simulated level exceeds) plus
    Gaussian read noise, then offset, rounded and clipped to 0..65535 (saturation).
    ``expected`` is not modified.
    """
    e = np.maximum(expected, np.float32(0.0)).astype(np.float32, copy=False)
    sd = e * np.float32(gain)
    sd += np.float32(read_noise * read_noise)
    np.sqrt(sd, out=sd)
    raw = rng.standard_normal(e.shape, dtype=np.float32)
    raw *= sd
    raw += e
    raw += np.float32(offset + 0.5)  # + 0.5 then truncate = round half up
    np.clip(raw, 0, 65535, out=raw)
    return raw.astype(np.uint16)


def defocus(planes: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur every plane of (nz, h, w) by a Gaussian (an out-of-focus field)."""
    return ndimage.gaussian_filter(planes, (0, sigma_px, sigma_px), mode="nearest")


def debris_mask(
    rng: np.random.Generator, shape: tuple[int, int], n: int, pixel_size_um: float
) -> np.ndarray:
    """Soft mask (0..1) of ``n`` debris specks (0.5-3 um) and short fibres in one field."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.8:
            r = rng.uniform(0.5, 3.0) / pixel_size_um
            a, b, theta = r, r * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi)
        else:
            a = rng.uniform(8, 30) / pixel_size_um
            b, theta = 0.6 / pixel_size_um, rng.uniform(0, math.pi)
        half = int(a) + 3
        y0, x0 = int(cy) - half, int(cx) - half
        yy = np.arange(y0, y0 + 2 * half + 1)[:, None] - cy
        xx = np.arange(x0, x0 + 2 * half + 1)[None, :] - cx
        c, s = math.cos(theta), math.sin(theta)
        q = ((xx * c + yy * s) / a) ** 2 + ((-xx * s + yy * c) / max(b, 0.5)) ** 2
        patch = np.clip(1.5 - q, 0, 1).astype(np.float32)
        ys0, xs0 = max(y0, 0), max(x0, 0)
        ys1, xs1 = min(y0 + patch.shape[0], h), min(x0 + patch.shape[1], w)
        if ys1 > ys0 and xs1 > xs0:
            sub = patch[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
            np.maximum(out[ys0:ys1, xs0:xs1], sub, out=out[ys0:ys1, xs0:xs1])
    return out


def is_edge_well(row: int, col: int, rows: int, cols: int) -> bool:
    """Whether a well lies on the plate's outer ring (evaporation, temperature gradients).

    Examples
    --------
    >>> is_edge_well(0, 5, 8, 12), is_edge_well(3, 5, 8, 12)
    (True, False)
    """
    return row in (0, rows - 1) or col in (0, cols - 1)
