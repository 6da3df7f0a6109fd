"""Small plates with known nuclei, for the engine's tests and examples.

:func:`write_disc_plate` renders bright discs (nuclei) on a noisy background in a Hoechst
channel, plus brightfield and PI channels, writes them as a real Harmony export and converts it
to an OME-Zarr plate, returning the truth (one row per nucleus).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hcs.plate import PlateGeometry, parse_well

__all__ = ["CHANNELS", "write_disc_plate"]

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
) -> tuple[Path, pd.DataFrame]:
    """Write ``out/plate.ome.zarr`` (via a Harmony export in ``out/export``) with known nuclei.

    Field ``f`` of the ``i``-th well holds ``nuclei + i + f + 2 t`` well-separated discs at
    timepoint ``t`` (drawn anew at every timepoint).

    Returns
    -------
    (Path, pandas.DataFrame)
        The plate and its truth: ``well, field, timepoint, x, y, radius`` (pixels).
    """
    from hcs.io import open_export
    from hcs.io.acquisition import Channel
    from hcs.io.harmony_writer import write_harmony_export
    from hcs.io.omezarr import write_plate

    out = Path(out)
    rng = np.random.default_rng(seed)
    truth: list[dict] = []
    items = []
    for i, well in enumerate(wells):
        r, c = parse_well(well)
        for f in range(fields):
            for t in range(timepoints):
                planes, discs = _field_planes(rng, size, nuclei + i + f + 2 * t)
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
