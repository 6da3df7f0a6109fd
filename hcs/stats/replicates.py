"""Replicate agreement between the plates of a screen: correlation of well readouts.

Two plates are compared on the wells they share: the same well position with the same condition
on both (replicate plates of one layout share all; plates of different layouts share only the
positions where the layouts agree), usable (imaged, unflagged) on both, with a finite readout.
For every pair of plates and every readout: the number of such wells ``n``, Pearson's ``r`` and
Spearman's ``rho`` (NaN below 3 wells or without variation).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = ["REPLICATE_COLUMNS", "paired_readouts", "replicate_agreement"]

#: Columns of ``replicates.parquet``.
REPLICATE_COLUMNS = ["readout", "plate_a", "plate_b", "n", "pearson_r", "spearman_rho"]


def _readouts(wells: pd.DataFrame, readouts: list[str] | None) -> list[str]:
    if readouts:
        cols = [r if r in wells else f"freq_{r}" for r in readouts]
        return [c for c in cols if c in wells]
    cols = [c for c in wells.columns if c.startswith("freq_")]
    return cols + [c for c in ("n_detected",) if c in wells]


def paired_readouts(wells: pd.DataFrame, a: str, b: str, readout: str) -> pd.DataFrame:
    """The wells plates ``a`` and ``b`` share (same position and condition, usable on both,
    finite values): columns ``well``, ``condition``, ``a``, ``b``.

    Examples
    --------
    >>> w = pd.DataFrame({"plate": ["p", "p", "q", "q"], "well": ["A01", "A02"] * 2,
    ...                   "condition": ["x", "y", "x", "z"], "usable": True,
    ...                   "freq_d": [0.1, 0.2, 0.3, 0.4]})
    >>> paired_readouts(w, "p", "q", "freq_d").to_dict("list")
    {'well': ['A01'], 'condition': ['x'], 'a': [0.1], 'b': [0.3]}
    """
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    w = wells[usable & wells["condition"].notna()]
    cols = ["well", "condition", readout]
    left = w.loc[w["plate"].astype(str) == a, cols]
    right = w.loc[w["plate"].astype(str) == b, cols]
    both = left.merge(right, on=["well", "condition"], suffixes=("_a", "_b"))
    both = both.rename(columns={f"{readout}_a": "a", f"{readout}_b": "b"})
    both["a"] = pd.to_numeric(both["a"], errors="coerce")
    both["b"] = pd.to_numeric(both["b"], errors="coerce")
    ok = np.isfinite(both["a"].to_numpy(float)) & np.isfinite(both["b"].to_numpy(float))
    return both[ok].reset_index(drop=True)


def replicate_agreement(wells: pd.DataFrame, readouts: list[str] | None = None) -> pd.DataFrame:
    """Pearson and Spearman correlation of every readout between every pair of plates.

    Parameters
    ----------
    wells
        A screen's wells table (``plate``, ``well``, ``condition``, ``usable``, readouts).
    readouts
        Readout columns (``freq_dead`` or ``dead``); default every ``freq_`` column and
        ``n_detected``.

    Returns
    -------
    pandas.DataFrame
        :data:`REPLICATE_COLUMNS`, one row per readout and pair of plates that share wells.
    """
    rows = []
    plates = sorted(wells["plate"].astype(str).unique())
    for readout in _readouts(wells, readouts):
        for a, b in combinations(plates, 2):
            pair = paired_readouts(wells, a, b, readout)
            if not len(pair):
                continue
            r = rho = np.nan
            x, y = pair["a"].to_numpy(float), pair["b"].to_numpy(float)
            if len(pair) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                r = float(sps.pearsonr(x, y).statistic)
                rho = float(sps.spearmanr(x, y).statistic)
            rows.append({"readout": readout, "plate_a": a, "plate_b": b, "n": len(pair),
                         "pearson_r": r, "spearman_rho": rho})
    out = pd.DataFrame(rows, columns=REPLICATE_COLUMNS)
    return out.astype({"readout": "string", "plate_a": "string", "plate_b": "string",
                       "n": "int64", "pearson_r": "float64", "spearman_rho": "float64"})
