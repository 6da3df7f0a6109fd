"""``hcs run``, ``hcs aggregate``, ``hcs report``, ``hcs analyze`` and ``hcs demo``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from hcs.cli.app import app, user_errors

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
    pixel_size: float | None = typer.Option(
        None, "--pixel-size", help="Pixel size in um (x and y) where the export lacks it."),
    z_step: float | None = typer.Option(None, "--z-step", help="Z step in um."),
    channel_names: str | None = typer.Option(
        None, "--channel-names", help="Channel names, comma-separated, in channel order."),
    override_metadata: bool = typer.Option(
        False, "--override-metadata", help="Let the three options above replace the metadata."),
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
        plate_format=plate_format, pixel_size_um=pixel_size, z_step_um=z_step,
        channel_names=channel_names, override_metadata=override_metadata,
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
    assay: str = typer.Option("cic", "--assay", "-a", help="cic | livedead | mitosis"),
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
