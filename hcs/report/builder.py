"""``build_report``: a run folder -> one self-contained HTML report.

The report reads only the run's files (``run.json``, ``wells.parquet``, ``stats.parquet``,
``cells/``, ``failures.parquet``, optional ``embeddings.parquet`` and ``domain.json``) and, for the
cell gallery, the plate named in ``run.json``. The findings (:mod:`hcs.report.findings`) come first,
the provenance last; one colour mapping (:mod:`hcs.report.colours`) serves every figure; the
wells, statistics and hit tables are embedded as CSV text for the download buttons. Each section
appears only when its data exists. plotly.js is inlined once; figures are JSON in
``<script type="application/json">`` elements drawn by ``Plotly.newPlot``; every user-supplied
string is escaped (jinja2 autoescape for the page, :func:`hcs.report.figures.esc` for text
inside figures).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

import hcs.report.findings as findings
import hcs.report.sections as sections
from hcs.atomic import atomic_write_text, check_file_replaceable
from hcs.errors import InputError
from hcs.plate import PlateGeometry
from hcs.report.colours import dose_ordered, report_colours
from hcs.report.figures import condition_order, figure_json
from hcs.runinfo import run_plate_path

_TEMPLATES = Path(__file__).parent / "templates"


def _read_parquet(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{path}: cannot read as Parquet ({exc})") from None


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """The tables of a run folder (``None`` for those absent), its ``run.json`` and its
    ``domain.json`` (the model-domain check of ``hcs run``; ``None`` when absent)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder not found: {run_dir}")
    run: dict[str, Any] = {}
    if (run_dir / "run.json").is_file():
        try:
            run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{run_dir / 'run.json'}: not valid JSON ({exc})") from None
        if not isinstance(run, dict):
            raise InputError(f"{run_dir / 'run.json'}: expected a JSON object")
    data = {
        "dir": run_dir, "run": run,
        "wells": _read_parquet(run_dir / "wells.parquet"),
        "stats": _read_parquet(run_dir / "stats.parquet"),
        "failures": _read_parquet(run_dir / "failures.parquet"),
        "embeddings": _read_parquet(run_dir / "embeddings.parquet"),
        "domain": _read_domain(run_dir / "domain.json"),
    }
    if data["wells"] is None and data["stats"] is None and not (run_dir / "cells").is_dir():
        raise InputError(f"{run_dir}: not a run folder (no wells.parquet, stats.parquet or"
                         " cells/)")
    if data["wells"] is None:
        # without it the report would leave out every result without a word
        raise InputError(f"{run_dir}: no wells.parquet; run `hcs aggregate {run_dir}` first "
                         f"(and `hcs stats {run_dir}` for the statistics)")
    return data


