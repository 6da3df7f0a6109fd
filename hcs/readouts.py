"""Per-well readouts from per-cell measurements: percent positive and feature summaries.

- :func:`parse_positive` reads ``--positive PH3[:otsu|:gmm|:>VALUE]``;
  :func:`choose_threshold` picks the threshold once per plate on the nuclear mean intensity
  of the channel (``Nuclei_Intensity_MeanIntensity_<channel>`` of every cell of the plate):
  ``otsu`` (the default; Otsu's criterion evaluated exactly at every gap between the sorted
  log10 intensities, not on a 256-bin histogram), ``gmm`` (a 2-component scikit-learn
  Gaussian mixture on log10 intensities; the threshold is where the brighter component
  becomes the more probable) or a given value;
- :func:`well_feature_summary` gives every well ``n_<ch>_positive``, ``freq_<ch>_positive``
  (share of the well's counted cells) and the median and MAD (unscaled median absolute
  deviation) of each ``basic`` feature: ``median_Nuclei_AreaShape_Area``,
  ``mad_Nuclei_AreaShape_Area``, ...
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError

__all__ = ["PositiveSpec", "choose_threshold", "parse_positive", "well_feature_summary"]

#: Features summarised per well: every basic feature but the object's position in the field.
_SKIP = re.compile(r"_AreaShape_Center_[XY]$")


@dataclass(frozen=True)
class PositiveSpec:
    """One ``--positive`` readout: channel (column-safe name), method and given threshold."""

    channel: str
    method: str  # otsu | gmm | value
    value: float | None = None

    @property
    def column(self) -> str:
        """The cell-table column thresholded."""
        return f"Nuclei_Intensity_MeanIntensity_{self.channel}"

    def as_dict(self, threshold: float) -> dict[str, Any]:
        return {"channel": self.channel, "method": self.method, "threshold": float(threshold),
                "column": self.column}


def parse_positive(text: str) -> PositiveSpec:
    """``PH3``, ``PH3:gmm``, ``PH3:otsu`` or ``PH3:>1500`` -> :class:`PositiveSpec`.

    Examples
    --------
    >>> parse_positive("PH3:>1500")
    PositiveSpec(channel='PH3', method='value', value=1500.0)
    >>> parse_positive("Alexa 488").channel
    'Alexa_488'
    """
    from hcs.measure import safe_name

    name, _, method = str(text).partition(":")
    if not name.strip():
        raise InputError(f"--positive {text!r}: expected CHANNEL[:otsu|:gmm|:>VALUE]")
    method = method.strip() or "otsu"
    if method.startswith(">"):
        try:
            return PositiveSpec(safe_name(name.strip()), "value", float(method[1:]))
        except ValueError:
            raise InputError(f"--positive {text!r}: {method[1:]!r} is not a number") from None
    if method not in ("otsu", "gmm"):
        raise InputError(f"--positive {text!r}: method must be otsu, gmm or >VALUE")
    return PositiveSpec(safe_name(name.strip()), method)


def choose_threshold(values: np.ndarray, spec: PositiveSpec) -> float:
    """The intensity above which a cell is positive (see the module docstring).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = np.concatenate([rng.normal(300, 20, 900), rng.normal(3000, 200, 100)])
    >>> 400 < choose_threshold(v, PositiveSpec("PH3", "otsu")) < 2400
    True
    >>> 400 < choose_threshold(v, PositiveSpec("PH3", "gmm")) < 2400
    True
    """
    if spec.method == "value":
        return float(spec.value)  # type: ignore[arg-type]
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.ptp(v) == 0:
        raise InputError(f"--positive {spec.channel}: {len(v)} cells with distinct "
                         f"{spec.column} values are too few to choose a threshold; give one "
                         f"({spec.channel}:>VALUE)")
    logv = np.log10(np.maximum(v, 1e-6))
    if spec.method == "otsu":
        return float(10 ** _otsu_exact(logv))
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(2, random_state=0).fit(logv[:, None])
    hi = int(np.argmax(gm.means_.ravel()))
    grid = np.linspace(logv.min(), logv.max(), 2001)
    post = gm.predict_proba(grid[:, None])[:, hi]
    lo_mean = float(gm.means_.ravel()[1 - hi])
    above = np.flatnonzero((post >= 0.5) & (grid > lo_mean))
    return float(10 ** grid[above[0]]) if len(above) else float(10 ** grid[-1])


def _otsu_exact(values: np.ndarray) -> float:
    """Otsu's threshold over every split of the sorted values (no histogram bins, which put a
    tight negative population's top values above a binned threshold): the midpoint of the gap
    that maximises the between-class variance."""
    v = np.sort(values)
    n = len(v)
    k = np.arange(1, n)  # split after position k - 1
    c = np.cumsum(v)
    m0 = c[:-1] / k
    m1 = (c[-1] - c[:-1]) / (n - k)
    between = k * (n - k) * (m0 - m1) ** 2
    between[v[1:] == v[:-1]] = -1  # no split between equal values
    i = int(np.argmax(between))
    return float((v[i] + v[i + 1]) / 2)


def feature_columns(columns: Sequence[str]) -> list[str]:
    """The basic features summarised per well (no field positions)."""
    from hcs.measure import basic_feature_columns

    return [c for c in basic_feature_columns(columns) if not _SKIP.search(c)]


def well_feature_summary(cells: pd.DataFrame, features: Sequence[str],
                         positive: dict[PositiveSpec, float]) -> dict[str, float]:
    """Readouts of one well's cells: percent positive and median / MAD of ``features``.

    ``cells`` holds the well's counted cells (pair halves removed); ``positive`` maps each
    readout to its plate threshold. A cell is positive when its value is strictly above it.

    Examples
    --------
    >>> c = pd.DataFrame({"Nuclei_Intensity_MeanIntensity_PH3": [10.0, 50.0, 60.0, 5.0]})
    >>> s = well_feature_summary(c, ["Nuclei_Intensity_MeanIntensity_PH3"],
    ...                          {PositiveSpec("PH3", "value", 20.0): 20.0})
    >>> s["n_PH3_positive"], s["freq_PH3_positive"], s["median_Nuclei_Intensity_MeanIntensity_PH3"]
    (2, 0.5, 30.0)
    """
    out: dict[str, float] = {}
    n = len(cells)
    for spec, thr in positive.items():
        k = int((cells[spec.column].to_numpy(np.float64) > thr).sum()) if n else 0
        out[f"n_{spec.channel}_positive"] = k
        out[f"freq_{spec.channel}_positive"] = k / n if n else np.nan
    for f in features:
        v = cells[f].to_numpy(np.float64) if n else np.zeros(0)
        v = v[np.isfinite(v)]
        med = float(np.median(v)) if len(v) else np.nan
        out[f"median_{f}"] = med
        out[f"mad_{f}"] = float(np.median(np.abs(v - med))) if len(v) else np.nan
    return out
