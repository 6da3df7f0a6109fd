"""``hcs run``, ``hcs aggregate``, ``hcs report``, ``hcs analyze`` and ``hcs demo``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from hcs.cli.app import app, user_errors
from hcs.cli.options import with_params
from hcs.params import AggregateParams, AnalyzeParams, ReportParams, RunParams, validate

# --- run / aggregate (issue 6) ---


@app.command("run")
@user_errors
@with_params(RunParams)
def run_command(
    plate: str = typer.Argument(..., help="OME-Zarr plate (from `hcs convert`)."),
    assay: str | None = typer.Option(
        None, "--assay", "-a", help="cic | livedead | mitosis | cancer (default: the model's)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model folder (model.yaml + weights); without --model and "
        "--assay: detection and measurements only."),
    out: str = typer.Option(..., "--out", "-o", help="Run folder (cells/, run.json, ...)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run: redo missing fields."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    params: RunParams = RunParams(),
) -> None:
    """Detect, measure and classify every cell of a plate in parallel -> RUN_DIR/cells/."""
    from hcs.engine.run import run_plate, summary_text

    summary = run_plate(plate, assay, model, out, resume=resume, progress=not quiet,
                        **params.run_plate_kwargs())
    typer.echo(summary_text(summary))
    if not summary.ok:
        raise typer.Exit(code=1)


@app.command("aggregate")
@user_errors
@with_params(AggregateParams)
def aggregate_command(
    run_dir: str = typer.Argument(..., help="Run folder written by `hcs run`."),
    out: str | None = typer.Option(None, "--out", "-o", help="Default RUN_DIR/wells.parquet."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    params: AggregateParams = AggregateParams(),
) -> None:
    """Per-well counts and frequencies from a run's cell tables -> wells.parquet."""
    from hcs.engine.aggregate_run import aggregate_run

    wells, path = aggregate_run(run_dir, out, assay=params.assay, layout=params.layout,
                                overwrite=overwrite, positive=params.positive,
                                exclude_qc=params.exclude_qc, qc_focus_mad=params.qc_focus_mad,
                                qc_saturation_pct=params.qc_saturation_pct)
    typer.echo(f"wrote {path}: {len(wells)} wells, {int(wells['n_detected'].sum())} cells")
    flagged = int(wells["n_fields_qc_flagged"].sum()) if "n_fields_qc_flagged" in wells else 0
    if flagged:  # never silently: say how many fields image QC flagged and what became of them
        what = "excluded (--exclude-qc)" if params.exclude_qc else \
            "kept (--exclude-qc leaves them out)"
        typer.echo(f"image QC: {flagged} field(s) flagged (out of focus or saturated), {what}; "
                   "see fields.parquet")


# --- report (issue 8) ---


@app.command("report")
@user_errors
@with_params(ReportParams)
def report_cmd(
    run_dir: str = typer.Argument(..., help="Run folder (run.json, wells/stats.parquet, cells/)."),
    out: str = typer.Option(
        None, "--out", "-o", help="HTML file (default: reports/<run folder name>.html)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    params: ReportParams = ReportParams(),
) -> None:
    """One self-contained HTML report of a run (works offline)."""
    import time

    from hcs.report import build_report

    t0 = time.perf_counter()
    path = build_report(run_dir, out, overwrite=overwrite, gallery=params.gallery,
                        montage=params.montage, qc_readout=params.qc_readout)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in"
               f" {time.perf_counter() - t0:.1f} s")


# --- analyze / demo (issue 9) ---


def _stage_log(quiet: bool) -> Callable[[str], None]:
    return (lambda _line: None) if quiet else (lambda line: typer.echo(line, err=True))


@app.command("analyze")
@user_errors
@with_params(AnalyzeParams, repeatable=("layout",))
def analyze_cmd(
    export: list[str] = typer.Argument(
        ..., help="Instrument export (Harmony, ScanR, TIFF folder) or an OME-Zarr plate; "
        "several make a screen (@plates.txt lists them, one a line)."),
    out: str = typer.Option(..., "--out", "-o", help="Analysis folder (created; resumable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or stage lines."),
    params: AnalyzeParams = None,  # type: ignore[assignment]  # built by with_params
    layout_all: list[str] | None = None,
) -> None:
    """Export -> plate -> cells -> wells -> stats -> report; current stages are skipped.

    Every option of convert, run, aggregate, stats and report applies to its stage; all are
    checked before any stage runs. An OME-Zarr plate as EXPORT skips the conversion. Several
    EXPORTs (or @plates.txt) are one screen: one cluster, pooled statistics, one screen report
    (--layout FILE for all, a layout with a plate column, or --layout PLATE=FILE per plate).
    """
    layouts = list(layout_all or [])
    if len(export) > 1 or any(e.startswith("@") for e in export) or len(layouts) > 1 or any(
            "=" in x and not Path(x).is_file() for x in layouts):
        _analyze_screen(export, out, params, layouts, quiet)
        return
    from hcs.analyze import analyze

    res = analyze(export[0], out, params, progress=not quiet, log=_stage_log(quiet))
    ran = ", ".join(res.ran) or "none (everything was current)"
    stats = res.stats or "none (no reference condition: give --reference)"
    typer.echo(f"stages run: {ran}\nwells: {res.wells}\nstatistics: {stats}\n"
               f"report: {res.report}")
    if res.missing_planes:
        from hcs.engine.run import missing_planes_text

        typer.echo(missing_planes_text(res.missing_planes), err=True)
    if res.failed_fields:
        typer.echo(f"warning: {res.failed_fields} fields failed (see {res.run_dir}/"
                   "failures.parquet); run the same command again to retry them", err=True)
        raise typer.Exit(code=1)


def _analyze_screen(exports: list[str], out: str, params: AnalyzeParams, layouts: list[str],
                    quiet: bool) -> None:
    from hcs.analyze.screen import analyze_screen

    res = analyze_screen(exports, out, params, layouts or None, progress=not quiet,
                         log=_stage_log(quiet))
    for key, ran in res.ran.items():
        typer.echo(f"{key}: stages run: {', '.join(ran) or 'none (everything was current)'}")
    typer.echo(f"wells: {res.wells}\nstatistics: {res.stats or 'none (give --reference)'}\n"
               f"report: {res.report}")
    failed = {k: v for k, v in res.failed_fields.items() if v}
    if failed:
        typer.echo("warning: fields failed (" + ", ".join(f"{k}: {v}" for k, v in
                                                        failed.items())
                   + "); run the same command again to retry them", err=True)
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
        run=validate(RunParams, workers=workers, threads_per_worker=threads_per_worker,
                     scheduler=scheduler, gpus=gpus),
        gallery=gallery, force=force, progress=not quiet, log=_stage_log(quiet))
    typer.echo("\n".join(summary_lines(res.recovery)))
    typer.echo(f"demo finished in {res.seconds:.0f} s\ntruth recovery: {res.demo_json}\n"
               f"report: {res.analysis.report}")
    if res.analysis.failed_fields:
        typer.echo(f"warning: {res.analysis.failed_fields} fields failed; run again to retry",
                   err=True)
        raise typer.Exit(code=1)
