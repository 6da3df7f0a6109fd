"""Benchmark `hcs report` on a 384-well (and a 1536-well) run against plotly's own HTML path.

The run: a ``--wells``-well cic plate whose per-well class counts are multinomial draws
(4 conditions interleaved by column, the first a negative control, a 4-dose series in the last
column block), aggregated by ``hcs.aggregate.well_table`` and tested by ``hcs.stats.run_stats``.
For the gallery, a real plate: ``hcs simulate`` (cic, ``--gallery-wells`` wells x 3 fields of
``--size`` px) + ``hcs convert``, whose simulated-classifier cell tables become the run's
``cells/``; the gallery reads at most 24 fields whatever the plate size, so this is its full
cost at that field size.

Measured, in one process (interpreter start-up excluded; imports of plotly/jinja2/ome-zarr
included in the first call), then the CLI end to end in a subprocess:

- **hcs**: ``build_report`` (figures as plain dicts, one inlined plotly.js, JSON per figure);
- **baseline**: the same figures through ``plotly.graph_objects.Figure`` (validated) and
  ``plotly.io.to_html(include_plotlyjs=False, full_html=False)`` per figure: the usual way
  to put many plotly figures in one page (plotly.js still inlined once).

The montage (:mod:`hcs.report.montage`) needs a plate with every well imaged: a second
simulation, the 96-well ARHGAP36 layout tiled 2 x 2 onto a 384-well plate (``--montage-wells``
384, ``--montage-fields`` fields of ``--size`` px), whose simulated-classifier cell tables are the
run's; its report is built with and without the montage (``--no-montage``), side by side.
``--montage-wells 0`` skips it.

Run: ``python benchmarks/report.py [--wells 384] [--size 1080] [--gallery-wells 8]
[--montage-wells 384] [--montage-fields 2]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

LAYOUTS = Path(__file__).resolve().parents[1] / "plate_layouts"


def table_run(folder: Path, n_wells: int, seed: int = 0) -> None:
    from hcs.aggregate import well_table, write_table
    from hcs.assays import get_assay
    from hcs.plate import PlateGeometry
    from hcs.stats import run_stats

    assay = get_assay("cic")
    geom = PlateGeometry.from_format(n_wells)
    rng = np.random.default_rng(seed)
    base = np.array([0.07, 0.10, 0.04, 0.03, 0.02, 0.05, 0.69])
    rows, lay = [], []
    for well in geom.wells():
        col = int(well[-2:]) - 1
        kind = col % 4
        p = base.copy()
        if kind == 1:
            p[1] *= 0.5
        p /= p.sum()
        counts = rng.multinomial(rng.integers(150, 400), p)
        rows.append({"well": well, **{f"n_{c}": int(k) for c, k in zip(assay.classes, counts,
                                                                         strict=True)}})
        dose = 10.0 ** (col // 4 % 4 - 2) if kind == 3 else np.nan
        lay.append({"well": well, "condition": ["vector", "construct A", "construct B",
                                                 f"drug {dose:g} uM"][kind],
                    "construct": ["vector", "A", "B", "drug"][kind], "dose": dose,
                    "dose_unit": "uM" if kind == 3 else None,
                    "role": "negative_control" if kind == 0 else "sample"})
    layout = pd.DataFrame(lay)
    layout.attrs["geometry"] = (geom.rows, geom.columns)
    wells = well_table(pd.DataFrame(rows).assign(plate="P1"), assay, layout=layout)
    write_table(wells, folder / "wells.parquet", overwrite=True)
    write_table(run_stats(wells), folder / "stats.parquet", overwrite=True)


def gallery_plate(root: Path, size: int, n_wells: int) -> tuple[Path, Path]:
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from simrun import simulated_run  # test fixture: a run folder from simulation truth

    from hcs.synth import simulate_plate

    res = simulate_plate(root / "sim", LAYOUTS / "arhgap36_truncations.csv", "cic", fields=3,
                         size=size, wells_per_condition=max(1, n_wells // 4), progress=False)
    plate = write_plate(open_export(res.export), root / "plate.ome.zarr", progress=False)
    run = simulated_run(root / "sim", plate, root / "simrun")
    return plate, run / "cells"


def montage_run(root: Path, size: int, n_wells: int, fields: int) -> Path:
    """A run folder whose plate has every one of ``n_wells`` wells imaged (see module doc)."""
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.layouts import read_layout
    from hcs.plate import PlateGeometry, well_name

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from simrun import simulated_run

    from hcs.synth import simulate_plate

    src = pd.read_csv(LAYOUTS / "arhgap36_truncations.csv", comment="#")
    base = read_layout(LAYOUTS / "arhgap36_truncations.csv")
    geom = PlateGeometry.from_format(n_wells)
    k = max(1, geom.rows // 8)
    rows = []
    for _, r in src.iterrows():
        w = base[base["well"] == str(r["well"]).strip()].iloc[0]
        for dr in range(k):
            for dc in range(k):
                rows.append({**r.to_dict(), "well": well_name(int(w["row"]) * k + dr,
                                                              int(w["col"]) * k + dc)})
    layout = root / f"layout{n_wells}.csv"
    pd.DataFrame(rows).to_csv(layout, index=False)
    res = simulate_plate(root / "msim", layout, "cic", fields=fields, size=size,
                         plate_format=n_wells, progress=False)
    plate = write_plate(open_export(res.export), root / "mplate.ome.zarr", progress=False)
    return simulated_run(root / "msim", plate, root / "mrun")


def baseline(ctx: dict) -> float:
    import plotly.graph_objects as go
    import plotly.io as pio

    t0 = time.perf_counter()
    for text in ctx["figures"].values():
        fig = go.Figure(json.loads(text))
        pio.to_html(fig, include_plotlyjs=False, full_html=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells", type=int, default=384)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--gallery-wells", type=int, default=8)
    ap.add_argument("--montage-wells", type=int, default=384)
    ap.add_argument("--montage-fields", type=int, default=2)
    args = ap.parse_args()
    from hcs.report import build_report, load_run
    from hcs.report.builder import build_context

    root = Path(tempfile.mkdtemp(prefix="hcs-report-bench-"))
    try:
        t0 = time.perf_counter()
        plate, cells = gallery_plate(root, args.size, args.gallery_wells)
        run = root / "run"
        table_run(run, args.wells)
        shutil.copytree(cells, run / "cells")
        (run / "run.json").write_text(json.dumps({"plate": str(plate), "assay": "cic",
                                                  "plate_format": args.wells}))
        n_files = len(list((run / "cells").glob("*/*.parquet")))
        print(f"set-up {time.perf_counter() - t0:.1f} s: {args.wells}-well run, gallery plate"
              f" {n_files} fields of {args.size} px")

        t0 = time.perf_counter()
        out = build_report(run, root / "report.html")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_report(run, root / "report.html", overwrite=True)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        out2 = build_report(run, root / "nogallery.html", gallery=False)
        nogal = time.perf_counter() - t0
        t0 = time.perf_counter()
        ctx = build_context(load_run(run), gallery=False)
        figs_hcs = time.perf_counter() - t0
        figs_base = figs_hcs + baseline(ctx)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hcs", "report", str(run), "--out",
                        str(root / "cli.html")], check=True, capture_output=True)
        cli = time.perf_counter() - t0

        print(f"{'':38s}{'hcs':>10s}{'baseline':>12s}")
        print(f"{'figures + context, no gallery (s)':38s}{figs_hcs:10.2f}{figs_base:12.2f}"
              f"   ({len(ctx['figures'])} figures; baseline = same + go.Figure + to_html)")
        print(f"{'build_report, gallery, 1st call (s)':38s}{first:10.2f}")
        print(f"{'build_report, gallery, warm (s)':38s}{warm:10.2f}")
        print(f"{'build_report, no gallery, warm (s)':38s}{nogal:10.2f}")
        print(f"{'hcs report CLI end to end (s)':38s}{cli:10.2f}")
        print(f"{'file size with gallery (MB)':38s}{out.stat().st_size / 1e6:10.2f}")
        print(f"{'file size without gallery (MB)':38s}{out2.stat().st_size / 1e6:10.2f}")
        if args.montage_wells:
            t0 = time.perf_counter()
            mrun = montage_run(root, args.size, args.montage_wells, args.montage_fields)
            print(f"montage set-up {time.perf_counter() - t0:.1f} s: {args.montage_wells} wells"
                  f" x {args.montage_fields} fields of {args.size} px, all imaged")
            times, sizes = {}, {}
            for name, montage in (("with montage", True), ("--no-montage", False)):
                t0 = time.perf_counter()
                o = build_report(mrun, root / f"m-{montage}.html", montage=montage)
                times[name], sizes[name] = time.perf_counter() - t0, o.stat().st_size / 1e6
            print(f"{'':38s}{'montage':>10s}{'no montage':>12s}")
            print(f"{f'{args.montage_wells}-well report build (s)':38s}"
                  f"{times['with montage']:10.2f}{times['--no-montage']:12.2f}")
            print(f"{f'{args.montage_wells}-well report size (MB)':38s}"
                  f"{sizes['with montage']:10.2f}{sizes['--no-montage']:12.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
