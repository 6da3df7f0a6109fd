"""Benchmark `hcs convert` against the decode floor and a plain ome-zarr-py conversion.

Writes a Harmony export (``write_harmony_export``: LZW TIFFs + Index.idx.xml) of
``--wells`` x ``--fields`` x ``--channels`` planes of ``--size``-square uint16 smooth noise,
then, each in its own subprocess so peak RSS and CPU time are measured separately:

- **floor**: one thread only decoding every plane of the export with tifffile
  (``tifffile.imread(path, key=page)`` in a loop, the file list taken from the parsed index
  before the clock starts). Nothing is written. ``hcs convert`` on N cores is compared with
  this: the issue's target is >= 1.0x, i.e. decode, re-encode, pyramid and metadata in the wall
  time one core needs just to decode;
- **libtiff**: the same loop decoding with libtiff (``imagecodecs.tiff_decode``), which hcs
  uses for plain grey-level TIFFs (:func:`hcs.io.acquisition.decode_with_libtiff`): shown so
  that the part of the gain that comes from the faster decoder is visible;
- **hcs**: ``open_export`` + ``write_plate`` (what ``hcs convert`` runs): threads over fields,
  one chunk per plane, one shard per field, 2x mean pyramid;
- **baseline** (unless ``--no-baseline``): the same index parsing, then per field
  ``tifffile.imread`` of each plane and ``ome_zarr.writer.write_image`` (zarr v3, chunk per
  plane, same pyramid levels, local-mean downsampling), dask's synchronous scheduler (one
  process, one thread).

``--repeat N`` alternates floor and hcs N times (the machine may be shared: compare the ratios
of the same round, not absolutes) and prints every round and the median ratio. The load
average is printed before and after.

Throughput is level-0 raw bytes / wall time (index parsing included for hcs and baseline,
interpreter start-up excluded). Peak RSS is the child's ``ru_maxrss``; CPU time is the child's
user + system time (all threads, imports included), which shows how much of the gain is
parallelism.

Run: ``python benchmarks/convert.py [--wells 24] [--fields 4] [--channels 3] [--size 1080]
[--repeat 3] [--no-baseline] [--workdir DIR]`` (with ``--workdir`` an existing export of the
same shape is reused).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_planes(wells: int, fields: int, channels: int, size: int, seed: int = 0):
    """Smooth, compressible, distinct planes: rolled copies of 4 blurred noise images + noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    bases = []
    for _ in range(4):
        b = gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 6)
        bases.append((b - b.min()) / (b.max() - b.min()))
    cols = 12 if wells <= 96 else 24
    for w in range(wells):
        row, col = divmod(w, cols)
        for f in range(fields):
            for c in range(channels):
                base = np.roll(bases[(w + f + c) % 4], (w * 37 + f * 11, c * 53), axis=(0, 1))
                plane = 200 + 3000 * base + rng.integers(0, 16, size=base.shape)
                yield (row, col, f, 0, c, 0), plane.astype(np.uint16)


def write_export(out: Path, wells: int, fields: int, channels: int, size: int) -> None:
    from hcs.io.acquisition import Channel
    from hcs.plate import PlateGeometry
    from hcs.synth.exports.harmony import write_harmony_export

    emission = [456, 522, 599, 706]
    chans = [
        Channel(f"ch{c + 1}", excitation_nm=emission[c % 4] - 60, emission_nm=emission[c % 4])
        for c in range(channels)
    ]
    geometry = PlateGeometry.from_format(96 if wells <= 96 else 384 if wells <= 384 else 1536)
    write_harmony_export(
        out, make_planes(wells, fields, channels, size), channels=chans, geometry=geometry,
        pixel_size_um=0.598, plate_name="BENCH",
    )


def run_hcs(src: Path, out: Path, workers: int | None) -> dict:
    from hcs.io import open_export
    from hcs.io.convert import write_plate

    t0, c0 = time.perf_counter(), time.process_time()
    acq = open_export(src)
    write_plate(acq, out, workers=workers, progress=False)
    return {"seconds": time.perf_counter() - t0, "planes": len(acq.planes),
            "work_cpu_s": time.process_time() - c0}


