"""Detection throughput: 1080 x 1080 fields per second, classical detector vs a plain baseline.

Run: ``python benchmarks/detect.py [--repeats N] [--fields N] [--synth livedead,cic,mitosis]
[--model models/ldc-detector] [--learned-repeats N] [--threads N]``

Columns, measured in the same run on the same fields:

- ``classical``: :func:`hcs.detect.threshold.detect_nuclei` (defaults, pixel size 0.598 um);
- ``baseline``: scikit-image Otsu threshold + connected-component label, no smoothing, no
  splitting, no size limits (the simplest thing that counts nuclei);
- ``learned``: the shipped torchvision detector (``--model``, default ``models/ldc-detector``,
  Faster R-CNN ResNet-18-FPN, 1 channel) on CPU with ``--threads`` torch threads, on the same
  fields rescaled to 0-255 (1-99.8 percentiles, as the engine composes a field; the rescale is
  not timed). A 1080 x 1080 field is larger than its 512-px tile, so this is tiled inference
  (3 x 3 tiles) merged with NMS. It was trained on brightfield LDC images, so its counts on
  the Hoechst fields are only a load to time (no F1 is printed for it); the real Phenix
  *Brightfield* field is added as one more row when present.

Fields: simulated 1080 x 1080 Hoechst-like fields (:func:`hcs.synth.fixtures.nuclei_field`,
sparse and dense) and, when ``../shared/data`` is present, the real Opera Phenix HOECHST 33342
field. On the simulated fields the F1 at IoU 0.5 (mask matching) is printed too, so speed is
seen next to what it buys.

``--synth`` additionally scores the classical detector on fields of the screen simulator
(:func:`hcs.synth.simulate_plate`, 2 wells x 2 fields of 1080 x 1080 per assay, HOECHST channel).
Its truth gives each nucleus's centroid and area but no outline, so two scores are printed:
centroid-in-mask F1 (a true nucleus is found when its centroid lies in a detected mask, each mask
counting once) and box F1@0.5 against the boxes of equal-area discs around the true centroids (an
approximation that under-rates elongated, crescent or fragmented nuclei).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from hcs.classify.crops import rescale_0_255
from hcs.detect import Detections
from hcs.detect.evaluate import evaluate_detections
from hcs.detect.threshold import detect_nuclei
from hcs.synth.fixtures import nuclei_field

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))
PIXEL_UM = 0.598


def baseline(image: np.ndarray) -> Detections:
    """Otsu + label: no smoothing, no splitting."""
    labels, _ = ndi.label(image > filters.threshold_otsu(image))
    return Detections.from_labels(labels.astype(np.int32))


def classical(image: np.ndarray) -> Detections:
    return detect_nuclei(image, pixel_size_um=PIXEL_UM)


def time_it(fn, image: np.ndarray, repeats: int) -> tuple[float, Detections]:
    """Median seconds per call over ``repeats`` calls (after one warm-up call)."""
    out = fn(image)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def load_learned(model: str, threads: int):  # noqa: ANN201
    """The shipped detector, or ``None`` and the reason it is not measured."""
    if importlib.util.find_spec("torch") is None:
        return None, "not available: torch not installed"
    import torch

    from hcs.detect.learned import is_detector_folder, load_detector

    if not is_detector_folder(model):
        return None, f"not available: {model} is not a detector folder"
    torch.set_num_threads(threads)
    det = load_detector(model, device="cpu")
    c = det.card
    return det, (f"{c.name} ({c.architecture}, {c.in_chans} channel, tile {c.tile.size} px "
                 f"overlap {c.tile.overlap}), CPU, {threads} torch thread(s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per field (median)")
    ap.add_argument("--fields", type=int, default=2, help="simulated fields per density")
    ap.add_argument("--synth", default="", help="comma-separated hcs.synth assays to score on")
    ap.add_argument("--model", default=str(REPO / "models" / "ldc-detector"),
                    help="learned detector folder")
    ap.add_argument("--learned-repeats", type=int, default=1, help="timed calls, learned")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)

    fields: list[tuple[str, np.ndarray, Detections | None]] = []
    for density, n in (("sparse", 150), ("dense", 450)):
        for seed in range(args.fields):
            img, truth = nuclei_field((1080, 1080), n, pixel_size_um=PIXEL_UM, seed=100 + seed)
            fields.append((f"sim {density} #{seed} ({len(truth)} nuclei)", img, truth))
    real = SHARED / "harmony-phenix-v5" / "r01c01f01p01-ch5sk1fk1fl1.tiff"
    if real.exists():
        import tifffile

        fields.append(("real Phenix HOECHST 33342", tifffile.imread(real), None))
    else:
        print(f"(real field skipped: {real} not found)")

    learned, learned_note = load_learned(args.model, args.threads)
    bf = SHARED / "harmony-phenix-v5" / "r01c01f01p01-ch6sk1fk1fl1.tiff"
    if learned is not None and bf.exists():
        import tifffile

        fields.append(("real Phenix Brightfield", tifffile.imread(bf), None))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"detect benchmark: {len(fields)} fields of 1080 x 1080, median of {args.repeats} "
          f"timed calls each ({args.learned_repeats} for learned), {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at start")
    print(f"learned: {learned_note}")
    header = f"{'field':34} {'classical':>20} {'baseline':>20} {'learned':>20}"
    print(header)
    print("-" * len(header))
    tot = {"classical": 0.0, "baseline": 0.0, "learned": 0.0}
    preds: dict[str, list[Detections]] = {"classical": [], "baseline": []}
    truths: list[Detections] = []
    for i, (name, img, truth) in enumerate(fields, 1):
        cells = []
        for key, fn in (("classical", classical), ("baseline", baseline)):
            sec, det = time_it(fn, img, args.repeats)
            tot[key] += sec
            cells.append(f"{1 / sec:6.2f} f/s n={len(det):<5d}")
            if truth is not None:
                preds[key].append(det)
        if learned is not None:
            grey = rescale_0_255(img)
            sec, det = time_it(lambda x: learned.detect(x, 0.5), grey, args.learned_repeats)
            tot["learned"] += sec
            cells.append(f"{1 / sec:6.2f} f/s n={len(det):<5d}")
        else:
            cells.append("n/a")
        if truth is not None:
            truths.append(truth)
        print(f"{name:34} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}   [{i}/{len(fields)}]",
              flush=True)
    print("-" * len(header))
    n = len(fields)
    lrn = f"{n / tot['learned']:10.3f} fields/s" if learned is not None else "n/a"
    print(f"{'throughput (all fields)':34} {n / tot['classical']:10.2f} fields/s "
          f"{n / tot['baseline']:10.2f} fields/s {lrn:>20}")
    if truths:
        f1 = {k: evaluate_detections(v, truths)["f1_iou50"] for k, v in preds.items()}
        print(f"{'F1@IoU0.5 on simulated fields':34} {f1['classical']:20.3f} "
              f"{f1['baseline']:20.3f} {'(brightfield model)':>20}")
    for assay in [a for a in args.synth.split(",") if a]:
        synth_accuracy(assay.strip())
    return 0


def synth_accuracy(assay: str, seed: int = 0) -> None:
    """Score detect_nuclei on hcs.synth fields of ``assay`` (see the module docstring)."""
    import re
    import tempfile

    import pandas as pd
    import tifffile

    from hcs.synth import simulate_plate

    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout.csv"
        layout.write_text("well,condition\nB02,ctrl\nB03,ctrl\n")
        res = simulate_plate(Path(tmp) / "sim", layout, assay, fmt="scanr", fields=2, size=1080,
                             seed=seed, progress=False, workers=1, pixel_size_um=PIXEL_UM)
        members = pd.read_parquet(res.out / "truth" / "members.parquet")
        preds, truths, n_true, n_det, hits = [], [], 0, 0, 0
        for path in sorted(res.export.glob("data/*--HOECHST 33342.tif")):
            m = re.match(r"([A-Z]+)(\d+)--W\d+--P(\d+)--", path.name)
            well, field = f"{m.group(1)}{int(m.group(2)):02d}", int(m.group(3)) - 1
            t = members[(members.well == well) & (members.field == field)]
            t = t[t.nucleus_area_px > 0].dropna(subset=["nucleus_x", "nucleus_y"])
            det = detect_nuclei(tifffile.imread(path), pixel_size_um=PIXEL_UM)
            h = np.sqrt(t.nucleus_area_px.to_numpy() / np.pi)  # box of the equal-area disc
            cx, cy = t.nucleus_x.to_numpy() + 0.5, t.nucleus_y.to_numpy() + 0.5
            preds.append(det)
            truths.append(np.c_[cx - h, cy - h, cx + h, cy + h])
            rr = np.clip(np.round(t.nucleus_y.to_numpy()).astype(int), 0, det.labels.shape[0] - 1)
            cc = np.clip(np.round(t.nucleus_x.to_numpy()).astype(int), 0, det.labels.shape[1] - 1)
            found = det.labels[rr, cc]
            hits += len(np.unique(found[found > 0]))
            n_true, n_det = n_true + len(t), n_det + len(det)
    box = evaluate_detections(preds, truths)
    p, r = hits / max(n_det, 1), hits / max(n_true, 1)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    print(f"synth {assay:9} {len(preds)} fields: {n_true} true nuclei, {n_det} detected; "
          f"centroid-in-mask P {p:.3f} R {r:.3f} F1 {f1:.3f}; box F1@0.5 "
          f"{box['box_f1_iou50']:.3f} (P@0.1 {box['precision_iou10']:.3f}, "
          f"R@0.1 {box['recall_iou10']:.3f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
