"""``hcs train classifier`` and ``hcs evaluate classifier`` as library functions.

Training: annotations (or a simulation's truth, :mod:`hcs.train.truth`) -> split by source image
(test / val / train, fixed seed) -> crops -> :func:`hcs.train.loop.train_classifier` -> held-out
metrics -> model folder (weights, card, ``split.json``). Evaluation: a model folder + annotations
or truth (optionally one part of a split) -> :func:`hcs.train.metrics.classification_metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hcs.errors import InputError, OutputExistsError
from hcs.train.datasets import (
    CropSet,
    build_cropset,
    channel_stats,
    split_by_image,
)
from hcs.train.loop import TrainConfig, train_classifier
from hcs.train.sources import source_table

SPLIT_FILE = "split.json"


def _channels(assay: str, n: int) -> list[dict[str, str]]:
    from hcs.assays import get_input_spec
    from hcs.assays.inputs import LDC_RGB_CHANNELS

    spec = get_input_spec(assay)
    if len(spec.channels) <= n <= len(spec.channels) + len(spec.optional_channels):
        chans = spec.channels + spec.optional_channels[: n - len(spec.channels)]
    elif n == 3:
        chans = LDC_RGB_CHANNELS
    else:
        return [{"name": f"channel_{i}", "meaning": ""} for i in range(n)]
    return [{"name": c.name, "meaning": c.meaning} for c in chans]


def train_model(
    out: str | Path,
    voc: str | Path | None = None,
    folders: str | Path | None = None,
    assay: str = "livedead",
    config: TrainConfig | None = None,
    crop_size: int | None = None,
    margin: float | None = None,
    channels: int | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    name: str | None = None,
    data: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    n_boot: int = 1000,
    log: Callable[[str], None] = print,
    truth: str | Path | None = None,
    plate: str | Path | None = None,
    channel_map: dict[str, str] | None = None,
    truth_boxes: str = "truth",
    detector: str = "threshold",
    nucleus_channel: str | int | None = None,
    level: str | None = None,
    view: str = "z",
) -> tuple[Path, dict[str, Any]]:
    """Train a crop classifier from annotations and write the model folder ``out``.

    The data are ``voc``, ``folders`` or ``truth`` (a simulation folder; its converted plate is
    ``plate`` or found by :func:`hcs.train.truth.find_plate`; ``channel_map`` maps input roles
    to plate channels as ``hcs run --channels`` does). With ``truth``, ``truth_boxes`` picks the
    boxes: ``truth`` (the simulator's object boxes) or ``detected`` (the engine's detections
    with ``detector`` on ``nucleus_channel``, labelled by the object they lie in; see
    :mod:`hcs.train.detected`). Returns the folder and the held-out metrics (``{}`` when
    ``test_fraction`` is 0).

    ``level`` trains one level of a two-stage assay (mitosis: ``mitotic`` = non-mitotic vs
    mitotic, ``stage`` = the 4 stages of mitotic cells only; :meth:`hcs.assays.Assay.levels`).
    The split by image is drawn before the level's cells are picked, so every level and view
    trained with one seed on one plate shares one split. ``view`` (``z``, ``y``, ``x``; with
    ``truth`` on a z-stack plate) is the max projection the crops are cut from
    (:mod:`hcs.classify.projections`).
    """
    from hcs import __version__
    from hcs.assays import get_assay, get_input_spec
    from hcs.classify.models import LoadedModel, ModelCard, save_model

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
    from hcs.atomic import check_replaceable
    from hcs.classify.models import model_folder_not_ours

    check_replaceable(out, overwrite=overwrite, not_ours=model_folder_not_ours)  # before training
    config = config or TrainConfig()
    spec = get_input_spec(assay)
    classes = list(get_assay(assay).classes)
    if view != "z" and truth is None:
        raise InputError(f"--view {view}: side views are cut from a z-stack plate; give --truth")
    size = crop_size or spec.crop_size
    margin = spec.margin if margin is None else margin
    table = source_table(voc, folders, truth, spec.label_map if voc is not None else None,
                          truth_boxes, plate, assay, detector, nucleus_channel, log)
    parts = {"test": test_fraction, "val": val_fraction}
    split = split_by_image(table["source"].tolist(), parts, split_seed)
    if level is not None:
        table, classes = _level_table(table, assay, level, log)
    log(f"{len(table)} boxes from {table['source'].nunique()} images; split by image: "
        + ", ".join(f"{k} {len(v)}" for k, v in split.items()))
    if truth is not None:
        from hcs.train.truth import find_plate, input_modes, truth_cropset

        roles = [c["name"] for c in _channels(assay, channels or len(spec.channels))]
        if roles[0] == "channel_0":
            raise InputError(f"--channels {channels}: assay {assay} takes "
                             f"{len(spec.channels)} channel(s) (+ up to "
                             f"{len(spec.optional_channels)} optional, or 3 for RGB brightfield)")
        full = truth_cropset(table, find_plate(truth, plate), classes, roles,
                             input_modes(assay, roles), size, margin, spec.square, spec.pad_mode,
                             channel_map, log, view)
    else:
        full = build_cropset(table, classes, size, margin, spec.square, spec.pad_mode, channels)
    sets = {k: full.subset(table["source"].isin(v).to_numpy()) for k, v in split.items()}
    log("crops per class: " + "; ".join(f"{k} {s.counts()}" for k, s in sets.items()))
    mean, std = channel_stats(sets["train"].crops)
    val = sets["val"] if len(sets["val"].y) else None
    net, history = train_classifier(
        sets["train"], val, config, mean, std, checkpoint_dir=checkpoint_dir, resume=resume,
        log=log,
    )
    card = ModelCard(
        name=name or out.name, assay=assay, classes=classes, level=level,
        architecture=config.architecture,
        drop_rate=config.drop_rate, in_chans=full.crops.shape[-1],
        channels=_channels(assay, full.crops.shape[-1]),
        crop=dict(size=size, margin=margin, square=spec.square, pad_mode=spec.pad_mode,
                  view=view),
        normalisation=dict(scale=1 / 255, mean=mean, std=std),
        thresholds={"rule": "argmax"},
        training=dict(
            data=dict(data or {}, source_folder=Path(voc or folders or truth).name,  # type: ignore[arg-type]
                      **({"plate": find_plate(truth, plate).name, "boxes": _boxes_note(
                          truth_boxes, detector, nucleus_channel)} if truth is not None else {})),
            split=dict(by="source image", seed=split_seed, test_fraction=test_fraction,
                       val_fraction=val_fraction, file=SPLIT_FILE,
                       images={k: len(v) for k, v in split.items()},
                       crops={k: s.counts() for k, s in sets.items()}),
            settings=config.model_dump(),
            epochs_run=len(history),
            best_epoch=next((h["epoch"] for h in history if h.get("best")), None),
            history=[{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()}
                     for h in history],
        ),
        hcs_version=__version__,
    )
    metrics: dict[str, Any] = {}
    if len(sets["test"].y):
        from hcs.classify.infer import predict_proba
        from hcs.train.metrics import classification_metrics

        proba = predict_proba(LoadedModel(net, card, out), sets["test"].crops, device="cpu")
        metrics = classification_metrics(sets["test"].y, proba, classes, n_boot=n_boot)
        card.metrics = {"held_out_test": metrics}
        log(f"held-out test ({len(split['test'])} images, {metrics['n']} crops): "
            f"AUC {metrics['auc']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f} "
            f"(95% CI {metrics['balanced_accuracy_ci'][0]:.4f}-"
            f"{metrics['balanced_accuracy_ci'][1]:.4f})")
    extra = {SPLIT_FILE: json.dumps(split, indent=1) + "\n"}
    readme = out / "README.md"
    if readme.is_file():  # keep a hand-written model card README across re-training
        extra["README.md"] = readme.read_text()
    save_model(net, card, out, overwrite=overwrite, extra_files=extra)
    log(f"wrote {out}")
    return out, metrics


def _level_table(table: Any, assay: str, level: str, log: Callable[[str], None] | None = None
                 ) -> tuple[Any, list[str]]:
    """The rows of one level of a two-stage assay, relabelled; and the level's classes."""
    from hcs.assays import get_assay

    a = get_assay(assay)
    labels = a.level_labels(level, table["label"].tolist())
    keep = labels != ""
    if log is not None and (~keep).any():
        log(f"level {level}: {int(keep.sum())} boxes kept, {int((~keep).sum())} of other "
            "classes left out")
    table = table[keep].copy()
    table["label"] = labels[keep]
    if table.empty:
        raise InputError(f"level {level}: no annotated box of classes {list(a.levels[level])}")
    return table.reset_index(drop=True), list(a.levels[level])


