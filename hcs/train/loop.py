"""A small, readable training loop for crop classifiers.

Weighted random sampling by inverse class frequency, flips and 90-degree rotations, SGD or Adam
with a cosine schedule, early stopping on the validation metric, a checkpoint per epoch (resume
continues exactly where it stopped), fixed seeds, one progress line per epoch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hcs.errors import InputError
from hcs.train.datasets import CropSet, augment_batch, inverse_frequency_weights
from hcs.train.metrics import classification_metrics


class TrainConfig(BaseModel):
    """Training settings (all recorded in the model card)."""

    model_config = ConfigDict(extra="forbid")
    architecture: str = "resnet10t"
    drop_rate: float = Field(0.25, ge=0, lt=1)
    pretrained: str | None = None
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    patience: int = Field(6, ge=1)
    monitor: Literal["auc", "balanced_accuracy"] = "auc"
    weighted_sampling: bool = True
    augment: bool = True
    seed: int = 0
    threads: int = Field(2, ge=1)
    max_steps: int | None = None


def _evaluate(net: Any, x: Any, y: np.ndarray, classes: list[str], batch: int = 256) -> dict:
    import torch

    net.eval()
    probs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            probs.append(torch.softmax(net(x[i : i + batch]), 1).numpy())
    return classification_metrics(y, np.concatenate(probs), classes, n_boot=0)


def train_classifier(
    train: CropSet,
    val: CropSet | None,
    config: TrainConfig,
    mean: list[float],
    std: list[float],
    scale: float = 1 / 255,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    init_state: dict[str, Any] | None = None,
) -> tuple[Any, list[dict]]:
    """Train a timm classifier on in-memory crops.

    Parameters
    ----------
    train, val
        Crop sets (``val`` drives early stopping and best-epoch choice; ``None``: last epoch).
    config
        :class:`TrainConfig`.
    mean, std, scale
        Input normalisation (same as in the model card).
    checkpoint_dir
        Where ``last.pt`` is written after every epoch.
    resume
        Continue from ``checkpoint_dir/last.pt``.
    log
        Receives one progress line per epoch.
    init_state
        Weights to start from (fine-tuning, ``hcs train classifier --from``): every tensor
        whose name and shape fit the new network is loaded; the head stays new when the
        number of classes differs.

    Returns
    -------
    (module, history)
        The best model (eval mode, CPU) and one dict per epoch.
    """
    import torch

    from hcs.classify.infer import to_tensor
    from hcs.classify.models import create_classifier

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    k = len(train.classes)
    net = create_classifier(
        config.architecture, k, train.crops.shape[-1], config.drop_rate,
        pretrained=config.pretrained or False,
    )
    if init_state is not None:
        own = net.state_dict()
        fit = {k: v for k, v in init_state.items()
               if k in own and tuple(v.shape) == tuple(own[k].shape)}
        net.load_state_dict(fit, strict=False)
        log(f"fine-tuning: {len(fit)} of {len(own)} tensors from the starting model"
            + ("" if len(fit) == len(own) else " (new head)"))
    x_train = to_tensor(train.crops, mean, std, scale)
    y_train = torch.from_numpy(train.y.astype(np.int64))
    x_val = to_tensor(val.crops, mean, std, scale) if val is not None and len(val.y) else None
    if config.weighted_sampling:
        weights = torch.from_numpy(inverse_frequency_weights(train.y, k))
    else:
        weights = torch.ones(len(train.y), dtype=torch.float64)
    if config.optimizer == "sgd":
        opt: Any = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    loss_fn = torch.nn.CrossEntropyLoss()

    history: list[dict] = []
    best_state, best_score, best_epoch, start = None, (-np.inf, -np.inf), -1, 0
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise InputError(f"cannot resume: no checkpoint {ckpt}")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["config"] != config.model_dump():
            raise InputError(f"{ckpt}: checkpoint was written with other training settings")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        best_state, best_score = state["best_state"], tuple(state["best_score"])
        best_epoch, history, start = state["best_epoch"], state["history"], state["epoch"] + 1
        torch.set_rng_state(state["rng"])
        log(f"resumed from {ckpt} after epoch {start}")

    steps_per_epoch = max(1, len(train.y) // config.batch_size)
    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        idx = torch.multinomial(weights, steps_per_epoch * config.batch_size, True, generator=gen)
        net.train()
        total, seen = 0.0, 0
        for step in range(steps_per_epoch):
            if config.max_steps is not None and step >= config.max_steps:
                break
            b = idx[step * config.batch_size : (step + 1) * config.batch_size]
            xb = augment_batch(x_train[b], gen) if config.augment else x_train[b]
            opt.zero_grad()
            loss = loss_fn(net(xb), y_train[b])
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            seen += len(b)
        sched.step()
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(seen, 1)}
        if x_val is not None:
            m = _evaluate(net, x_val, val.y, train.classes)  # type: ignore[union-attr]
            row.update(val_auc=m["auc"], val_balanced_accuracy=m["balanced_accuracy"])
            # ties on the monitored metric (e.g. AUC 1.0) are broken by the other one
            other = "balanced_accuracy" if config.monitor == "auc" else "auc"
            score = tuple(-np.inf if m[k] is None or np.isnan(m[k]) else m[k]
                          for k in (config.monitor, other))
        else:
            score = (epoch, 0.0)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            best_state = copy.deepcopy(net.state_dict())
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save(dict(
                model=net.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                epoch=epoch, best_state=best_state, best_score=best_score,
                best_epoch=best_epoch, history=history, config=config.model_dump(),
                rng=torch.get_rng_state(),
            ), tmp)
            tmp.replace(ckpt)
        val_txt = (
            f"  val auc {row['val_auc']:.4f}  bal.acc {row['val_balanced_accuracy']:.4f}"
            if x_val is not None else ""
        )
        log(
            f"epoch {epoch + 1:3d}/{config.epochs}  loss {row['loss']:.4f}{val_txt}  "
            f"{row['seconds']:.1f} s  ({seen / row['seconds']:.0f} crops/s)"
            + ("  *best" if best_epoch == epoch + 1 else "")
        )
        if x_val is not None and epoch + 1 - best_epoch >= config.patience:
            log(f"early stop: no {config.monitor} gain for {config.patience} epochs "
                f"(best epoch {best_epoch})")
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    for row in history:
        row["best"] = row["epoch"] == best_epoch
    return net, history
