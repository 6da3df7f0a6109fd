"""``hcs analyze``: export -> plate -> cells -> wells -> statistics -> report, resumable.

Each stage is the library function behind one command (:func:`hcs.io.convert.write_plate`,
:func:`hcs.engine.run_plate`, :func:`hcs.engine.aggregate_run.aggregate_run`,
:func:`hcs.stats.run.stats_for_run`, :func:`hcs.report.build_report`), run by
:class:`hcs.analyze.manifest.Pipeline` only when it is not current. The analysis folder holds::

    DIR/analyze.json        stage manifest (inputs, parameters, output fingerprints, times)
    DIR/plate.ome.zarr      convert (none when the input is already a plate)
    DIR/run/cells/ ...      run (run.json, failures.parquet)
    DIR/run/wells.parquet   aggregate (joined to the layout)
    DIR/run/stats.parquet   stats
    DIR/report.html         report

Every option is a field of :class:`hcs.params.AnalyzeParams` (one model per stage, as the stage
commands); the parameters that change a stage's output are its manifest parameters, so changing
one re-runs that stage and the ones after it. The run stage resumes: when it did not finish (a
crash, a killed job, failed fields) with the same plate, model and detection parameters, only
the fields without a cell table are redone; when any of those changed, the old run is removed
and the plate is run afresh. hcs removes only what it wrote: an existing plate, run folder or
report that is not provably hcs's (a file of one's own in ``DIR/run/``, say) is refused before
any work (:func:`check_outputs_ours`).
"""

from __future__ import annotations

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
from hcs.assays import ASSAYS, Assay
from hcs.engine.run_files import check_run_removable, remove_run
from hcs.errors import InputError
from hcs.params import (
    AggregateParams,
    AnalyzeParams,
    ConvertParams,
    RunParams,
    StatsParams,
    from_options,
)

__all__ = ["AnalyzeResult", "analysis_assay", "analysis_paths", "analyze", "plate_fingerprint"]

#: Shipped model used by ``hcs analyze`` / ``hcs demo`` when ``--model`` is not given.
DEFAULT_MODELS: dict[str, str] = {a.name: a.default_model for a in ASSAYS.values()
                                  if a.default_model is not None}


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
    #: fields with planes missing at convert (``run.json`` ``fields_missing_planes``)
    missing_planes: list[dict[str, Any]] = field(default_factory=list)

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


def analysis_assay(assay: str | None, model: str | Path | None) -> Assay | None:
    """The :class:`hcs.assays.Assay` of an analysis, or ``None`` (detection only).

    ``assay`` names it (a built-in one, or the user-defined assay of ``model``'s card); without
    it, ``model``'s card does, as for ``hcs run --model`` (:func:`hcs.assays.assay_from_card`:
    the built-in assay of that name, else the classes defined with the card's labels).
    :func:`resolve_model` then checks that the model is one of this assay.

    Examples
    --------
    >>> analysis_assay(None, None) is None
    True
    >>> analysis_assay("livedead", None).classes
    ('live', 'dead')
    """
    from hcs.assays import assay_from_card, get_assay
    from hcs.engine.model import model_card

    if model is None:
        return get_assay(assay) if assay else None
    folder, card = model_card(model)
    if assay is None or (assay.lower() not in ASSAYS and assay == card.assay):
        return assay_from_card(card, str(Path(folder) / "model.yaml"))
    return get_assay(assay)


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


def detector_fingerprint(detector: str) -> str:
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


def check_layout(layout: str | Path, reference: str | None) -> bool:
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


def _check_qc_readout(assay: Assay | None, p: AnalyzeParams) -> None:
    """``--qc-readout`` must name a readout the statistics can give a plate QC row: the cell
    count, a class or composite frequency of the assay, or a ``--readout`` (checked before any
    stage runs; ``hcs report`` checks it against the statistics table)."""
    name = p.report.qc_readout
    if not name:
        return
    names = ["n_detected"]
    if assay is not None:
        names += [f"freq_{c}" for c in (*assay.classes, *assay.composites)]
    names += list(p.stats.readout or ())
    if name in names or f"freq_{name}" in names or name == "cell count":
        return
    raise InputError(f"--qc-readout {name}: not a readout of this analysis; readouts: "
                     f"{', '.join(names)}")


def plate_fingerprint(plate: Path) -> str | None:
    """sha256 of a plate's group metadata (``zarr.json``, or ``.zattrs`` of an NGFF 0.4 plate),
    which holds the conversion's provenance and time."""
    return file_sha256(plate / "zarr.json") or file_sha256(plate / ".zattrs")


