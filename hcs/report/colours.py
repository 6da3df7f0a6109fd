"""One colour per class and per condition, built once per report and used by every figure.

:func:`report_colours` makes the mapping from the run's classes and wells table;
:class:`Colours` answers ``colours.of_class("dead")``, ``colours.of_readout("freq_dead")`` and
``colours.of_condition("DMSO")``. Classes take the colour-blind friendly categorical
:data:`hcs.report.figures.PALETTE` in the assay's order (then any other frequency readout, such as
a composite). Conditions of a dose series (a construct at two or more doses) take a sequential
palette of one hue per construct, light at the lowest dose and dark at the highest; the other
conditions take a categorical palette, the reference condition grey.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from hcs.report.figures import PALETTE

#: Categorical colours of conditions outside dose series (Tableau 10 without its grey).
CONDITION_PALETTE: tuple[str, ...] = (
    "#4E79A7", "#F28E2B", "#59A14F", "#E15759", "#B07AA1", "#76B7B2", "#EDC948", "#FF9DA7",
    "#9C755F",
)
#: Sequential plotly colour scales, one per dose series (construct), in construct order.
SEQUENTIAL: tuple[str, ...] = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
REFERENCE_COLOUR = "#7F7F7F"


@dataclass(frozen=True)
class Colours:
    """The report's colour mapping: ``classes`` by class name, ``conditions`` by condition."""

    classes: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)

    def of_class(self, name: str, fallback: int = 0) -> str:
        """Colour of a class (the palette's ``fallback``-th colour for an unknown one)."""
        return self.classes.get(name, PALETTE[fallback % len(PALETTE)])

    def of_readout(self, column: str, fallback: int = 0) -> str:
        """Colour of a readout column: its class's for ``freq_<class>``/``n_<class>``."""
        for prefix in ("freq_", "n_", "poc_", "npi_"):
            if column.startswith(prefix) and column[len(prefix):] in self.classes:
                return self.classes[column[len(prefix):]]
        return PALETTE[fallback % len(PALETTE)]

    def of_condition(self, name: str, fallback: int = 0) -> str:
        """Colour of a condition."""
        return self.conditions.get(str(name), CONDITION_PALETTE[fallback % len(CONDITION_PALETTE)])


def _dose_series(wells: pd.DataFrame) -> dict[str, list[str]]:
    """Construct -> its conditions ordered by dose, for constructs at two or more doses."""
    if not {"construct", "dose", "condition"} <= set(wells.columns):
        return {}
    w = wells[wells["condition"].notna() & wells["construct"].notna()]
    out: dict[str, list[str]] = {}
    for construct, g in w.groupby(w["construct"].astype(str), sort=False):
        doses = pd.to_numeric(g["dose"], errors="coerce")
        by_cond = g.assign(_d=doses).groupby(g["condition"].astype(str))["_d"].median()
        by_cond = by_cond.dropna()
        if by_cond.nunique() >= 2:
            out[construct] = list(by_cond.sort_values(kind="stable").index)
    return out


def report_colours(classes: list[str], wells: pd.DataFrame | None,
                   reference: str | None = None) -> Colours:
    """The colour mapping of a report.

    Parameters
    ----------
    classes
        Class names in the assay's order.
    wells
        The wells table (``freq_*``, ``condition``, ``construct``, ``dose``), or ``None``.
    reference
        The reference condition (grey).

    Returns
    -------
    Colours
        Every class and every frequency readout, and every condition of ``wells``, mapped to
        one colour.

    Examples
    --------
    >>> w = pd.DataFrame({"condition": ["DMSO", "d 1", "d 10", "d 0.1"],
    ...                   "construct": ["DMSO", "d", "d", "d"], "dose": [None, 1, 10, 0.1]})
    >>> c = report_colours(["live", "dead"], w, "DMSO")
    >>> c.of_class("live"), c.of_condition("DMSO")
    ('#0072B2', '#7F7F7F')
    >>> [c.of_condition(x) for x in ("d 0.1", "d 1", "d 10")]  # light to dark blue
    ['rgb(166, 205, 228)', 'rgb(53, 133, 191)', 'rgb(8, 48, 107)']
    """
    from plotly.colors import sample_colorscale

    names = list(dict.fromkeys(classes))
    if wells is not None:
        names += [c[5:] for c in wells.columns if c.startswith("freq_") and c[5:] not in names
                  and not c.endswith("_positive")]
    class_colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(names)}
    conditions: dict[str, str] = {}
    if wells is not None and "condition" in wells:
        series = _dose_series(wells)
        for i, conds in enumerate(series.values()):
            scale = SEQUENTIAL[i % len(SEQUENTIAL)]
            at = [0.35 + 0.65 * k / (len(conds) - 1) for k in range(len(conds))]
            for cond, colour in zip(conds, sample_colorscale(scale, at), strict=True):
                conditions.setdefault(cond, colour)
        k = 0
        for cond in dict.fromkeys(wells["condition"].dropna().astype(str)):
            if cond in conditions:
                continue
            if cond == reference:
                conditions[cond] = REFERENCE_COLOUR
            else:
                conditions[cond] = CONDITION_PALETTE[k % len(CONDITION_PALETTE)]
                k += 1
    return Colours(classes=class_colours, conditions=conditions)


def dose_ordered(order: list[str], wells: pd.DataFrame | None) -> list[str]:
    """``order`` with the conditions of each dose series sorted by dose (in the place of the
    series' first condition).

    Examples
    --------
    >>> w = pd.DataFrame({"condition": ["d 10", "DMSO", "d 1"], "construct": ["d", "DMSO", "d"],
    ...                   "dose": [10, None, 1]})
    >>> dose_ordered(["d 10", "DMSO", "d 1"], w)
    ['d 1', 'd 10', 'DMSO']
    """
    if wells is None:
        return list(order)
    series = _dose_series(wells)
    of = {c: s for s, conds in series.items() for c in conds}
    out: list[str] = []
    for cond in order:
        if cond in out:
            continue
        if cond in of:
            out += [c for c in series[of[cond]] if c in order and c not in out]
        else:
            out.append(cond)
    return out
