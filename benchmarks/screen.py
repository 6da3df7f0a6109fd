"""Benchmark of a screen (issue 19): 4 plates in one ``hcs analyze`` vs 4 separate calls.

Simulates four small livedead plates (``--wells`` wells x ``--fields`` fields of ``--size`` px,
seeds 0-3) and converts them to OME-Zarr once (both ways then skip conversion). Then, in one
run on the same machine:

- **one call**: :func:`hcs.analyze.screen.analyze_screen` on the 4 plates (one embedded
  LocalCluster of ``--workers`` workers, the fields of all plates submitted together, then
  per-plate aggregate/stats/report and the screen statistics and report);
- **four calls**: :func:`hcs.analyze.analyze` once per plate (each starts and stops its own
  cluster and loads the model on its workers again), as four ``hcs analyze`` commands would.

For each: wall time, cluster start-ups and their seconds, model warm-up seconds, the run stage's
task phase (first submit to last result), the worker-seconds spent computing fields (sum of task
times, ``run.json`` ``task_seconds``) and the idle worker-seconds while a cluster was up
(``workers x (start-up + warm-up + task phase) - busy``): workers waiting for a cluster, for a
model, or for the last task of a plate. Both ways run in this process (no interpreter start
per call, which would add ~3 s per separate command). The machine is shared: the load average
is printed before and after.

    python benchmarks/screen.py [--plates 4] [--wells 8] [--fields 2] [--size 512]
                                [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from hcs.plate import well_name


def make_plates(work: Path, n: int, wells: int, fields: int, size: int) -> tuple[list[Path],
                                                                                    Path]:
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.synth import simulate_plate

    layout = work / "layout.csv"
    names = [well_name(i // 12, i % 12) for i in range(wells)]
    roles = ["negative_control" if i % 4 == 0 else "positive_control" if i % 4 == 1
             else "sample" for i in range(wells)]
    dead = {"negative_control": 0.05, "positive_control": 0.6, "sample": 0.3}
    cond = {"negative_control": "dmso", "positive_control": "staurosporine", "sample": "drug"}
    pd.DataFrame({"well": names, "condition": [cond[r] for r in roles], "role": roles,
                  "sim_freq_dead": [dead[r] for r in roles],
                  "sim_freq_live": [1 - dead[r] for r in roles]}
                 ).to_csv(layout, index=False)
    plates = []
    for i in range(n):
        out = work / f"P{i + 1}.ome.zarr"
        if not (out / "zarr.json").is_file():
            sim = simulate_plate(work / f"sim{i}", layout, "livedead", fields=fields, size=size,
                                 seed=i, progress=False, overwrite=True, plate_name=f"P{i + 1}")
            write_plate(open_export(sim.export), out, overwrite=True, progress=False)
            shutil.rmtree(work / f"sim{i}")
        plates.append(out)
    return plates, layout


def run_figures(run_dirs: list[Path], workers: int) -> dict:
    runs = [json.loads((d / "run.json").read_text()) for d in run_dirs]
    clusters = {json.dumps(r.get("cluster"), sort_keys=True) for r in runs if r.get("cluster")}
    if len(runs) > 1 and all(r.get("plates_on_cluster", 1) > 1 for r in runs):
        # one cluster for all: start-up, warm-up and task phase are shared
        start = max(r["cluster_start_seconds"] or 0 for r in runs)
        warm = max(r["warmup_seconds"] for r in runs)
        phase = max(r["seconds"] for r in runs)
        n_clusters = 1
    else:
        start = sum(r["cluster_start_seconds"] or 0 for r in runs)
        warm = sum(r["warmup_seconds"] for r in runs)
        phase = sum(r["seconds"] for r in runs)
        n_clusters = len(runs)
    busy = sum(r["task_seconds"] for r in runs)
    up = workers * (start + warm + phase)
    return {"clusters": n_clusters, "start": start, "warm": warm, "phase": phase, "busy": busy,
            "idle": up - busy, "idle_frac": (up - busy) / up if up else float("nan"),
            "fields": sum(r["fields_done"] for r in runs), "distinct": len(clusters)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plates", type=int, default=4)
    ap.add_argument("--wells", type=int, default=8)
    ap.add_argument("--fields", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="Work folder to keep (default: temporary)")
    args = ap.parse_args()

    from hcs.analyze import analyze
    from hcs.analyze.screen import analyze_screen

    work = Path(args.keep or tempfile.mkdtemp(prefix="hcs-bench-screen-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"(shared machine: timings are noisy)", flush=True)
    t0 = time.perf_counter()
    plates, layout = make_plates(work, args.plates, args.wells, args.fields, args.size)
    print(f"{args.plates} plates of {args.wells} wells x {args.fields} fields ({args.size} px) "
          f"ready in {time.perf_counter() - t0:.0f} s", flush=True)
    opts = {"assay": "livedead", "layout": str(layout), "workers": args.workers, "gpus": "0",
            "gallery": False, "progress": False, "log": lambda _line: None}
    for d in ("one", "four"):
        shutil.rmtree(work / d, ignore_errors=True)

    t0 = time.perf_counter()
    res = analyze_screen([str(p) for p in plates], work / "one", **opts)
    one_wall = time.perf_counter() - t0
    one = run_figures([d / "run" for d in res.plates.values()], args.workers)

    t0 = time.perf_counter()
    dirs = []
    for p in plates:
        r = analyze(p, work / "four" / p.name.removesuffix(".ome.zarr"), **opts)
        dirs.append(r.run_dir)
    four_wall = time.perf_counter() - t0
    four = run_figures(dirs, args.workers)

    print(f"\n{'':26s}{'wall s':>8s}{'clusters':>9s}{'start s':>8s}{'warm s':>7s}"
          f"{'tasks s':>8s}{'busy w*s':>9s}{'idle w*s':>9s}{'idle':>7s}{'fields':>7s}")
    for name, wall, f in (("one call (screen)", one_wall, one),
                          (f"{args.plates} separate calls", four_wall, four)):
        print(f"{name:26s}{wall:8.1f}{f['clusters']:9d}{f['start']:8.1f}{f['warm']:7.1f}"
              f"{f['phase']:8.1f}{f['busy']:9.1f}{f['idle']:9.1f}{f['idle_frac']:7.0%}"
              f"{f['fields']:7d}")
    print(f"\nsaved by one call: {four_wall - one_wall:.1f} s wall "
          f"({1 - one_wall / four_wall:.0%}); cluster start-up {four['start'] - one['start']:.1f}"
          f" s; model warm-up {four['warm'] - one['warm']:.1f} s; idle worker-seconds "
          f"{four['idle'] - one['idle']:.1f}")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
