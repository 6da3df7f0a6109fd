"""Benchmark of the whole-plate engine (issue 6), with a plain single-process loop as baseline.

Simulates a livedead plate (hcs.synth, Harmony export -> OME-Zarr) of 24 wells x 4 fields of
1080 x 1080 px, then processes it (detect + classify every cell, write cells/) four ways in one
run: a plain loop in this process (baseline: ``process_field`` per field, crops batched within
the field), ``run_plate`` with 1 worker, with 2 workers (``--fields-per-task`` fields per task,
crops batched across them), and with 2 workers on a 96-well plate (is the peak RSS per worker
flat in plate size?). Prints fields/s, cells/s, speed-up, peak and final RSS per worker and
scheduling overhead side by side.

Scheduling overhead = 1 - (sum of task times) / (workers x wall time from first submit to last
result): everything that is not a worker computing a field (task dispatch, result transfer,
idle workers at the tail). Cluster start-up is reported separately.

The plain loop is also timed stage by stage (:mod:`hcs.timing`: read, background/threshold,
seeds/watershed, measurements, image QC, compose, crop, classify, write; CPU and wall ms per
field, ``other`` = the rest of the loop's CPU); ``--loop-only`` runs just that loop,
``--repeats N`` times (the table shows the fastest repeat of each stage).

    python benchmarks/engine.py [--wells 24] [--big-wells 96] [--fields 4] [--size 1080]
                                [--fields-per-task 4] [--batch-size 64] [--keep DIR]
                                [--loop-only] [--repeats 1]
                                [--first-result N] [--first-result-only] [--no-labels]

Time to first result (issue 20): seconds from starting a run in a fresh process to its first
cell table, main's sequential start-up (check the run, start the cluster, load the model on the
workers) against the overlapped one of ``hcs run`` (docs/scaling.md "Start-up").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from hcs.engine import process_field, run_plate
from hcs.engine.processor import EngineParams
from hcs.plate import well_name
from hcs.synth.fixtures import save_random_model


def make_plate(work: Path, n_wells: int, fields: int, size: int) -> Path:
    """Simulate ``n_wells`` livedead wells (row-major from A01) and convert them."""
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.synth import simulate_plate

    out = work / f"plate{n_wells}.ome.zarr"
    if (out / "zarr.json").is_file():  # --keep folder of an earlier run: same seed, same plate
        print(f"reusing {out}", flush=True)
        return out
    rows = [well_name(i // 12, i % 12) for i in range(n_wells)]
    layout = work / f"layout{n_wells}.csv"
    pd.DataFrame({"well": rows, "condition": ["dmso"] * n_wells,
                  "role": ["sample"] * n_wells}).to_csv(layout, index=False)
    t0 = time.perf_counter()
    sim = simulate_plate(work / f"sim{n_wells}", layout, "livedead", fields=fields, size=size,
                         seed=0, progress=False, overwrite=True)
    plate = write_plate(open_export(sim.index_file.parent.parent),
                        work / f"plate{n_wells}.ome.zarr", overwrite=True, progress=False)
    shutil.rmtree(work / f"sim{n_wells}")
    print(f"simulated + converted {n_wells} wells x {fields} fields ({size} px) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return plate


def baseline(plate: Path, model: Path, out: Path, batch_size: int, labels: bool = True) -> dict:
    """A plain loop over the fields in this process: no Dask at all (timed by stage). It does
    what ``hcs run`` does by default, as the engine runs here do: each field's cell table and
    its nuclei label image (written into the plate; ``labels=False``: the table only, as
    ``hcs run --no-labels``)."""
    from hcs import timing
    from hcs.engine.processor import get_processor
    from hcs.engine.run import list_fields
    from hcs.engine.tasks import _peak_rss_bytes, _rss_bytes
    from hcs.io.omezarr import open_plate

    params = EngineParams(plate=str(plate.resolve()), assay="livedead",
                          model=str(model.resolve()), batch_size=batch_size, labels=labels)
    fields = list_fields(open_plate(plate))
    get_processor(params)  # load the model first, as the engine's workers do before timing
    was_on = timing.enabled()
    timing.enable(True)
    timing.reset()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    cells = 0
    for w, f in fields:
        cells += process_field(params, str(out), w, f)["n_cells"]
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stages = timing.totals()
    timing.enable(was_on)
    rss = _peak_rss_bytes()
    return {"fields": len(fields), "cells": cells, "wall": wall, "startup": 0.0,
            "rss": rss, "rss_quarter": float("nan"), "rss_end": _rss_bytes(),
            "overhead": float("nan"), "workers": 1, "task_s": wall / len(fields),
            "cpu": cpu, "stages": stages}


def show_stages(runs: list[dict]) -> None:
    """Per-stage CPU and wall ms per field of the plain loop (fastest of ``runs``)."""
    n = runs[0]["fields"]
    names = list(runs[0]["stages"])
    print(f"\nplain loop by stage ({n} fields, fastest of {len(runs)} run(s); "
          f"ms per field):\n{'stage':22s}{'CPU ms':>9s}{'wall ms':>9s}{'CPU share':>10s}")
    total = min(r["cpu"] for r in runs) * 1000 / n
    timed = 0.0
    for s in names:
        c = min(r["stages"][s]["cpu"] for r in runs) * 1000 / n
        w = min(r["stages"][s]["wall"] for r in runs) * 1000 / n
        timed += c
        print(f"{s:22s}{c:9.1f}{w:9.1f}{c / total:10.1%}")
    print(f"{'other':22s}{total - timed:9.1f}{'':9s}{(total - timed) / total:10.1%}")
    wall = min(r["wall"] for r in runs) * 1000 / n
    print(f"{'total':22s}{total:9.1f}{wall:9.1f}", flush=True)


def engine(plate: Path, model: Path, out: Path, workers: int, fields_per_task: int,
           batch_size: int, labels: bool = True) -> dict:
    t0 = time.perf_counter()
    s = run_plate(plate, "livedead", model, out, workers=workers, gpus=0, progress=False,
                  fields_per_task=fields_per_task, batch_size=batch_size, labels=labels)
    total = time.perf_counter() - t0
    if not s.ok:
        raise SystemExit(f"benchmark run failed: {s.failures[:2]}")
    tasks = pd.DataFrame(s.tasks)  # one row per task (a group of fields)
    tasks["n_fields"] = tasks["fields"].map(len)
    busy = tasks["seconds"].sum()
    # wall of the task phase: run_plate's own clock starts at the first submit, after the
    # workers have started and loaded the model (start-up, reported separately)
    wall = s.seconds
    # peak RSS of each worker after a quarter of its tasks vs at the end (growth = a leak), and
    # its resident size after its last task (what it holds between fields)
    by = tasks.groupby("pid")
    quarter = by["peak_rss"].apply(lambda r: r.iloc[max(len(r) // 4 - 1, 0)])
    return {"fields": s.fields_done, "cells": s.cells, "wall": wall, "startup": total - wall,
            "ru_maxrss": by["ru_maxrss"].max().max(), "rss": by["peak_rss"].max().max(),
            "rss_quarter": quarter.max(),
            "rss_end": by["rss"].last().max(), "overhead": 1 - busy / (workers * wall),
            "workers": workers, "task_s": busy / tasks["n_fields"].sum()}


#: One run in a fresh process: ``now`` as ``hcs run`` does it (the cluster starts in the
#: background while the main process checks the run, the workers load the model as they
#: start), ``sequential`` as main did before (check, then start the cluster, then load).
_FIRST_RESULT = """
import sys, torch
torch.set_num_threads(1)
from hcs.engine.run import plan_run, run_planned
plate, model, out, mode, workers = sys.argv[1:6]
now = mode == "now"
planned = plan_run(plate, "livedead", model, out, workers=int(workers), gpus=0, labels=False,
                   start_cluster=now)
