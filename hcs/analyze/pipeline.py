"""``hcs analyze``: export -> plate -> cells -> wells -> statistics -> report, resumable.

Each stage is the library function behind one command (:func:`hcs.io.convert.write_plate`,
:func:`hcs.engine.run_plate`, :func:`hcs.engine.aggregate_run.aggregate_run`,
:func:`hcs.stats.run.stats_for_run`, :func:`hcs.report.build_report`), run by
:class:`hcs.analyze.manifest.Pipeline` only when it is not current. The analysis folder holds::

    DIR/analyze.json        stage manifest (inputs, parameters, output fingerprints, times)
    DIR/plate.ome.zarr      convert
    DIR/run/cells/ ...      run (run.json, failures.parquet)
    DIR/run/wells.parquet   aggregate (joined to the layout)
    DIR/run/stats.parquet   stats
    DIR/report.html         report

The run stage resumes: when it did not finish (a crash, a killed job, failed fields) with the
same plate, model and detection parameters, only the fields without a cell table are redone;
when any of those changed, the old run is removed and the plate is run afresh.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcs.analyze.manifest import (
    Pipeline,
    StageOutcome,
    file_sha256,
    json_normal,
    tree_fingerprint,
)
from hcs.errors import InputError

__all__ = ["AnalyzeResult", "RunOptions", "analyze", "analysis_paths"]

#: Shipped model used by ``hcs analyze`` / ``hcs demo`` when ``--model`` is not given.
DEFAULT_MODELS: dict[str, str] = {"cic": "cic-sim", "livedead": "livedead-sim",
                                  "mitosis": "mitosis-sim-xyz"}


@dataclass(frozen=True)
class RunOptions:
    """Options of the run stage (as ``hcs run``). Only ``detector``, ``nucleus_channel`` and
    ``channel_map`` change the output; the others say where and how fast it runs."""

    detector: str = "threshold"
    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    gpus: str = "auto"
    batch_size: int = 64
    nucleus_channel: str | None = None
    channel_map: dict[str, str] = field(default_factory=dict)
    seed: int = 0


@dataclass
class AnalyzeResult:
    """Where everything went, and which stages ran (``outcomes``)."""

    folder: Path
    plate: Path
    run_dir: Path
    wells: Path
    stats: Path | None  # None: no reference condition, no statistics
    report: Path
    outcomes: list[StageOutcome]
    failed_fields: int = 0

    @property
    def ran(self) -> list[str]:
        """Names of the stages that ran (not skipped as current)."""
        return [o.name for o in self.outcomes if o.ran]


def analysis_paths(folder: str | Path) -> dict[str, Path]:
    """The files and folders of an analysis folder, by stage.

    Examples
    --------
    >>> analysis_paths("out")["wells"].as_posix()
    'out/run/wells.parquet'
    """
    folder = Path(folder)
    run = folder / "run"
    return {"plate": folder / "plate.ome.zarr", "run": run, "wells": run / "wells.parquet",
            "stats": run / "stats.parquet", "report": folder / "report.html",
            "manifest": folder / "analyze.json"}


def resolve_model(assay: str, model: str | Path | None) -> tuple[Path, str]:
    """``(model folder, fingerprint)``: ``model`` or the assay's shipped default.

    The fingerprint is the card's verified ``card_sha256``
    (:func:`hcs.classify.models.card_checksum`): the weights' sha256 and the card's classes in
    order, inputs, crop, normalisation and decision rule, not its documentation (training
    history, metrics), so adding metrics to a card re-runs nothing.
    """
    from hcs.engine.model import model_card

    if model is None:
        if assay not in DEFAULT_MODELS:
            raise InputError(f"assay {assay!r} has no shipped model; give --model")
        model = DEFAULT_MODELS[assay]
    folder, card = model_card(model)
    if card.assay != assay:
        raise InputError(f"model {folder} is a model of assay {card.assay!r}, not {assay!r}")
    return folder, card.card_sha256


def _detector_fingerprint(detector: str) -> str:
    p = Path(detector)
    if p.is_dir():
        return f"{detector}@{tree_fingerprint(p)}"
    if p.is_file():
        return f"{detector}@{file_sha256(p)}"
    return detector


def run_fingerprint(run_dir: Path) -> str | None:
    """Fingerprint of a run's output: its cell tables and its failure table."""
    cells = tree_fingerprint(run_dir / "cells", "*/*.parquet")
    if cells is None:
        return None
    return f"{cells}:{file_sha256(run_dir / 'failures.parquet')}"


