"""Benchmark: simulate a 96-well x 4-field plate of 1080 x 1080 images (target: under 5 minutes).

Run as ``python benchmarks/simulate.py`` (options: ``--assay``, ``--format``, ``--fields``,
``--size``, ``--wells-per-condition``, ``--keep DIR``). Prints the simulation figures side by side
with the baseline measured in the same run: the export writer alone, writing the same number of
planes of the same size (random uint16 noise, so compression works as hard), which is the floor
any simulator writing this export pays.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from hcs.plate import PlateGeometry
from hcs.synth import get_assay, simulate_plate

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = {
    "cic": REPO / "plate_layouts" / "arhgap36_truncations.csv",
    "livedead": REPO / "plate_layouts" / "livedead_dose_series.csv",
}


def _writer_only(out: Path, fmt: str, n_wells: int, fields: int, size: int, n_ch: int) -> float:
    from hcs.synth.assays import get_assay as _ga

    channels = [c.channel() for c in _ga("cic").channels][:n_ch]
    rng = np.random.default_rng(0)
    base = rng.normal(500, 40, (size, size)).clip(0, 65535).astype(np.uint16)

    def planes():
        for w in range(n_wells):
            for f in range(fields):
                for c in range(n_ch):
                    yield (w // 12, w % 12, f, 0, c, 0), np.roll(base, w * 7 + f * 3 + c, 1)

    t0 = time.perf_counter()
    geometry = PlateGeometry.from_format(96)
    if fmt == "harmony":
        from hcs.synth.exports.harmony import write_harmony_export

        write_harmony_export(out, planes(), channels=channels, geometry=geometry,
                             pixel_size_um=0.598)
    else:
        from hcs.synth.exports.scanr import write_scanr_export

        write_scanr_export(out, planes(), channels=channels, geometry=geometry,
                           pixel_size_um=0.598)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assay", default="cic", choices=sorted(LAYOUTS))
    ap.add_argument("--format", default="harmony", choices=["harmony", "scanr"])
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--wells-per-condition", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the simulated plate here")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hcs-bench-sim-"))
    out = args.keep or tmp / "sim"
    def cpu() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    try:
        c0 = cpu()
        res = simulate_plate(out, LAYOUTS[args.assay], args.assay, fmt=args.format,
                             fields=args.fields, size=args.size, seed=0,
                             wells_per_condition=args.wells_per_condition, overwrite=True,
                             progress=True)
        sim_cpu = cpu() - c0
        n_ch = len(get_assay(args.assay).channels)
        base = base_cpu = None
        if not args.no_baseline:
            c1 = cpu()
            base = _writer_only(tmp / "writer", args.format, res.n_wells, args.fields,
                                args.size, n_ch)
            base_cpu = cpu() - c1
        size_mb = sum(p.stat().st_size for p in res.export.rglob("*") if p.is_file()) / 1e6
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print()
        print(f"plate: {res.n_wells} wells x {args.fields} fields, {args.size} x {args.size} px, "
              f"{n_ch} channels, {args.assay}, {args.format} export ({size_mb:.0f} MB), "
              f"{res.n_objects} objects; {os.cpu_count()} CPUs, load average {load:.1f}")
        print(f"{'':28s}{'wall s':>10s}{'CPU s':>10s}{'fields/s':>10s}{'planes/s':>10s}")
        print(f"{'hcs simulate':28s}{res.seconds:10.1f}{sim_cpu:10.1f}"
              f"{res.n_fields / res.seconds:10.2f}{res.n_planes / res.seconds:10.1f}")
        if base is not None:
            print(f"{'baseline: writer only':28s}{base:10.1f}{base_cpu:10.1f}"
                  f"{res.n_fields / base:10.2f}{res.n_planes / base:10.1f}")
        verdict = "PASS" if res.seconds < 300 else "FAIL"
        print(f"target: < 300 s for the plate -> {verdict} ({res.seconds:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