run_planned([planned], progress=False, preload=now)
"""


def first_result(plate: Path, model: Path, out: Path, mode: str, workers: int = 2) -> dict:
    """Seconds from starting a run in a fresh process to its first cell table written
    (``cells/`` polled every 50 ms) and to its end, and the CPU seconds of all its processes
    (main, scheduler, workers): ``mode`` ``now`` or ``sequential`` (:data:`_FIRST_RESULT`)."""
    import resource
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _FIRST_RESULT, str(plate), str(model),
                             str(out), mode, str(workers)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = None
    while proc.poll() is None:
        if first is None and any((out / "cells").glob("*/*.parquet")):
            first = time.perf_counter() - t0
        time.sleep(0.05)
    total = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"first-result run ({mode}) failed")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    first = first if first is not None else total
    return {"first": first, "total": total, "cpu": cpu, "load": os.getloadavg()[0]}


def show_first_results(plate: Path, model: Path, work: Path, repeats: int) -> None:
    """Time to the first field written, main's sequential start-up vs now, alternating."""
    print(f"\ntime to first result ({repeats}x each, alternating; fresh process, 2 workers):")
    print(f"{'':24s}{'first field s':>14s}{'run s':>8s}{'CPU s':>8s}{'load':>6s}")
    for i in range(repeats):
        for mode in ("sequential", "now"):
            r = first_result(plate, model, work / f"first-{mode}", mode)
            print(f"{mode + ' #' + str(i + 1):24s}{r['first']:14.1f}{r['total']:8.1f}"
                  f"{r['cpu']:8.1f}{r['load']:6.1f}", flush=True)


HEADER = (f"{'':34s}{'fields':>7s}{'cells':>8s}{'wall s':>8s}{'fields/s':>9s}{'cells/s':>9s}"
          f"{'vs 1w':>7s}{'field s':>8s}{'peak RSS MB':>12s}{'(at 1/4)':>9s}{'end RSS':>8s}"
          f"{'overhead':>9s}{'start s':>8s}")