def _check_layout(layout: str | Path, reference: str | None) -> bool:
    """Validate the layout (and ``reference``) up front; True if statistics have a reference
    (``reference`` given, or exactly one negative-control condition)."""
    from hcs.layouts import read_layout

    lay = read_layout(layout)
    known = set(lay["condition"].dropna().astype(str))
    if reference is not None:
        if reference not in known:
            raise InputError(f"--reference {reference!r} is not a condition of {layout} "
                             f"({', '.join(sorted(known)[:12])})")
        return True
    controls = set(lay.loc[lay["role"] == "negative_control", "condition"].dropna())
    return len(controls) == 1


def _check_layout_on_plate(layout: str | Path, plate: Path) -> None:
    """The layout's wells lie on the converted plate and share wells with it."""
    from hcs.io.omezarr import open_plate
    from hcs.layouts import check_layout_on_plate, read_layout

    pl = open_plate(plate)
    check_layout_on_plate(read_layout(layout), pl.wells, pl.geometry, plate)


def convert_stage(pipe: Pipeline, export: str | Path, plate: Path, fmt: str = "auto",
                  pattern: str | None = None, plate_format: int | None = None,
                  workers: int | None = None, progress: bool = True) -> StageOutcome:
    """Instrument export -> ``plate`` (``hcs convert``)."""
    from hcs.io import open_export
    from hcs.io.omezarr import write_plate

    src = Path(export)
    if not src.exists():
        raise InputError(f"export not found: {export}")
    fp = tree_fingerprint(src) if src.is_dir() else tree_fingerprint(src.parent)

    def action() -> None:
        acq = open_export(src, fmt=fmt, pattern=pattern, plate_format=plate_format)
        write_plate(acq, plate, overwrite=True, workers=workers, progress=progress)

    return pipe.step("convert", {"export": f"{src.resolve()}@{fp}"},
                     {"format": fmt, "pattern": pattern, "plate_format": plate_format},
                     lambda: file_sha256(plate / "zarr.json"), action)


def run_stage(pipe: Pipeline, plate: Path, run_dir: Path, assay: str, model: Path,
              model_fp: str, opts: RunOptions, progress: bool = True) -> tuple[StageOutcome, int]:
    """Plate -> ``run_dir/cells/`` (``hcs run``; resumes an unfinished run of the same
    parameters). Returns the outcome and the number of failed fields."""
    from hcs.engine.run import run_plate, summary_text

    inputs = {"plate": file_sha256(plate / "zarr.json")}
    params = {"assay": assay, "model": f"{model}@{model_fp}",
              "detector": _detector_fingerprint(opts.detector),
              "nucleus_channel": opts.nucleus_channel, "channel_map": dict(opts.channel_map)}
    failed = [0]
    rec = dict(pipe.record("run") or {})  # the previous attempt (step() replaces the entry)

    def action() -> None:
        same = (rec.get("inputs") == inputs and rec.get("params") == json_normal(params)
                and (run_dir / "run.json").is_file())
        if not same and run_dir.exists():
            pipe.log(f"    removing the previous run in {run_dir} (other plate or parameters)")
            shutil.rmtree(run_dir)
        summary = run_plate(
            plate, assay, model, run_dir, detector=opts.detector, workers=opts.workers,
            threads_per_worker=opts.threads_per_worker, scheduler=opts.scheduler,
            gpus=opts.gpus, resume=same, batch_size=opts.batch_size,
            nucleus_channel=opts.nucleus_channel, channel_map=dict(opts.channel_map) or None,
            seed=opts.seed, progress=progress)
        pipe.log("    " + summary_text(summary).replace("\n", "\n    "))
        failed[0] = summary.fields_failed

    outcome = pipe.step("run", inputs, params, lambda: run_fingerprint(run_dir), action)
    if failed[0]:
        pipe.mark_incomplete("run", f"{failed[0]} fields failed")
    return outcome, failed[0]


def aggregate_stage(pipe: Pipeline, run_dir: Path, wells: Path, assay: str,
                    layout: str | Path) -> StageOutcome:
    """Cells -> ``wells.parquet`` joined to the layout (``hcs aggregate``)."""
    from hcs.engine.aggregate_run import aggregate_run

    return pipe.step(
        "aggregate", {"run": run_fingerprint(run_dir), "layout": file_sha256(layout)},
        {"assay": assay, "layout": str(Path(layout).resolve())},
        lambda: file_sha256(wells),
        lambda: aggregate_run(run_dir, wells, assay=assay, layout=layout, overwrite=True))


