"""Training labels from a dead-stain channel: the two-component Gaussian-mixture rule.

The stain-free live/dead paper fits a 2-component Gaussian mixture to the mean PI intensity of
the patches, labels as live everything below ``mu_live + sd_live`` and as dead everything above
``mu_dead - sd_dead``, and discards the band in between. Here the same rule is applied per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcs.errors import InputError


@dataclass(frozen=True)
class GmmThresholds:
    """Fitted mixture (live = lower-mean component) and the two labelling thresholds."""

    mu_live: float
    sd_live: float
    mu_dead: float
    sd_dead: float

    @property
    def live_below(self) -> float:
        """Cells with stain below this are live (``mu_live + sd_live``)."""
        return self.mu_live + self.sd_live

    @property
    def dead_above(self) -> float:
        """Cells with stain above this are dead (``mu_dead - sd_dead``)."""
        return self.mu_dead - self.sd_dead


def fit_gmm_thresholds(intensity: np.ndarray, seed: int = 0) -> GmmThresholds:
    """Fit a 2-component Gaussian mixture (scikit-learn) to per-cell dead-stain intensities.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(224.5, 34.5, 3000), rng.normal(550.4, 153.6, 1000)]
    >>> t = fit_gmm_thresholds(x)
    >>> abs(t.live_below - 258.97) < 5, abs(t.dead_above - 396.89) < 25  # the paper's values
    (True, True)
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(intensity, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if len(x) < 10:
        raise InputError(f"need >= 10 finite stain intensities to fit the mixture, got {len(x)}")
    if np.ptp(x) == 0:
        raise InputError("all stain intensities are equal: no live/dead mixture to fit")
    gmm = GaussianMixture(2, random_state=seed, tol=1e-7, max_iter=2000).fit(x[:, None])
    mu = gmm.means_.ravel()
    sd = np.sqrt(gmm.covariances_.ravel())
    lo, hi = np.argsort(mu)
    return GmmThresholds(float(mu[lo]), float(sd[lo]), float(mu[hi]), float(sd[hi]))


def gmm_labels(
    intensity: np.ndarray, thresholds: GmmThresholds | None = None, seed: int = 0
) -> tuple[np.ndarray, GmmThresholds]:
    """Live / dead / discarded label per cell by the mixture rule.

    Returns
    -------
    (labels, thresholds)
        ``labels`` is an object array of ``"live"``, ``"dead"`` or ``None`` (in the band, or when
        the two thresholds overlap, ambiguous and discarded).

    Examples
    --------
    >>> t = GmmThresholds(100.0, 10.0, 300.0, 50.0)
    >>> gmm_labels(np.array([90, 150, 260, 400]), t)[0].tolist()
    ['live', None, 'dead', 'dead']
    """
    x = np.asarray(intensity, dtype=float)
    t = thresholds or fit_gmm_thresholds(x, seed)
    live = x < t.live_below
    dead = x > t.dead_above
    out = np.full(x.shape, None, dtype=object)
    out[live & ~dead] = "live"
    out[dead & ~live] = "dead"
    return out, t
