"""``hcs analyze A B C ... --out DIR``: a screen of several plates, on one cluster, resumable.

A screen is several plates (replicates, the plates of a library, one layout on several days).
Every plate gets the analysis folder of a single-plate ``hcs analyze`` under ``DIR/plates/``;
the run stage of all plates is one piece of work on ONE Dask cluster, with the fields of every
plate submitted together (:func:`hcs.engine.run.run_planned`), so the cluster starts once, the
model loads once per worker and no worker idles between plates. The screen folder::

    DIR/analyze.json                 screen manifest: the plates (input, layout, stages of each)
                                     and the screen stages (wells, stats, report)
    DIR/plates/<plate>/              one analysis folder per plate, as `hcs analyze` writes it:
        analyze.json                 its own stage manifest (convert, run, aggregate, stats,
        plate.ome.zarr, run/, report.html     report)
        layout.csv                   its rows of a layout with a ``plate`` column (if so given)
    DIR/screen/wells.parquet         every plate's wells, ``plate`` = the plate's name here
    DIR/screen/stats.parquet         pooled (``plate = all``) and per-plate comparisons, QC per
                                     plate (Z'): :func:`hcs.stats.run.run_stats`
    DIR/screen/replicates.parquet    replicate agreement (:func:`hcs.stats.replicates`)
    DIR/screen/report.html           the screen report (:mod:`hcs.report.screen`)

A plate's name (``<plate>``) is its plate name or barcode from the export (the OME-Zarr plate's
name); plates with the same name are told apart by the shortest tail of their input paths that
differs (``rep1-export``, ``rep2-export``). Each stage is skipped when current, as in a
single-plate analysis: adding a plate runs that plate's stages and the screen stages; editing
one plate's layout re-runs that plate's aggregate/statistics/report and the screen stages.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hcs.analyze.manifest import Pipeline, StageOutcome, file_sha256, json_normal
from hcs.analyze.pipeline import (
    aggregate_stage,
    analysis_assay,
    analysis_paths,
    check_layout,
    check_layout_fits_plate,
    check_outputs_ours,
    convert_stage,
    detector_fingerprint,
    given_plate_input,
    plate_fingerprint,
    read_and_check,
    remove_recorded,
    report_stage,
    resolve_model,
    run_fingerprint,
    stats_stage,
)
from hcs.errors import InputError
from hcs.params import AnalyzeParams, RunParams, from_options

__all__ = ["ScreenPlate", "ScreenResult", "analyze_screen", "expand_inputs", "plate_keys",
           "resolve_layouts", "screen_paths"]


@dataclass
class ScreenPlate:
    """One plate of a screen: its name in the screen (``key``), its input, the names a
    layout's ``plate`` column may call it by, its layout and its analysis folder."""

    key: str
    source: Path
    given_plate: bool
    names: set[str]
    acquisition: Any = None
    layout: Path | None = None
    folder: Path | None = None


@dataclass
class ScreenResult:
    """Where a screen went and which stages ran (per plate, and of the screen)."""

    folder: Path
    plates: dict[str, Path]
    wells: Path
    stats: Path | None
    replicates: Path | None
    report: Path
    outcomes: dict[str, list[StageOutcome]]
    failed_fields: dict[str, int] = field(default_factory=dict)

    @property
    def ran(self) -> dict[str, list[str]]:
        """Stages that ran, by plate (and ``screen``)."""
        return {k: [o.name for o in v if o.ran] for k, v in self.outcomes.items()}