def stats_stage(pipe: Pipeline, wells: Path, stats: Path, reference: str | None,
                test: str = "student", correction: str = "fdr_bh",
                transform: str = "none") -> StageOutcome:
    """Wells -> ``stats.parquet`` (``hcs stats``)."""
    from hcs.stats.run import stats_for_run

    return pipe.step(
        "stats", {"wells": file_sha256(wells)},
        {"reference": reference, "test": test, "correction": correction, "transform": transform},
        lambda: file_sha256(stats),
        lambda: stats_for_run(wells, stats, overwrite=True, reference=reference, test=test,
                              correction=correction, transform=transform))


def report_stage(pipe: Pipeline, run_dir: Path, plate: Path, report: Path,
                 gallery: bool = True) -> StageOutcome:
    """Run folder -> one HTML file (``hcs report``)."""
    from hcs.report import build_report

    inputs = {name: file_sha256(run_dir / name)
              for name in ("run.json", "wells.parquet", "stats.parquet", "failures.parquet")}
    inputs["plate"] = file_sha256(plate / "zarr.json")
    return pipe.step("report", inputs, {"gallery": gallery}, lambda: file_sha256(report),
                     lambda: build_report(run_dir, report, overwrite=True, gallery=gallery))


def analyze(
    export: str | Path,
    assay: str,
    layout: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = None,
    reference: str | None = None,
    fmt: str = "auto",
    pattern: str | None = None,
    plate_format: int | None = None,
    run: RunOptions | None = None,
    test: str = "student",
    correction: str = "fdr_bh",
    transform: str = "none",
    gallery: bool = True,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    before_convert: Callable[[Pipeline, dict[str, Path]], Any] | None = None,
    before_report: Callable[[Pipeline, dict[str, Path]], Any] | None = None,
) -> AnalyzeResult:
    """Convert, run, aggregate, test and report one plate, skipping the stages that are current.

    Parameters
    ----------
    export
        Instrument export (Harmony / ScanR / TIFF folder) as for ``hcs convert``.
    assay, layout
        Assay name and plate layout file.
    out
        Analysis folder (see the module docstring); created if needed.
    model
        Model folder or shipped model name (default: :data:`DEFAULT_MODELS` of the assay).
    reference
        Reference condition of the statistics (default: the layout's negative control; with
        neither, the statistics stage is left out and the report has no comparisons).
    fmt, pattern, plate_format
        As ``hcs convert --format/--pattern/--plate-format``.
    run
        Run-stage options (:class:`RunOptions`).
    test, correction, transform
        As ``hcs stats``.
    gallery
        Include the cell gallery in the report.
    force
        Re-run every stage (the run stage starts afresh).
    progress, log
        Progress bars on stderr; where stage lines go.
    before_convert, before_report
        Extra stages to run first, and after the statistics (``hcs demo`` adds the simulation
        and the comparison with its truth). Each is called with the pipeline and the paths of
        :func:`analysis_paths`.

    Returns
    -------
    AnalyzeResult
    """
    from hcs.assays import get_assay
    from hcs.engine.lock import RunLock

    assay = get_assay(assay).name
    opts = run or RunOptions()
    if not Path(layout).is_file():
        raise InputError(f"layout not found: {layout}")
    has_reference = _check_layout(layout, reference)
    model_dir, model_fp = resolve_model(assay, model)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = analysis_paths(folder)
    with RunLock(folder):
        pipe = Pipeline(folder, log=log, force=force)
        if force and paths["run"].exists():
            shutil.rmtree(paths["run"])
        if before_convert is not None:
            before_convert(pipe, paths)
        convert_stage(pipe, export, paths["plate"], fmt, pattern, plate_format,
                      workers=opts.workers, progress=progress)
        _check_layout_on_plate(layout, paths["plate"])  # before the run starts a cluster
        _, failed = run_stage(pipe, paths["plate"], paths["run"], assay, model_dir, model_fp,
                              opts, progress)
        aggregate_stage(pipe, paths["run"], paths["wells"], assay, layout)
        if has_reference:
            stats_stage(pipe, paths["wells"], paths["stats"], reference, test, correction,
                        transform)
        else:
            paths["stats"].unlink(missing_ok=True)
            pipe.log("    no statistics: the layout has no single negative-control condition "
                     "and no --reference was given")
        if before_report is not None:
            before_report(pipe, paths)
        report_stage(pipe, paths["run"], paths["plate"], paths["report"], gallery)
    return AnalyzeResult(folder, paths["plate"], paths["run"], paths["wells"],
                         paths["stats"] if has_reference else None, paths["report"],
                         pipe.outcomes, failed)