def _read_domain(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        domain = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(domain, dict):
        raise InputError(f"{path}: expected a JSON object")
    return domain


def _geometry(wells: pd.DataFrame, run: dict[str, Any], plate: Path | None) -> PlateGeometry:
    """Plate geometry: the layout's (wells attrs), run.json's, the plate's, else the smallest
    standard plate holding every well."""
    geom = wells.attrs.get("geometry")
    if geom is not None and len(geom) == 2:
        return PlateGeometry(int(geom[0]), int(geom[1]))
    fmt = run.get("plate_format")
    if fmt:
        return PlateGeometry.from_format(fmt)
    if plate is not None:
        try:
            from hcs.io.omezarr import open_plate

            return open_plate(plate).geometry
        except Exception:  # an unreadable plate only costs the geometry hint
            pass
    return PlateGeometry.smallest_fitting(int(wells["row"].max()), int(wells["col"].max()))


def _classes(run: dict[str, Any], wells: pd.DataFrame | None) -> tuple[list[str], str | None]:
    """Class names (assay order) and the assay name, from run.json (a built-in assay, or a
    user-defined one by its definition or model card) or the wells table."""
    from hcs.assays import run_assay

    name = run.get("assay")
    name = name.get("name") if isinstance(name, dict) else name
    if name is None and wells is not None:
        name = wells.attrs.get("assay")
    if name is not None:
        try:
            assay = run_assay(run, str(name))
        except InputError:  # neither built in nor defined: the wells table's columns below
            assay = None
        if assay is not None:
            return list(assay.classes), str(name)
    if wells is None:
        return [], name
    skip = {"n_detected", "n_analysed"} | {f"n_{p['channel']}_positive"  # stains, not classes
                                            for p in wells.attrs.get("positive") or []}
    return [c[2:] for c in wells.columns if c.startswith("n_") and c not in skip
            and f"freq_{c[2:]}" in wells], name


def new_context(title: str, classes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An empty page context with every key the template reads (sections, figures, classes,
    CSV downloads, title)."""
    return {"sections": [], "figures": {}, "classes": classes or [], "downloads": {},
            "title": title}


def add_section(ctx: dict[str, Any], section: dict[str, Any] | None) -> None:
    """Append a section (``None``: nothing) to a page context, its figures as JSON."""
    if section is None:
        return
    for fig_id, fig in section.pop("fig_objects", {}).items():
        ctx["figures"][fig_id] = figure_json(fig)
    ctx["sections"].append(section)


def build_context(data: dict[str, Any], gallery: bool = True,
                  montage: bool = True, qc_readout: str | None = None) -> dict[str, Any]:
    """Everything the template shows, section by section (figures as JSON text, tables to
    download as CSV text). ``qc_readout``: the readout whose Z' gives the plate verdicts."""
    run, wells, stats = data["run"], data["wells"], data["stats"]
    stats = stats if stats is not None else pd.DataFrame(columns=["kind"])
    plate = run_plate_path(run, data["dir"])
    classes, assay = _classes(run, wells)
    have_wells = wells is not None and len(wells) > 0
    reference = sections.reference_of(stats, wells) if have_wells else None
    colours = report_colours(classes, wells, reference)  # one mapping for every figure
    ctx = new_context(_title(run, wells, data),
                      [{"name": c, "colour": colours.of_class(c)} for c in classes])

    def add(section: dict[str, Any] | None) -> None:
        add_section(ctx, section)

    geometry = _geometry(wells, run, plate) if have_wells else None
    order = condition_order(wells, reference) if have_wells else []
    add(findings.findings(run, wells, stats, data.get("domain"), dose_ordered(order, wells),
                          qc_readout))
    from hcs.report.domain import domain_section

    add(sections.summary(run, wells, data["failures"], assay, data["dir"], geometry))
    add(domain_section(data["dir"]))  # near the top: a plate off the model's domain warns
    if have_wells:
        add(sections.heatmaps(wells, geometry))
        add(sections.conditions(wells, stats, classes, reference, colours))
        add(sections.model_vs_stain(wells, colours))
    table = sections.stats_table(stats)
    if table is not None:
        table["blocks"][-1]["csv"] = "stats"  # its download: the whole statistics table
    add(table)
    if have_wells:
        add(sections.normalised(wells, stats))
        add(sections.dose(wells, stats, colours))
        add(sections.plate_qc(wells, stats, geometry))
        from hcs.report.montage import image_qc_section, layout_section, montage_section

        add(image_qc_section(data["dir"], wells, geometry))
        if montage:
            add(montage_section(plate, data["dir"], wells, geometry, colours.classes,
                                run.get("plate_name")))
        add(layout_section(wells, geometry, colours.conditions))
    if gallery:
        add(sections.gallery(data["dir"], plate, classes, colours.classes))
    if data["embeddings"] is not None:
        add(sections.embedding(data["embeddings"], classes, colours=colours))
    add(findings.provenance(run))
    if wells is not None:
        ctx["downloads"]["wells"] = {"filename": "wells.csv", "text": findings.csv_text(wells)}
    if len(findings.comparisons(stats)):
        ctx["downloads"]["stats"] = {"filename": "stats.csv", "text": findings.csv_text(
            stats.dropna(axis=1, how="all"))}
        ctx["downloads"]["hits"] = {"filename": "hits.csv",
                                    "text": findings.csv_text(findings.hit_table(stats))}
    return ctx


def _title(run: dict[str, Any], wells: pd.DataFrame | None, data: dict[str, Any]) -> str:
    name = run.get("plate_name") or run.get("name")
    if not name and wells is not None and "plate" in wells and len(wells):
        name = ", ".join(sorted(set(wells["plate"].astype(str)))[:3])
    return f"hcs report: {name or data['dir'].name}"


def render(ctx: dict[str, Any]) -> str:
    """The HTML page of a context (jinja2, autoescape on, plotly.js inlined once)."""
    import jinja2
    import plotly.offline

    from hcs import __version__

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    plotly_js = plotly.offline.get_plotlyjs()
    if "</script" in plotly_js.lower():  # would end the inline script early
        raise RuntimeError("plotly.js contains '</script': cannot inline it")
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template("report.html.j2").render(
        **ctx, plotly_js=plotly_js, hcs_version=__version__, generated=generated)


def build_report(run_dir: str | Path, out: str | Path | None = None, overwrite: bool = False,
                 gallery: bool = True, montage: bool = True,
                 qc_readout: str | None = None) -> Path:
    """Write the HTML report of a run folder.

    Parameters
    ----------
    run_dir
        Run folder (``run.json``, ``wells.parquet``, ``stats.parquet``, ``cells/``, ...).
    out
        Output file; default ``reports/<run folder name>.html`` (DESIGN.md).
    overwrite
        Replace an existing ``out``.
    gallery
        Include the cell gallery (reads a sample of fields of the plate).
    montage
        Include the plate montage (:mod:`hcs.report.montage`: a thumbnail per well and up to
        four fields per well with the cells outlined, read from the plate).
    qc_readout
        The readout whose Z' on the layout's controls gives each plate's verdict (a column such
        as ``freq_dead`` or a class such as ``dead``); default: the first with a Z'.

    Returns
    -------
    pathlib.Path
        The file written (atomically: nothing is left behind on failure).
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else Path("reports") / f"{run_dir.resolve().name}.html"
    check_file_replaceable(out, overwrite=overwrite, kind="html", inputs=[
        run_dir / n for n in ("cells", "run.json", "failures.parquet", "wells.parquet",
                              "stats.parquet", "embeddings.parquet", "fields.parquet",
                              "domain.json")])
    data = load_run(run_dir)
    findings.resolve_qc_readout(data["stats"], qc_readout)  # a bad name fails before any work
    page = render(build_context(data, gallery=gallery, montage=montage,
                                     qc_readout=qc_readout))
    return atomic_write_text(out, page)