def run_baseline(src: Path, out: Path) -> dict:
    import dask
    import tifffile
    import zarr
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    from hcs.io import open_export
    from hcs.plate import row_name

    t0, c0 = time.perf_counter(), time.process_time()
    acq = open_export(src)
    (ny, nx), px = acq.image_shape, acq.pixel_size_um
    root = zarr.open_group(str(out), mode="w")
    wells: dict[str, list[str]] = {}
    with dask.config.set(scheduler="synchronous"):
        for (r, c, f), sub in acq.planes.groupby(["row", "col", "field"]):
            data = np.zeros((acq.size_t, acq.size_c, acq.size_z, ny, nx), dtype=acq.dtype)
            for rec in sub.itertuples(index=False):
                data[rec.t, rec.channel, rec.z] = tifffile.imread(rec.path)
            well = f"{row_name(int(r))}/{c + 1}"
            wells.setdefault(well, []).append(str(f))
            write_image(
                data, root.require_group(f"{well}/{f}"), scale_factors=(2, 4, 8),
                method=Methods.LOCAL_MEAN, axes="tczyx",
                scale={"y": px[0], "x": px[1]},
                storage_options={"chunks": (1, 1, 1, ny, nx)},
            )
    for well, fields in wells.items():
        write_well_metadata(root[well], [{"path": f} for f in fields])
    write_plate_metadata(
        root, acq.geometry.row_names(), acq.geometry.column_names(), list(wells)
    )
    return {"seconds": time.perf_counter() - t0, "planes": len(acq.planes),
            "work_cpu_s": time.process_time() - c0}


def run_floor(src: Path, decoder: str = "tifffile") -> dict:
    import imagecodecs
    import tifffile

    from hcs.io import open_export

    acq = open_export(src)
    planes = [(str(p), int(k)) for p, k in zip(acq.planes["path"], acq.planes["page"], strict=True)]
    nbytes = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for path, page in planes:
        if decoder == "libtiff":
            with open(path, "rb") as fh:
                nbytes += imagecodecs.tiff_decode(fh.read(), index=page).nbytes
        else:
            nbytes += tifffile.imread(path, key=page, maxworkers=1).nbytes
    return {"seconds": time.perf_counter() - t0, "planes": len(planes), "bytes": nbytes,
            "work_cpu_s": time.process_time() - c0}


def child(args: argparse.Namespace) -> None:
    src, out = Path(args.src), Path(args.out)
    if args.child == "hcs":
        result = run_hcs(src, out, args.workers)
    elif args.child == "floor":
        result = run_floor(src)
    elif args.child == "libtiff":
        result = run_floor(src, "libtiff")
    else:
        result = run_baseline(src, out)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["maxrss_mb"] = usage.ru_maxrss / 1024
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # all threads, start-up included
    print(json.dumps(result))