def check_layout_fits_plate(layout: str | Path, plate: Path) -> None:
    """The layout's wells lie on the converted plate and share wells with it."""
    from hcs.io.omezarr import open_plate
    from hcs.layouts import check_layout_on_plate, read_layout

    pl = open_plate(plate)
    check_layout_on_plate(read_layout(layout), pl.wells, pl.geometry, plate)


def check_outputs_ours(paths: dict[str, Path], plate_is_input: bool = False) -> None:
    """Refuse, before any work, an analysis folder whose outputs hcs could not prove it wrote.

    ``hcs analyze`` replaces its plate, run folder and report; each that exists must be hcs's
    own: the plate one hcs wrote (:func:`hcs.atomic.plate_not_ours`; unless ``plate_is_input``:
    a plate given as the input is only read), the run folder only files of a run
    (:func:`hcs.engine.run_files.check_run_removable`), the report an HTML file hcs generated.

    Raises
    ------
    InputError
        One line naming the file or folder that is not hcs's.
    """
    from hcs.atomic import plate_not_ours

    plate, report = paths["plate"], paths["report"]
    if not plate_is_input and (plate.exists() or plate.is_symlink()):
        why = "a symlink" if plate.is_symlink() else plate_not_ours(plate)
        if why is not None:
            raise InputError(f"{plate}: exists and is not a plate hcs wrote ({why}); move it "
                             "away (or choose another --out) and run again")
    check_run_removable(paths["run"])
    if report.exists() or report.is_symlink():
        head = b""
        if report.is_file() and not report.is_symlink():
            with open(report, "rb") as fh:
                head = fh.read(2048)
        if b'<meta name="generator" content="hcs ' not in head:
            raise InputError(f"{report}: exists and is not a report hcs wrote; move it away (or "
                             "choose another --out) and run again")


def remove_recorded(pipe: Pipeline, stage: str, path: Path) -> None:
    """Delete a stage's output only when the manifest recorded exactly these bytes."""
    rec = pipe.record(stage) or {}
    if path.is_file() and rec.get("output") is not None and rec["output"] == file_sha256(path):
        path.unlink()
    elif path.exists():
        pipe.log(f"    left {path} in place (not recorded as written by this analysis)")


def convert_stage(pipe: Pipeline, export: str | Path, plate: Path,
                  params: ConvertParams | None = None, progress: bool = True,
                  acquisition: Any = None) -> StageOutcome:
    """Instrument export -> ``plate`` (``hcs convert``); ``acquisition`` is the export already
    read with ``params`` (by :func:`analyze`'s up-front checks), used instead of reading it
    again."""
    from hcs.io import open_export
    from hcs.io.convert import write_plate

    params = params or ConvertParams()
    src = Path(export)
    if not src.exists():
        raise InputError(f"export not found: {export}")
    fp = tree_fingerprint(src) if src.is_dir() else tree_fingerprint(src.parent)

    def action() -> None:
        acq = acquisition or open_export(src, **params.open_export_kwargs())
        write_plate(acq, plate, ngff=params.ngff, overwrite=True, strict=params.strict,
                    workers=params.workers, progress=progress, dtype=params.dtype,
                    inputs=[src])

    return pipe.step("convert", {"export": f"{src.resolve()}@{fp}"}, params.result_params(),
                     lambda: plate_fingerprint(plate), action)


def read_and_check(export: str | Path, given_plate: bool, convert: ConvertParams,
                    model: Path | None, run: RunParams) -> Any:
    """The export read as convert will (``None`` for a plate), refused before anything is
    written when the run would fail on every field (:func:`hcs.engine.preflight.preflight`)."""
    from hcs.engine.detector import detector_info
    from hcs.engine.model import model_card
    from hcs.engine.preflight import preflight
    from hcs.io import open_export
    from hcs.io.omezarr import open_plate

    if not Path(export).exists():
        raise InputError(f"export not found: {export}")
    acq = None if given_plate else open_export(export, **convert.open_export_kwargs())
    card = model_card(model)[1] if model is not None else None  # None: detection only
    preflight(open_plate(export) if given_plate else acq, card,
              detector=detector_info(run.detector), nucleus_channel=run.nucleus_channel,
              channel_map=dict(run.channels),
              pixel_fix="convert it again with --pixel-size UM" if given_plate
              else "give it with --pixel-size UM")
    return acq