def screen_paths(folder: str | Path) -> dict[str, Path]:
    """The screen-level files of a screen folder.

    Examples
    --------
    >>> screen_paths("out")["stats"].as_posix()
    'out/screen/stats.parquet'
    """
    s = Path(folder) / "screen"
    return {"wells": s / "wells.parquet", "stats": s / "stats.parquet",
            "replicates": s / "replicates.parquet", "report": s / "report.html",
            "manifest": Path(folder) / "analyze.json", "plates": Path(folder) / "plates"}


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """The inputs with every ``@list.txt`` replaced by the paths it lists (one a line, relative
    to the text file; blank lines and ``#`` comments ignored).

    Raises
    ------
    InputError
        A list file that is missing, lists nothing, or names a path twice.
    """
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        if text.startswith("@"):
            lst = Path(text[1:])
            if not lst.is_file():
                raise InputError(f"{text}: plate list file not found")
            n0 = len(out)
            for i, line in enumerate(lst.read_text(encoding="utf-8").splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    p = Path(line)
                    out.append(p if p.is_absolute() else lst.parent / p)
                    if not out[-1].exists():
                        raise InputError(f"{lst}:{i}: {line}: not found")
            if len(out) == n0:
                raise InputError(f"{lst}: lists no plate")
        else:
            out.append(Path(text))
    seen: dict[Path, Path] = {}
    for p in out:
        r = p.resolve()
        if r in seen:
            raise InputError(f"{p}: given twice (also as {seen[r]})")
        seen[r] = p
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "plate"


def plate_keys(names: list[str], paths: list[Path]) -> list[str]:
    """The name of each plate in the screen: its own name, or, for plates sharing a name,
    the shortest tail of their input paths that tells them apart.

    Examples
    --------
    >>> plate_keys(["P1", "P2"], [Path("a/x"), Path("b/x")])
    ['P1', 'P2']
    >>> plate_keys(["SIM", "SIM"], [Path("r1/sim/export"), Path("r2/sim/export")])
    ['r1-sim-export', 'r2-sim-export']
    """
    keys = [_safe(n) for n in names]
    for k in set(keys):
        idx = [i for i, x in enumerate(keys) if x == k]
        if len(idx) < 2:
            continue
        parts = [paths[i].resolve().parts for i in idx]
        for n in range(1, max(len(p) for p in parts) + 1):
            tails = ["-".join(p[-n:]) for p in parts]
            if len(set(tails)) == len(tails):
                break
        for i, t in zip(idx, tails, strict=True):
            keys[i] = _safe(t)
    return keys


def _plate_name(src: Path, given_plate: bool, acq: Any) -> str:
    if given_plate:
        from hcs.io.omezarr import open_plate

        return str(open_plate(src).name or src.name.removesuffix(".ome.zarr"))
    return str(getattr(acq, "plate_name", "") or src.name)


def resolve_layouts(plates: list[ScreenPlate], layouts: list[str]
                    ) -> dict[str, Path | pd.DataFrame]:
    """The layout of every plate, from ``--layout`` values, before any work: a file, or the
    plate's rows of a layout with a ``plate`` column (a table, written by :func:`analyze_screen`
    to ``DIR/plates/<plate>/layout.csv`` once everything is checked).

    ``layouts`` holds one ``FILE`` (for every plate, or, with a ``plate`` column, one file for
    all plates) and/or
    ``PLATE=FILE`` entries (that plate's layout; a plain ``FILE`` is then the layout of the
    plates not named). A plate is named by its name in the screen, its plate name or barcode,
    or its input's file name.

    Raises
    ------
    InputError
        One line naming every plate without a layout and every layout plate (with its file
        and line) that is not in the screen.
    """
    from hcs.layouts import read_layout

    default: Path | None = None
    own: dict[str, Path] = {}
    unknown: list[str] = []

    def find(name: str) -> ScreenPlate | None:
        hit = [p for p in plates if name in p.names]
        return hit[0] if len(hit) == 1 else None

    for entry in layouts:
        name, sep, file = str(entry).partition("=")
        if sep and not Path(entry).is_file():
            if not Path(file).is_file():
                raise InputError(f"--layout {entry}: layout not found: {file}")
            p = find(name.strip())
            if p is None:
                unknown.append(f"{name.strip()} (--layout {entry})")
            else:
                own[p.key] = Path(file)
        else:
            if not Path(entry).is_file():
                raise InputError(f"layout not found: {entry}")
            if default is not None:
                raise InputError(f"--layout {entry}: a second layout for every plate (the "
                                 f"first: {default}); name the plate of each: --layout "
                                 "PLATE=FILE")
            default = Path(entry)
    out: dict[str, Path | pd.DataFrame] = {}
    derived: dict[str, pd.DataFrame] = {}
    if default is not None:
        lay = read_layout(default)
        if "plate" in lay:
            lines = lay.attrs.get("lines", {})
            for name, rows in lay.groupby(lay["plate"].astype(str), sort=False):
                p = find(name)
                if p is None:
                    first = f"{name}:{rows['well'].iloc[0]}"
                    line = lines.get(first)
                    unknown.append(f"{name} ({default}" + (f":{line}" if line else "") + ")")
                elif p.key not in own:
                    derived[p.key] = rows
        else:
            out = {p.key: default for p in plates if p.key not in own}
    out.update(own)
    missing = [p.key for p in plates if p.key not in out and p.key not in derived]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"no layout for plate(s) {', '.join(missing)}")
        if unknown:
            known = ", ".join(p.key for p in plates)
            parts.append(f"layout names plate(s) not in the screen: {', '.join(unknown)} "
                         f"(the plates: {known})")
        raise InputError("; ".join(parts) + "; give --layout FILE (one for all, or with a "
                         "plate column) or --layout PLATE=FILE per plate")
    for key, rows in derived.items():
        rows.attrs["source"] = str(default)
        out[key] = rows  # type: ignore[assignment]
    return out


