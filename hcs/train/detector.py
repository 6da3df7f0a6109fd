"""Train a learned cell detector (``hcs train detector``): a small torchvision-reference loop.

Split by image (a split.json or fractions), flip / right-angle rotation / scale / brightness
augmentation, AdamW with linear warm-up and cosine decay, one progress line per epoch (loss,
validation AP50 and best F1, seconds). Each epoch writes ``last.pt`` to the checkpoint folder
(model, optimiser, schedule, history, RNG) so ``--resume`` continues exactly; every epoch that
improves the validation AP50 rewrites the model folder, so a run cut short still leaves its best
model. Validation metrics are :func:`hcs.detect.evaluate.evaluate_detections`, the same code as
``hcs evaluate detector``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hcs.errors import InputError, OutputExistsError
from hcs.train.detector_data import (
    DetectionSet,
    augment_sample,
    random_crop,
    read_detection_set,
    resolve_split,
)

__all__ = ["DetectorTrainConfig", "train_detector", "fit"]


class DetectorTrainConfig(BaseModel):
    """Hyper-parameters of one detector training run (all recorded in the model card)."""

    model_config = ConfigDict(extra="forbid")
    architecture: str = "fasterrcnn_resnet18_fpn"
    channels: list[str] = Field(default_factory=lambda: ["brightfield"])
    class_agnostic: bool = True
    anchor_sizes: list[int] | None = None
    scale: float = Field(1.0, gt=0)
    tile_size: int = Field(512, gt=0)
    tile_overlap: int = Field(64, ge=0)
    pretrained: str | None = None
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)
    crop: int | None = Field(None, gt=8)
    roi_batch: int = Field(64, ge=8)
    val_images: int | None = Field(None, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    time_limit_min: float | None = Field(None, gt=0)
    augment: bool = True
    seed: int = 0
    threads: int = Field(1, ge=1)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def _sample(data: DetectionSet, i: int, rng: np.random.Generator, augment: bool,
            scale: float, crop: int | None = None) -> tuple[Any, dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    img, boxes, labels = data.images[i], data.boxes[i], data.classes[i]
    if crop:
        img, boxes, labels = random_crop(img, boxes, labels, crop, rng)
    if augment:
        x, b = augment_sample(img, boxes, rng)
    else:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        b = torch.from_numpy(boxes).reshape(-1, 4)
    if scale != 1.0:
        x = F.interpolate(x[None], scale_factor=scale, mode="bilinear", align_corners=False,
                          recompute_scale_factor=False)[0]
        b = b * scale
    return x / 255.0, {"boxes": b.float(),
                       "labels": torch.as_tensor(labels, dtype=torch.int64) + 1}


def evaluate_set(det: Any, data: DetectionSet, score_threshold: float = 0.0) -> dict[str, Any]:
    """Detect on every image of ``data`` and compute the detection metrics (class-agnostic)."""
    from hcs.detect.evaluate import evaluate_detections

    preds = [det.detect(img, score_threshold=score_threshold) for img in data.images]
    return evaluate_detections(preds, data.boxes)


def fit(
    module: Any, card: Any, train: DetectionSet, val: DetectionSet, config: DetectorTrainConfig,
    checkpoint_dir: Path, resume: bool = False,
    on_best: Callable[[Any, dict[str, Any], list[dict]], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The training loop; returns the per-epoch history (loss, val AP50/F1, seconds, best)."""
    import torch

    from hcs.detect.learned import LearnedDetector

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if hasattr(module, "roi_heads"):  # sampled RoIs per image (training only; CPU cost)
        module.roi_heads.fg_bg_sampler.batch_size_per_image = config.roi_batch
    if config.val_images:
        val = val.subset(val.sources[:config.val_images])
    rng = np.random.default_rng(config.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = math.ceil(len(train) / config.batch_size)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    total = steps * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total, config.warmup_steps))
    history: list[dict[str, Any]] = []
    start_epoch, best = 0, -1.0
    last = checkpoint_dir / "last.pt"
    if resume:
        if not last.is_file():
            raise InputError(f"--resume: no checkpoint {last}")
        ck = torch.load(str(last), map_location="cpu", weights_only=False)
        module.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history, start_epoch, best = ck["history"], ck["epoch"], ck["best"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {last} after epoch {start_epoch} (best val AP50 {best:.4f})")
    t_run = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        t0 = time.monotonic()
        module.train()
        losses: list[float] = []
        for k, idx in enumerate(_batches(len(train), config.batch_size, rng)[:steps]):
            xs, ts = zip(*(_sample(train, int(i), rng, config.augment, config.scale,
                                   config.crop) for i in idx), strict=True)
            parts = module(list(xs), list(ts))
            loss = sum(parts.values())
            if not torch.isfinite(loss):
                raise InputError(f"epoch {epoch + 1}: the loss became {loss.item()} (lower --lr)")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (k + 1) % 25 == 0:
                log(f"  epoch {epoch + 1} step {k + 1}/{steps} loss {np.mean(losses):.4f} "
                    f"({(time.monotonic() - t0) / (k + 1):.2f} s/step)")
        module.eval()
        det = LearnedDetector(module, card)
        m = evaluate_set(det, val) if len(val) else {"ap50": math.nan, "best_f1": math.nan}
        ap = m["ap50"] if m["ap50"] == m["ap50"] else -1.0
        row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5),
               "val_ap50": _r(m["ap50"]), "val_best_f1": _r(m["best_f1"]),
               "seconds": round(time.monotonic() - t0, 1), "best": ap > best}
        history.append(row)
        if ap > best:
            best = ap
            for r in history[:-1]:
                r["best"] = False
            if on_best is not None:
                on_best(module, m, history)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint_dir / "last.pt.tmp"
        torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "history": history, "epoch": epoch + 1,
                    "best": best, "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "config": config.model_dump()}, tmp)
        tmp.replace(last)
        log(f"epoch {epoch + 1}/{config.epochs} loss {row['loss']:.4f} val AP50 "
            f"{row['val_ap50']} best F1 {row['val_best_f1']} {row['seconds']:.0f} s"
            f"{' *best*' if row['best'] else ''}")
        if config.time_limit_min and (time.monotonic() - t_run) / 60 > config.time_limit_min:
            log(f"time limit {config.time_limit_min} min reached after epoch {epoch + 1}")
            break
    return history


