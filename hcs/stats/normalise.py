"""Normalised readouts: percent of control and normalised percent inhibition (NPI).

For a readout ``x`` of a well on plate ``p``, with ``mu_n`` and ``mu_p`` the means of the usable
(imaged, unflagged) ``negative_control`` and ``positive_control`` wells of that plate:

- percent of control ``poc = 100 x / mu_n`` (the negative control is 100 %);
- NPI ``npi = 100 (mu_n - x) / (mu_n - mu_p)`` (Malo et al. 2006): 0 % at the negative control,
  100 % at the positive control, whichever way the positive control moves the readout.

They are computed per plate (a plate shifts all its wells together), for every ``freq_<r>``
column and ``n_detected``, as the wells columns ``poc_<r>`` / ``npi_<r>`` (``poc_n_detected``).
A value is NaN when its plate has no usable control of the role needed, or when the divisor is
0 (``mu_n = 0``; ``mu_n = mu_p``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PREFIXES = ("poc_", "npi_")


def source_columns(wells: pd.DataFrame) -> list[str]:
    """The raw readouts that get normalised columns: ``freq_<r>`` and ``n_detected``."""
    return [c for c in wells.columns if c.startswith("freq_")] + \
        (["n_detected"] if "n_detected" in wells else [])


def normalised_name(column: str, kind: str) -> str:
    """``freq_dead`` -> ``poc_dead`` / ``npi_dead``; ``n_detected`` -> ``poc_n_detected``.

    Examples
    --------
    >>> normalised_name("freq_dead", "npi"), normalised_name("n_detected", "poc")
    ('npi_dead', 'poc_n_detected')
    """
    return f"{kind}_{column.removeprefix('freq_')}"


def normalised_readouts(wells: pd.DataFrame) -> pd.DataFrame:
    """``poc_<r>`` and ``npi_<r>`` columns of a wells table with layout roles.

    Returns an empty frame (same index) when the table has no ``role`` column or no usable
    ``negative_control`` well; without a usable ``positive_control`` only ``poc_`` columns.

    Examples
    --------
    >>> w = pd.DataFrame({"plate": "p", "role": ["negative_control"] * 2 +
    ...                   ["positive_control"] * 2 + ["sample"], "usable": True,
    ...                   "freq_x": [0.2, 0.4, 0.9, 0.7, 0.5]})
    >>> normalised_readouts(w).round(3).to_dict("list")
    {'poc_x': [66.667, 133.333, 300.0, 233.333, 166.667], 'npi_x': [-20.0, 20.0, 120.0, 80.0, 40.0]}
    """
    out = pd.DataFrame(index=wells.index)
    if "role" not in wells:
        return out
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    if "missing" in wells:
        usable &= ~wells["missing"].astype("boolean").fillna(False).astype(bool)
    role = wells["role"].astype(object)
    neg, pos = usable & (role == "negative_control"), usable & (role == "positive_control")
    if not neg.any():
        return out
    plate = wells["plate"].astype(str) if "plate" in wells else pd.Series("", wells.index)
    for col in source_columns(wells):
        x = pd.to_numeric(wells[col], errors="coerce").astype("float64")
        x = x.where(np.isfinite(x))
        mu_n = plate.map(x[neg].groupby(plate[neg]).mean()).astype("float64")
        out[normalised_name(col, "poc")] = 100 * x / mu_n.where(mu_n != 0)
        if pos.any():
            mu_p = plate.map(x[pos].groupby(plate[pos]).mean()).astype("float64")
            gap = (mu_n - mu_p).where(lambda g: g != 0)
            out[normalised_name(col, "npi")] = 100 * (mu_n - x) / gap
    return out
