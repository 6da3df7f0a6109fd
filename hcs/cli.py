"""The ``hcs`` command line: every command is a thin wrapper over one library function."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from hcs.errors import HcsError

app = typer.Typer(
    name="hcs",
    help="High-content-screening plate analyzer: export -> OME-Zarr -> cells -> wells -> stats"
    " -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Print :class:`HcsError` as one line on stderr and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HcsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Print the hcs version and exit."),
) -> None:
    """hcs: instrument exports in, defensible statistics and a report out."""
    if version:
        from hcs import __version__

        typer.echo(__version__)
        raise typer.Exit()


# --- convert / info (issue 2) ---


@app.command()
@user_errors
def convert(
    src: str = typer.Argument(..., help="Instrument export folder (or its index file)."),
    out: str = typer.Argument(..., help="Output plate, e.g. plate.ome.zarr."),
    fmt: str = typer.Option(
        "auto", "--format", help="Export format: auto, harmony, scanr or tiff-folder."
    ),
    pattern: str | None = typer.Option(
        None, "--pattern", help="File-name pattern for a TIFF-folder export."
    ),
    plate_format: int | None = typer.Option(
        None, "--plate-format", help="Plate format (96, 384, 1536) when the export omits it."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    strict: bool = typer.Option(False, "--strict", help="Fail when any plane is missing."),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Let the metadata reference files outside SRC."
    ),
    ngff: str = typer.Option("0.5", "--ngff", help="NGFF version: 0.5 (zarr v3) or 0.4 (zarr v2)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Parallel fields (default: number of CPUs)."
    ),
) -> None:
    """Convert an instrument export into an OME-Zarr HCS plate."""
    from pathlib import Path

    from hcs.errors import OutputExistsError
    from hcs.io import open_export
    from hcs.io.omezarr import open_plate, write_plate

    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    acq = open_export(
        src, fmt=fmt, pattern=pattern, plate_format=plate_format, allow_outside=allow_outside
    )
    path = write_plate(
        acq, out, ngff=ngff, overwrite=overwrite, strict=strict, workers=workers,
        progress=True,
    )
    stats = open_plate(path).attrs.get("stats", {})
    typer.echo(
        f"wrote {path}: {stats.get('wells')} wells, {stats.get('fields')} fields, "
        f"{acq.size_c} channels, {stats.get('planes')} planes, {stats.get('missing')} missing, "
        f"{stats.get('bytes', 0) / 1e6:.1f} MB in {stats.get('seconds', 0):.1f} s "
        f"({stats.get('mb_per_s', 0):.1f} MB/s)"
    )


@app.command()
@user_errors
def info(
    path: str = typer.Argument(..., help="An OME-Zarr plate or an instrument export."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    fmt: str = typer.Option("auto", "--format", help="Export format for a raw export."),
    pattern: str | None = typer.Option(None, "--pattern", help="TIFF-folder file-name pattern."),
    plate_format: int | None = typer.Option(None, "--plate-format", help="Plate format."),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Let the metadata reference files outside the export."
    ),
) -> None:
    """Summarise a plate or an export: wells, fields, channels, pixel size, missing planes."""
    import json

    from hcs.io.info import plate_info, render_info

    result = plate_info(
        path, fmt=fmt, pattern=pattern, plate_format=plate_format, allow_outside=allow_outside
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console

        Console().print(render_info(result))

# --- simulate (issue 3) ---


@app.command("simulate")
@user_errors
def simulate_cmd(
    out: str = typer.Argument(..., help="Output folder: export/ (instrument export) + truth/."),
    layout: str = typer.Option(..., "--layout", "-l", help="Plate layout CSV (sim_* columns)."),
    assay: str = typer.Option(..., "--assay", "-a", help="cic | livedead | mitosis | cancer"),
    fmt: str = typer.Option("harmony", "--format", "-f", help="harmony | scanr"),
    wells_per_condition: int | None = typer.Option(
        None, "--wells-per-condition", help="Simulate only the first N wells of each condition."
    ),
    fields: int = typer.Option(4, "--fields", help="Fields per well."),
    size: int = typer.Option(1080, "--size", help="Field size in pixels (square)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same bytes."),
    pixel_size: float = typer.Option(0.598, "--pixel-size", help="Pixel size in um."),
    schema: str = typer.Option("v5", "--schema", help="Harmony index schema: v5 | v7."),
    z_planes: int = typer.Option(1, "--z-planes", help="Planes per z-stack."),
    z_step: float = typer.Option(1.0, "--z-step", help="Z step in um."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    plate_format: int | None = typer.Option(
        None, "--plate-format", help="Plate format (default 96, larger if the layout needs)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Rendering processes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Simulate a screen with known ground truth, written as a real Harmony or ScanR export."""
    from hcs.synth import simulate_plate

    res = simulate_plate(
        out, layout, assay, fmt=fmt, fields=fields, size=size, seed=seed,
        wells_per_condition=wells_per_condition, pixel_size_um=pixel_size, schema=schema,
        overwrite=overwrite, progress=not quiet, z_planes=z_planes, z_step_um=z_step,
        workers=workers, plate_format=plate_format,
    )
    typer.echo(
        f"simulated {res.n_wells} wells x {fields} fields ({res.n_objects} objects, "
        f"{res.n_planes} planes) in {res.seconds:.1f} s\n"
        f"export: {res.index_file}\ntruth:  {res.cells.parent}"
    )