def _boxes_note(truth_boxes: str, detector: str, nucleus_channel: str | int | None) -> str:
    if truth_boxes == "truth":
        return "truth: the simulator's object boxes"
    chan = "the nuclear channel" if nucleus_channel is None else f"channel {nucleus_channel}"
    return (f"detected: the engine's `{detector}` detections on {chan}, each labelled by the "
            "truth object it lies in (hcs.train.detected)")


def evaluate_model(
    model: str | Path,
    voc: str | Path | None = None,
    folders: str | Path | None = None,
    split_file: str | Path | None = None,
    part: str = "test",
    batch_size: int = 128,
    device: str = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    truth: str | Path | None = None,
    plate: str | Path | None = None,
    channel_map: dict[str, str] | None = None,
    truth_boxes: str = "truth",
    detector: str = "threshold",
    nucleus_channel: str | int | None = None,
    views: list[str] | None = None,
    assay_rule: bool = False,
) -> tuple[dict[str, Any], CropSet, np.ndarray]:
    """Score a model folder on annotated crops (optionally only ``part`` of a ``split.json``).

    ``truth`` (a simulation folder, with ``plate`` and ``channel_map`` as in
    :func:`train_model`) replaces the annotations: crops are cut from the plate as the engine
    cuts them, labelled with the true class.

    Predictions are the argmax of the model's probabilities, or with ``assay_rule`` the labels
    of the assay's decision rule (:func:`hcs.assays.rules.apply_rule`, as the engine calls
    them). A projection ensemble (:mod:`hcs.classify.ensemble`; ``truth`` only) is scored by
    :func:`hcs.train.ensemble_eval.evaluate_ensemble` with the assay rule, on ``views`` (default:
    all the plate allows).

    Returns the metrics dict (see :func:`~hcs.train.metrics.classification_metrics`), the crops
    and the probabilities.
    """
    from hcs.assays import get_input_spec
    from hcs.classify.ensemble import is_ensemble
    from hcs.classify.infer import predict_proba
    from hcs.classify.models import load_model
    from hcs.train.metrics import classification_metrics

    if is_ensemble(model):
        from hcs.train.ensemble_eval import evaluate_ensemble

        if truth is None or split_file is not None:
            raise InputError(f"{model}: an ensemble is scored on a simulated z-stack plate: give "
                             "--truth (and no --split)")
        return evaluate_ensemble(model, truth, plate, channel_map, truth_boxes, detector,
                                 nucleus_channel, views, batch_size, device, n_boot, seed)
    if views not in (None, ["z"]):
        raise InputError("--views is for ensemble folders")
    m = load_model(model)
    card = m.card
    try:
        label_map = get_input_spec(card.assay).label_map
    except InputError:
        label_map = {}
    if voc is not None and label_map:
        label_map = {**label_map, **{c: c for c in card.classes}}
    table = source_table(voc, folders, truth, label_map or None, truth_boxes, plate,
                          card.assay, detector, nucleus_channel)
    if split_file is not None:
        try:
            split = json.loads(Path(split_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{split_file}: cannot read split file ({exc})") from None
        if part not in split:
            raise InputError(f"{split_file}: no part {part!r} (parts: {', '.join(split)})")
        keep = table["source"].isin(split[part])
        missing = set(split[part]) - set(table["source"])
        if missing and keep.sum() == 0:
            raise InputError(f"{split_file}: none of the {part} images are in the annotations")
        table = table[keep]
    if card.level is not None:
        table, _ = _level_table(table, card.assay, card.level)
    if card.crop.view != "z" and truth is None:
        raise InputError(f"{model}: a {card.crop.view}-view model is scored on a z-stack plate; "
                         "give --truth")
    if truth is not None:
        from hcs.train.truth import find_plate, input_modes, truth_cropset

        roles = [c.name for c in card.channels]
        cs = truth_cropset(table, find_plate(truth, plate), card.classes, roles,
                           input_modes(card.assay, roles), card.crop.size, card.crop.margin,
                           card.crop.square, card.crop.pad_mode, channel_map,
                           view=card.crop.view)
    else:
        cs = build_cropset(table, card.classes, card.crop.size, card.crop.margin,
                           card.crop.square, card.crop.pad_mode, channels=card.in_chans)
    proba = predict_proba(m, cs.crops, batch_size=batch_size, device=device)
    y_pred = None
    if assay_rule:
        from hcs.assays.rules import apply_rule

        if card.level is not None:
            raise InputError(f"{model}: --assay-rule scores models of all assay classes, this "
                             f"is a {card.level}-level model")
        labels = apply_rule(proba, card.classes, card.assay)
        y_pred = np.asarray([list(card.classes).index(x) for x in labels])
    return (classification_metrics(cs.y, proba, card.classes, y_pred=y_pred, n_boot=n_boot,
                                   seed=seed), cs, proba)
