"""Plotly figures of the report: dose-response curves, plate QC and the embedding scatter."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hcs.plate import PlateGeometry
from hcs.report.figures import PALETTE, Figure, base_layout, esc, fmt_num, readout_label, trace

if TYPE_CHECKING:
    from hcs.report.colours import Colours

#: Fit statuses that come with estimates (a curve can be drawn).
_HAS_CURVE = ("ok", "ec50_outside_doses", "no_dose_effect", "no_ci")


def well_values(wells: pd.DataFrame, column: str, transform: str) -> pd.Series:
    """The per-well value the statistics used: the frequency, or its empirical logit."""
    if transform == "logit" and column.startswith("freq_") and f"n_{column[5:]}" in wells:
        k = wells[f"n_{column[5:]}"].astype(float)
        n = wells["n_analysed"].astype(float)
        return np.log((k + 0.5) / (n - k + 0.5)).where(n > 0)
    return pd.to_numeric(wells[column], errors="coerce")


def _short(text: object, n: int = 90) -> str:
    t = str(text)
    return t if len(t) <= n else t[: n - 3] + "..."


def dose_figure(wells: pd.DataFrame, fits: pd.DataFrame, construct: str,
                colours: Colours | None = None) -> Figure:
    """Dose-response of one construct: every usable well a point, the fitted 4PL curve per
    readout, the EC50 marked with its 95% CI. Dose 0 is drawn one decade below the lowest dose.

    Every readout's points are shown whatever its fit status; a fit that is not ``ok`` is drawn
    dashed when it has estimates, and its status and reason are written above the plot (a fit
    without estimates, e.g. ``no_convergence``, shows the points and the reason, never an empty
    axis). A class readout is drawn in the class's colour of ``colours``.
    """
    usable = wells["usable"].astype(bool) if "usable" in wells else True
    w = wells[usable & (wells["construct"].astype(str) == construct) & wells["dose"].notna()]
    doses = w["dose"].astype(float)
    pos = doses[doses > 0]
    low = float(pos.min()) if len(pos) else 1.0
    high = float(pos.max()) if len(pos) else 10.0
    has_zero = bool((doses <= 0).any())
    zero_at = low / 10 if has_zero else low / 2
    x = doses.where(doses > 0, zero_at)
    unit = esc(fits["dose_unit"].dropna().iloc[0]) if fits["dose_unit"].notna().any() else ""
    fig = Figure()
    grid = np.logspace(math.log10(zero_at), math.log10(high) + 0.3, 200)
    notes: list[str] = []
    for i, (_, fit) in enumerate(fits.iterrows()):
        col = str(fit["readout"])
        colour = colours.of_readout(col, i) if colours is not None else PALETTE[i % len(PALETTE)]
        name = esc(readout_label(col))
        ok = fit["status"] == "ok"
        visible = True
        if not ok:  # the points stay; the reason is written in the figure
            notes.append(f"{name}: {esc(fit['status'])}"
                         + (f" ({esc(_short(fit.get('message')))})" if fit.get("message") and
                            pd.notna(fit.get("message")) else ""))
        y = well_values(w, col, str(fit.get("transform") or "none"))
        fig.add_trace(trace("scatter",
            x=x, y=y, mode="markers", name=name, legendgroup=col, visible=visible,
            marker={"color": colour, "size": 7, "opacity": 0.75},
            text=[esc(v) for v in w["well"]],
            hovertemplate="%{text}: dose %{customdata}, %{y:.4g}<extra>" + name + "</extra>",
            customdata=[fmt_num(d, 4) for d in doses],
        ))
        if fit["status"] not in _HAS_CURVE or not np.isfinite(fit["ec50"]):
            continue
        b, t, e, h = (float(fit[k]) for k in ("bottom", "top", "ec50", "hill"))
        curve = b + (t - b) / (1 + (e / grid) ** h)
        ci = f" (95% CI {fmt_num(fit['ec50_ci_low'])}-{fmt_num(fit['ec50_ci_high'])})" \
            if np.isfinite(fit["ec50_ci_low"]) else ""
        fig.add_trace(trace("scatter",
            x=grid, y=curve, mode="lines", name=name,
            line={"color": colour, "width": 2, "dash": "solid" if ok else "dash"},
            legendgroup=col, showlegend=False, visible=visible, hoverinfo="skip",
        ))
        fig.add_trace(trace("scatter",
            x=[e], y=[(b + t) / 2], mode="markers", legendgroup=col, showlegend=False,
            visible=visible, name=name,
            marker={"symbol": "diamond", "size": 12, "color": colour,
                    "line": {"color": "white", "width": 1}},
            error_x={"type": "data", "symmetric": False,
                     "array": [max(0.0, float(fit["ec50_ci_high"]) - e)]
                     if np.isfinite(fit["ec50_ci_high"]) else [0],
                     "arrayminus": [max(0.0, e - float(fit["ec50_ci_low"]))]
                     if np.isfinite(fit["ec50_ci_low"]) else [0]},
            hovertemplate=(f"EC50 = {fmt_num(e)} {unit}{ci}<br>Hill {fmt_num(h)}, "
                           f"bottom {fmt_num(b)}, top {fmt_num(t)}<br>"
                           f"status: {esc(fit['status'])}<extra>{name}</extra>"),
        ))
    if notes:  # a fit without a (trustworthy) curve: say so, with the reason
        fig.add_annotation(xref="paper", yref="paper", x=0, y=1.0, xanchor="left",
                           yanchor="bottom", align="left", showarrow=False,
                           text="<br>".join(notes), font={"size": 10, "color": "#b03a2e"})
    ticks = [zero_at, *[10.0 ** k for k in range(math.ceil(math.log10(low)),
                                                   math.floor(math.log10(high)) + 1)]]
    base_layout(fig, f"{esc(construct)}: dose-response (4PL)", height=420, width=560,
            xaxis_title=f"dose ({unit})" if unit else "dose", yaxis_title="per-well value",
            legend={"orientation": "h", "y": -0.25})
    if notes:
        fig.update_layout(height=420 + 14 * len(notes), margin={"t": 70 + 14 * len(notes)})
    if not has_zero:  # no dose-0 well: no "0" tick
        ticks = ticks[1:]
    fig.update_xaxes(type="log", tickvals=ticks,
                     ticktext=["0"] * has_zero + [fmt_num(v, 3) for v in ticks[has_zero:]])
    return fig


def count_qc_figure(wells: pd.DataFrame, outliers: dict[str, set[str]],
                    geometry: PlateGeometry) -> Figure:
    """Cells detected per imaged well, outer-ring wells (of the plate geometry) vs interior
    wells, per plate; count outliers (robust z beyond 3.5, from the stats QC row) ringed in red.
    Wells that were not imaged (flag ``missing``) are left out."""
    from hcs.stats.qc import imaged_mask

    fig = Figure()
    rows, cols = geometry.rows, geometry.columns
    n_boxes = 0
    wells = wells[imaged_mask(wells)]  # a well never imaged has no count (not 0 cells)
    for plate, grp in wells.groupby(wells["plate"].astype(str)):
        edge = (grp["row"] == 0) | (grp["col"] == 0) | (grp["row"] == rows - 1) | \
            (grp["col"] == cols - 1)
        ring = np.where(edge, "edge", "interior")
        out = grp["well"].astype(str).isin(outliers.get(plate, set()))
        x = [f"{esc(plate)} {r}" for r in ring]
        n_boxes += len(set(ring))
        fig.add_trace(trace("box",
            x=x, y=grp["n_detected"], name=esc(plate), boxpoints="all", jitter=0.4, pointpos=0,
            text=[esc(v) for v in grp["well"]], showlegend=False,
            marker={"color": "#4c78a8", "size": 5},
            hovertemplate="%{text}: %{y} cells<extra></extra>",
        ))
        if out.any():
            fig.add_trace(trace("scatter",
                x=[v for v, o in zip(x, out, strict=True) if o], y=grp.loc[out, "n_detected"],
                mode="markers", name="count outlier", showlegend=False,
                text=[esc(v) for v in grp.loc[out, "well"]],
                marker={"color": "rgba(0,0,0,0)", "size": 12,
                        "line": {"color": "#d62728", "width": 2}},
                hovertemplate="%{text}: %{y} cells (outlier)<extra></extra>",
            ))
    base_layout(fig, "Cells per well, edge vs interior", height=360,
            width=max(420, 160 * n_boxes + 120), yaxis_title="cells detected")
    return fig


def embedding_figure(xy: np.ndarray, labels: list[str], classes: list[str],
                     method: str, colours: Colours | None = None) -> Figure:
    """2-D embedding of cells coloured by predicted class (``colours``: the report's mapping)."""
    fig = Figure()
    lab = np.asarray(labels, dtype=object)
    for i, c in enumerate(classes):
        sel = lab == c
        if sel.any():
            fig.add_trace(trace("scattergl",
                x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=esc(c.replace("_", " ")),
                marker={"size": 4, "opacity": 0.7, "color": colours.of_class(c, i)
                        if colours is not None else PALETTE[i % len(PALETTE)]},
                hoverinfo="name",
            ))
    base_layout(fig, f"Cell embedding ({esc(method)}), coloured by class", height=460,
            legend={"orientation": "h", "y": -0.1})
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None)
    return fig