def _has_reference(rows: pd.DataFrame, reference: str | None) -> bool:
    """As :func:`hcs.analyze.pipeline.check_layout`, for one plate's rows of a layout."""
    known = set(rows["condition"].dropna().astype(str))
    if reference is not None:
        if reference not in known:
            raise InputError(f"--reference {reference!r} is not a condition of plate "
                             f"{rows['plate'].iloc[0]} in {rows.attrs.get('source')} "
                             f"({', '.join(sorted(known)[:12])})")
        return True
    controls = set(rows.loc[rows["role"] == "negative_control", "condition"].dropna())
    return len(controls) == 1


def _write_plate_layout(rows: pd.DataFrame, source: Path | None, path: Path) -> Path:
    """One plate's rows of a layout with a ``plate`` column as a tidy CSV (rewritten only when
    its content changes, so its fingerprint moves only when that plate's rows do)."""
    from hcs.atomic import atomic_write_text

    df = rows.drop(columns=[c for c in ("plate", "row", "col") if c in rows])
    head = f"# hcs analyze: the rows of plate {rows['plate'].iloc[0]} of {source}\n"
    text = head + df.to_csv(index=False)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    if path.exists() and not path.read_text(encoding="utf-8").startswith("# hcs analyze:"):
        raise InputError(f"{path}: exists and is not a layout hcs wrote; move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def _run_all(plates: list[ScreenPlate], pipes: dict[str, Pipeline], assay: str | None,
             model: Path | None, model_fp: str, opts: RunParams, progress: bool
             ) -> dict[str, int]:
    """The run stage of every plate whose run is not current, as one run on one cluster.
    Returns the failed fields per plate."""
    from hcs.engine.run import plan_run, run_planned, summary_text
    from hcs.engine.run_files import remove_run

    todo = []
    for p in plates:
        pipe, paths = pipes[p.key], analysis_paths(p.folder)  # type: ignore[arg-type]
        plate = p.source if p.given_plate else paths["plate"]
        inputs = {"plate": plate_fingerprint(plate)}
        params = {"assay": assay, "model": f"{model}@{model_fp}" if model else None,
                  **opts.result_params()}
        params["detector"] = detector_fingerprint(opts.detector)
        if pipe.why_stale("run", inputs, params, run_fingerprint(paths["run"])) is None:
            pipe.begin("run", inputs, params, run_fingerprint(paths["run"]))  # logs "skipped"
            continue
        rec = dict(pipe.record("run") or {})
        same = (not pipe.force and rec.get("inputs") == json_normal(inputs)
                and rec.get("params") == json_normal(params)
                and (paths["run"] / "run.json").is_file())
        planned = plan_run(plate, assay, model, paths["run"], resume=same,
                           **opts.run_plate_kwargs())
        todo.append((p, pipe, paths, inputs, params, same, planned))
    reasons = {}
    for p, pipe, paths, inputs, params, same, _ in todo:
        reasons[p.key] = pipe.begin("run", inputs, params, run_fingerprint(paths["run"]))
        if not same and paths["run"].exists():
            pipe.log(f"    removing the previous run in {paths['run']} (other plate or "
                     "parameters)")
            remove_run(paths["run"])
    failed = {p.key: 0 for p in plates}
    if not todo:
        return failed
    t0 = time.perf_counter()
    summaries = run_planned([t[-1] for t in todo], progress=progress)
    seconds = time.perf_counter() - t0
    for (p, pipe, paths, *_), s in zip(todo, summaries, strict=True):
        pipe.log("    " + summary_text(s).replace("\n", "\n    "))
        pipe.finish("run", run_fingerprint(paths["run"]), reasons[p.key] or "", seconds)
        failed[p.key] = s.fields_failed
        if s.fields_failed:
            pipe.mark_incomplete("run", f"{s.fields_failed} fields failed")
    return failed