def run_stage(pipe: Pipeline, plate: Path, run_dir: Path, assay: str | None,
              model: Path | None, model_fp: str, opts: RunParams,
              progress: bool = True) -> tuple[StageOutcome, int]:
    """Plate -> ``run_dir/cells/`` (``hcs run``; resumes an unfinished run of the same
    parameters). Returns the outcome and the number of failed fields."""
    from hcs.engine.run import run_plate, summary_text

    inputs = {"plate": plate_fingerprint(plate)}
    params = {"assay": assay, "model": f"{model}@{model_fp}" if model else None,
              **opts.result_params()}
    params["detector"] = detector_fingerprint(opts.detector)
    failed = [0]
    rec = dict(pipe.record("run") or {})  # the previous attempt (step() replaces the entry)

    def action() -> None:
        same = (rec.get("inputs") == inputs and rec.get("params") == json_normal(params)
                and (run_dir / "run.json").is_file())
        if not same and run_dir.exists():
            pipe.log(f"    removing the previous run in {run_dir} (other plate or parameters)")
            remove_run(run_dir)
        summary = run_plate(plate, assay, model, run_dir, resume=same, progress=progress,
                            **opts.run_plate_kwargs())
        pipe.log("    " + summary_text(summary).replace("\n", "\n    "))
        failed[0] = summary.fields_failed

    outcome = pipe.step("run", inputs, params, lambda: run_fingerprint(run_dir), action)
    if failed[0]:
        pipe.mark_incomplete("run", f"{failed[0]} fields failed")
    return outcome, failed[0]


def aggregate_stage(pipe: Pipeline, run_dir: Path, wells: Path, assay: str | None,
                    layout: str | Path, positive: tuple[str, ...] | None = None,
                    image_qc: dict[str, Any] | None = None) -> StageOutcome:
    """Cells -> ``wells.parquet`` joined to the layout (``hcs aggregate``); ``image_qc``:
    ``exclude_qc``, ``qc_focus_mad``, ``qc_saturation_pct`` of :func:`aggregate_run`."""
    from hcs.engine.aggregate_run import aggregate_run

    # only options that differ from the defaults: an analysis recorded before image QC existed
    # (same results) is not redone
    default = AggregateParams()
    qc = {k: v for k, v in (image_qc or {}).items() if v != getattr(default, k)}
    return pipe.step(
        "aggregate", {"run": run_fingerprint(run_dir), "layout": file_sha256(layout)},
        {"assay": assay, "layout": str(Path(layout).resolve()),
         **({"positive": list(positive)} if positive else {}), **qc},
        lambda: file_sha256(wells),
        lambda: aggregate_run(run_dir, wells, assay=assay, layout=layout, overwrite=True,
                              positive=positive, **qc))


def stats_stage(pipe: Pipeline, wells: Path, stats: Path,
                params: StatsParams | None = None) -> StageOutcome:
    """Wells -> ``stats.parquet`` (``hcs stats``; the wells already carry the layout)."""
    from hcs.stats.run import stats_for_run

    params = params or StatsParams()
    kw = params.run_stats_kwargs()
    return pipe.step(
        "stats", {"wells": file_sha256(wells)}, kw, lambda: file_sha256(stats),
        lambda: stats_for_run(wells, stats, overwrite=True, **kw))


def report_stage(pipe: Pipeline, run_dir: Path, plate: Path, report: Path,
                 gallery: bool = True, montage: bool = True,
                 qc_readout: str | None = None) -> StageOutcome:
    """Run folder -> one HTML file (``hcs report``; ``qc_readout``: the readout of the plate
    verdicts)."""
    from hcs.report import build_report

    inputs = {name: file_sha256(run_dir / name)
              for name in ("run.json", "wells.parquet", "stats.parquet", "failures.parquet",
                           "fields.parquet")}
    inputs["plate"] = plate_fingerprint(plate)
    params = {"gallery": gallery, "montage": montage,
              **({"qc_readout": qc_readout} if qc_readout else {})}
    return pipe.step("report", inputs, params, lambda: file_sha256(report),
                     lambda: build_report(run_dir, report, overwrite=True, gallery=gallery,
                                          montage=montage, qc_readout=qc_readout))


def given_plate_input(export: Path, convert: ConvertParams) -> bool:
    """Whether the input is already an OME-Zarr plate (by its NGFF plate metadata, whatever
    its name); convert options cannot apply to it."""
    from hcs.io.omezarr import is_plate

    if not is_plate(export):
        return False
    set_ = [k for k, v in convert.result_params().items()
            if v != ConvertParams.model_fields[k].default]
    if set_:
        raise InputError(f"{export} is already an OME-Zarr plate: --{set_[0].replace('_', '-')} "
                         "(a conversion option) does not apply; convert the export instead")
    return True


