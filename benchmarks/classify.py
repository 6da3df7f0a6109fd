"""Classifier throughput on CPU: crops per second of every shipped model, batched vs a naive loop.

Run: ``python benchmarks/classify.py [--model models/livedead-ldc ...] [--crops N] [--threads 2]``
(default: every model folder under ``models/``, one table).

Rows per model, measured in the same run on the same crops:

- ``hcs batch B``: :func:`hcs.classify.infer.predict_proba` with batch size 1, 32 and 128
  (inference mode, one normalised tensor per batch);
- ``naive loop``: the per-crop loop one writes first: for each crop, build a tensor, normalise,
  call the model with autograd on, softmax, back to numpy.

Crops: for livedead-ldc the real LDC crops of its held-out images when
``../shared/data/livedead-ldc`` is present; random uint8 crops of the card's size and channels
otherwise (the simulated-data models; throughput does not depend on pixel values). Cropping
time is not included.

A projection ensemble (``ensemble.yaml``, e.g. ``models/mitosis-sim-xyz``) is timed in cells per
second: each cell has one crop per view (z, y, x) and every member (2 levels x 3 views) runs on
its view, least entropy per level, as :meth:`hcs.classify.ensemble.LoadedEnsemble.predict`; the
naive loop runs the six members one cell at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))


def naive_loop(model, crops: np.ndarray) -> np.ndarray:
    import torch

    card, net = model.card, model.module
    mean = torch.tensor(card.normalisation.mean).view(-1, 1, 1)
    std = torch.tensor(card.normalisation.std).view(-1, 1, 1)
    out = []
    for c in crops:
        x = torch.tensor(c, dtype=torch.float32).permute(2, 0, 1) * card.normalisation.scale
        p = torch.softmax(net(((x - mean) / std)[None]), 1)
        out.append(p.detach().numpy()[0])
    return np.array(out)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(_once(fn) for _ in range(repeats))


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def model_crops(model, n: int) -> tuple[np.ndarray, str]:
    """Crops to time: real LDC held-out crops for a model with an LDC split, else random."""
    card = model.card
    ldc = SHARED / "livedead-ldc"
    split = Path(model.folder) / "split.json"
    if card.training.get("data", {}).get("source_folder") == "livedead-ldc" and ldc.is_dir() \
            and split.is_file():
        from hcs.io.annotations import read_voc
        from hcs.train.datasets import build_cropset

        test = set(json.loads(split.read_text())["test"])
        table = read_voc(ldc, {"Living Cell": "live", "Dead Cell": "dead"})
        table = table[table["source"].isin(test)].head(n)
        crops = build_cropset(table, card.classes, card.crop.size, card.crop.margin,
                              card.crop.square, card.crop.pad_mode, card.in_chans).crops
        return crops, f"{len(crops)} real LDC held-out crops"
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (n, card.crop.size, card.crop.size, card.in_chans),
                         dtype=np.uint8)
    return crops, f"{len(crops)} random crops"


def bench_model(folder: Path, n: int, repeats: int) -> list[tuple[str, float]]:
    from hcs.classify.infer import predict_proba
    from hcs.classify.models import load_model

    model = load_model(folder)
    card = model.card
    crops, what = model_crops(model, n)
    print(f"\n{card.name} ({card.architecture}, {card.crop.size}x{card.crop.size}x"
          f"{card.in_chans}, {len(card.classes)} classes): {what}")
    ref = predict_proba(model, crops, batch_size=128, device="cpu")
    rows = []
    for bs in (1, 32, 128):
        s = timed(lambda bs=bs: predict_proba(model, crops, batch_size=bs, device="cpu"),
                  repeats)
        rows.append((f"hcs batch {bs}", len(crops) / s))
    n_naive = min(len(crops), 128)
    s = timed(lambda: naive_loop(model, crops[:n_naive]), repeats)
    rows.append(("naive per-crop loop", n_naive / s))
    diff = np.abs(naive_loop(model, crops[:n_naive]) - ref[:n_naive]).max()
    base = rows[-1][1]
    print(f"{'method':<22}{'crops/s':>10}{'x naive':>9}")
    for name, rate in rows:
        print(f"{name:<22}{rate:>10.0f}{rate / base:>9.1f}")
    print(f"max |p_hcs - p_naive| = {diff:.2e}")
    return rows


def bench_ensemble(folder: Path, n: int, repeats: int) -> list[tuple[str, float]]:
    from hcs.classify.ensemble import load_ensemble

    ens = load_ensemble(folder)
    card = ens.card
    views = card.views(16)
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 255, (n, len(views), card.crop.size, card.crop.size, card.in_chans),
                         dtype=np.uint8).astype(np.float32)
    members = sum(len(v) for v in ens.models.values())
    print(f"\n{card.name} (ensemble of {members} {card.architecture[12:]} members, views "
          f"{','.join(views)}, {card.crop.size}x{card.crop.size}x{card.in_chans}): {n} random "
          "cells; figures are cells/s")
    ref, _ = ens.predict(cells, views, 128, "cpu")
    rows = []
    for bs in (1, 32, 128):
        s = timed(lambda bs=bs: ens.predict(cells, views, bs, "cpu"), repeats)
        rows.append((f"hcs batch {bs}", len(cells) / s))
    n_naive = min(len(cells), 64)

    def naive() -> None:
        for c in cells[:n_naive]:
            for by_view in ens.models.values():
                for j, v in enumerate(views):
                    naive_loop(by_view[v], c[j][None])

    s = timed(naive, repeats)
    rows.append(("naive per-crop loop", n_naive / s))
    base = rows[-1][1]
    print(f"{'method':<22}{'cells/s':>10}{'x naive':>9}")
    for name, rate in rows:
        print(f"{name:<22}{rate:>10.0f}{rate / base:>9.1f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="*", default=None,
                    help="Model folders (default: every folder under models/).")
    ap.add_argument("--crops", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from hcs.classify.models import read_card
    from hcs.errors import InputError

    folders = [Path(m) for m in args.model] if args.model else []
    for p in [] if args.model else sorted((REPO / "models").glob("*/model.yaml")):
        try:
            read_card(p.parent)  # classifier cards only (a detector folder has another card)
            folders.append(p.parent)
        except InputError:
            print(f"skipped {p.parent.name}: not a classifier model card")
    print(f"torch threads {torch.get_num_threads()}, CPU, load average "
          f"{os.getloadavg()[0]:.1f} (shared machines make batch-1 figures noisy)")
    from hcs.classify.ensemble import is_ensemble

    if not args.model:
        folders += sorted(p.parent for p in (REPO / "models").glob("*/ensemble.yaml"))
    table = {f.name: dict(bench_ensemble(f, args.crops, args.repeats) if is_ensemble(f)
                          else bench_model(f, args.crops, args.repeats)) for f in folders}
    methods = list(next(iter(table.values())))
    print(f"\n{'crops/s':<16}" + "".join(f"{m.replace('hcs ', ''):>21}" for m in methods))
    for name, rates in table.items():
        print(f"{name:<16}" + "".join(f"{rates[m]:>21.0f}" for m in methods))


if __name__ == "__main__":
    main()