def _screen_wells(plates: list[ScreenPlate], out: Path) -> None:
    """Every plate's wells in one table, ``plate`` = the plate's name in the screen (its own
    name, from the run, kept as ``plate_name``)."""
    from hcs.aggregate import write_table

    frames, attrs = [], {}
    for p in plates:
        w = pd.read_parquet(analysis_paths(p.folder)["wells"])  # type: ignore[arg-type]
        attrs = attrs or dict(w.attrs)
        w = w.rename(columns={"plate": "plate_name"})
        w.insert(0, "plate", p.key)
        frames.append(w)
    wells = pd.concat(frames, ignore_index=True)
    wells.attrs = attrs
    write_table(wells, out, overwrite=True)


def _screen_stats(wells_path: Path, stats_path: Path, replicates_path: Path,
                  kw: dict[str, Any]) -> None:
    from hcs.aggregate import write_table
    from hcs.stats.replicates import replicate_agreement
    from hcs.stats.run import run_stats

    wells = pd.read_parquet(wells_path)
    write_table(run_stats(wells, **kw), stats_path, overwrite=True)
    write_table(replicate_agreement(wells, kw.get("readouts")), replicates_path, overwrite=True)


def _both(*paths: Path) -> str | None:
    shas = [file_sha256(p) for p in paths]
    return None if None in shas else ":".join(shas)  # type: ignore[arg-type]


