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

Run: ``python benchmarks/report.py [--wells 384] [--size 1080] [--gallery-wells 8]``.
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
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
