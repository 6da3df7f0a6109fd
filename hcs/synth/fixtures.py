"""Fixtures for tests, benchmarks and examples: small plates, fields and models with known truth.

- :func:`write_disc_plate`: a small plate with known nuclei. Bright discs (nuclei) on a noisy
  background in a Hoechst channel, plus brightfield and PI channels, written as a real Harmony
  export and converted to an OME-Zarr plate; returns the truth (one row per nucleus).
- :func:`nuclei_field`: synthetic nuclear-stain fields with exact truth masks, for detector tests
  and benchmarks. A field holds random elliptical nuclei (random size, elongation, orientation
  and brightness), a share of them placed as touching pairs, blurred by a Gaussian point-spread
  function, multiplied by a radial vignetting profile, on a background with Poisson-Gaussian
  camera noise. The truth label mask is the rasterised ellipses; where a touching pair overlaps,
  each pixel goes to the nucleus whose (normalised) elliptical distance is smaller. This is
  deliberately simpler than the screen simulator (:func:`hcs.synth.simulate_plate`): it exists
  so the detector can be scored against exact nucleus masks.
- :func:`save_random_model` / :func:`save_random_ensemble`: seeded, untrained model folders in
  the real format, whose predictions are meaningless but deterministic.

None of this is used by hcs at run time; it lives in the package (not under ``tests/``) because
benchmarks and the docs' examples use it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from hcs.detect.detections import Detections
from hcs.plate import PlateGeometry, parse_well

__all__ = ["CHANNELS", "nuclei_field", "save_random_ensemble", "save_random_model",
           "write_disc_plate"]

CHANNELS = ("Brightfield", "HOECHST 33342", "PI")



def _field_planes(rng: np.random.Generator, size: int, n: int) -> tuple[list[np.ndarray], list]:
    grid = int(np.ceil(np.sqrt(max(n, 1))))
    step = size / grid
    cells = rng.permutation(grid * grid)[:n]
    yy, xx = np.mgrid[:size, :size]
    hoechst = rng.normal(440, 12, (size, size))
    bright = rng.normal(21000, 90, (size, size))
    pi = rng.normal(300, 10, (size, size))
    truth = []
    for k in sorted(cells):
        cy = (k // grid + 0.5) * step + rng.uniform(-step / 8, step / 8)
        cx = (k % grid + 0.5) * step + rng.uniform(-step / 8, step / 8)
        r = rng.uniform(6, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        hoechst[disc] += rng.uniform(8000, 20000)
        bright[disc] -= rng.uniform(500, 3000)
        if rng.random() < 0.5:
            pi[disc] += 6000
        truth.append((cx, cy, r))
    planes = [np.clip(p, 0, 65535).astype(np.uint16) for p in (bright, hoechst, pi)]
    return planes, truth


def write_disc_plate(
    out: str | Path,
    wells: list[str],
    fields: int = 2,
    size: int = 256,
    nuclei: int = 9,
    seed: int = 0,
    pixel_size_um: float = 0.6,
    timepoints: int = 1,
    alter: dict[tuple[str, int], Callable[[list[np.ndarray]], list[np.ndarray]]] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Write ``out/plate.ome.zarr`` (via a Harmony export in ``out/export``) with known nuclei.

    Field ``f`` of the ``i``-th well holds ``nuclei + i + f + 2 t`` well-separated discs at
    timepoint ``t`` (drawn anew at every timepoint). ``alter[(well, field)]``, when given,
    turns that field's planes (brightfield, Hoechst, PI; uint16) into the ones written, e.g. a
    Gaussian blur (a defocused field) or a gain (a saturated one); the truth is unchanged.

    Returns
    -------
    (Path, pandas.DataFrame)
        The plate and its truth: ``well, field, timepoint, x, y, radius`` (pixels).
    """
    from hcs.io import open_export
    from hcs.io.acquisition import Channel
    from hcs.io.convert import write_plate
    from hcs.synth.exports.harmony import write_harmony_export

    out = Path(out)
    rng = np.random.default_rng(seed)
    truth: list[dict] = []
    items = []
    for i, well in enumerate(wells):
        r, c = parse_well(well)
        for f in range(fields):
            for t in range(timepoints):
                planes, discs = _field_planes(rng, size, nuclei + i + f + 2 * t)
                if alter and (well, f) in alter:
                    planes = [np.asarray(p, np.uint16) for p in alter[(well, f)](planes)]
                truth += [{"well": well, "field": f, "timepoint": t, "x": x, "y": y,
                           "radius": rad} for x, y, rad in discs]
                items += [((r, c, f, 0, ch, t), p) for ch, p in enumerate(planes)]
    channels = [Channel(CHANNELS[0], "brightfield", 740, 0), Channel(CHANNELS[1]),
                Channel(CHANNELS[2])]
    index = write_harmony_export(out / "export", items, channels=channels,
                                 geometry=PlateGeometry.from_format(96),
                                 pixel_size_um=pixel_size_um, compression=None, overwrite=True)
    plate = write_plate(open_export(index.parent.parent), out / "plate.ome.zarr", overwrite=True,
                        progress=False, workers=1)
    return plate, pd.DataFrame(truth)




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


def save_random_model(
    out: str | Path,
    assay: str,
    channels: list[str],
    architecture: str = "test_resnet",
    crop_size: int = 32,
    margin: float = 0.25,
    seed: int = 0,
    level: str | None = None,
    view: str = "z",
) -> Path:
    """A seeded, untrained model folder in the real format (for tests and benchmarks).

    Its predictions are meaningless but deterministic, so the engine's outputs can be compared
    exactly between runs, worker counts and resumptions.
    """
    import torch

    from hcs.assays import get_assay
    from hcs.classify.models import ModelCard, create_classifier, save_model

    a = get_assay(assay)
    classes = list(a.levels[level] if level is not None else a.classes)
    torch.manual_seed(seed)
    net = create_classifier(architecture, len(classes), len(channels))
    card = ModelCard(
        name=Path(out).name, assay=assay, classes=classes, level=level,
        architecture=architecture,
        in_chans=len(channels), channels=[{"name": c} for c in channels],
        crop=dict(size=crop_size, margin=margin, square=True, pad_mode="constant", view=view),
        normalisation=dict(scale=1 / 255, mean=[0.5] * len(channels),
                           std=[0.25] * len(channels)),
        thresholds={"rule": "argmax"},
        training={"data": f"none: random initialisation (seed {seed}), for tests"},
    )
    return save_model(net, card, out, overwrite=True)


def save_random_ensemble(
    out: str | Path,
    channels: list[str],
    views: tuple[str, ...] = ("z", "y", "x"),
    architecture: str = "test_resnet",
    crop_size: int = 32,
    seed: int = 0,
) -> Path:
    """A seeded, untrained mitosis projection ensemble (:mod:`hcs.classify.ensemble`): one
    random member per level and view, for tests and benchmarks."""
    from hcs.classify.ensemble import write_ensemble

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    levels: dict[str, dict[str, str]] = {}
    for i, level in enumerate(("mitotic", "stage")):
        levels[level] = {}
        for j, v in enumerate(views):
            save_random_model(out / f"{level}-{v}", "mitosis", channels, architecture,
                              crop_size, 1.0 if v == "z" else 0.25, seed + 10 * i + j, level, v)
            levels[level][v] = f"{level}-{v}"
    write_ensemble(out, {"name": out.name, "assay": "mitosis", "levels": levels,
                         "training": {"data": f"none: random initialisation (seed {seed})"}})
    return out