def measure(kind: str, src: Path, out: Path, workers: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--src", str(src), "--out", str(out)]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} conversion failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["size_mb"] = (
        sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6 if out.exists()
        else float("nan")
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wells", type=int, default=24)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--workers", type=int, default=None, help="hcs threads (default: CPUs)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of floor + hcs (default 1)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the ome-zarr-py baseline")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep files here, reusing an export of the same shape (default: tmp)")
    ap.add_argument("--child", choices=["hcs", "baseline", "floor", "libtiff"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import os

    work = args.workdir or Path(tempfile.mkdtemp(prefix="hcs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    shape_tag = f"{args.wells}x{args.fields}x{args.channels}x{args.size}"
    export = work / f"export-{shape_tag}"
    workers = args.workers or os.cpu_count()
    try:
        n = args.wells * args.fields * args.channels
        raw_mb = n * args.size * args.size * 2 / 1e6
        print(f"host: {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)", flush=True)
        if not (export / "Images" / "Index.idx.xml").is_file():
            print(f"writing Harmony export: {args.wells} wells x {args.fields} fields x "
                  f"{args.channels} channels = {n} planes of {args.size}x{args.size} uint16 "
                  f"({raw_mb:.0f} MB raw) ...", flush=True)
            t0 = time.perf_counter()
            shutil.rmtree(export, ignore_errors=True)
            write_export(export, args.wells, args.fields, args.channels, args.size)
            print(f"  {time.perf_counter() - t0:.1f} s", flush=True)
        export_mb = sum(p.stat().st_size for p in export.rglob("*") if p.is_file()) / 1e6
        print(f"export: {n} planes, {raw_mb:.0f} MB raw, {export_mb:.0f} MB of LZW TIFFs "
              f"({export})", flush=True)
        rounds = []
        for i in range(args.repeat):
            res = {}
            for kind in ("floor", "hcs", "libtiff"):
                out = work / f"{kind}.ome.zarr"
                shutil.rmtree(out, ignore_errors=True)
                res[kind] = measure(kind, export, out, args.workers)
                shutil.rmtree(out, ignore_errors=True)  # keep disk use at one plate
            ratio = res["floor"]["seconds"] / res["hcs"]["seconds"]
            cpu = res["hcs"]["work_cpu_s"] / res["floor"]["work_cpu_s"]
            print(f"round {i + 1}: floor {res['floor']['seconds']:.2f} s, hcs "
                  f"{res['hcs']['seconds']:.2f} s -> hcs / floor {ratio:.2f}x; CPU of the work "
                  f"{cpu:.2f}x the floor's (load {os.getloadavg()[0]:.2f})", flush=True)
            rounds.append((ratio, res))
        if not args.no_baseline:
            out = work / "baseline.ome.zarr"
            shutil.rmtree(out, ignore_errors=True)
            print("converting with the ome-zarr-py baseline ...", flush=True)
            base = measure("baseline", export, out, None)
            shutil.rmtree(out, ignore_errors=True)
        ratios = sorted(r for r, _ in rounds)
        median = ratios[len(ratios) // 2]
        ratio, res = next(x for x in rounds if x[0] == median)  # the median round's figures
        cols = [("floor", "tifffile decode, 1 thr"), ("hcs", f"hcs convert, {workers} thr"),
                ("libtiff", "libtiff decode, 1 thr")]
        table = {k: res[k] for k, _ in cols}
        if not args.no_baseline:
            cols.append(("baseline", "write_image, 1 thr"))
            table["baseline"] = base
        print()
        print(f"{'':24}" + "".join(f"{title:>22}" for _, title in cols))
        for label, key, fmt in (
            ("wall time (s)", "seconds", "{:.2f}"),
            ("throughput (MB/s raw)", None, "{:.1f}"),
            ("CPU time, work (s)", "work_cpu_s", "{:.2f}"),
            ("CPU time, process (s)", "cpu_s", "{:.1f}"),
            ("peak RSS (MB)", "maxrss_mb", "{:.0f}"),
            ("output size (MB)", "size_mb", "{:.0f}"),
        ):
            vals = [raw_mb / table[k]["seconds"] if key is None else table[k][key]
                    for k, _ in cols]
            print(f"{label:24}" + "".join(f"{fmt.format(v):>22}" for v in vals))
        print(f"\nhcs convert / decode floor: {median:.2f}x (median of {len(ratios)}: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.0x)")
        cpu_ratios = sorted(r["hcs"]["work_cpu_s"] / r["floor"]["work_cpu_s"] for _, r in rounds)
        cpu_ratio = cpu_ratios[len(cpu_ratios) // 2]
        lib = sorted(r["floor"]["seconds"] / r["libtiff"]["seconds"] for _, r in rounds)
        print(f"libtiff decode-only / tifffile decode-only: {lib[len(lib) // 2]:.2f}x (hcs reads "
              "plain grey-level TIFFs with libtiff: hcs.io.acquisition.decode_with_libtiff)")
        print(f"CPU of the conversion / CPU of decoding: {cpu_ratio:.2f}x (median), so on "
              f"{workers} idle core(s) hcs can reach at most {workers / cpu_ratio:.2f}x the floor "
              "(a load-independent bound: the wall-time ratio above depends on the load)")
        if not args.no_baseline:
            print(f"speed-up hcs / baseline: {base['seconds'] / res['hcs']['seconds']:.2f}x")
        print(f"{n} planes, {raw_mb:.0f} MB raw; load average now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