def analyze_screen(
    inputs: list[str | Path],
    out: str | Path,
    params: AnalyzeParams | None = None,
    layouts: list[str] | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    **options: Any,
) -> ScreenResult:
    """Analyse several plates as one screen (see the module docstring for the folder).

    Parameters
    ----------
    inputs
        Exports and/or OME-Zarr plates; ``@list.txt`` lists more, one a line.
    out
        Screen folder (created; resumable).
    params, options
        As for :func:`hcs.analyze.pipeline.analyze`; every plate is analysed with the same
        options. ``params.layout`` is the layout unless ``layouts`` is given.
    layouts
        ``--layout`` values: one ``FILE`` (for all plates, or with a ``plate`` column) and/or
        ``PLATE=FILE`` entries (:func:`resolve_layouts`).

    Returns
    -------
    ScreenResult

    Raises
    ------
    InputError
        Before any work: a missing input, two plates of one input, a plate without a layout or
        a layout plate not in the screen, a layout that does not fit its plate's export, an
        export the model cannot read.
    """
    from hcs.engine.lock import RunLock

    p = from_options(AnalyzeParams, params, **options)
    paths_in = expand_inputs(inputs)
    if not paths_in:
        raise InputError("give at least one export or plate")
    assay_def = analysis_assay(p.assay, p.model)  # None: detection only; else as hcs run
    assay = assay_def.name if assay_def is not None else None
    model_dir, model_fp = resolve_model(assay, p.model) if assay else (None, "")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder}: exists and is not a folder; choose a screen folder")
    plates: list[ScreenPlate] = []
    for src in paths_in:
        if not src.exists():
            raise InputError(f"export not found: {src}")
        src_dir = (src if src.is_dir() else src.parent).resolve()
        if folder.resolve() == src_dir or src_dir in folder.resolve().parents:
            raise InputError(f"--out {folder} is inside the input {src_dir}: hcs never writes "
                             "into an input; choose a screen folder outside it")
        given = given_plate_input(src, p.convert)
        acq = read_and_check(src, given, p.convert, model_dir, p.run)
        name = _plate_name(src, given, acq)
        barcode = getattr(acq, "barcode", None) if acq is not None else None
        plates.append(ScreenPlate("", src, given, {name, src.name, *([barcode] if barcode
                                                                     else [])}, acq))
    names = [_plate_name(x.source, x.given_plate, x.acquisition) for x in plates]
    for sp, key in zip(plates, plate_keys(names, paths_in), strict=True):
        sp.key = key
        sp.names.add(key)
        sp.folder = folder / "plates" / key
    resolved = resolve_layouts(plates, list(layouts or [p.layout]))
    has_reference = True
    for sp in plates:
        lay = resolved[sp.key]
        has_reference &= check_layout(lay, p.stats.reference) if isinstance(lay, Path) \
            else _has_reference(lay, p.stats.reference)
    folder.mkdir(parents=True, exist_ok=True)
    for sp in plates:  # everything is checked: each plate's rows of a plate-column layout
        lay = resolved[sp.key]
        sp.layout = lay if isinstance(lay, Path) else _write_plate_layout(
            lay, Path(lay.attrs["source"]), sp.folder / "layout.csv")  # type: ignore[operator]
    sp_paths = screen_paths(folder)
    outcomes: dict[str, list[StageOutcome]] = {}
    with RunLock(folder):
        pipes: dict[str, Pipeline] = {}
        for sp in plates:
            paths = analysis_paths(sp.folder)  # type: ignore[arg-type]
            if sp.given_plate:
                paths["plate"] = sp.source
            sp.folder.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            check_outputs_ours(paths, plate_is_input=sp.given_plate)
            pipes[sp.key] = Pipeline(sp.folder, log=_prefixed(log, sp.key),  # type: ignore
                                     force=p.force)
        _check_report_ours(sp_paths["report"])
        screen = Pipeline(folder, log=_prefixed(log, "screen"), force=p.force)
        screen.extra["plates"] = _plates_entry(plates, pipes)
        screen.save()
        for sp in plates:  # convert, one plate after another (each uses every core)
            pipe = pipes[sp.key]
            paths = analysis_paths(sp.folder)  # type: ignore[arg-type]
            if sp.given_plate:
                pipe.log(f"[{len(pipe.outcomes) + 1}] convert: skipped ({sp.source} is an "
                         "OME-Zarr plate)")
                pipe.outcomes.append(StageOutcome("convert", False, "input is a plate"))
                paths["plate"] = sp.source
            else:
                convert_stage(pipe, sp.source, paths["plate"], p.convert, progress=progress,
                              acquisition=sp.acquisition)
            check_layout_fits_plate(sp.layout, paths["plate"])  # type: ignore[arg-type]
        failed = _run_all(plates, pipes, assay, model_dir, model_fp, p.run, progress)
        for sp in plates:
            pipe = pipes[sp.key]
            paths = analysis_paths(sp.folder)  # type: ignore[arg-type]
            if sp.given_plate:
                paths["plate"] = sp.source
            aggregate_stage(pipe, paths["run"], paths["wells"], assay,
                            sp.layout, p.aggregate.positive)  # type: ignore[arg-type]
            if has_reference:
                stats_stage(pipe, paths["wells"], paths["stats"], p.stats)
            else:
                remove_recorded(pipe, "stats", paths["stats"])
            report_stage(pipe, paths["run"], paths["plate"], paths["report"], p.report.gallery)
            outcomes[sp.key] = pipe.outcomes
            screen.extra["plates"] = _plates_entry(plates, pipes)
            screen.save()
        keys = [sp.key for sp in plates]
        plate_wells = {sp.key: file_sha256(analysis_paths(sp.folder)["wells"])  # type: ignore
                       for sp in plates}
        screen.step("wells", plate_wells, {"plates": keys}, lambda: file_sha256(
            sp_paths["wells"]), lambda: _screen_wells(plates, sp_paths["wells"]))
        kw = p.stats.run_stats_kwargs()
        if has_reference:
            screen.step("stats", {"wells": file_sha256(sp_paths["wells"])}, kw,
                        lambda: _both(sp_paths["stats"], sp_paths["replicates"]),
                        lambda: _screen_stats(sp_paths["wells"], sp_paths["stats"],
                                              sp_paths["replicates"], kw))
        else:
            for name in ("stats", "replicates"):
                if sp_paths[name].is_file():
                    sp_paths[name].unlink()  # only ever written by this stage
            screen.log("    no screen statistics: no single negative-control condition and no "
                       "--reference")
        runs = {sp.key: file_sha256(analysis_paths(sp.folder)["run"] / "run.json")  # type: ignore
                for sp in plates}
        rep_inputs = {"wells": file_sha256(sp_paths["wells"]),
                      "stats": file_sha256(sp_paths["stats"]),
                      "replicates": file_sha256(sp_paths["replicates"]), "runs": runs}
        screen.step("report", rep_inputs, {}, lambda: file_sha256(sp_paths["report"]),
                    lambda: _screen_report(folder, plates, sp_paths["report"]))
        outcomes["screen"] = screen.outcomes
        screen.extra["plates"] = _plates_entry(plates, pipes)
        screen.save()
    return ScreenResult(folder, {sp.key: sp.folder for sp in plates},  # type: ignore[misc]
                        sp_paths["wells"], sp_paths["stats"] if has_reference else None,
                        sp_paths["replicates"] if has_reference else None, sp_paths["report"],
                        outcomes, failed)