# --- stats (issue 7) ---


@app.command("stats")
@user_errors
def stats_cmd(
    source: str = typer.Argument(..., help="Run folder with wells.parquet, or a wells file."),
    layout: str = typer.Option(None, "--layout", "-l", help="Plate layout (CSV, grid, XML)."),
    reference: str = typer.Option(
        None, "--reference", "-r", help="Reference condition (default: the negative control)."
    ),
    test: str = typer.Option("student", "--test", help="student | welch"),
    correction: str = typer.Option(
        "fdr_bh", "--correction", help="fdr_bh | holm | bonferroni | none"
    ),
    transform: str = typer.Option("none", "--transform", help="none | logit"),
    blocks: str = typer.Option(
        "model", "--blocks", help="Several plates: model (plate factor) | normalise"
    ),
    readout: list[str] = typer.Option(
        None, "--readout", help="Readouts to test (default: all freq_ columns)."
    ),
    plate_format: int = typer.Option(None, "--plate-format", help="Wells of the plate."),
    out: str = typer.Option(
        None, "--out", "-o", help="Output (default: stats.parquet next to the wells)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    max_rows: int = typer.Option(40, "--max-rows", help="Rows per table on the terminal."),
) -> None:
    """Per-condition statistics (t-tests, dose-response, plate QC) -> stats.parquet."""
    from hcs.stats.run import stats_for_run
    from hcs.stats.show import print_stats

    stats, path = stats_for_run(
        source, out, layout, plate_format, overwrite, reference=reference, test=test,
        correction=correction, transform=transform, blocks=blocks, readouts=readout or None,
    )
    print_stats(stats, max_rows=max_rows)
    comp = stats[stats["kind"] == "comparison"]
    if len(comp) and (comp["status"] == "reference_missing").all():
        typer.echo(f"warning: reference {comp['reference'].iloc[0]!r} has no well", err=True)
    typer.echo(f"wrote {path} ({len(stats)} rows)")


layout_app = typer.Typer(help="Plate layouts: check a layout file.", no_args_is_help=True)
app.add_typer(layout_app, name="layout")


@layout_app.command("check")
@user_errors
def layout_check_cmd(
    path: str = typer.Argument(..., help="Layout file (tidy CSV, grid CSV, Harmony XML)."),
    plate_format: int = typer.Option(None, "--plate-format", help="Wells of the plate."),
    require_controls: bool = typer.Option(
        False, "--require-controls", help="Fail without negative and positive controls."
    ),
) -> None:
    """Validate a layout against the plate and print its conditions."""
    from hcs.layouts import layout_summary

    typer.echo(layout_summary(path, plate_format, require_controls))


# --- train / evaluate classifier (issue 5) ---

train_app = typer.Typer(help="Train models.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate models on annotated data.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")


@train_app.command("classifier")
@user_errors
def train_classifier_cmd(
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write, e.g. models/x."),
    voc: str = typer.Option(None, "--voc", help="Folder of Pascal VOC XML + images."),
    folders: str = typer.Option(None, "--folders", help="Folder of class folders."),
    truth: str = typer.Option(
        None, "--truth", help="Simulation folder (truth/cells.parquet): crops of its plate."
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
    arch: str = typer.Option("resnet10t", "--arch", help="timm architecture."),
    pretrained: str = typer.Option(None, "--pretrained", help="Local timm weight file."),
    crop_size: int = typer.Option(None, "--crop-size", help="Crop side (default: assay's)."),
    margin: float = typer.Option(None, "--margin", help="Context margin (fraction of box)."),
    channels: int = typer.Option(
        None, "--channels", help="Input channels: 1 = grey (RGB converted), 3 = RGB; default: "
        "as in the images."
    ),
    epochs: int = typer.Option(30, "--epochs"),
    max_steps: int = typer.Option(
        None, "--max-steps", help="Cap on batches per epoch (default: one pass over the data)."
    ),
    batch_size: int = typer.Option(64, "--batch-size"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam | sgd"),
    lr: float = typer.Option(1e-3, "--lr"),
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
    threads: int = typer.Option(2, "--threads", help="CPU threads for torch."),
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
    from hcs.train.pipeline import train_model

    try:
        config = TrainConfig(
            architecture=arch, pretrained=pretrained, epochs=epochs, batch_size=batch_size,
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, drop_rate=drop_rate,
            patience=patience, seed=seed, threads=threads, weighted_sampling=weighted,
            max_steps=max_steps,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"--{err['loc'][0]}: {err['msg']}") from None
    data = {k: v for k, v in dict(name=data_name, licence=data_licence, source=data_source).items()
            if v}
    train_model(
        out, voc=voc, folders=folders, truth=truth, plate=plate,
        channel_map=_train_channel_map(channel_map), truth_boxes=truth_boxes,
        nucleus_channel=nucleus_channel, assay=assay, config=config,
        crop_size=crop_size,
        margin=margin, channels=channels, test_fraction=test_fraction, val_fraction=val_fraction,
        split_seed=seed,
        data=data, checkpoint_dir=checkpoint_dir, resume=resume, overwrite=overwrite,
        n_boot=n_boot, log=typer.echo,
    )


def _train_channel_map(text: str | None) -> dict[str, str] | None:
    from hcs.engine.run import parse_channel_map
    from hcs.errors import InputError

    try:
        return parse_channel_map(text) or None
    except InputError as exc:
        raise InputError(str(exc).replace("--channels", "--channel-map")) from None


@evaluate_app.command("classifier")
@user_errors
def evaluate_classifier_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model folder."),
    voc: str = typer.Option(None, "--voc", help="Folder of Pascal VOC XML + images."),
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
) -> None:
    """Per-class AUC, balanced accuracy with 95% bootstrap CI, confusion, precision/recall/F1."""
    import json

    from hcs.train.pipeline import evaluate_model

    m, cs, proba = evaluate_model(model, voc, folders, split, part, batch_size, device, n_boot,
                                  truth=truth, plate=plate,
                                  channel_map=_train_channel_map(channel_map),
                                  truth_boxes=truth_boxes, nucleus_channel=nucleus_channel)
    if embedding:
        from hcs.classify.explain import write_embedding
        from hcs.classify.models import load_model

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


explain_app = typer.Typer(help="Look inside models (Grad-CAM).", no_args_is_help=True)
app.add_typer(explain_app, name="explain")


@explain_app.command("classifier")
@user_errors
def explain_classifier_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model folder."),
    out: str = typer.Option(..., "--out", "-o", help="Folder for the PNG overlays."),
    voc: str = typer.Option(None, "--voc", help="Folder of Pascal VOC XML + images."),
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
    from hcs.classify.explain import write_grad_cams
    from hcs.classify.models import load_model
    from hcs.train.pipeline import evaluate_model

    _, cs, proba = evaluate_model(model, voc, folders, split, part, device="cpu", n_boot=0,
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


# --- run / aggregate (issue 6) ---


@app.command("run")
@user_errors
def run_command(
    plate: str = typer.Argument(..., help="OME-Zarr plate (from `hcs convert`)."),
    assay: str = typer.Option(..., "--assay", "-a", help="cic | livedead | mitosis | cancer"),
    model: str = typer.Option(..., "--model", "-m", help="Model folder (model.yaml + weights)."),
    out: str = typer.Option(..., "--out", "-o", help="Run folder (cells/, run.json, ...)."),
    detector: str = typer.Option(
        "threshold", "--detector", help="Detection method (threshold) or a detector folder."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Local worker processes."),
    threads_per_worker: int = typer.Option(1, "--threads-per-worker", help="Threads each."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Existing Dask scheduler address (tcp://host:8786)."
    ),
    gpus: str = typer.Option("auto", "--gpus", help="auto | 0 | N"),
    resume: bool = typer.Option(False, "--resume", help="Continue a run: redo missing fields."),
    wells: str | None = typer.Option(None, "--wells", help="Only these wells: A01,B03,..."),
    batch_size: int = typer.Option(64, "--batch-size", help="Crops per inference batch."),
    nucleus_channel: str | None = typer.Option(
        None, "--nucleus-channel", help="Channel (name or index) to detect nuclei on."
    ),
    channels: str | None = typer.Option(
        None, "--channels", help="Model input role -> plate channel: brightfield=BF,nucleus=DAPI"
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (recorded in run.json)."),
    timepoint: int | None = typer.Option(
        None, "--timepoint", help="Timepoint to process (required if the plate has several)."
    ),
    fields_per_task: int = typer.Option(
        4, "--fields-per-task", help="Fields per task; their crops share inference batches."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Detect and classify every cell of a plate in parallel -> RUN_DIR/cells/."""
    from hcs.engine.run import parse_channel_map, run_plate, summary_text

    summary = run_plate(
        plate, assay, model, out, detector=detector, workers=workers,
        threads_per_worker=threads_per_worker, scheduler=scheduler, gpus=gpus, resume=resume,
        wells=wells.split(",") if wells else None, batch_size=batch_size,
        nucleus_channel=nucleus_channel, channel_map=parse_channel_map(channels), seed=seed,
        timepoint=timepoint, fields_per_task=fields_per_task, progress=not quiet,
    )
    typer.echo(summary_text(summary))
    if not summary.ok:
        raise typer.Exit(code=1)


@app.command("aggregate")
@user_errors
def aggregate_command(
    run_dir: str = typer.Argument(..., help="Run folder written by `hcs run`."),
    out: str | None = typer.Option(None, "--out", "-o", help="Default RUN_DIR/wells.parquet."),
    assay: str | None = typer.Option(None, "--assay", "-a", help="Default: from run.json."),
    layout: str | None = typer.Option(
        None, "--layout", "-l", help="Plate layout joined to the wells (CSV, grid, Harmony XML)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Per-well counts and frequencies from a run's cell tables -> wells.parquet."""
    from hcs.engine.aggregate_run import aggregate_run

    wells, path = aggregate_run(run_dir, out, assay=assay, layout=layout, overwrite=overwrite)
    typer.echo(f"wrote {path}: {len(wells)} wells, {int(wells['n_detected'].sum())} cells")


# --- report (issue 8) ---


@app.command("report")
@user_errors
def report_cmd(
    run_dir: str = typer.Argument(..., help="Run folder (run.json, wells/stats.parquet, cells/)."),
    out: str = typer.Option(
        None, "--out", "-o", help="HTML file (default: reports/<run folder name>.html)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    gallery: bool = typer.Option(True, "--gallery/--no-gallery", help="Cell image gallery."),
) -> None:
    """One self-contained HTML report of a run (works offline)."""
    import time

    from hcs.report import build_report

    t0 = time.perf_counter()
    path = build_report(run_dir, out, overwrite=overwrite, gallery=gallery)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in"
               f" {time.perf_counter() - t0:.1f} s")


# --- analyze / demo (issue 9) ---


def _run_options(detector: str, workers: int | None, threads_per_worker: int,
                 scheduler: str | None, gpus: str, batch_size: int,
                 nucleus_channel: str | None, channels: str | None, seed: int) -> Any:
    from hcs.analyze import RunOptions
    from hcs.engine.run import parse_channel_map

    return RunOptions(detector=detector, workers=workers, threads_per_worker=threads_per_worker,
                      scheduler=scheduler, gpus=gpus, batch_size=batch_size,
                      nucleus_channel=nucleus_channel, channel_map=parse_channel_map(channels),
                      seed=seed)


def _stage_log(quiet: bool) -> Callable[[str], None]:
    return (lambda _line: None) if quiet else (lambda line: typer.echo(line, err=True))


@app.command("analyze")
@user_errors
def analyze_cmd(
    export: str = typer.Argument(..., help="Instrument export (Harmony, ScanR, TIFF folder)."),
    assay: str = typer.Option(..., "--assay", "-a", help="cic | livedead | mitosis | cancer"),
    layout: str = typer.Option(..., "--layout", "-l", help="Plate layout (CSV, grid, XML)."),
    out: str = typer.Option(..., "--out", "-o", help="Analysis folder (created; resumable)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model folder (default: the assay's shipped model)."),
    reference: str | None = typer.Option(
        None, "--reference", "-r", help="Reference condition (default: the negative control)."),
    fmt: str = typer.Option("auto", "--format", help="auto | harmony | scanr | tiff-folder"),
    pattern: str | None = typer.Option(None, "--pattern", help="TIFF-folder file-name pattern."),
    plate_format: int | None = typer.Option(None, "--plate-format", help="Plate format."),
    detector: str = typer.Option("threshold", "--detector", help="Detection method."),
    workers: int | None = typer.Option(None, "--workers", help="Local worker processes."),
    threads_per_worker: int = typer.Option(1, "--threads-per-worker", help="Threads each."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Existing Dask scheduler address (tcp://host:8786)."),
    gpus: str = typer.Option("auto", "--gpus", help="auto | 0 | N"),
    batch_size: int = typer.Option(64, "--batch-size", help="Crops per inference batch."),
    nucleus_channel: str | None = typer.Option(
        None, "--nucleus-channel", help="Channel (name or index) to detect nuclei on."),
    channels: str | None = typer.Option(
        None, "--channels", help="Model input role -> plate channel: brightfield=BF,..."),
    seed: int = typer.Option(0, "--seed", help="Random seed (recorded in run.json)."),
    test: str = typer.Option("student", "--test", help="student | welch"),
    correction: str = typer.Option("fdr_bh", "--correction", help="fdr_bh | holm | ..."),
    transform: str = typer.Option("none", "--transform", help="none | logit"),
    gallery: bool = typer.Option(True, "--gallery/--no-gallery", help="Cell image gallery."),
    force: bool = typer.Option(False, "--force", help="Re-run every stage."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or stage lines."),
) -> None:
    """Export -> plate -> cells -> wells -> stats -> report; current stages are skipped."""
    from hcs.analyze import analyze

    res = analyze(
        export, assay, layout, out, model=model, reference=reference, fmt=fmt, pattern=pattern,
        plate_format=plate_format,
        run=_run_options(detector, workers, threads_per_worker, scheduler, gpus, batch_size,
                         nucleus_channel, channels, seed),
        test=test, correction=correction, transform=transform, gallery=gallery, force=force,
        progress=not quiet, log=_stage_log(quiet))
    ran = ", ".join(res.ran) or "none (everything was current)"
    stats = res.stats or "none (no reference condition: give --reference)"
    typer.echo(f"stages run: {ran}\nwells: {res.wells}\nstatistics: {stats}\n"
               f"report: {res.report}")
    if res.failed_fields:
        typer.echo(f"warning: {res.failed_fields} fields failed (see {res.run_dir}/"
                   "failures.parquet); run the same command again to retry them", err=True)
        raise typer.Exit(code=1)


@app.command("demo")
@user_errors
def demo_cmd(
    out: str = typer.Option("reports/demo", "--out", "-o", help="Demo folder."),
    assay: str = typer.Option("cic", "--assay", "-a", help="cic | livedead"),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model folder (default: the demo's shipped model)."),
    wells_per_condition: int | None = typer.Option(
        None, "--wells-per-condition", help="Wells per condition (default: the demo's; 0: all)."),
    fields: int | None = typer.Option(None, "--fields", help="Fields per well."),
    size: int | None = typer.Option(None, "--size", help="Field size in pixels."),
    seed: int = typer.Option(0, "--seed", help="Simulation seed."),
    workers: int | None = typer.Option(None, "--workers", help="Local worker processes."),
    threads_per_worker: int = typer.Option(1, "--threads-per-worker", help="Threads each."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Existing Dask scheduler address (tcp://host:8786)."),
    gpus: str = typer.Option("auto", "--gpus", help="auto | 0 | N"),
    gallery: bool = typer.Option(True, "--gallery/--no-gallery", help="Cell image gallery."),
    force: bool = typer.Option(False, "--force", help="Re-run every stage."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or stage lines."),
) -> None:
    """Simulate the ARHGAP36 truncation screen (or a live/dead dose series), analyse it with the
    shipped model and check the statistics against the simulation's truth."""
    from hcs.analyze import run_demo
    from hcs.analyze.recovery import summary_lines

    res = run_demo(
        out, assay, model=model,
        wells_per_condition=-1 if wells_per_condition is None else (wells_per_condition or None),
        fields=fields, size=size, seed=seed,
        run=_run_options("threshold", workers, threads_per_worker, scheduler, gpus, 64, None,
                         None, 0),
        gallery=gallery, force=force, progress=not quiet, log=_stage_log(quiet))
    typer.echo("\n".join(summary_lines(res.recovery)))
    typer.echo(f"demo finished in {res.seconds:.0f} s\ntruth recovery: {res.demo_json}\n"
               f"report: {res.analysis.report}")
    if res.analysis.failed_fields:
        typer.echo(f"warning: {res.analysis.failed_fields} fields failed; run again to retry",
                   err=True)
        raise typer.Exit(code=1)


def run() -> None:  # pragma: no cover - console entry for `python -m hcs`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