def analyze(
    export: str | Path,
    out: str | Path,
    params: AnalyzeParams | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    before_convert: Callable[[Pipeline, dict[str, Path]], Any] | None = None,
    before_report: Callable[[Pipeline, dict[str, Path]], Any] | None = None,
    **options: Any,
) -> AnalyzeResult:
    """Convert, run, aggregate, test and report one plate, skipping the stages that are current.

    Parameters
    ----------
    export
        Instrument export (Harmony / ScanR / TIFF folder) as for ``hcs convert``, or an
        OME-Zarr plate (recognised by its plate metadata), which skips the conversion.
    out
        Analysis folder (see the module docstring); created if needed.
    params
        Every option (:class:`hcs.params.AnalyzeParams`): the assay (default: the model card's,
        :func:`analysis_assay`), the layout, the model (default: :data:`DEFAULT_MODELS` of the
        assay) and the options of each stage. Without a
        ``reference`` (and without a single negative-control condition in the layout) the
        statistics stage is left out and the report has no comparisons.
        The export is read and checked against the model before anything is written: an
        export (or plate) without a pixel size, or whose channels cannot feed the model, is
        refused up front (:func:`hcs.engine.preflight.preflight`).
    progress, log
        Progress bars on stderr; where stage lines go.
    before_convert, before_report
        Extra stages to run first, and after the statistics (``hcs demo`` adds the simulation
        and the comparison with its truth). Each is called with the pipeline and the paths of
        :func:`analysis_paths`.
    **options
        Options by their command-line name (``assay="cic"``, ``scheduler=...``,
        ``test="welch"``), applied over ``params`` (:func:`hcs.params.from_options`).

    Returns
    -------
    AnalyzeResult
    """
    from hcs.engine.lock import RunLock

    p = from_options(AnalyzeParams, params, **options)
    assay_def = analysis_assay(p.assay, p.model)  # None: detection only
    assay = assay_def.name if assay_def is not None else None
    if not Path(p.layout).is_file():
        raise InputError(f"layout not found: {p.layout}")
    has_reference = check_layout(p.layout, p.stats.reference)
    _check_qc_readout(assay_def, p)
    model_dir, model_fp = resolve_model(assay, p.model) if assay else (None, "")
    given_plate = given_plate_input(Path(export), p.convert)
    # refuse before anything is written (the demo's export exists only after its simulation)
    acq = None if before_convert else read_and_check(export, given_plate, p.convert, model_dir,
                                                      p.run)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder}: exists and is not a folder; choose an analysis folder")
    src = Path(export)  # may not exist yet: before_convert may write it (hcs demo)
    src_dir = (src if src.is_dir() else src.parent).resolve()
    if src.exists() and (folder.resolve() == src_dir or src_dir in folder.resolve().parents):
        raise InputError(f"--out {folder} is inside the export {src_dir}: hcs never writes into "
                         "an input; choose an analysis folder outside it")
    folder.mkdir(parents=True, exist_ok=True)
    paths = analysis_paths(folder)
    if given_plate:
        paths["plate"] = Path(export)
    with RunLock(folder):
        check_outputs_ours(paths, plate_is_input=given_plate)
        pipe = Pipeline(folder, log=log, force=p.force)
        if p.force and paths["run"].exists():
            remove_run(paths["run"])
        if before_convert is not None:
            before_convert(pipe, paths)
            acq = read_and_check(export, given_plate, p.convert, model_dir, p.run)
        if given_plate:
            pipe.log(f"[{len(pipe.outcomes) + 1}] convert: skipped ({export} is an OME-Zarr "
                     "plate)")
            pipe.outcomes.append(StageOutcome("convert", False, "input is a plate"))
        else:
            convert_stage(pipe, export, paths["plate"], p.convert, progress=progress,
                          acquisition=acq)
        check_layout_fits_plate(p.layout, paths["plate"])  # before the run starts a cluster
        _, failed = run_stage(pipe, paths["plate"], paths["run"], assay, model_dir, model_fp,
                              p.run, progress)
        aggregate_stage(pipe, paths["run"], paths["wells"], assay, p.layout,
                        p.aggregate.positive, {
                            "exclude_qc": p.aggregate.exclude_qc,
                            "qc_focus_mad": p.aggregate.qc_focus_mad,
                            "qc_saturation_pct": p.aggregate.qc_saturation_pct})
        if has_reference:
            stats_stage(pipe, paths["wells"], paths["stats"], p.stats)
        else:
            remove_recorded(pipe, "stats", paths["stats"])
            pipe.log("    no statistics: the layout has no single negative-control condition "
                     "and no --reference was given")
        if before_report is not None:
            before_report(pipe, paths)
        report_stage(pipe, paths["run"], paths["plate"], paths["report"], p.report.gallery,
                     p.report.montage, p.report.qc_readout)
    return AnalyzeResult(folder, paths["plate"], paths["run"], paths["wells"],
                         paths["stats"] if has_reference else None, paths["report"],
                         pipe.outcomes, failed, run_missing_planes(paths["run"]))


def run_missing_planes(run_dir: Path) -> list[dict[str, Any]]:
    import json

    try:
        return list(json.loads((run_dir / "run.json").read_text()).get(
            "fields_missing_planes") or [])
    except (OSError, ValueError, AttributeError):
        return []
