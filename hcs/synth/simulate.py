"""`simulate_plate`: layout + assay -> a real instrument export plus truth tables.

Output folder ``OUT``::

    OUT/export/            the instrument export (Harmony: Images/Index*.xml + TIFFs;
                           ScanR: data/*.tif + data/metadata.ome.xml) -- give this to hcs convert
    OUT/truth/cells.parquet    one row per object (cell or cell-in-cell structure)
    OUT/truth/members.parquet  one row per member cell of an object (cell + nucleus centroid)
    OUT/truth/fields.parquet   one row per field: object count and artefact flags
    OUT/truth/wells.parquet    true per-well counts and frequencies + layout columns
    OUT/simulation.json        every parameter, for the record

Everything is written into a temporary sibling folder that is renamed into place at the end,
so a failure leaves nothing behind. Planes are rendered lazily, one field at a time, so memory
does not grow with the plate; each field has its own generator seeded by (seed, row, col, field).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import hcs.synth.artefacts as artefacts
from hcs.atomic import WRITTEN_BY, atomic_dir, check_replaceable
from hcs.errors import InputError, OutputExistsError
from hcs.plate import PlateGeometry, well_name
from hcs.synth.assays import AssaySim, get_assay
from hcs.synth.field import FieldConditions, FieldResult, simulate_field
from hcs.synth.plate import draw_field_classes, load_layout, plan_wells, well_truth
from hcs.synth.shapes import texture_bank

#: Pixel size of the real Opera Phenix sample (20x water, binning 2).
DEFAULT_PIXEL_SIZE_UM = 0.598


@dataclass
class SimulationResult:
    """Where a simulation wrote its export and truth, with its size and duration."""

    out: Path
    export: Path
    index_file: Path
    cells: Path
    wells: Path
    n_wells: int
    n_fields: int
    n_objects: int
    n_planes: int
    seconds: float


def _check_args(fmt: str, fields: int, size: int, pixel_size_um: float, schema: str,
                z_planes: int, z_step_um: float) -> None:
    if fmt not in ("harmony", "scanr"):
        raise InputError(f"format must be 'harmony' or 'scanr', got {fmt!r}")
    if not 1 <= fields <= 400:
        raise InputError(f"fields must be 1..400, got {fields}")
    if not 32 <= size <= 4096:
        raise InputError(f"size must be 32..4096 px, got {size}")
    if not 0.05 <= pixel_size_um <= 10:
        raise InputError(f"pixel size must be 0.05..10 um, got {pixel_size_um}")
    if schema not in ("v5", "v7"):
        raise InputError(f"Harmony schema must be 'v5' or 'v7', got {schema!r}")
    if not 1 <= z_planes <= 64 or z_step_um <= 0:
        raise InputError(f"z planes must be 1..64 and z step > 0, got {z_planes}, {z_step_um}")


def simulate_plate(
    out: str | Path,
    layout: str | Path,
    assay: str,
    fmt: str = "harmony",
    fields: int = 4,
    size: int = 1080,
    seed: int = 0,
    wells_per_condition: int | None = None,
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    schema: str = "v5",
    overwrite: bool = False,
    progress: bool = True,
    *,
    z_planes: int = 1,
    z_step_um: float = 1.0,
    plate_name: str = "SIMPLATE",
    plate_format: int | None = None,
    workers: int | None = None,
) -> SimulationResult:
    """Simulate a screen with known ground truth and write it as a real instrument export.

    Parameters
    ----------
    out
        Output folder (see the module docstring for what goes in it).
    layout
        Plate layout CSV (``hcs.layouts`` formats) with optional ``sim_density``,
        ``sim_freq_<class>`` and ``sim_dispersion`` columns (see :mod:`hcs.synth.plate`).
    assay
        ``cic``, ``livedead``, ``mitosis`` or ``cancer``.
    fmt
        ``harmony`` (Opera Phenix export, Harmony ``schema`` v5 or v7) or ``scanr``.
    fields, size
        Fields per well and their size in pixels (square).
    seed
        Same seed, same bytes.
    wells_per_condition
        Simulate only the first N wells (row-major) of each condition.
    pixel_size_um
        Pixel size; cells are sized in micrometres, so they scale with it.
    overwrite
        Replace an existing ``out``.
    progress
        Show a progress bar on stderr.
    z_planes, z_step_um
        Z-stack (planes centred on the focal plane).
    plate_name, plate_format
        Plate name in the export; plate format (default: 96 wells, larger if the layout needs).
    workers
        Processes rendering fields in parallel (default: the CPU count, at most 4; 1 = in this
        process). Fields are seeded independently, so the bytes do not depend on it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "l.csv").write_text("well,condition\\nB02,ctrl\\n")
    >>> res = simulate_plate(d / "sim", d / "l.csv", "livedead", fmt="scanr", fields=1,
    ...                      size=64, progress=False)
    >>> res.n_wells, res.n_planes
    (1, 3)
    """
    t0 = time.perf_counter()
    _check_args(fmt, fields, size, pixel_size_um, schema, z_planes, z_step_um)
    sim = get_assay(assay)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise OutputExistsError(
                f"{out} exists and is not empty (pass overwrite to replace it)")
        check_replaceable(out, inputs=[layout], overwrite=True, not_ours=simulation_not_ours)
    replace = overwrite or out.is_dir()  # an empty folder may be filled without overwrite
    lay = load_layout(layout, plate_format)
    geometry = PlateGeometry(*lay.attrs["geometry"])
    plan = plan_wells(lay, sim, seed, wells_per_condition)

    shape = (size, size)
    z_um = [(i - (z_planes - 1) / 2) * z_step_um for i in range(z_planes)]
    prng = np.random.default_rng([seed, 424242])
    coeffs: dict[int, list[list[float]] | None] = {}
    vignetting: dict[int, np.ndarray] = {}
    for ci, spec in enumerate(sim.channels):
        if spec.channel_type == "fluorescence":
            coeffs[ci] = artefacts.perturbed_coeffs(prng, artefacts.PHENIX_HOECHST_COEFFS)
            vignetting[ci] = artefacts.flatfield_surface(coeffs[ci], shape)
        else:
            coeffs[ci] = None
    tilt = (float(prng.normal(0, 0.01)), float(prng.normal(0, 0.01)))
    cond = FieldConditions(shape, pixel_size_um, z_um, texture_bank(seed), vignetting,
                           artefacts.brightfield_illumination(shape, tilt),
                           artefacts.periodic_noise(shape, 25.0 / pixel_size_um, 0.006, prng))
    area_mm2 = size * size * (pixel_size_um / 1000.0) ** 2

    truth_cells: list[dict[str, Any]] = []
    truth_members: list[dict[str, Any]] = []
    truth_fields: list[dict[str, Any]] = []
    n_planes = 0
    total_fields = len(plan) * fields

    tasks = [(rec, f) for rec in plan.to_dict("records") for f in range(fields)]
    ctx = _FieldContext(sim.name, cond, seed, area_mm2)

    def planes() -> Iterator[tuple[tuple[int, int, int, int, int, int], np.ndarray]]:
        nonlocal n_planes
        bar = _Progress(total_fields, enabled=progress)
        for (rec, f), res in zip(tasks, _render_fields(tasks, ctx, workers), strict=True):
            row, col = int(rec["row"]), int(rec["col"])
            base = {"plate": plate_name, "well": well_name(row, col), "row": row, "col": col,
                    "field": f}
            truth_cells.extend({**base, **o} for o in res.objects)
            truth_members.extend({**base, **m} for m in res.members)
            truth_fields.append({**base, "n_objects": len(res.objects), **res.qc})
            for z in range(z_planes):
                for c in range(len(sim.channels)):
                    n_planes += 1
                    yield (row, col, f, z, c, 0), res.planes[c][z]
            bar.step(len(res.objects))
        bar.close()

    with atomic_dir(out, inputs=[layout], overwrite=replace,
                    not_ours=simulation_not_ours) as tmp:
        channels = [spec.channel() for spec in sim.channels]
        if fmt == "harmony":
            from hcs.synth.exports.harmony import write_harmony_export

            flat = {ci: artefacts.flatfield_profile_text(
                coeffs[ci], shape, ci + 1, spec.name,
                mean=spec.offset + spec.background * float(vignetting[ci].mean())
                if ci in vignetting else 0.0)
                for ci, spec in enumerate(sim.channels)}
            index = write_harmony_export(
                tmp / "export", planes(), channels=channels, geometry=geometry,
                pixel_size_um=pixel_size_um, plate_name=plate_name, schema=schema,
                z_step_um=z_step_um, flatfield=flat,
            )
        else:
            from hcs.synth.exports.scanr import write_scanr_export

            index = write_scanr_export(
                tmp / "export", planes(), channels=channels, geometry=geometry,
                pixel_size_um=pixel_size_um, plate_name=plate_name, z_step_um=z_step_um,
            )
        (tmp / "truth").mkdir()
        cells = pd.DataFrame(truth_cells)
        if cells.empty:
            cells = pd.DataFrame(columns=["plate", "well", "row", "col", "field", "cell_id",
                                          "class", "n_members"])
        cells.insert(5, "assay", sim.name)
        _write_parquet(cells, tmp / "truth" / "cells.parquet")
        _write_parquet(pd.DataFrame(truth_members), tmp / "truth" / "members.parquet")
        _write_parquet(pd.DataFrame(truth_fields), tmp / "truth" / "fields.parquet")
        wells = well_truth(plan, cells, sim, plate_name)
        _write_parquet(wells, tmp / "truth" / "wells.parquet")
        params = _params(sim, layout, fmt, fields, size, seed, wells_per_condition,
                         pixel_size_um, schema, z_planes, z_step_um, plate_name, geometry, coeffs)
        (tmp / "simulation.json").write_text(json.dumps(params, indent=2) + "\n")
        index_rel = Path(index).resolve().relative_to(tmp.resolve())
    return SimulationResult(
        out=out, export=out / "export", index_file=out / index_rel,
        cells=out / "truth" / "cells.parquet", wells=out / "truth" / "wells.parquet",
        n_wells=len(plan), n_fields=total_fields, n_objects=len(truth_cells),
        n_planes=n_planes, seconds=time.perf_counter() - t0,
    )


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("string")
    df.to_parquet(path, index=False)


def _params(sim: AssaySim, layout: str | Path, fmt: str, fields: int, size: int, seed: int,
            wpc: int | None, px: float, schema: str, nz: int, dz: float, plate_name: str,
            geometry: PlateGeometry, coeffs: dict[int, Any]) -> dict[str, Any]:
    from hcs import __version__

    return {
        "written_by": WRITTEN_BY, "hcs_version": __version__, "assay": sim.name,
        "classes": sim.classes,
        "excluded_classes": sim.excluded, "layout": Path(layout).name, "format": fmt,
        "harmony_schema": schema if fmt == "harmony" else None, "fields": fields,
        "size_px": size, "pixel_size_um": px, "z_planes": nz, "z_step_um": dz, "seed": seed,
        "wells_per_condition": wpc, "plate_name": plate_name,
        "plate": [geometry.rows, geometry.columns],
        "channels": [{"name": c.name, "role": c.role, "level": c.level,
                      "background": c.background, "gain": c.gain, "read_noise": c.read_noise,
                      "offset": c.offset, "flatfield_coefficients": coeffs[i]}
                     for i, c in enumerate(sim.channels)],
    }


def simulation_not_ours(path: Path) -> str | None:
    """Why ``path`` is not a simulation written by :func:`simulate_plate` (``None`` when it is).

    A simulation holds ``simulation.json`` (with ``written_by: hcs``, or the ``hcs_version``,
    ``assay`` and ``seed`` of earlier versions) and nothing besides ``export/`` and ``truth/``;
    ``overwrite`` replaces nothing else (:func:`hcs.atomic.check_replaceable`).
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return "not a folder"
    try:
        meta = json.loads((path / "simulation.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "not an hcs simulation (no readable simulation.json)"
    if not isinstance(meta, dict) or not (
        meta.get("written_by") == WRITTEN_BY or {"hcs_version", "assay", "seed"} <= set(meta)
    ):
        return "not an hcs simulation (simulation.json was not written by hcs)"
    foreign = sorted(p.name for p in path.iterdir()
                     if p.name not in ("export", "truth", "simulation.json"))
    if foreign:
        return f"holds {foreign[0]!r}, which hcs did not write"
    return None


@dataclass
class _FieldContext:
    assay: str
    cond: FieldConditions
    seed: int
    area_mm2: float


_CTX: _FieldContext | None = None


def _init_worker(ctx: _FieldContext) -> None:
    global _CTX
    _CTX = ctx


def _render_one(task: tuple[dict[str, Any], int]) -> FieldResult:
    assert _CTX is not None
    rec, f = task
    sim = get_assay(_CTX.assay)
    rng = np.random.default_rng([_CTX.seed, int(rec["row"]), int(rec["col"]), f])
    classes = draw_field_classes(rec, sim, rng, _CTX.area_mm2)
    return simulate_field(sim, classes, rng, _CTX.cond, intensity_scale=rec["intensity_scale"])


def _render_fields(
    tasks: list[tuple[dict[str, Any], int]], ctx: _FieldContext, workers: int | None
) -> Iterator[FieldResult]:
    """Rendered fields in task order; in a process pool when ``workers`` > 1.

    At most ``2 * workers`` fields are in flight, so memory stays flat however large the plate.
    """
    n = min(os.cpu_count() or 1, 4) if workers is None else max(int(workers), 1)
    n = min(n, len(tasks))
    if n <= 1:
        _init_worker(ctx)
        yield from (_render_one(t) for t in tasks)
        return
    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    from collections import deque

    with mp.get_context(method).Pool(n, initializer=_init_worker, initargs=(ctx,)) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_render_one, (task,)))
            if len(pending) >= 2 * n:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class _Progress:
    """A rich progress bar on stderr (fields and objects per second), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.objects = 0
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from hcs.progress import make_progress

            self.bar = make_progress("simulating fields", [
                TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                TextColumn("fields, {task.fields[objects]} objects"),
                TimeElapsedColumn(), TimeRemainingColumn()])
            self.task = self.bar.add_task("sim", total=total, objects=0)
            self.bar.start()

    def step(self, n_objects: int) -> None:
        self.objects += n_objects
        if self.bar is not None:
            self.bar.update(self.task, advance=1, objects=self.objects)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