def show(name: str, r: dict, ref: dict | None) -> None:
    speed = (r["fields"] / r["wall"]) / (ref["fields"] / ref["wall"]) if ref else float("nan")
    print(f"{name:34s}{r['fields']:7d}{r['cells']:8d}{r['wall']:8.1f}"
          f"{r['fields'] / r['wall']:9.2f}{r['cells'] / r['wall']:9.1f}{speed:6.2f}x"
          f"{r['task_s']:8.2f}{r['rss'] / 2**20:12.0f}{r['rss_quarter'] / 2**20:9.0f}"
          f"{r['rss_end'] / 2**20:8.0f}{r['overhead']:9.1%}{r['startup']:8.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells", type=int, default=24)
    ap.add_argument("--big-wells", type=int, default=96, help="0 to skip the RSS check")
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--arch", default="lcnet_050", help="timm architecture of the model")
    ap.add_argument("--fields-per-task", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--keep", default=None, help="Work folder to keep (default: temporary)")
    ap.add_argument("--loop-only", action="store_true",
                    help="Only the plain loop and its per-stage table (no engine runs)")
    ap.add_argument("--repeats", type=int, default=1, help="Plain-loop repeats (stage table)")
    ap.add_argument("--first-result", type=int, default=2, metavar="N",
                    help="Time to the first field written, N runs each of the sequential and "
                         "the overlapped start-up (0: skip)")
    ap.add_argument("--no-labels", action="store_true",
                    help="Loop and engine runs write cell tables only (hcs run --no-labels); "
                         "default: label images too, as hcs run does")
    ap.add_argument("--first-result-only", action="store_true",
                    help="Only the time to first result, on the --wells plate")
    args = ap.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="hcs-bench-engine-"))
    work.mkdir(parents=True, exist_ok=True)
    for old in ("loop", "w1", "w2", "big", "first-now", "first-sequential"):  # earlier --keep
        shutil.rmtree(work / old, ignore_errors=True)
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"(other processes share the CPUs: speed-ups are lower bounds)", flush=True)
    model = save_random_model(work / "model", "livedead", ["brightfield"], args.arch,
                              crop_size=48)  # seeded: the same weights every time
    plate = make_plate(work, args.wells, args.fields, args.size)
    print(f"\nplate: {args.wells} wells x {args.fields} fields, {args.size} px, model "
          f"{args.arch}, batch {args.batch_size}, {args.fields_per_task} fields per task, "
          f"{'cell tables only' if args.no_labels else 'cell tables and label images'}; "
          f"'vs 1w' = fields/s relative to the 1-worker engine run")
    if args.first_result_only:
        show_first_results(plate, model, work, max(args.first_result, 1))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return
    print(HEADER, flush=True)
    rows = {}
    loops = []
    for _ in range(max(args.repeats, 1)):
        shutil.rmtree(work / "loop", ignore_errors=True)
        loops.append(baseline(plate, model, work / "loop", args.batch_size, not args.no_labels))
    rows["plain loop (baseline)"] = min(loops, key=lambda r: r["wall"])
    show("plain loop (baseline)", rows["plain loop (baseline)"], None)
    if args.loop_only:
        show_stages(loops)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return
    for n in (1, 2):
        name = f"engine {n} worker{'s' if n > 1 else ''}"
        rows[name] = engine(plate, model, work / f"w{n}", n, args.fields_per_task,
                            args.batch_size, not args.no_labels)
        show(name, rows[name], rows["engine 1 worker"])
    if args.big_wells:
        big = make_plate(work, args.big_wells, args.fields, args.size)
        name = f"engine 2 workers, {args.big_wells} wells"
        rows[name] = engine(big, model, work / "big", 2, args.fields_per_task, args.batch_size,
                            not args.no_labels)
        show(name, rows[name], rows["engine 1 worker"])
    print(f"loadavg now {os.getloadavg()[0]:.1f}")
    show_stages(loops)
    if args.first_result:
        show_first_results(plate, model, work, args.first_result)
    from hcs.engine.tasks import _peak_rss_bytes

    print("peak RSS = the worker's own VmHWM. ru_maxrss, which a spawned worker inherits from "
          "the process that started it, would say: " + ", ".join(
              f"{k} {r['ru_maxrss'] / 2**20:.0f} MB" for k, r in rows.items() if "ru_maxrss" in r)
          + f" (this process's own peak now: {_peak_rss_bytes() / 2**20:.0f} MB)")
    same = all(
        pd.read_parquet(p).equals(pd.read_parquet(work / "w2" / p.relative_to(work / "w1")))
        for p in (work / "w1" / "cells").rglob("*.parquet"))
    print(f"cell tables identical with 1 and 2 workers: {same}")
    worst = 0.0
    labels_same = True
    for p in (work / "loop" / "cells").rglob("*.parquet"):
        a, b = pd.read_parquet(p), pd.read_parquet(work / "w2" / p.relative_to(work / "loop"))
        cols = [c for c in a if c.startswith("p_")]
        worst = max(worst, float((a[cols] - b[cols]).abs().to_numpy().max()) if len(a) else 0)
        labels_same &= bool((a.label == b.label).all())
    print(f"per-field loop vs cross-field batches: max |dp| {worst:.2e}, labels identical: "
          f"{labels_same}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
