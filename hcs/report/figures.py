"""Plotly figures of the report: plate heatmaps, condition comparisons and class compositions.

Every user-supplied string that reaches a figure (condition, plate, readout names) goes through
:func:`esc` first: plotly.js renders a subset of HTML in titles, tick labels and hover text, so an
unescaped ``<b>`` or ``<a href>`` in a condition name would be interpreted. Escaped entities are
shown by plotly.js as the literal characters.
"""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from plotly.utils import PlotlyJSONEncoder

from hcs.plate import PlateGeometry, row_name, well_name

if TYPE_CHECKING:
    from hcs.report.colours import Colours

#: Colours per class, in the order of the assay's classes (colour-blind friendly, Okabe-Ito+).
PALETTE: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#E41A1C", "#F0E442",
    "#999999", "#882255",
)
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def esc(value: object) -> str:
    """A user string made safe for plotly.js text (which renders a subset of HTML).

    Examples
    --------
    >>> esc("<script>alert(1)</script>")
    '&lt;script&gt;alert(1)&lt;/script&gt;'
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return html.escape(str(value), quote=True)


def readout_label(col: str) -> str:
    """``freq_one_in_one`` -> ``one in one``; ``n_detected`` -> ``cell count``;
    ``npi_dead`` -> ``dead, NPI %``; ``poc_n_detected`` -> ``cell count, % of control``."""
    if col == "n_detected":
        return "cell count"
    for prefix, what in (("poc_", "% of control"), ("npi_", "NPI %")):
        if col.startswith(prefix):
            base = col[len(prefix):]
            return f"{readout_label(base if base == 'n_detected' else 'freq_' + base)}, {what}"
    name = col[5:] if col.startswith("freq_") else col
    return name.replace("_", " ")


class Figure:
    """A plotly figure as plain ``data``/``layout`` dicts.

    plotly's ``graph_objects`` validate every property on every assignment, which made a
    384-well report take many seconds; the tests validate these dicts with
    ``plotly.graph_objects.Figure`` instead. The methods mirror the ``go.Figure`` ones used here.
    """

    def __init__(self, trace: dict | None = None) -> None:
        self.data: list[dict] = [trace] if trace is not None else []
        self.layout: dict = {"xaxis": {}, "yaxis": {}, "annotations": []}

    def add_trace(self, trace: dict) -> None:
        self.data.append(trace)

    def update_layout(self, **kw: object) -> None:
        _merge(self.layout, kw)

    def update_xaxes(self, **kw: object) -> None:
        _merge(self.layout["xaxis"], kw)

    def update_yaxes(self, **kw: object) -> None:
        _merge(self.layout["yaxis"], kw)

    def add_annotation(self, **kw: object) -> None:
        self.layout["annotations"].append(kw)

    def to_plotly_json(self) -> dict:
        return {"data": self.data, "layout": self.layout}


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if k.endswith("_title") and k.split("_")[0] in ("xaxis", "yaxis"):
            into.setdefault(k.split("_")[0], {})["title"] = {"text": v}
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def trace(kind: str, **kw: object) -> dict:
    """A trace dict, ``trace("box", y=...)``; numpy/pandas values are serialised later."""
    return {"type": kind, **kw}


def figure_json(fig: Figure) -> str:
    """Figure as JSON that is safe inside an HTML ``<script>`` element (``<``, ``>``, ``&``
    escaped as JSON unicode escapes, so no string can close the element)."""
    text = json.dumps(fig.to_plotly_json(), cls=PlotlyJSONEncoder, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def base_layout(fig: Figure, title: str, height: int, **kw: object) -> Figure:
    # explicit styling rather than template="plotly_white", which would be serialised into
    # every figure of the page
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height,
                      margin={"l": 60, "r": 20, "t": 40, "b": 50}, font=_FONT,
                      paper_bgcolor="white", plot_bgcolor="white", **kw)
    fig.update_xaxes(gridcolor="#ebebeb", linecolor="#bbbbbb", zerolinecolor="#ebebeb")
    fig.update_yaxes(gridcolor="#ebebeb", linecolor="#bbbbbb", zerolinecolor="#ebebeb")
    return fig


def fmt_num(v: object, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{float(v):.{digits}g}"


def plate_heatmap(wells: pd.DataFrame, column: str, geometry: PlateGeometry,
                  plate: str) -> Figure:
    """Heatmap of one wells column on the plate grid (row A at the top), flagged wells marked.

    Three well states: not imaged (flag ``missing``: grey, no value, hover "not imaged"), imaged
    but flagged (a red cross; hover names the flags), usable. Hover shows the well, its
    condition, the cell counts and the flags.
    """
    rows, cols = geometry.rows, geometry.columns
    z = np.full((rows, cols), np.nan)
    custom = np.full((rows, cols, 6), "", dtype=object)
    custom[:, :, 0] = [[well_name(r, c) for c in range(cols)] for r in range(rows)]
    custom[:, :, 1] = "(no data)"
    w = wells[(wells["row"] < rows) & (wells["col"] < cols)]
    r_idx, c_idx = w["row"].to_numpy(int), w["col"].to_numpy(int)
    from hcs.stats.qc import imaged_mask

    imaged = imaged_mask(w).to_numpy(bool)
    # a well never imaged has no value (grey), not a count of 0
    z[r_idx, c_idx] = np.where(imaged, pd.to_numeric(w[column], errors="coerce").to_numpy(float),
                               np.nan)

    def texts(col: str, fmt: object = esc, blank: str = "") -> list[str]:
        if col not in w:
            return [blank] * len(w)
        return [fmt(v) or blank for v in w[col].tolist()]  # type: ignore[operator]

    # one vectorised assignment per hover field (a per-well loop took seconds at 1536 wells)
    custom[r_idx, c_idx, 0] = texts("well")
    custom[r_idx, c_idx, 1] = texts("condition", blank="(none)")
    custom[r_idx, c_idx, 2] = texts("n_detected", lambda v: fmt_num(v, 6))
    custom[r_idx, c_idx, 3] = texts("n_analysed", lambda v: fmt_num(v, 6))
    custom[r_idx, c_idx, 4] = [fmt_num(v, 3) for v in z[r_idx, c_idx]]
    custom[r_idx, c_idx, 5] = np.where(imaged, texts("flags", blank="none"),
                                       "not imaged (ignored)")
    label = esc(readout_label(column))
    fig = Figure(trace("heatmap",
        z=z, x=list(range(1, cols + 1)), y=geometry.row_names(), customdata=custom,
        colorscale="Viridis", xgap=1, ygap=1, colorbar={"title": {"text": label}, "len": 0.9},
        hovertemplate=("<b>%{customdata[0]}</b><br>condition: %{customdata[1]}<br>"
                       f"{label}: %{{customdata[4]}}<br>detected: %{{customdata[2]}}, analysed:"
                       " %{customdata[3]}<br>flags: %{customdata[5]}<extra></extra>"),
        hoverongaps=True,
    ))
    flagged = w[(w["flags"].astype(str) != "") & imaged] if "flags" in w else w.iloc[:0]
    if len(flagged):
        fig.add_trace(trace("scatter",
            x=flagged["col"].to_numpy(int) + 1, y=[row_name(r) for r in flagged["row"]],
            mode="markers", name="QC flag", hoverinfo="skip", showlegend=False,
            marker={"symbol": "x-thin", "size": max(3, min(10, 300 // cols)),
                    "line": {"width": 1.5, "color": "#d62728"}},
        ))
    size = max(6, min(28, 640 // cols))
    base_layout(fig, f"{label} per well ({esc(plate)})", height=rows * size + 110,
            width=cols * size + 180)
    fig.update_xaxes(side="top", dtick=1 if cols <= 24 else 4, showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False,
                     dtick=1 if rows <= 16 else 2)
    fig.update_layout(margin={"l": 40, "r": 10, "t": 60, "b": 10}, plot_bgcolor="#eeeeee")
    return fig


def condition_order(wells: pd.DataFrame, reference: str | None) -> list[str]:
    """Conditions in plate order (row-major first appearance), the reference first."""
    if "condition" not in wells:
        return []
    w = wells[wells["condition"].notna()]
    if "role" in w:
        w = w[w["role"].astype(str) != "empty"]
    order = list(dict.fromkeys(w.sort_values(["plate", "row", "col"])["condition"].astype(str)))
    if reference in order:
        order.remove(reference)
        order.insert(0, reference)
    return order


def condition_box(wells: pd.DataFrame, column: str, order: list[str], stats: pd.DataFrame,
                  reference: str | None, colours: Colours | None = None) -> Figure:
    """Box plot of one readout per condition: every usable well a point, the mean dashed, and
    the significance stars of each condition against the reference above its box. Each
    condition in its colour of ``colours`` (the report's mapping)."""
    fig = Figure()
    usable = wells["usable"].astype(bool) if "usable" in wells else True
    w = wells[usable & wells["condition"].notna()]
    ymax = float(np.nanmax(pd.to_numeric(w[column], errors="coerce"))) if len(w) else 1.0
    ymax = ymax if math.isfinite(ymax) else 1.0
    for i, cond in enumerate(order):
        sel = w[w["condition"].astype(str) == cond]
        fig.add_trace(trace("box",
            y=sel[column], x=[esc(cond)] * len(sel), name=esc(cond), boxmean=True,
            boxpoints="all", jitter=0.35, pointpos=0, text=[esc(x) for x in sel["well"]],
            marker={"color": colours.of_condition(cond, i) if colours is not None
                    else PALETTE[i % len(PALETTE)], "size": 6, "opacity": 0.8},
            line={"width": 1.2}, showlegend=False,
            hovertemplate="%{text}: %{y:.4g}<extra>%{x}</extra>",
        ))
    rows = stats[(stats["kind"] == "comparison") & (stats["readout"] == column)
                 & (stats["plate"] == "all")] if len(stats) else stats
    for cond in order:
        if cond == reference:
            text = "ref"
        else:
            hit = rows[rows["condition"].astype(str) == cond] if len(rows) else rows
            text = str(hit["stars"].iloc[0]) if len(hit) and pd.notna(hit["stars"].iloc[0]) \
                else ""
        if text:
            fig.add_annotation(x=esc(cond), y=ymax * 1.08 if ymax > 0 else 0.05, text=text,
                               showarrow=False, font={"size": 13})
    label = esc(readout_label(column))
    base_layout(fig, label, height=360, width=max(340, 80 * len(order) + 110), yaxis_title=label)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(rangemode="tozero")
    return fig


def class_composition(wells: pd.DataFrame, classes: list[str], order: list[str],
                      title: str, normalise: bool, colours: Colours | None = None) -> Figure:
    """Class frequencies per condition (mean over usable wells).

    ``normalise=False``: grouped bars of the mean frequency with the SD as error bars (absolute);
    ``normalise=True``: stacked bars of the mean frequencies rescaled to 100 % (relative).
    Each class in its colour of ``colours``.
    """
    usable = wells["usable"].astype(bool) if "usable" in wells else True
    w = wells[usable & wells["condition"].notna()]
    cols = [f"freq_{c}" for c in classes if f"freq_{c}" in w]
    grp = w.groupby(w["condition"].astype(str))[cols]
    mean = grp.mean().reindex(order)
    sd = grp.std(ddof=1).reindex(order)
    if normalise:
        total = mean.sum(axis=1).replace(0, np.nan)
        mean = mean.div(total, axis=0)
    fig = Figure()
    for i, col in enumerate(cols):
        fig.add_trace(trace("bar",
            x=[esc(c) for c in order], y=100 * mean[col], name=esc(readout_label(col)),
            marker={"color": colours.of_readout(col, i) if colours is not None
                    else PALETTE[i % len(PALETTE)]},
            error_y={"visible": False} if normalise else {"type": "data", "array": 100 * sd[col],
                                                          "thickness": 1},
            hovertemplate=f"{esc(readout_label(col))}: %{{y:.2f}} %<extra>%{{x}}</extra>",
        ))
    fig.update_xaxes(automargin=True)
    base_layout(fig, title, height=400, width=max(420, 90 * len(order) + 200),
            barmode="stack" if normalise else "group",
            yaxis_title="% of total" if normalise else "% of analysed cells (mean ± SD)",
            legend={"traceorder": "normal"})
    return fig
