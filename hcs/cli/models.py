"""``hcs train``, ``hcs evaluate`` and ``hcs explain``: classifiers and detectors."""

from __future__ import annotations

from pathlib import Path

import typer

from hcs.cli.app import app, user_errors

# --- train / evaluate classifier (issue 5) ---

train_app = typer.Typer(help="Train models.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate models on annotated data.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")


@train_app.command("classifier")
@user_errors
def train_classifier_cmd(
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write, e.g. models/x."),
    annotations: str = typer.Option(
        None, "--annotations", help="Folder of Pascal VOC XML + images (as for the detector)."
    ),
    voc: str = typer.Option(None, "--voc", hidden=True, help="Old name of --annotations."),
    folders: str = typer.Option(None, "--folders", help="Folder of class folders."),
    truth: str = typer.Option(
        None, "--truth", help="Simulation folder (truth/cells.parquet): crops of its plate."
    ),
    labels: str = typer.Option(
        None, "--labels", help="Your own labels (hcs annotate's ANN/labels.csv) of cells of "
        "--run."
    ),
    run: str = typer.Option(None, "--run", help="With --labels: the run folder of the cells."),
    kind: str = typer.Option(
        None, "--kind", help="With --labels: features (gradient boosting on the cells' "
        "measurements; the default) or cnn (timm on crops)."
    ),
    from_model: str = typer.Option(
        None, "--from", help="With --labels --kind cnn: a model to fine-tune, a folder or a "
        "shipped model's name (a new head when the classes differ)."
    ),
    folds: int = typer.Option(
        5, "--folds", help="With --labels: cross-validation folds, grouped by well (by "
        "field in one well, by strips of the field in one field)."
    ),
    plate: str = typer.Option(
        None, "--plate", help="With --truth: the converted plate (default: SIM_DIR/*.ome.zarr "
        "or SIM_DIR.ome.zarr)."
    ),
    channel_map: str = typer.Option(
        None, "--channel-map", help="With --truth: ROLE=CHANNEL,... (as `hcs run --channels`)."
    ),
    truth_boxes: str = typer.Option(
        "truth", "--truth-boxes", help="With --truth: truth (the simulator's object boxes) or "
        "detected (the engine's detections, labelled by the truth object they lie in)."
    ),
    nucleus_channel: str = typer.Option(
        None, "--nucleus-channel", help="With --truth-boxes detected: channel to detect on "
        "(as `hcs run`)."
    ),
    assay: str = typer.Option("livedead", "--assay", help="Assay (classes, crop, label map)."),
    level: str = typer.Option(
        None, "--level", help="One level of a two-stage assay (mitosis: mitotic | stage)."
    ),
    view: str = typer.Option(
        "z", "--view", help="With --truth on a z-stack plate: the max projection to crop, "
        "z (top) | y | x (side views)."
    ),
    arch: str = typer.Option(
        None, "--arch", help="timm architecture [default: resnet10t; with --labels: "
        "hcs_smallcnn, a small plain CNN]."
    ),
    pretrained: str = typer.Option(None, "--pretrained", help="Local timm weight file."),
    crop_size: int = typer.Option(None, "--crop-size", help="Crop side (default: assay's)."),
    margin: float = typer.Option(None, "--margin", help="Context margin (fraction of box)."),
    channels: str = typer.Option(
        None, "--channels", help="With --labels: ROLE=CHANNEL,... the plate channels the model "
        "sees (features: their measurements only, shape always). Otherwise the number of input "
        "channels: 1 = grey (RGB converted), 3 = RGB; default: as in the images."
    ),
    epochs: int = typer.Option(None, "--epochs", help="[default: 30; with --labels: 20]"),
    max_steps: int = typer.Option(
        None, "--max-steps", help="Cap on batches per epoch (default: one pass over the data)."
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", help="[default: 64; with --labels: 32, at most 1/8 of the "
        "training cells]"
    ),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam | sgd"),
    lr: float = typer.Option(None, "--lr", help="Learning rate [default: 0.001]."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    drop_rate: float = typer.Option(0.25, "--dropout", help="Dropout before the head."),
    patience: int = typer.Option(6, "--patience", help="Early-stopping patience (epochs)."),
    weighted: bool = typer.Option(
        True, "--weighted-sampling/--natural-sampling",
        help="Sample classes equally (1 / class count) or as they occur in the data."
    ),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Held-out images."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Validation images."),
    seed: int = typer.Option(0, "--seed", help="Split, sampling and init seed."),
    threads: int = typer.Option(
        None, "--threads", help="CPU threads for torch [default: 2; with --labels: 1]."
    ),
    checkpoint_dir: str = typer.Option(None, "--checkpoint-dir", help="Per-epoch checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --checkpoint-dir."),
    data_name: str = typer.Option(None, "--data-name", help="Training data name (card)."),
    data_licence: str = typer.Option(None, "--data-licence", help="Training data licence."),
    data_source: str = typer.Option(None, "--data-source", help="Data source / attribution."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the test CI."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Train a crop classifier (split by image, weighted sampling, early stopping)."""
    from pydantic import ValidationError

    from hcs.errors import InputError
    from hcs.train.loop import TrainConfig
    from hcs.train.own import labels_cnn_config
    from hcs.train.pipeline import train_model

    # options left out (None) take the path's default: the labels path's small CNN schedule
    # (hcs.train.own.LABELS_CNN_SETTINGS) or TrainConfig's for the other sources
    given = dict(architecture=arch, pretrained=pretrained, epochs=epochs, batch_size=batch_size,
                 optimizer=optimizer, lr=lr, weight_decay=weight_decay, drop_rate=drop_rate,
                 patience=patience, seed=seed, threads=threads, weighted_sampling=weighted,
                 max_steps=max_steps)
    try:
        if labels is not None or run is not None:
            config = labels_cnn_config(**given)
        else:
            config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"--{err['loc'][0]}: {err['msg']}") from None
    if labels is not None or run is not None:
        _train_on_labels(labels, run, out, kind, channels, from_model, config, folds, seed,
                         n_boot, data_name, overwrite, [annotations, voc, folders, truth])
        return
    if kind not in (None, "cnn") or from_model is not None:
        raise InputError("--kind features and --from train on your own labels: give --labels "
                         "ANN/labels.csv --run RUN")
    if channels is not None and not channels.strip().isdigit():
        raise InputError(f"--channels {channels}: without --labels it is the number of input "
                         "channels (1 or 3)")
    data = {k: v for k, v in dict(name=data_name, licence=data_licence, source=data_source).items()
            if v}
    train_model(
        out, voc=_annotations(annotations, voc), folders=folders, truth=truth, plate=plate,
        channel_map=_train_channel_map(channel_map), truth_boxes=truth_boxes,
        nucleus_channel=nucleus_channel, assay=assay, config=config, level=level, view=view,
        crop_size=crop_size,
        margin=margin, channels=int(channels) if channels else None,
        test_fraction=test_fraction, val_fraction=val_fraction,
        split_seed=seed,
        data=data, checkpoint_dir=checkpoint_dir, resume=resume, overwrite=overwrite,
        n_boot=n_boot, log=typer.echo,
    )


def _train_on_labels(labels: str | None, run: str | None, out: str, kind: str | None,
                     channels: str | None, from_model: str | None, config: object, folds: int,
                     seed: int, n_boot: int, name: str | None, overwrite: bool,
                     others: list[str | None]) -> None:
    """``hcs train classifier --labels ANN/labels.csv --run RUN``
    (:func:`hcs.train.own.train_on_labels`)."""
    from hcs.errors import InputError
    from hcs.params import parse_channel_map
    from hcs.train.own import train_on_labels

    if labels is None or run is None:
        raise InputError("--labels and --run go together: the labels file and the run folder "
                         "of its cells")
    if any(o is not None for o in others):
        raise InputError("give exactly one data source: --labels (with --run), --annotations, "
                         "--folders or --truth")
    mapping = parse_channel_map(channels) if channels else None
    train_on_labels(labels, run, out, kind or "features", mapping, from_model, config, folds,
                    seed, n_boot, name, overwrite, log=typer.echo)


def _annotations(annotations: str | None, voc: str | None) -> str | None:
    """``--annotations`` (``--voc``, its old name, still accepted)."""
    from hcs.errors import InputError

    if annotations and voc and annotations != voc:
        raise InputError("--annotations and --voc (its old name) name different folders")
    return annotations or voc


def _train_channel_map(text: str | None) -> dict[str, str] | None:
    from hcs.errors import InputError
    from hcs.params import parse_channel_map

    try:
        return parse_channel_map(text) or None
    except InputError as exc:
        raise InputError(str(exc).replace("--channels", "--channel-map")) from None


@evaluate_app.command("classifier")
@user_errors
def evaluate_classifier_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model folder."),
    annotations: str = typer.Option(
        None, "--annotations", help="Folder of Pascal VOC XML + images (as for the detector)."
    ),
    voc: str = typer.Option(None, "--voc", hidden=True, help="Old name of --annotations."),
    folders: str = typer.Option(None, "--folders", help="Folder of class folders."),
    truth: str = typer.Option(
        None, "--truth", help="Simulation folder (truth/cells.parquet): crops of its plate."
    ),
    plate: str = typer.Option(None, "--plate", help="With --truth: the converted plate."),
    channel_map: str = typer.Option(
        None, "--channel-map", help="With --truth: ROLE=CHANNEL,... (as `hcs run --channels`)."
    ),
    truth_boxes: str = typer.Option(
        "truth", "--truth-boxes", help="With --truth: truth (the simulator's object boxes) or "
        "detected (the engine's detections, labelled by the truth object they lie in)."
    ),
    nucleus_channel: str = typer.Option(
        None, "--nucleus-channel", help="With --truth-boxes detected: channel to detect on "
        "(as `hcs run`)."
    ),
    split: str = typer.Option(None, "--split", help="split.json: score only one part of it."),
    part: str = typer.Option("test", "--part", help="Part of --split to score."),
    batch_size: int = typer.Option(128, "--batch-size"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CI."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    embedding: str = typer.Option(None, "--embedding", help="Write a t-SNE plot (HTML) here."),
    views: str = typer.Option(
        None, "--views", help="Ensemble folders: views to use, e.g. z or z,y,x (default: all "
        "the plate allows)."
    ),
    assay_rule: bool = typer.Option(
        False, "--assay-rule", help="Score the assay's decision rule (as `hcs run` labels "
        "cells) instead of the argmax; ensembles always use it."
    ),
) -> None:
    """Per-class AUC, balanced accuracy with 95% bootstrap CI, confusion, precision/recall/F1."""
    import json

    from hcs.errors import InputError
    from hcs.train.pipeline import evaluate_model

    m, cs, proba = evaluate_model(model, _annotations(annotations, voc), folders, split, part,
                                  batch_size, device, n_boot,
                                  truth=truth, plate=plate,
                                  channel_map=_train_channel_map(channel_map),
                                  truth_boxes=truth_boxes, nucleus_channel=nucleus_channel,
                                  views=views.split(",") if views else None,
                                  assay_rule=assay_rule)
    if embedding:
        from hcs.classify.ensemble import is_ensemble
        from hcs.classify.explain import write_embedding
        from hcs.classify.models import load_model

        if is_ensemble(model):
            raise InputError(f"--embedding: {model} is an ensemble; give one of its members")

        write_embedding(load_model(model), cs.crops, cs.y, proba, embedding)
        typer.echo(f"wrote {embedding}", err=True)
    if as_json:
        typer.echo(json.dumps(m, indent=1))
        return
    lo, hi = m["balanced_accuracy_ci"]
    typer.echo(f"n {m['n']}  AUC {m['auc']:.4f}  balanced accuracy "
               f"{m['balanced_accuracy']:.4f} (95% CI {lo:.4f}-{hi:.4f})")
    for c, r in m["per_class"].items():
        typer.echo(f"  {c:>12}: precision {r['precision']:.3f} recall {r['recall']:.3f} "
                   f"f1 {r['f1']:.3f} n {r['support']}")
    typer.echo(f"confusion (rows true, columns predicted {m['classes']}): {m['confusion']}")


@evaluate_app.command("run")
@user_errors
def evaluate_run_cmd(
    run: str = typer.Argument(..., help="A run folder made with a model (hcs run --model)."),
    labels: str = typer.Option(
        None, "--labels", help="Your labels (ANN/labels.csv) of cells of the run, in the "
        "model's classes."
    ),
    marker: str = typer.Option(
        None, "--marker", help="CHANNEL[:otsu|:gmm|:>VALUE]: a stain the model did not see; "
        "positive as `hcs aggregate --positive`."
    ),
    positive_class: str = typer.Option(
        None, "--positive-class", help="With --marker (required): the model's classes the "
        "marker marks, A[,B]."
    ),
    exclude: str = typer.Option(
        None, "--exclude", help="A labels file whose cells are left out, e.g. the model's "
        "training labels."
    ),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CIs."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Score a run's per-cell calls against your labels or a marker channel: AUC, balanced
    accuracy with 95% CIs, confusion, counts."""
    import json

    from hcs.train.run_scores import score_run

    m = score_run(run, labels=labels, marker=marker, exclude=exclude, n_boot=n_boot,
                  positive_classes=positive_class.split(",") if positive_class else None)
    if as_json:
        typer.echo(json.dumps(m, indent=1, default=str))
        return

    def f(v: object) -> str:
        return "n/a" if v is None or v != v else f"{v:.3f}"

    lo, hi = m["balanced_accuracy_ci"]
    head = f"{m['n']} cells of run {run}" + (f" ({m['n_excluded']} excluded)"
                                            if m["n_excluded"] else "")
    if m["mode"] == "marker":
        alo, ahi = m["auc_ci"]
        typer.echo(f"{head}, model {m['model']}: {', '.join(m['positive_classes'])} against "
                   f"{m['column']} > {m['threshold']:.1f} ({m['method']})")
        if m["n_no_marker_value"]:
            typer.echo(f"  {m['n_no_marker_value']} cells without a {m['column']} value left "
                       "out")
        typer.echo(f"  marker-positive {m['n_marker_positive']}, called positive "
                   f"{m['n_called_positive']}; precision {f(m['precision'])} recall "
                   f"{f(m['recall'])}")
        typer.echo(f"  AUC {f(m['auc'])} (95% CI {f(alo)}-{f(ahi)}, over cells)  balanced "
                   f"accuracy {f(m['balanced_accuracy'])} (95% CI {f(lo)}-{f(hi)}, over "
                   f"{m['ci_over']}s)")
        typer.echo(f"  confusion (rows marker -/+, columns called -/+): {m['confusion']}")
        if m["warning"]:
            typer.echo(f"warning: {m['warning']}", err=True)
        return
    typer.echo(f"{head}, model {m['model']}, against {m['labels']}")
    typer.echo(f"  AUC {f(m['auc'])}  balanced accuracy {f(m['balanced_accuracy'])} (95% CI "
               f"{f(lo)}-{f(hi)}, over {m['ci_over']}s)")
    for c, r in m["per_class"].items():
        typer.echo(f"  {c:>12}: precision {f(r['precision'])} recall {f(r['recall'])} "
                   f"f1 {f(r['f1'])} n {r['support']}")
    typer.echo(f"  confusion (rows true, columns called {m['classes']}): {m['confusion']}")


explain_app = typer.Typer(help="Look inside models (Grad-CAM).", no_args_is_help=True)
app.add_typer(explain_app, name="explain")


@explain_app.command("classifier")
@user_errors
def explain_classifier_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model folder."),
    out: str = typer.Option(..., "--out", "-o", help="Folder for the PNG overlays."),
    annotations: str = typer.Option(
        None, "--annotations", help="Folder of Pascal VOC XML + images (as for the detector)."
    ),
    voc: str = typer.Option(None, "--voc", hidden=True, help="Old name of --annotations."),
    folders: str = typer.Option(None, "--folders", help="Folder of class folders."),
    truth: str = typer.Option(
        None, "--truth", help="Simulation folder (truth/cells.parquet): crops of its plate."
    ),
    plate: str = typer.Option(None, "--plate", help="With --truth: the converted plate."),
    truth_boxes: str = typer.Option(
        "truth", "--truth-boxes", help="With --truth: truth | detected (as for training)."
    ),
    split: str = typer.Option(None, "--split", help="split.json: use only one part of it."),
    part: str = typer.Option("test", "--part", help="Part of --split to use."),
    n: int = typer.Option(8, "--n", help="Crops to explain (spread over the true classes)."),
    seed: int = typer.Option(0, "--seed", help="Which crops are picked."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Grad-CAM overlays (PNG: crop | crop + heat map of the predicted class) + index.csv."""
    from hcs.classify.ensemble import is_ensemble
    from hcs.errors import InputError

    if is_ensemble(model):
        raise InputError(f"{model} is an ensemble: explain one of its members (a folder named "
                         f"in {Path(model) / 'ensemble.yaml'})")
    from hcs.classify.explain import write_grad_cams
    from hcs.classify.models import load_model
    from hcs.train.pipeline import evaluate_model

    _, cs, proba = evaluate_model(model, _annotations(annotations, voc), folders, split, part,
                                  device="cpu", n_boot=0,
                                  truth=truth, plate=plate, truth_boxes=truth_boxes)
    folder = write_grad_cams(load_model(model), cs.crops, cs.y, proba, out, n, seed, overwrite)
    typer.echo(f"wrote {min(n, len(cs.y))} Grad-CAM overlays to {folder}")


# --- train / evaluate detector (issue 4) ---


@train_app.command("detector")
@user_errors
def train_detector_cmd(
    annotations: str = typer.Option(..., "--annotations", "-a",
                                    help="VOC folder (XML + images) or VIA JSON (or its folder)."),
    fmt: str = typer.Option("voc", "--format", help="voc | via"),
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write, e.g. models/x."),
    arch: str = typer.Option("fasterrcnn_resnet18_fpn", "--arch",
                             help="fasterrcnn_resnet50_fpn | fasterrcnn_resnet18_fpn | "
                             "fcos_resnet18_fpn | retinanet_resnet18_fpn"),
    channels: str = typer.Option("brightfield", "--channels",
                                 help="Input channel roles, comma-separated (1, 3, 4, 6, ...)."),
    per_class: bool = typer.Option(False, "--per-class",
                                   help="One class per annotation label (default: 'cell')."),
    anchor_sizes: str = typer.Option(None, "--anchor-sizes",
                                     help="Per FPN level, e.g. 12,24,48,96."),
    scale: float = typer.Option(1.0, "--scale", help="Resize factor before the network."),
    tile_size: int = typer.Option(512, "--tile-size", help="Tile side for large fields (px)."),
    tile_overlap: int = typer.Option(64, "--tile-overlap", help="Tile overlap (px)."),
    pretrained: str = typer.Option(None, "--pretrained",
                                   help="Local ResNet state dict (never downloaded)."),
    split: str = typer.Option(None, "--split", help="split.json with train/val/test image lists."),
    val_fraction: float = typer.Option(0.1, "--val-fraction"),
    test_fraction: float = typer.Option(0.2, "--test-fraction"),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    crop: int = typer.Option(None, "--crop", help="Train on random crops of this side (px)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Cap on steps per epoch."),
    roi_batch: int = typer.Option(64, "--roi-batch", help="Faster R-CNN RoIs sampled per image."),
    val_images: int = typer.Option(None, "--val-images", help="Validate on the first N only."),
    time_limit: float = typer.Option(None, "--time-limit", help="Stop after the epoch that "
                                     "passes this many minutes."),
    no_augment: bool = typer.Option(False, "--no-augment"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="CPU threads for torch."),
    checkpoint_dir: str = typer.Option(None, "--checkpoint-dir",
                                       help="Default: OUT.ckpt next to OUT."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    data_name: str = typer.Option(None, "--data-name", help="Training data name (card)."),
    data_licence: str = typer.Option(None, "--data-licence", help="Training data licence."),
    data_source: str = typer.Option(None, "--data-source", help="Data source / attribution."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Train a cell detector (split by image, flip/rotation/scale augmentation, checkpoints)."""
    from pydantic import ValidationError

    from hcs.errors import InputError
    from hcs.train.detector import DetectorTrainConfig, train_detector

    try:
        sizes = [int(s) for s in anchor_sizes.split(",")] if anchor_sizes else None
    except ValueError:
        raise InputError(f"--anchor-sizes {anchor_sizes!r}: expected integers like 12,24,48"
                         ) from None
    try:
        config = DetectorTrainConfig(
            architecture=arch, channels=[c.strip() for c in channels.split(",") if c.strip()],
            class_agnostic=not per_class, anchor_sizes=sizes, scale=scale, tile_size=tile_size,
            tile_overlap=tile_overlap, pretrained=pretrained, epochs=epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, crop=crop,
            max_steps_per_epoch=max_steps, roi_batch=roi_batch, val_images=val_images,
            time_limit_min=time_limit, augment=not no_augment, seed=seed, threads=threads)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    data = {k: v for k, v in dict(name=data_name, licence=data_licence, source=data_source).items()
            if v}
    train_detector(out, annotations, fmt, config, split=split, val_fraction=val_fraction,
                   test_fraction=test_fraction, checkpoint_dir=checkpoint_dir, resume=resume,
                   overwrite=overwrite, data=data, log=typer.echo)
    typer.echo(f"wrote {out}")


@evaluate_app.command("detector")
@user_errors
def evaluate_detector_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Detector folder."),
    annotations: str = typer.Option(..., "--annotations", "-a", help="VOC folder or VIA JSON."),
    fmt: str = typer.Option("voc", "--format", help="voc | via"),
    split: str = typer.Option(None, "--split", help="split.json: score only one part of it."),
    part: str = typer.Option("test", "--part", help="Part of --split to score."),
    score_threshold: float = typer.Option(0.1, "--score-threshold",
                                          help="Operating point for P/R (AIM-CICs: 0.1)."),
    out_json: str = typer.Option(None, "--out-json", help="Write the metrics JSON here."),
    plot: str = typer.Option(None, "--plot", help="Write the precision-recall plot (HTML)."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda[:N]"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out-json / --plot."),
    record: str = typer.Option(None, "--record",
                               help="Store the metrics in the model card under this key."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """P/R at IoU 0.5 and 0.1 (score > 0.1), AP50, best F1, F1@0.5; JSON and a PR plot."""
    import json

    from hcs.train.detector_eval import evaluate_detector

    if threads:
        import torch

        torch.set_num_threads(threads)
    m = evaluate_detector(model, annotations, fmt, split=split, part=part,
                          score_threshold=score_threshold, json_path=out_json, html_path=plot,
                          device=device, overwrite=overwrite, record=record)
    if as_json:
        typer.echo(json.dumps(m, indent=1))
        return
    f = {k: ("n/a" if m[k] is None else f"{m[k]:.4f}") for k in (
        "precision_iou50", "recall_iou50", "precision_iou10", "recall_iou10", "ap50",
        "f1_iou50", "best_f1")}
    typer.echo(f"{m['n_images']} images, {m['n_truth']} true boxes, {m['n_pred_scored']} "
               f"detections with score > {m['score_threshold']}")
    typer.echo(f"IoU 0.5: precision {f['precision_iou50']} recall {f['recall_iou50']} "
               f"F1 {f['f1_iou50']}   IoU 0.1: precision {f['precision_iou10']} recall "
               f"{f['recall_iou10']}   AP50 {f['ap50']}  best F1 {f['best_f1']}")


@app.command("seal")
@user_errors
def seal_cmd(
    model: Path = typer.Argument(..., help="Model folder whose model.yaml you edited on purpose."),
) -> None:
    """Record a deliberate edit of a model card (classes, their order, channels, crop,
    normalisation, thresholds) as its new card_sha256; the weights must still match."""
    from hcs.classify.seal import seal_card

    digest = seal_card(model)
    typer.echo(f"{model / 'model.yaml'}: card_sha256 {digest}")