def _r(v: float) -> float | None:
    return None if v is None or v != v else round(float(v), 5)


def train_detector(
    out: str | Path, annotations: str | Path, fmt: str = "voc",
    config: DetectorTrainConfig | None = None, *, split: str | Path | None = None,
    val_fraction: float = 0.1, test_fraction: float = 0.2, checkpoint_dir: str | Path | None = None,
    resume: bool = False, overwrite: bool = False, data: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a detector on annotated images and write the model folder ``out``.

    Returns the training record written to the card (split sizes, history, best epoch).
    """
    from hcs.detect.learned import DetectorCard, TileCard, build_detector, save_detector

    config = config or DetectorTrainConfig()
    out = Path(out)
    ckdir = Path(checkpoint_dir) if checkpoint_dir else out.with_name(out.name + ".ckpt")
    if out.exists() and not (overwrite or resume):
        raise OutputExistsError(f"{out} exists (use --overwrite to replace it, or --resume)")
    from hcs.atomic import check_replaceable
    from hcs.classify.models import model_folder_not_ours

    check_replaceable(out, overwrite=True, not_ours=model_folder_not_ours)  # before training
    n = len(config.channels)
    full = read_detection_set(annotations, fmt, n, config.class_agnostic)
    parts = resolve_split(full.sources, split, val_fraction, test_fraction, config.seed)
    train, val = full.subset(parts["train"]), full.subset(parts["val"])
    if len(train) == 0:
        raise InputError("no training image after the split")
    stack = np.concatenate([im.reshape(-1, n) for im in train.images]) / 255.0
    mean, std = stack.mean(0).tolist(), np.maximum(stack.std(0), 1e-3).tolist()
    del stack
    module = build_detector(config.architecture, n, len(full.class_names), mean=mean, std=std,
                            anchor_sizes=config.anchor_sizes, pretrained=config.pretrained)
    card = DetectorCard(
        name=out.name, architecture=config.architecture, in_chans=n, channels=config.channels,
        classes=full.class_names, mean=mean, std=std, scale=config.scale,
        anchor_sizes=config.anchor_sizes, tile=TileCard(size=config.tile_size,
                                                        overlap=config.tile_overlap))
    n_boxes = {k: int(sum(len(b) for b in full.subset(v).boxes)) for k, v in parts.items()}
    record: dict[str, Any] = {
        "data": dict(data or {}, annotations=str(annotations), format=fmt),
        "split": {"by": "source image", "file": "split.json", "source": str(split or "fractions"),
                  "seed": config.seed, "images": {k: len(v) for k, v in parts.items()},
                  "boxes": n_boxes},
        "settings": config.model_dump(),
    }
    split_text = json.dumps(parts, indent=1) + "\n"
    log(f"training {config.architecture} on {len(train)} images ({n_boxes['train']} boxes), "
        f"validating on {min(len(val), config.val_images or len(val))}; classes "
        f"{full.class_names}; checkpoints in {ckdir}")

    def on_best(module: Any, m: dict[str, Any], history: list[dict]) -> None:
        rec = dict(record, history=history, best_epoch=history[-1]["epoch"],
                   epochs_run=len(history))
        # default operating point: the validation best-F1 score cut-off
        cut = m.get("best_f1_score")
        thr = round(float(cut), 2) if cut is not None and cut == cut else 0.5
        save_detector(module, out, name=out.name, architecture=config.architecture,
                      channels=config.channels, overwrite=True,
                      extra_files={"split.json": split_text},
                      **{k: v for k, v in card.model_dump().items()
                         if k not in ("name", "architecture", "channels", "in_chans", "sha256",
                                      "card_sha256",
                                      "hcs_version", "training", "metrics", "score_threshold")},
                      score_threshold=thr,
                      training=rec, metrics={"validation": {k: _r(m[k]) for k in (
                          "ap50", "best_f1", "best_f1_score", "precision_iou50",
                          "recall_iou50")}})

    history = fit(module, card, train, val, config, ckdir, resume, on_best, log)
    # the history's last rows (after the best epoch) also go into the card
    if out.exists():
        _update_history(out, history)
    return dict(record, history=history)


def _update_history(out: Path, history: list[dict]) -> None:
    """Record the full history in the card without touching the weights (sha256 unchanged)."""
    import yaml

    from hcs.atomic import atomic_write_text

    path = out / "model.yaml"
    card = yaml.safe_load(path.read_text())
    card["training"]["history"] = history
    card["training"]["epochs_run"] = len(history)
    atomic_write_text(path, yaml.safe_dump(card, sort_keys=False))