def _check_report_ours(report: Path) -> None:
    if report.exists() or report.is_symlink():
        head = b""
        if report.is_file() and not report.is_symlink():
            with open(report, "rb") as fh:
                head = fh.read(2048)
        if b'<meta name="generator" content="hcs ' not in head:
            raise InputError(f"{report}: exists and is not a report hcs wrote; move it away (or "
                             "choose another --out) and run again")


def _screen_report(folder: Path, plates: list[ScreenPlate], out: Path) -> None:
    from hcs.report.screen import build_screen_report

    build_screen_report(folder, {sp.key: sp.folder for sp in plates}, out)  # type: ignore


def _prefixed(log: Callable[[str], None], key: str) -> Callable[[str], None]:
    return lambda line: log(f"{key}: {line}")


def _plates_entry(plates: list[ScreenPlate], pipes: dict[str, Pipeline]) -> dict[str, Any]:
    """The manifest's ``plates``: each plate's input, layout, folder and stages."""
    return {sp.key: {"input": str(sp.source.resolve()), "layout": str(sp.layout),
                     "folder": f"plates/{sp.key}",
                     "stages": {k: {"status": v.get("status"), "finished": v.get("finished")}
                                for k, v in pipes[sp.key].records.items()}}
            for sp in plates}


def screen_manifest(folder: str | Path) -> dict[str, Any]:
    """The screen manifest (``DIR/analyze.json``) as a dict ({} when there is none)."""
    path = Path(folder) / "analyze.json"
    return json.loads(path.read_text()) if path.is_file() else {}
