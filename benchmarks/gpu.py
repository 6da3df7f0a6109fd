"""GPU benchmark: classifier crops/s by batch size and AMP, detector tiles/s, CPU/GPU agreement.

On a machine with a CUDA device (``torch.cuda.is_available()``) it measures, in one run:

- **classifier** (``--model``, default ``models/livedead-ldc``):
  :func:`hcs.classify.infer.predict_proba` crops/s for every ``--batch-sizes`` (default
  32..1024) with AMP (float16 autocast, what ``hcs run`` uses on CUDA) off and on; the time of a
  call includes building the normalised tensor, the copy to the device and the probabilities
  back to numpy, as in the engine;
- **agreement**: the same crops classified on the CPU (float32) and on the GPU with AMP off and
  on: max |p_gpu - p_cpu| over all crops and classes, and the fraction of crops whose label
  (argmax) is the same;
- **learned detector** (``--detector``, default ``models/ldc-detector``): tiles/s of
  :class:`hcs.detect.learned.LearnedDetector` forward passes (the per-tile call the tiled
  detection makes) at 1, 4 and 8 tiles per call, tiles of the card's size; and the agreement of
  its detections on the CPU and the GPU (count above the card's score threshold, fraction of GPU
  boxes with an IoU >= 0.9 CPU box).

Inputs: when ``--images`` (default ``../shared/data/livedead-ldc``, LDC PNGs with VOC boxes)
exists, the crops are its annotated cells cut as in training
(:func:`hcs.classify.crops.crop_box` with the card's crop settings) and the tiles are mosaics
of its images; otherwise seeded synthetic images (bright discs on a noisy background).
Throughput does not depend on pixel values; agreement is measured on the same inputs on both
devices.

Without a CUDA device it prints that none was found and exits 0. ``--cpu`` runs the same
measurements on the CPU (AMP rows are skipped: ``predict_proba`` uses autocast on CUDA only),
so the code path is exercised here (``tests/test_gpu_benchmark.py``); CPU figures are not GPU
figures.

Run: ``python benchmarks/gpu.py [--device cuda:0] [--crops 4096] [--batch-sizes 32,64,...]
[--tiles 32] [--repeats 3] [--cpu]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))


def ldc_images(folder: Path, chans: int):
    """(image H x W x chans, boxes (N, 4) xyxy) of the LDC PNGs with a VOC file, sorted."""
    import xml.etree.ElementTree as ET

    from hcs.classify.crops import as_channels, read_image

    for png in sorted(folder.glob("*.png")):
        xml = png.with_suffix(".xml")
        if not xml.is_file():
            continue
        boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in ET.parse(xml).getroot().iter("object")]
        yield as_channels(read_image(png), chans), np.array(boxes, dtype=np.float32)


def real_crops(folder: Path, card, n: int) -> np.ndarray:
    """``n`` crops of annotated LDC cells, cut as in training (cycling over the images)."""
    from hcs.classify.crops import crop_box

    c = card.crop
    out: list[np.ndarray] = []
    while len(out) < n:
        for img, boxes in ldc_images(folder, card.in_chans):
            out += [crop_box(img, b, c.size, c.margin, c.square, c.pad_mode) for b in boxes]
            if len(out) >= n:
                break
    return np.clip(np.round(np.stack(out[:n])), 0, 255).astype(np.uint8)


def real_tiles(folder: Path, n: int, size: int, chans: int) -> list[np.ndarray]:
    """``n`` float32 ``size x size x chans`` tiles, each a mosaic of LDC images."""
    tiles: list[np.ndarray] = []
    images = ldc_images(folder, chans)
    while len(tiles) < n:
        tile = np.zeros((size, size, chans), np.float32)
        y = x = row_h = 0
        for img, _ in images:
            h, w = min(img.shape[0], size), min(img.shape[1], size)
            if x + w > size:
                y, x, row_h = y + row_h, 0, 0
            if y + h > size:
                break
            tile[y : y + h, x : x + w] = img[:h, :w]
            x, row_h = x + w, max(row_h, h)
        else:
            images = ldc_images(folder, chans)  # start over
        tiles.append(tile)
    return tiles


def synthetic_images(n: int, size: int, chans: int, seed: int) -> np.ndarray:
    """``n x size x size x chans`` uint8: noisy background with a few bright discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = rng.normal(90, 12, (n, size, size, chans))
    for i in range(n):
        for _ in range(max(1, size * size // 3000)):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(4, max(5, size / 8))
            out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(60, 140)
    return np.clip(out, 0, 255).astype(np.uint8)


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` after one warm-up call (CUDA synchronised)."""
    import torch

    def once() -> float:
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - t

    fn()
    return statistics.median(once() for _ in range(repeats))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of ``(N, 4)`` and ``(M, 4)`` xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def classifier_rows(args, device: str) -> None:
    from hcs.classify.infer import predict_proba
    from hcs.classify.models import load_model

    model = load_model(args.model)
    card = model.card
    if args.images.is_dir():
        crops, what = real_crops(args.images, card, args.crops), f"cells of {args.images}"
    else:
        crops = synthetic_images(args.crops, card.crop.size, card.in_chans, seed=0)
        what = "synthetic"
    print(f"\nclassifier {card.name} ({card.architecture}, {card.in_chans} channel(s), "
          f"{card.crop.size} px crops), {len(crops)} crops ({what})")
    amps = (False, True) if device.startswith("cuda") else (False,)
    print(f"{'batch':>6}" + "".join(f"{'crops/s AMP ' + ('on' if a else 'off'):>18}"
                                     for a in amps))
    for bs in args.batch_sizes:
        rates = []
        for amp in amps:
            s = timed(lambda bs=bs, amp=amp: predict_proba(model, crops, batch_size=bs,
                                                           device=device, amp=amp),
                      args.repeats)
            rates.append(len(crops) / s)
        print(f"{bs:>6}" + "".join(f"{r:>18.0f}" for r in rates), flush=True)
    if not device.startswith("cuda"):
        print("(AMP: autocast is used on CUDA only; on the CPU predict_proba runs float32)")

    ref = predict_proba(model, crops, batch_size=128, device="cpu", amp=False)
    bs = max(b for b in args.batch_sizes if b <= max(256, min(args.batch_sizes)))
    print(f"\nagreement with the CPU (float32, batch 128), batch {bs} on {device}:")
    for amp in amps:
        p = predict_proba(model, crops, batch_size=bs, device=device, amp=amp)
        same = float(np.mean(p.argmax(1) == ref.argmax(1)))
        print(f"  AMP {'on ' if amp else 'off'}: max |dp| {np.abs(p - ref).max():.2e}, "
              f"labels identical for {100 * same:.2f}% of crops")


def detector_rows(args, device: str) -> None:
    from hcs.detect.learned import load_detector

    det = load_detector(args.detector, device=device)
    card = det.card
    size = args.tile_size or card.tile.size
    if args.images.is_dir():
        tiles, what = real_tiles(args.images, args.tiles, size, card.in_chans), "LDC mosaics"
    else:
        tiles = list(synthetic_images(args.tiles, size, card.in_chans, seed=1).astype(np.float32))
        what = "synthetic"
    print(f"\nlearned detector {card.name} ({card.architecture}), {len(tiles)} tiles of "
          f"{size} x {size} px, {card.in_chans} channel(s) ({what})")
    print(f"{'tiles/call':>10}{'tiles/s':>12}")
    for per_call in (1, 4, 8):
        if per_call > len(tiles):
            break

        def run(per_call: int = per_call) -> None:
            for i in range(0, len(tiles), per_call):
                det._predict(tiles[i : i + per_call])

        print(f"{per_call:>10}{len(tiles) / timed(run, args.repeats):>12.2f}", flush=True)

    cpu = det if device == "cpu" else load_detector(args.detector, device="cpu")
    for label, thr in (("all raw outputs", 0.0), (f"score >= {card.score_threshold}",
                                                   card.score_threshold)):
        n_dev = n_cpu = matched = 0
        dscore = 0.0
        for t in tiles:
            ((b_dev, s_dev, _),) = det._predict([t])
            ((b_cpu, s_cpu, _),) = cpu._predict([t])
            b_dev, s_dev = b_dev[s_dev >= thr], s_dev[s_dev >= thr]
            b_cpu, s_cpu = b_cpu[s_cpu >= thr], s_cpu[s_cpu >= thr]
            n_dev, n_cpu = n_dev + len(b_dev), n_cpu + len(b_cpu)
            if len(b_dev) and len(b_cpu):
                iou = box_iou(b_dev, b_cpu)
                hit = iou.max(1) >= 0.9
                matched += int(hit.sum())
                if hit.any():
                    best = iou.argmax(1)[hit]
                    dscore = max(dscore, float(np.abs(s_dev[hit] - s_cpu[best]).max()))
        frac = f"{100 * matched / n_dev:.1f}%" if n_dev else "-"
        print(f"agreement with the CPU ({label}): {n_cpu} detections on the CPU, {n_dev} on "
              f"{device}; {frac} of the {device} boxes have a CPU box with IoU >= 0.9 "
              f"(max |score difference| {dscore:.2e})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "livedead-ldc")
    ap.add_argument("--detector", type=Path, default=REPO / "models" / "ldc-detector")
    ap.add_argument("--images", type=Path, default=SHARED / "livedead-ldc",
                    help="LDC PNG + VOC folder for real crops and tiles (else synthetic)")
    ap.add_argument("--device", default="cuda", help="cuda or cuda:N (default cuda)")
    ap.add_argument("--cpu", action="store_true",
                    help="run the measurements on the CPU (exercises the code, not a GPU figure)")
    ap.add_argument("--crops", type=int, default=4096)
    ap.add_argument("--batch-sizes", default="32,64,128,256,512,1024",
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--tiles", type=int, default=32)
    ap.add_argument("--tile-size", type=int, default=None, help="default: the card's tile size")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    print(f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if args.cpu:
        device = "cpu"
        print(f"--cpu: measuring on the CPU ({torch.get_num_threads()} torch threads); these "
              "are not GPU figures")
    elif not torch.cuda.is_available():
        print("no CUDA device found (torch.cuda.is_available() is False): nothing measured. "
              "Run this on a machine with a GPU, or with --cpu to exercise the code on the CPU.")
        return 0
    else:
        device = args.device
        idx = torch.device(device).index or 0
        print(f"device {device}: {torch.cuda.get_device_name(idx)}")
    torch.manual_seed(0)
    classifier_rows(args, device)
    detector_rows(args, device)
    print(f"\nload average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
