"""Plate images of the report: a montage of the wells, their fields with the cells outlined,
layout maps and image-QC maps.

- :func:`build_montage`: one thumbnail per imaged well (its first field, read from the plate's
  lowest pyramid level, channels composited in the plate's ``omero`` colours with
  :func:`hcs.report.gallery.composite`), laid out as the plate; a readout can be laid over it as
  a heatmap; a click on a well shows its first fields (:data:`MAX_FIELDS`, fewer on plates of
  more than 200 wells) with every detected cell outlined in its class colour (boxes from
  ``RUN/cells``).
- :func:`layout_maps`: condition, role and dose as categorical plate maps.
- :func:`image_qc_maps`: focus, saturation and background per well (worst field) from
  ``RUN/fields.parquet`` and the table of flagged fields.

Size: everything is JPEG (quality :data:`JPEG_QUALITY`) in base64 data URIs. Thumbnails are at
most :data:`THUMB_PX` px, field views at most :data:`FIELD_PX` px, and at most
:data:`MAX_FIELD_IMAGES` field views in a report. The field views are kept in a
JSON element and become ``<img>`` sources only when their well is clicked, so the page decodes
one thumbnail per well when it opens (the file stays one offline HTML file, so their bytes are
in it). Measured in ``benchmarks/report.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.plate import PlateGeometry, parse_well, well_name
from hcs.report.figures import PALETTE, Figure, base_layout, esc, fmt_num, trace

__all__ = ["FIELD_BLUR", "FIELD_PX", "JPEG_QUALITY", "MAX_FIELDS", "MAX_FIELD_IMAGES", "THUMB_PX",
           "build_montage", "image_qc_maps", "image_qc_section", "layout_maps", "layout_section",
           "montage_section"]

THUMB_PX = 80
FIELD_PX = 200
#: Fields shown per well: at most MAX_FIELDS, and at most MAX_FIELD_IMAGES over the plate
#: (4 per well on a 96-well plate, 1 on a 384- or 1536-well one).
MAX_FIELDS = 4
MAX_FIELD_IMAGES = 400
JPEG_QUALITY = 65
#: Gaussian blur (px) of a field view before its outlines are drawn: camera noise costs JPEG
#: bytes (a third of them on simulated 1080 px fields) and shows nothing at this size.
FIELD_BLUR = 0.6
_BOX_COLUMNS = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]


def _json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _jpeg(rgb: np.ndarray, size: int) -> Any:
    from PIL import Image

    img = Image.fromarray(rgb)
    f = size / max(img.size)
    if f < 1:
        img = img.resize((max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f))),
                         Image.Resampling.BILINEAR)
    return img


def _uri(img: Any) -> str:
    """JPEG data URI without chroma subsampling (which would wash out 2 px coloured
    outlines)."""
    import base64
    import io

    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0,
                            optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _field_level(plate: Any, well: str, field: int) -> tuple[int, float]:
    """The lowest pyramid level whose longer side is still >= :data:`FIELD_PX` and its
    downsampling factor from level 0."""
    full = max(plate.field(well, field, 0).shape[-2:])
    best, factor = 0, 1.0
    for level in range(plate.n_levels):
        side = max(plate.field(well, field, level).shape[-2:])
        if side >= FIELD_PX or level == 0:
            best, factor = level, full / side
    return best, factor


def _cells(run_dir: Path, well: str, field: int) -> pd.DataFrame:
    import pyarrow.parquet as pq

    path = run_dir / "cells" / well / f"{int(field)}.parquet"
    if not path.is_file():
        return pd.DataFrame(columns=[*_BOX_COLUMNS, "label"])
    names = pq.read_schema(path).names
    cols = [c for c in (*_BOX_COLUMNS, "label") if c in names]
    out = pq.read_table(path, columns=cols).to_pandas()
    if "label" not in out:
        out["label"] = "detected"  # a detection-only run: white outlines
    return out


def _heat_colours(values: pd.Series) -> dict[str, str]:
    """Viridis colour of each finite value (by well)."""
    from plotly.colors import sample_colorscale

    v = pd.to_numeric(values, errors="coerce")
    ok = v[np.isfinite(v.to_numpy(float))]
    if not len(ok):
        return {}
    lo, hi = float(ok.min()), float(ok.max())
    scaled = ((ok - lo) / (hi - lo)).tolist() if hi > lo else [0.5] * len(ok)
    return dict(zip(ok.index.astype(str), sample_colorscale("Viridis", scaled), strict=True))


def build_montage(plate_path: str | Path, run_dir: str | Path, wells: pd.DataFrame,
                  geometry: PlateGeometry, colours: dict[str, str],
                  readouts: list[str]) -> dict[str, Any]:
    """The montage block of the report (see the module doc).

    Parameters
    ----------
    plate_path
        The run's OME-Zarr plate.
    run_dir
        The run folder (its ``cells/`` give the outlines).
    wells
        The run's wells table (one plate).
    geometry
        The plate geometry.
    colours
        Class -> colour (the report's one class colour mapping).
    readouts
        Wells columns offered as heatmap overlays.

    Returns
    -------
    dict
        ``{"type": "montage", "rows", "columns", "wells": [{"well", "row", "col", "uri",
        "title"}], "readouts": [{"id", "label"}], "heat_json", "fields_json", "legend"}``.
    """
    from PIL import ImageFilter

    from hcs.io.omezarr import open_plate
    from hcs.report.figures import readout_label
    from hcs.report.gallery import FieldImages, composite, overlay, shrink

    run_dir = Path(run_dir)
    plate = open_plate(plate_path)
    images = FieldImages(plate_path)
    info = wells.assign(well=wells["well"].astype(str)).set_index("well")
    per_well = max(1, min(MAX_FIELDS, MAX_FIELD_IMAGES // max(len(plate.wells), 1)))
    tiles: list[dict[str, Any]] = []
    fields: dict[str, list[dict[str, Any]]] = {}
    windows: list | None = None
    level: tuple[int, float] | None = None
    for well in sorted(plate.wells, key=parse_well):
        name = well_name(*parse_well(well))
        flist = plate.fields(well)
        if not flist:
            continue
        r, c = parse_well(name)
        try:
            planes, win = images.planes(well, flist[0], level=-1)
        except Exception as exc:  # a damaged field costs its thumbnail, not the report
            tiles.append({"well": name, "row": r, "col": c, "uri": None,
                          "title": f"{name}: field {flist[0]} not readable "
                                   f"({type(exc).__name__})"})
            fields[name] = []
            continue
        windows = windows or win  # one display window for the whole plate
        thumb = _jpeg(composite(planes, images.colours, windows), THUMB_PX)
        title = name
        if name in info.index:
            row = info.loc[name]
            title += "".join(f" | {k}: {row[k]}" for k in ("condition", "dose", "role")
                             if k in row and pd.notna(row[k]) and str(row[k]) != "")
            if "n_detected" in row and pd.notna(row["n_detected"]):
                title += f" | {int(row['n_detected'])} cells"
            if "flags" in row and str(row["flags"]):
                title += f" | flags: {row['flags']}"
        tiles.append({"well": name, "row": r, "col": c, "title": title,
                      "uri": _uri(thumb)})
        views = []
        for f in flist[:per_well]:
            try:
                level = level or _field_level(plate, well, f)
                big, _ = images.planes(well, f, level=level[0])
            except Exception as exc:  # a damaged field: named, not drawn
                views.append({"field": int(f), "error": f"not readable ({type(exc).__name__})"})
                continue
            small, k = shrink(big, 2 * FIELD_PX)  # bounds the pixels composited
            view = _jpeg(composite(small, images.colours, windows), FIELD_PX).filter(
                ImageFilter.GaussianBlur(FIELD_BLUR))
            cells = _cells(run_dir, name, f)
            scale = level[1] * k * small.shape[-1] / view.size[0]
            img = overlay(np.asarray(view), cells, colours, scale)  # type: ignore[arg-type]
            views.append({"field": int(f), "n": len(cells), "uri": _uri(img)})
        fields[name] = views
        if len(flist) > per_well:
            fields[name].append({"more": len(flist) - per_well})
    heat = {}
    labels = []
    for col in readouts:
        if col not in info:
            continue
        vals = info[col]
        heat[col] = {"colours": _heat_colours(vals),
                     "values": {w: fmt_num(v, 3) for w, v in vals.items() if pd.notna(v)}}
        labels.append({"id": col, "label": readout_label(col)})
    legend = [{"name": k, "colour": v} for k, v in colours.items()]
    return {"type": "montage", "rows": geometry.row_names(), "columns": geometry.columns,
            "wells": tiles, "readouts": labels, "heat_json": _json(heat),
            "fields_json": _json(fields), "legend": legend, "thumb_px": THUMB_PX,
            "fields_per_well": per_well}


def categorical_map(wells: pd.DataFrame, column: str, geometry: PlateGeometry, plate: str,
                    colours: dict[str, str] | None = None) -> Figure:
    """A plate map of one layout column as categories (each value one colour; ``colours``
    fixes the colour of a value, e.g. the report's condition colours). Doses are ordered by
    value."""
    w = wells[(wells["row"] < geometry.rows) & (wells["col"] < geometry.columns)]
    vals = w[column]
    if column == "dose":
        num = pd.to_numeric(vals, errors="coerce")
        cats = [fmt_num(v, 4) for v in sorted(num.dropna().unique())]
        text = [fmt_num(v, 4) if pd.notna(v) else "" for v in num]
    else:
        text = ["" if pd.isna(v) else str(v) for v in vals]
        cats = sorted({t for t in text if t})
    k = max(len(cats), 1)
    code = {c: i for i, c in enumerate(cats)}
    z = np.full((geometry.rows, geometry.columns), np.nan)
    hover = np.full((geometry.rows, geometry.columns), "", dtype=object)
    for r in range(geometry.rows):
        for c in range(geometry.columns):
            hover[r, c] = f"{well_name(r, c)}: (not in the layout)"
    for r, c, t in zip(w["row"].to_numpy(int), w["col"].to_numpy(int), text, strict=True):
        z[r, c] = code[t] if t in code else np.nan
        hover[r, c] = f"{well_name(r, c)}: {esc(t) or '(none)'}"
    palette = [(colours or {}).get(c) or PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)]
    if column == "dose":  # a sequential palette: low dose light, high dose dark
        from plotly.colors import sample_colorscale

        palette = sample_colorscale("Blues", [0.25 + 0.75 * i / max(k - 1, 1)
                                              for i in range(k)])
    scale = []
    for i, colour in enumerate(palette or ["#cccccc"]):
        scale += [[i / k, colour], [(i + 1) / k, colour]]
    fig = Figure(trace(
        "heatmap", z=z, x=list(range(1, geometry.columns + 1)), y=geometry.row_names(),
        customdata=hover, hovertemplate="%{customdata}<extra></extra>", colorscale=scale,
        zmin=-0.5, zmax=k - 0.5, xgap=1, ygap=1, hoverongaps=True, showscale=k <= 24,
        colorbar={"tickvals": list(range(k)), "ticktext": [esc(c) for c in cats],
                  "len": 0.9, "title": {"text": esc(column)}}))
    cell = max(12, min(28, 640 // geometry.columns))
    base_layout(fig, f"{esc(plate)}: {esc(column)}", 90 + cell * geometry.rows,
                width=180 + cell * geometry.columns)
    fig.update_layout(plot_bgcolor="#eeeeee")  # wells not in the layout: grey
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False, side="top", dtick=1 if geometry.columns <= 24 else 4)
    return fig


def layout_maps(wells: pd.DataFrame, geometry: PlateGeometry,
                colours: dict[str, str] | None = None) -> dict[str, Figure]:
    """``condition``, ``role`` and ``dose`` maps (those the layout has) per plate, by figure
    id; ``colours`` the condition colours."""
    out = {}
    for p_i, (plate, grp) in enumerate(wells.groupby(wells["plate"].astype(str))):
        for col in ("condition", "role", "dose"):
            if col in grp and grp[col].notna().any():
                out[f"layout-{p_i}-{col}"] = categorical_map(
                    grp, col, geometry, plate, colours if col == "condition" else None)
    return out


def image_qc_maps(fields: pd.DataFrame, wells: pd.DataFrame,
                  geometry: PlateGeometry) -> tuple[dict[str, Figure], pd.DataFrame]:
    """Heatmaps of focus (the lowest field slope), saturation (the highest) and background
    (the highest, of the focus channel) per well, and the flagged fields."""
    from hcs.report.figures import plate_heatmap

    per = fields.assign(well=fields["well"].astype(str)).groupby(["plate", "well"])
    # short names: they are the colour bar titles
    agg = pd.DataFrame({"focus slope": per["qc_focus"].min(),
                        "saturation %": per["qc_saturation_pct"].max()})
    chan = fields["qc_focus_channel"].dropna()
    if len(chan):
        from hcs.measure import safe_name

        col = f"qc_background_{safe_name(str(chan.iloc[0]))}"
        if col in fields:
            agg["background"] = per[col].max()
    agg["fields flagged"] = per["qc_flag"].sum().astype(float)
    agg = agg.reset_index()
    base = wells.assign(well=wells["well"].astype(str), plate=wells["plate"].astype(str))
    merged = base.merge(agg.drop(columns="plate"), on="well", how="left")
    figs = {}
    for p_i, (plate, grp) in enumerate(merged.groupby("plate")):
        for j, col in enumerate(c for c in agg.columns if c not in ("plate", "well")):
            figs[f"imageqc-{p_i}-{j}"] = plate_heatmap(grp, col, geometry, str(plate))
    flagged = fields[fields["qc_flag"]].copy()
    return figs, flagged



def _cell(v: Any) -> dict[str, Any]:
    if isinstance(v, float | np.floating):
        return {"text": fmt_num(v, 3), "sort": None if not np.isfinite(v) else float(v)}
    return {"text": "" if v is None or v is pd.NA else str(v),
            "sort": None if v is None or v is pd.NA else str(v)}


def _channel(fields: pd.DataFrame) -> str:
    chan = fields["qc_focus_channel"].dropna() if "qc_focus_channel" in fields else []
    return f" ({chan.iloc[0]})" if len(chan) else ""


def image_qc_section(run_dir: Path, wells: pd.DataFrame,
                     geometry: PlateGeometry) -> dict[str, Any] | None:
    """The report's image QC section (``RUN/fields.parquet``; None when absent or when the
    run has no image QC)."""
    path = Path(run_dir) / "fields.parquet"
    if not path.is_file():
        return None
    try:
        fields = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        from hcs.errors import InputError

        raise InputError(f"{path}: cannot read as Parquet ({exc})") from None
    if "qc_focus" not in fields or not fields["qc_focus"].notna().any():
        return None
    figs, flagged = image_qc_maps(fields, wells, geometry)
    cfg = wells.attrs.get("image_qc") or {}
    excluded = bool(cfg.get("exclude_qc"))
    text = (f"Per field, measured by `hcs run` on the planes it read: focus = slope of the "
            "nuclear channel's power spectrum on log-log axes (steeper, i.e. more negative, = "
            "blurrier; a gain or the number of cells hardly moves it), saturation = % of pixels "
            "at the maximum of the data type (worst channel), background = 5th percentile of "
            f"the focus channel{_channel(fields)}. Per well the worst field is shown (lowest "
            "slope, highest saturation, highest background). A field is flagged out of focus "
            "when its slope is "
            f"more than {cfg.get('focus_mad', 3.0):g} robust SDs (1.4826 MAD, at least 0.5) "
            "below the plate median, saturated when a channel has more than "
            f"{cfg.get('saturation_pct', 1.0):g}% of its pixels at the maximum. "
            f"{len(flagged)} of {len(fields)} fields flagged; "
            + ("they are EXCLUDED from the wells, frequencies and statistics (--exclude-qc; "
               "column n_fields_qc_excluded of the wells table)." if excluded else
               "they are kept in the wells and statistics (hcs aggregate --exclude-qc leaves "
               "them out)."))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text},
                                    {"type": "figures", "ids": list(figs), "grid": True}]
    if len(flagged):
        cols = {"well": "well", "field": "field", "n_cells": "cells", "qc_focus": "focus slope",
                "qc_saturation_pct": "saturation %", "qc_saturation_channel": "channel",
                "qc_reason": "reason", "excluded": "excluded"}
        rows = [[_cell(r[c]) if c != "excluded" else _cell("yes" if r[c] else "no")
                 for c in cols] for _, r in flagged.iterrows()]
        blocks.append({"type": "table", "columns": list(cols.values()), "rows": rows,
                       "sortable": True})
    return {"id": "imageqc", "title": "Image QC", "fig_objects": figs, "blocks": blocks}


def layout_section(wells: pd.DataFrame, geometry: PlateGeometry,
                   colours: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The plate layout as categorical maps (None without layout columns)."""
    figs = layout_maps(wells, geometry, colours)
    if not figs:
        return None
    return {"id": "layout", "title": "Plate layout", "fig_objects": figs, "blocks": [
        {"type": "text", "text": "The layout as plate maps: condition, role and dose, one "
         "colour per value (doses light to dark by value). Hover a well for its value."},
        {"type": "figures", "ids": list(figs), "grid": True}]}


def montage_section(plate: Path | None, run_dir: Path, wells: pd.DataFrame,
                    geometry: PlateGeometry, colours: dict[str, str],
                    plate_name: str | None = None) -> dict[str, Any] | None:
    """The plate montage section (None without a plate)."""
    if plate is None:
        return None
    if plate_name is not None and "plate" in wells and wells["plate"].nunique() > 1:
        wells = wells[wells["plate"].astype(str) == str(plate_name)]
    readouts = [c for c in ("n_detected",) if c in wells] + [
        c for c in wells if c.startswith("freq_")]
    block = build_montage(plate, run_dir, wells, geometry, colours, readouts)
    text = (f"One thumbnail per imaged well ({len(block['wells'])}): its first field at the "
            "plate's lowest resolution, channels in the plate's colours. Choose a readout to "
            "lay it over the wells as a heatmap. Click a well to see its fields (the first "
            f"{block['fields_per_well']}) with every detected cell outlined in its class "
            "colour.")
    return {"id": "montage", "title": "Plate images",
            "blocks": [{"type": "text", "text": text}, block]}
