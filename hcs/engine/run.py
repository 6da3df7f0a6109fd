"""Whole-plate orchestration: fields -> Dask tasks -> ``cells/``, with resume, retries and a lock.

:func:`run_plate` lists the fields of a plate, skips those whose cell table exists (``resume``),
submits one task per group of ``fields_per_task`` consecutive remaining fields (their crops share
inference batches), retries every field that failed in its group once on its own, records the
fields that fail again in ``failures.parquet``, shows progress, and writes ``run.json``
(provenance) at the start and the end. Every output file is written atomically, so a run killed
at any moment resumes exactly.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hcs.atomic import atomic_write_text
from hcs.engine.lock import RunLock
from hcs.engine.processor import EngineParams
from hcs.engine.schedule import RunStopped
from hcs.engine.tasks import atomic_write_parquet, cells_path
from hcs.errors import InputError, OutputExistsError
from hcs.params import RunParams, validate
from hcs.records import sha256_file, utc_timestamp

__all__ = ["PlannedRun", "RunSummary", "list_fields", "plan_run", "run_planned", "run_plate"]

#: run.json keys that must match for ``--resume`` to continue a run.
#: ``model_card_sha256`` covers the card's class order (:func:`hcs.classify.models.card_checksum`),
#: so cells labelled with two class mappings never mix in one run.
RESUME_KEYS = ("plate_metadata_sha256", "assay", "model_sha256", "model_card_sha256", "detector",
               "nucleus_channel", "channel_map", "timepoint", "measure", "cell_channel")


@dataclass
class RunSummary:
    """What a run did: fields total / processed now / skipped (already done) / failed."""

    run_dir: str
    fields_total: int
    fields_done: int
    fields_skipped: int
    fields_failed: int
    cells: int
    seconds: float
    warmup_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    missing_planes: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.fields_failed == 0


def _plate_checksum(plate_path: Path) -> str:
    meta = plate_path / "zarr.json"
    if not meta.is_file():
        meta = plate_path / ".zattrs"
    return sha256_file(meta)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


def list_fields(plate: Any, wells: list[str] | None = None) -> list[tuple[str, int]]:
    """``(well, field)`` pairs of the plate in row-major well order, optionally only ``wells``."""
    from hcs.plate import parse_well, well_name

    if wells:
        names = []
        for w in wells:
            name = well_name(*parse_well(w.strip()))
            if name not in plate.wells:
                raise InputError(f"--wells: well {w} is not in {plate.path}")
            names.append(name)
        chosen = [w for w in plate.wells if w in set(names)]
    else:
        chosen = list(plate.wells)
    return [(w, f) for w in chosen for f in plate.fields(w)]


def choose_timepoint(n_timepoints: int, timepoint: int | None, plate: Path) -> int:
    """The timepoint to process: ``timepoint``, or 0 on a single-timepoint plate.

    A multi-timepoint plate needs an explicit choice: the ``cells/`` contract holds one table
    per field and has no timepoint column, so processing "the" timepoint 0 silently would drop
    data. Run once per timepoint (one RUN_DIR each) to analyse a time series.

    Examples
    --------
    >>> choose_timepoint(1, None, Path("p.ome.zarr"))
    0
    >>> choose_timepoint(5, 3, Path("p.ome.zarr"))
    3
    """
    if timepoint is None:
        if n_timepoints > 1:
            raise InputError(f"{plate}: the plate has {n_timepoints} timepoints; choose one with "
                             f"--timepoint T (0..{n_timepoints - 1}; one run per timepoint)")
        return 0
    if not 0 <= timepoint < n_timepoints:
        raise InputError(f"--timepoint {timepoint}: {plate} has timepoints 0..{n_timepoints - 1}")
    return int(timepoint)


def _prepare(run_dir: Path, params: EngineParams, resume: bool, record: dict) -> None:
    previous = run_dir / "run.json"
    has_cells = (run_dir / "cells").is_dir() and any((run_dir / "cells").rglob("*.parquet"))
    if not resume and (has_cells or previous.exists()):
        raise OutputExistsError(f"{run_dir} already holds a run; pass --resume to continue it "
                                f"or choose another --out")
    if resume and previous.exists():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{previous}: not a readable run.json ({exc}); cannot resume") \
                from None
        if not isinstance(old, dict):
            raise InputError(f"{previous}: not a run.json written by hcs; cannot resume")
        diff = [k for k in RESUME_KEYS if old.get(k) != record.get(k)]
        if diff:
            raise InputError(f"{previous}: cannot resume, the run used different "
                             f"{', '.join(diff)} ({', '.join(str(old.get(k)) for k in diff)})")


def run_plate(
    plate: str | Path,
    assay: str | None,
    model: str | Path | None,
    out: str | Path,
    *,
    detector: str = "threshold",
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    gpus: str | int = "auto",
    resume: bool = False,
    wells: list[str] | None = None,
    batch_size: int = 64,
    nucleus_channel: str | int | None = None,
    channel_map: dict[str, str] | None = None,
    seed: int = 0,
    timepoint: int | None = None,
    fields_per_task: int = 4,
    measure: str = "basic",
    labels: bool = True,
    cell_channel: str | None = None,
    progress: bool = True,
) -> RunSummary:
    """Process every field of a plate into ``OUT/cells/<well>/<field>.parquet``.

    Parameters
    ----------
    plate, assay, model, out
        The OME-Zarr plate, the assay name, the model folder and the run folder. ``assay`` and
        ``model`` None: a detection-only run (cell tables without class columns).
    detector
        Detection method (:func:`hcs.detect.available_methods`) or a learned detector folder
        (:mod:`hcs.engine.detector`).
    workers, threads_per_worker, scheduler, gpus
        Where to run (:func:`hcs.engine.cluster.start_cluster`).
    resume
        Continue a run in ``out``: fields with a cell table are skipped.
    wells
        Only these wells.
    batch_size
        Crops per inference batch (batches span the fields of a task).
    nucleus_channel
        Channel name or index for detection (default: the first nuclear-looking channel).
    channel_map
        Model input role -> plate channel (default: matched by name, see
        :func:`hcs.engine.model.plate_channel_for`).
    seed
        Seed of torch on every worker (outputs do not depend on it for a trained model in eval
        mode; it is recorded for provenance).
    timepoint
        Timepoint to process; required when the plate has several (see
        :func:`choose_timepoint`).
    fields_per_task
        Consecutive fields per Dask task, whose crops share inference batches; a field failing
        in its group is retried alone. Groups depend only on the list of fields, never on the
        number of workers.
    measure
        Per-cell measurements (:mod:`hcs.measure`): ``none``, ``basic`` or ``full``.
    labels
        Write each field's nuclei as an NGFF label image into the plate
        (:mod:`hcs.engine.labels`); the plate must be writable.
    cell_channel
        ``NAME[:cytoplasm|:membrane]``: grow whole cells from the nuclei on that channel
        (:func:`hcs.detect.cells.detect_cells`), measured as ``Cells_`` and ``Cytoplasm_``
        (cell minus nucleus) and written as ``labels/cells``.
    progress
        Show a progress bar on stderr.

    Returns
    -------
    RunSummary
        ``ok`` is False when a field failed twice (it is listed in ``OUT/failures.parquet``).
    """
    return run_planned([plan_run(
        plate, assay, model, out, detector=detector, workers=workers,
        threads_per_worker=threads_per_worker, scheduler=scheduler, gpus=gpus, resume=resume,
        wells=wells, batch_size=batch_size, nucleus_channel=nucleus_channel,
        channel_map=channel_map, seed=seed, timepoint=timepoint,
        fields_per_task=fields_per_task, measure=measure, labels=labels,
        cell_channel=cell_channel, start_cluster=True)], progress=progress)[0]


@dataclass
class PlannedRun:
    """A run checked and ready to start (:func:`plan_run`): nothing written yet."""

    plate: Path
    run_dir: Path
    params: EngineParams
    fields: list[tuple[str, int]]
    record: dict[str, Any]
    resume: bool
    fields_per_task: int
    cluster: dict[str, Any]  # start_cluster's arguments
    card: Any = None  # the model card (for the model-domain check after the run)
    pending: Any = None  # a PendingCluster started by plan_run(start_cluster=True), or None


def plan_run(
    plate: str | Path,
    assay: str | None,
    model: str | Path | None,
    out: str | Path,
    *,
    detector: str = "threshold",
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    gpus: str | int = "auto",
    resume: bool = False,
    wells: list[str] | None = None,
    batch_size: int = 64,
    nucleus_channel: str | int | None = None,
    channel_map: dict[str, str] | None = None,
    seed: int = 0,
    timepoint: int | None = None,
    fields_per_task: int = 4,
    measure: str = "basic",
    labels: bool = True,
    cell_channel: str | None = None,
    start_cluster: bool = False,
) -> PlannedRun:
    """Check a run and build its provenance record, before anything is written (the arguments
    of :func:`run_plate`, without ``progress``).

    ``start_cluster``: once the cheap checks have passed (options, plate, model card,
    :func:`hcs.engine.preflight.preflight`, the run folder) and some field is left to do, start
    the embedded cluster in the background (:class:`hcs.engine.cluster.PendingCluster`, its
    workers loading the model as they start, :mod:`hcs.engine.preload`) while this process
    loads the model itself to check it; ``PlannedRun.pending`` holds it for
    :func:`run_planned`, which closes it in every case. If a later check fails, the cluster is
    closed before the error is raised. Ignored with ``scheduler`` (an external cluster).

    Raises
    ------
    InputError
        Every error that would hit each field the same way (:func:`hcs.engine.preflight`).
    """
    from hcs import __version__
    from hcs.engine.detector import detector_info
    from hcs.engine.model import model_card, run_assay, trained_channel_map
    from hcs.engine.preflight import preflight
    from hcs.engine.processor import check_processor
    from hcs.io.omezarr import open_plate

    plate_path = Path(plate).resolve()
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir}: exists and is not a folder; choose a run folder")
    pl = open_plate(plate_path)
    folder, card = model_card(model) if model is not None else (None, None)
    if card is not None and assay is None:
        assay = card.assay
    if assay is not None and model is None:
        raise InputError(f"--assay {assay}: give the model (--model) or neither, for a "
                         "detection-only run")
    inputs = [("plate", plate_path)] + ([("model folder", Path(folder).resolve())]
                                        if folder is not None else [])
    for what, inp in inputs:
        if run_dir.resolve().is_relative_to(inp):
            raise InputError(f"--out {run_dir}: is or lies inside the {what} {inp}; hcs never "
                             "writes into an input (choose a run folder outside it)")
    tp = choose_timepoint(int(pl.shape[0]), timepoint, plate_path)
    # roles the user left unmapped: the plate channel the model was trained on, if present
    channel_map = trained_channel_map(card, [str(c) for c in pl.channels], channel_map)
    options = validate(RunParams, detector=detector, nucleus_channel=nucleus_channel,
                       channels=channel_map or {}, timepoint=timepoint, wells=wells,
                       workers=workers, threads_per_worker=threads_per_worker,
                       scheduler=scheduler, gpus=str(gpus), batch_size=batch_size,
                       fields_per_task=fields_per_task, seed=seed, measure=measure,
                       labels=labels, cell_channel=cell_channel)
    if labels and not os.access(plate_path, os.W_OK):
        raise InputError(f"{plate_path}: the plate is read-only, so the label images cannot "
                         "be written into it; run with --no-labels")
    det = detector_info(detector)
    # every error that would hit each field the same way, before torch or a cluster starts
    preflight(pl, card, detector=det, nucleus_channel=options.nucleus_channel,
              channel_map=dict(options.channels), cell_channel=options.cell_channel)
    params = options.engine_params(  # a learned detector by its absolute path: workers may
        str(plate_path), assay, str(folder) if folder else None, timepoint=tp,  # run elsewhere
        detector=det["path"] if det["kind"] == "learned" else detector)
    fields = list_fields(pl, wells)
    record: dict[str, Any] = {
        "hcs_version": __version__, "status": "running", "plate": str(plate_path),
        "plate_name": str(pl.name or plate_path.name),
        "plate_metadata_sha256": _plate_checksum(plate_path), "assay": assay,
        "model": card.name if card else None, "model_path": str(folder) if folder else None,
        "model_sha256": card.sha256 if card else None,
        "model_card_sha256": card.card_sha256 if card else None,
        "model_architecture": card.architecture if card else None, "detector": det,
        "model_kind": getattr(card, "kind", "cnn") if card else None,
        "measure": options.measure, "labels": options.labels,
        "cell_channel": options.cell_channel,
        "nucleus_channel": nucleus_channel, "channel_map": dict(params.channel_map),
        "timepoint": tp, "timepoints_in_plate": int(pl.shape[0]),
        "channels_read": None, "fields_missing_planes": [],  # after loading the model below
        "parameters": {"batch_size": batch_size, "fields_per_task": fields_per_task,
                       "seed": seed, "wells": wells, "threads_per_worker": threads_per_worker,
                       "gpus": str(gpus), "resume": resume},
        "fields_total": len(fields), "start": utc_timestamp(), "end": None,
    }
    defn = (getattr(card, "training", None) or {}).get("assay_definition") if card else None
    if isinstance(defn, dict):  # a user-defined assay: aggregate and report read it here
        record["assay_definition"] = defn
    cluster = {"workers": workers, "threads_per_worker": threads_per_worker,
               "scheduler": scheduler, "gpus": gpus}
    pending = None
    if start_cluster and scheduler is None:
        if card is not None and assay is not None:  # the model's assay, before torch loads it
            run_assay(assay, card)
        if folder is not None:  # its weights' checksum too (a plain model folder)
            from hcs.classify.ensemble import is_ensemble
            from hcs.classify.features import is_features_folder
            from hcs.classify.models import verify_weights

            if not is_ensemble(folder) and not is_features_folder(folder):
                verify_weights(folder, card.sha256)
        if run_dir.is_dir():  # --resume forgotten, another run's folder: before any cluster
            _prepare(run_dir, params, resume, record)
        if not resume or any(not cells_path(run_dir, w, f).exists() for w, f in fields):
            from hcs.engine.cluster import PendingCluster

            pending = PendingCluster(**cluster, preload_params=params.model_dump_json())
    try:
        # validate assay/model/detector in this process (while the cluster starts and its
        # workers load the model: this process neither imports torch nor loads weights)
        read = (check_processor(params).read_channels(tuple(pl.channels)) if pl.channels
                else None)
        record["channels_read"] = [pl.channels[i] for i in read] if read is not None else None
        record["fields_missing_planes"] = fields_missing_planes(pl, fields, tp, read)
    except BaseException:
        if pending is not None:
            pending.close()
        raise
    return PlannedRun(plate_path, run_dir, params, fields, record, resume, fields_per_task,
                      cluster, card, pending)


def run_planned(runs: list[PlannedRun], progress: bool = True, *,
                preload: bool = True) -> list[RunSummary]:
    """Run planned runs on ONE cluster (started with the first run's cluster arguments), with
    the fields of all of them submitted together (:func:`hcs.engine.schedule.execute_runs`):
    a screen's plates share the cluster start-up and the model loading, and no worker idles
    between plates. Each run keeps its own folder, lock, ``run.json`` and
    ``failures.parquet``; one run behaves exactly as :func:`run_plate`.

    The cluster is the one :func:`plan_run` started in the background (``PlannedRun.pending``),
    else it starts here; either way its workers build the processor of the first run with
    fields to do as they start (:mod:`hcs.engine.preload`) unless ``preload`` is False (the
    model is then loaded once the cluster has started: the sequential start-up, for
    benchmarks). Tasks are submitted once every worker holds the model
    (``warmup_seconds``: the time waited for that after the cluster was up).
    """
    from contextlib import ExitStack

    from distributed import as_completed

    from hcs.engine.cluster import start_cluster
    from hcs.engine.schedule import RunJob, execute_runs

    if not runs:
        return []
    dirs = [r.run_dir.resolve() for r in runs]
    if len(set(dirs)) < len(dirs):
        raise InputError("two runs of one call write the same run folder")
    summaries: list[RunSummary] = []
    jobs: list[RunJob] = []
    pending = next((r.pending for r in runs if r.pending is not None), None)
    with ExitStack() as stack:
        for r in runs:  # closed in every case, last (a ClusterHandle closes once)
            if r.pending is not None:
                stack.callback(r.pending.close)
        for r in runs:
            r.run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(RunLock(r.run_dir))
            _prepare(r.run_dir, r.params, r.resume, r.record)
        for r in runs:
            for tmp in (r.run_dir / "cells").glob("*/.*.parquet.*.tmp"):  # left by a killed run
                tmp.unlink(missing_ok=True)
            todo = [(w, f) for w, f in r.fields if not cells_path(r.run_dir, w, f).exists()]
            summaries.append(RunSummary(str(r.run_dir), len(r.fields), 0,
                                        len(r.fields) - len(todo), 0, 0, 0.0,
                                        missing_planes=r.record["fields_missing_planes"]))
            jobs.append(RunJob(r.params, r.run_dir, todo, summaries[-1]))
        any_todo = any(j.todo for j in jobs)
        first = next((j.params for j in jobs if j.todo), None)
        t_start = time.perf_counter()
        handle = None
        if any_todo and pending is not None:  # started by plan_run, while it checked the run
            handle = pending.result()
        elif any_todo:
            handle = start_cluster(**runs[0].cluster, preload_params=(
                first.model_dump_json() if preload and first is not None else None))
        started = round(time.perf_counter() - t_start, 3)  # waited here for the cluster
        background = None
        if handle is not None and pending is not None and pending.ready is not None:
            background = round(pending.ready - pending.started, 3)
        for r, j in zip(runs, jobs, strict=True):
            on = bool(handle and j.todo)
            r.record["cluster"] = handle.description if on else None
            r.record["cluster_start_seconds"] = started if on else None
            r.record["cluster_started_in_background_seconds"] = background if on else None
            r.record["model_preloaded"] = bool(on and handle.preload)  # type: ignore[union-attr]
            r.record["plates_on_cluster"] = len([x for x in jobs if x.todo])
            _write_json(r.run_dir / "run.json", r.record)
        t0 = time.perf_counter()
        status = "complete"
        try:
            if handle is not None:
                # torch and the model once per worker, with the first run's parameters; the
                # other plates' processors reuse the loaded model (cached per process by
                # folder and checksum), built in their first task
                # with the preload the workers are loading it already: this waits for them
                warm, loads = _warm_up(handle.client, first)  # type: ignore[arg-type]
                for r, s in zip(runs, summaries, strict=True):
                    s.warmup_seconds = warm
                    r.record["worker_model_load_seconds"] = loads
                t0 = time.perf_counter()
                execute_runs(handle, [j for j in jobs if j.todo], progress, as_completed,
                             runs[0].fields_per_task)
        except RunStopped as exc:
            status = "stopped"
            for r in runs:
                r.record["stopped"] = str(exc)
            raise
        except BaseException:
            status = "interrupted"
            raise
        finally:
            seconds = time.perf_counter() - t0
            if handle is not None:
                handle.close()
            for r, s in zip(runs, summaries, strict=True):
                s.seconds = seconds
                _finish(r, s, status)
    return summaries


def _finish(run: PlannedRun, summary: RunSummary, status: str) -> None:
    """Write a run's ``failures.parquet`` and its final ``run.json``."""
    record = run.record
    record["status"] = ("failed" if summary.failures else "complete") if status == "complete" \
        else status
    card = run.card
    if status == "complete" and card is not None and hasattr(card, "classes") and \
            summary.fields_done + summary.fields_skipped:
        from hcs.engine.domain_run import write_domain
        from hcs.io.omezarr import open_plate

        pl = open_plate(run.plate)
        dom = write_domain(run.run_dir, card, dict(pl.attrs), list(pl.channels),
                           dict(run.params.channel_map))
        record["domain"] = {k: dom[k] for k in ("status", "summary")}
    failures = pd.DataFrame(summary.failures, columns=[
        "well", "field", "error_type", "error", "attempts", "time"])
    atomic_write_parquet(failures.astype({"field": "int64", "attempts": "int64"}),
                         run.run_dir / "failures.parquet")
    record.update(end=utc_timestamp(), fields_done=summary.fields_done,
                  fields_skipped=summary.fields_skipped,
                  fields_failed=summary.fields_failed, cells=summary.cells,
                  seconds=round(summary.seconds, 3),
                  warmup_seconds=round(summary.warmup_seconds, 3),
                  task_seconds=round(sum(float(t.get("seconds") or 0) for t in summary.tasks),
                                     3))
    _write_json(run.run_dir / "run.json", record)


def fields_missing_planes(plate: Any, fields: list[tuple[str, int]], timepoint: int,
                          channels: tuple[int, ...] | None) -> list[dict[str, Any]]:
    """The fields of the run with planes convert recorded missing (written as zeros), among the
    planes the run reads (``timepoint``, ``channels``; all channels when None): ``well, field,
    planes`` (count) and ``channels`` (names)."""
    wanted = set(fields)
    per: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for m in plate.missing_planes():
        key = (str(m["well"]), int(m["field"]))
        if key in wanted and int(m["t"]) == timepoint and (
                channels is None or int(m["c"]) in channels):
            per.setdefault(key, []).append(m)
    names = list(plate.channels)
    out = []
    for (well, fld), recs in sorted(per.items()):
        chans = sorted({int(m["c"]) for m in recs})
        out.append({"well": well, "field": fld, "planes": len(recs),
                    "channels": [names[c] if c < len(names) else str(c) for c in chans]})
    return out


def missing_planes_text(missing: list[dict[str, Any]], limit: int = 10) -> str:
    """One line naming the fields with missing planes ('' when there is none).

    Examples
    --------
    >>> missing_planes_text([{"well": "A03", "field": 0, "planes": 1, "channels": ["DAPI"]}])
    'warning: 1 field has planes missing in the plate (recorded at convert, read as zeros; \
flagged in the cell tables and wells.parquet, excluded from statistics): A03 field 0 (DAPI)'
    """
    if not missing:
        return ""
    named = "; ".join(f"{m['well']} field {m['field']} ({', '.join(m['channels'])})"
                      for m in missing[:limit])
    more = f"; ... {len(missing) - limit} more" if len(missing) > limit else ""
    n = len(missing)
    return (f"warning: {n} field{'s have' if n > 1 else ' has'} planes missing in the plate "
            "(recorded at convert, read as zeros; flagged in the cell tables and "
            f"wells.parquet, excluded from statistics): {named}{more}")


def _build_processor(params: dict) -> dict[str, Any]:
    """On a worker: its processor for ``params``, waiting for (and raising the error of) the
    worker's preload of them if it has one; its device and the preload's seconds."""
    from hcs.engine.preload import wait
    from hcs.engine.processor import get_processor

    p = EngineParams(**params)
    loaded = wait(p.model_dump_json())
    return {"device": get_processor(p).device, "preload_seconds": loaded}


def _warm_up(client: Any, params: EngineParams) -> tuple[float, list[float | None]]:
    """Build the processor (import torch, load the model) on every worker, once, up front, or
    wait for the workers' preloads to finish; seconds waited and each worker's preload seconds
    (None: built here, no preload)."""
    t0 = time.perf_counter()
    try:
        done = client.run(_build_processor, params.model_dump())
    except Exception as exc:
        raise InputError(f"a worker could not load the model: {type(exc).__name__}: {exc}"
                         ) from None
    loads = [None if d["preload_seconds"] is None else round(d["preload_seconds"], 3)
             for _, d in sorted(done.items())]
    return time.perf_counter() - t0, loads


def summary_text(s: RunSummary) -> str:
    """Summary lines for the terminal."""
    lines = [f"{s.fields_done} fields processed, {s.fields_skipped} already done, "
             f"{s.fields_failed} failed of {s.fields_total}; {s.cells} cells in "
             f"{s.seconds:.1f} s (+{s.warmup_seconds:.1f} s loading the model on the workers) "
             f"-> {s.run_dir}"]
    for f in s.failures[:10]:
        lines.append(f"  failed: well {f['well']} field {f['field']}: {f['error_type']}: "
                     f"{f['error']}")
    if len(s.failures) > 10:
        lines.append(f"  ... {len(s.failures) - 10} more in failures.parquet")
    if s.missing_planes:
        lines.append(missing_planes_text(s.missing_planes))
    return "\n".join(lines)


def summary_dict(s: RunSummary) -> dict[str, Any]:
    d = asdict(s)
    d.pop("tasks")
    return d
