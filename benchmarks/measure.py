"""Per-cell measurement cost: seconds per 1080 x 1080 field, ``basic`` and ``full``, next to the
same measurements by scikit-image called plainly, and what they add to a field's run time.

Run: ``python benchmarks/measure.py [--fields N] [--nuclei N] [--repeats N]``

Fields: :func:`hcs.synth.fixtures.nuclei_field` (1080 x 1080, ~200 nuclei) as the nuclear
channel plus two more channels (the field flipped, and a noise plane), so 3 channels are
measured. Columns, per field (median of ``--repeats``):

- ``field none``: a detection-only field through the engine's processor
  (:class:`hcs.engine.processor.PipelineProcessor`, ``prepare`` + ``finish``: detection, cell
  table) without measurements; ``field basic`` / ``field full``: the same with measurements,
  and ``+%``: what ``basic`` adds (target: <= 25 %); the configurations are run in turn
  within each repeat, so that the machine's changing load hits them alike (a last line gives
  the same from each configuration's fastest repeat, the least disturbed by other jobs);
- ``hcs basic`` / ``hcs full``: :func:`hcs.measure.measure_objects` alone;
- ``plain basic``: ``skimage.measure.regionprops_table`` with the 3-channel intensity image,
  the same shape properties, ``intensity_mean/min/max/std``, a median ``extra_properties``
  function and the boundary mean (:func:`skimage.segmentation.find_boundaries` + regionprops);
  ``plain full``: plus per-object Haralick features through ``extra_properties``
  (``graycomatrix`` / ``graycoprops``, the same quantisation as hcs);
- ``model none`` / ``model basic``: a classified field (the shipped ``livedead-sim`` model on
  CPU, :meth:`~hcs.engine.processor.PipelineProcessor.process`) without / with ``basic``,
  and what ``basic`` adds;
- ``cells/s``: cells per second of ``hcs basic``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

import numpy as np


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, object]]:
    """Median seconds of each of ``fns``, run in turn within every repeat (so that a change of
    load on the shared machine hits all configurations alike, not the last one timed)."""
    times: dict = {k: [] for k in fns}
    outs: dict = {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    _MIN.update({k: min(v) for k, v in times.items()})
    return {k: (statistics.median(v), outs[k]) for k, v in times.items()}


_MIN: dict = {}  # fastest repeat of each configuration of the last _interleaved call


def _field(processor, image: np.ndarray, meta) -> object:
    return processor.finish(processor.prepare(image, meta))


def plain_basic(labels: np.ndarray, planes: np.ndarray) -> dict:
    """The basic measurements by scikit-image alone (one regionprops_table call + the edge)."""
    from skimage.measure import regionprops_table
    from skimage.segmentation import find_boundaries

    img = np.moveaxis(planes, 0, -1).astype(np.float64)

    def median(mask: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        return np.median(intensity[mask], axis=0)

    out = regionprops_table(
        labels, intensity_image=img,
        properties=("label", "area", "perimeter", "axis_major_length", "axis_minor_length",
                    "eccentricity", "solidity", "centroid", "intensity_mean", "intensity_min",
                    "intensity_max", "intensity_std"),
        extra_properties=(median,))
    edge = np.where(find_boundaries(labels, mode="inner"), labels, 0)
    out.update({f"edge_{k}": v for k, v in regionprops_table(
        edge, intensity_image=img, properties=("label", "intensity_mean")).items()})
    return out


def plain_full(labels: np.ndarray, planes: np.ndarray) -> dict:
    """Plain basic + per-object Haralick features through ``extra_properties``."""
    from skimage.feature import graycomatrix, graycoprops
    from skimage.measure import regionprops_table

    def haralick(mask: np.ndarray, crop: np.ndarray) -> np.ndarray:  # called per channel
        vals = crop[mask]
        lo, hi = vals.min(), vals.max()
        q = np.zeros(crop.shape, np.uint8)
        if hi > lo:
            q = (np.clip((crop - lo) / (hi - lo), 0, 1) * 15).round().astype(np.uint8) + 1
        q[~mask] = 0
        g = graycomatrix(q, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=17,
                         symmetric=True)[1:, 1:].astype(np.float64)
        s = g.sum(axis=(0, 1), keepdims=True)
        g = np.divide(g, s, out=np.zeros_like(g), where=s > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.concatenate([graycoprops(g, f).mean(axis=1) for f in (
                "contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")])

    out = plain_basic(labels, planes)
    img = np.moveaxis(planes, 0, -1).astype(np.float64)
    out.update(regionprops_table(labels, intensity_image=img, properties=("label",),
                                 extra_properties=(haralick,)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=3)
    ap.add_argument("--nuclei", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from pathlib import Path

    from hcs.engine.processor import EngineParams, FieldMeta, PipelineProcessor
    from hcs.measure import measure_objects
    from hcs.synth.fixtures import nuclei_field

    channels = ("HOECHST 33342", "PH3", "Brightfield")
    procs = {m: PipelineProcessor(EngineParams(plate="-", measure=m))
             for m in ("none", "basic", "full")}
    model = str(Path(__file__).resolve().parents[1] / "models" / "livedead-sim")
    classified = {m: PipelineProcessor(EngineParams(plate="-", assay="livedead", model=model,
                                                    measure=m, device="cpu"))
                  for m in ("none", "basic")}
    rows: list = []
    mins: list[dict] = []
    load0 = os.getloadavg()
    for i in range(args.fields):
        img, truth = nuclei_field((1080, 1080), n_nuclei=args.nuclei, seed=100 + i)
        rng = np.random.default_rng(i)
        planes = np.stack([img, img[::-1, ::-1],
                           rng.normal(500, 20, img.shape).clip(0).astype(np.uint16)])
        meta = FieldMeta("bench", "A01", 0, 0, i, channels, 0.598)
        image = planes[:, None]  # (c, z, y, x)
        field = _interleaved({m: partial(_field, p, image, meta) for m, p in procs.items()},
                             args.repeats)
        fastest = {f"field {m}": _MIN[m] for m in procs}
        with_model = {m: t for m, (t, _) in _interleaved(
            {m: partial(p.process, image, meta) for m, p in classified.items()},
            args.repeats).items()}
        fastest.update({f"model {m}": _MIN[m] for m in classified})
        mins.append(fastest)
        n = len(field["basic"][1])
        lab = truth.labels
        basic = partial(measure_objects, lab, planes, channels, pixel_size_um=0.598)
        t_hb, _ = _timed(basic, args.repeats)
        t_hf, _ = _timed(partial(basic, level="full"), args.repeats)
        t_pb, _ = _timed(partial(plain_basic, lab, planes), args.repeats)
        t_pf, _ = _timed(partial(plain_full, lab, planes), 1)
        rows.append((i, n, field["none"][0], field["basic"][0], field["full"][0], t_hb, t_pb,
                     t_hf, t_pf, len(np.unique(lab)) - 1, with_model["none"],
                     with_model["basic"]))
    print(f"{'field':>5} {'cells':>5} {'field none':>10} {'field basic':>11} {'+%':>5} "
          f"{'field full':>10} {'model none':>10} {'model basic':>11} {'+%':>5} "
          f"{'hcs basic':>9} {'plain basic':>11} {'hcs full':>8} {'plain full':>10} "
          f"{'cells/s':>8}")
    for i, n, fn, fb, ff, hb, pb, hf, pf, nt, mn, mb in rows:
        print(f"{i:>5} {n:>5} {fn:>10.3f} {fb:>11.3f} {100 * (fb - fn) / fn:>5.0f} "
              f"{ff:>10.3f} {mn:>10.3f} {mb:>11.3f} {100 * (mb - mn) / mn:>5.0f} "
              f"{hb:>9.3f} {pb:>11.3f} {hf:>8.3f} {pf:>10.3f} {nt / hb:>8.0f}")
    med = [statistics.median(r[k] for r in rows) for k in range(len(rows[0]))]
    print(f"median: detection-only field none {med[2]:.3f} s, basic {med[3]:.3f} s "
          f"(+{100 * (med[3] - med[2]) / med[2]:.0f} %), full {med[4]:.3f} s; with the "
          f"livedead-sim model none {med[10]:.3f} s, basic {med[11]:.3f} s "
          f"(+{100 * (med[11] - med[10]) / med[10]:.0f} %); hcs basic {med[5]:.3f} s vs plain "
          f"{med[6]:.3f} s; hcs full {med[7]:.3f} s vs plain {med[8]:.3f} s; "
          f"{med[9] / med[5]:.0f} cells/s (basic); load average {load0[0]:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    fast = {k: statistics.median(m[k] for m in mins) for k in mins[0]}
    print("fastest repeat (least contention), median over fields: " + ", ".join(
        f"{k} {v:.3f} s" for k, v in fast.items()) + "; basic adds "
        f"{100 * (fast['field basic'] / fast['field none'] - 1):+.0f} % (detection-only), "
        f"{100 * (fast['model basic'] / fast['model none'] - 1):+.0f} % (classified)")


if __name__ == "__main__":
    main()
