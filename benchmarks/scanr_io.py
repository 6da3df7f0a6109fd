"""ScanR export writer and reader on a synthetic 384-well plate, against plain baselines.

Writer baseline: a bare ``tifffile.imwrite`` loop over the same planes (same compression).
Reader baseline: ``os.scandir`` + the scanR file-name regex (the least any reader must do).

Run: ``python benchmarks/scanr_io.py [n_wells] [fields] [channels] [size]``
(default 384 4 3 64: 4,608 planes of 64 x 64 uint16).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from hcs.io.acquisition import Channel
from hcs.io.scanr import read_scanr
from hcs.io.scanr_meta import SCANR_NAME_RE
from hcs.plate import PlateGeometry
from hcs.synth.exports.scanr import write_scanr_export


def main() -> None:
    args = [int(a) for a in sys.argv[1:]]
    n_wells, n_fields, n_ch, size = (args + [384, 4, 3, 64][len(args):])[:4]
    g = PlateGeometry.from_format(n_wells)
    chans = [Channel(f"ch {i} #{i}") for i in range(n_ch)]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4096, (size, size), dtype=np.uint16)
    keys = [(r, c, f, 0, ch, 0) for r in range(g.rows) for c in range(g.columns)
            for f in range(n_fields) for ch in range(n_ch)]
    n = len(keys)
    tmp = Path(tempfile.mkdtemp(prefix="hcs-bench-"))
    try:
        t0 = time.perf_counter()
        (tmp / "plain").mkdir()
        for i in range(n):
            tifffile.imwrite(tmp / "plain" / f"p{i}.tif", base, photometric="minisblack",
                             metadata=None, compression="zlib", compressionargs={"level": 1})
        t_plain = time.perf_counter() - t0

        t0 = time.perf_counter()
        for metadata in ("ome", "descriptor"):
            write_scanr_export(tmp / metadata, ((k, base) for k in keys), channels=chans,
                               geometry=g, pixel_size_um=0.65, metadata=metadata)
        t_write = (time.perf_counter() - t0) / 2

        t0 = time.perf_counter()
        with os.scandir(tmp / "ome" / "data") as it:
            parsed = [SCANR_NAME_RE.match(e.name) for e in it]
        t_scan = time.perf_counter() - t0
        assert sum(m is not None for m in parsed) == n

        times = {}
        for metadata in ("ome", "descriptor"):
            t0 = time.perf_counter()
            acq = read_scanr(tmp / metadata, plate_format=n_wells)
            times[metadata] = time.perf_counter() - t0
            assert len(acq.planes) == n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{n} planes ({g.n_wells} wells x {n_fields} fields x {n_ch} channels, "
          f"{size}x{size} uint16)")
    print(f"{'step':38s} {'seconds':>8s} {'planes/s':>10s}")
    rows = [
        ("write: baseline tifffile.imwrite loop", t_plain),
        ("write: write_scanr_export (mean ome/desc)", t_write),
        ("read:  baseline scandir + name regex", t_scan),
        ("read:  read_scanr, OME-XML", times["ome"]),
        ("read:  read_scanr, descriptor + log", times["descriptor"]),
    ]
    for name, t in rows:
        print(f"{name:38s} {t:8.2f} {n / t:10.0f}")


if __name__ == "__main__":
    main()
