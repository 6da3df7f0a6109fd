"""Harmony index reading speed: streaming ``read_harmony`` vs a naive full-tree parse.

Generates a V7 ``Index.xml`` with N images (default 100,000: 100 wells x 25 fields x 10 planes x
4 channels; no TIFFs, so every plane is reported missing) and times

- ``hcs``: :func:`hcs.io.harmony.read_harmony` (iterparse, elements cleared as they end), and
- ``baseline``: ``ElementTree.parse`` of the whole file + ``findall`` per Image, the approach of
  existing Python importers (operetta-compose, pe2loaddata), building the same plane columns
  as numbers (but not resolving or checking the image paths, which ``hcs`` does).

Run: ``python benchmarks/harmony_index.py [n_wells]``. Prints wall and CPU seconds and peak RSS
growth of each, side by side (each measured in a fresh subprocess).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
import pandas  # imported by both; not part of the measurement
def hwm():  # peak resident set of this process (VmHWM; ru_maxrss is inherited over fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
which, folder = sys.argv[1], Path(sys.argv[2])
rss0 = hwm()
t0, c0 = time.perf_counter(), time.process_time()
if which == "hcs":
    from hcs.io.harmony import read_harmony
    n = len(read_harmony(folder).planes)
else:
    import xml.etree.ElementTree as ET
    import pandas as pd
    root = ET.parse(folder / "Index.xml").getroot()
    ns = {"h": root.tag[1:root.tag.index("}")]}
    rows = []
    for im in root.findall("h:Images/h:Image", ns):
        rows.append({k: im.findtext(f"h:{k}", namespaces=ns) for k in (
            "URL", "Row", "Col", "FieldID", "PlaneID", "ChannelID", "TimepointID",
            "PositionX", "PositionY", "PositionZ", "MeasurementTimeOffset")})
    df = pd.DataFrame(rows)
    for c in df.columns[1:]:
        df[c] = pd.to_numeric(df[c])
    n = len(df)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
rss = hwm() - rss0
print(json.dumps({"n": n, "wall": wall, "cpu": cpu, "rss_mb": rss}))
"""


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_harmony import _v7_index_text  # the same generator the speed test uses

    n_wells = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as d:
        text = _v7_index_text(n_wells, 25, 10, 4)
        (Path(d) / "Index.xml").write_text(text, encoding="utf-8")
        print(f"index: {n_wells * 1000:,} images, {len(text) / 1e6:.1f} MB")
        res = {}
        for which in ("hcs", "baseline"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, which, d], capture_output=True, text=True, check=True
            )
            res[which] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'':10s} {'hcs':>10s} {'baseline':>10s}")
    for key, unit in (("wall", "s"), ("cpu", "s"), ("rss_mb", "MB")):
        print(f"{key + ' ' + unit:10s} {res['hcs'][key]:10.2f} {res['baseline'][key]:10.2f}")
    print(f"{'planes':10s} {res['hcs']['n']:10d} {res['baseline']['n']:10d}")


if __name__ == "__main__":
    main()
