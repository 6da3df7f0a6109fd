"""Statistics of a wells table: condition comparisons, dose-response fits and plate QC.

- :mod:`hcs.stats.compare`: Student/Welch t-tests, 95% CIs, Hedges' g, multiple-testing
  corrections, plates as blocks;
- :mod:`hcs.stats.dose`: 4-parameter logistic fits with CIs;
- :mod:`hcs.stats.qc`: Z'-factor, SSMD, cell-count outliers, median polish and B-scores;
- :mod:`hcs.stats.run`: :func:`run_stats`, the whole ``stats.parquet`` table in one call.
"""

from hcs.stats.compare import adjust_pvalues, stars, two_sample_summary
from hcs.stats.dose import fit_4pl, logistic4
from hcs.stats.qc import bscores, median_polish, robust_z, ssmd, z_prime
from hcs.stats.run import STATS_COLUMNS, load_wells, run_stats

__all__ = [
    "STATS_COLUMNS",
    "adjust_pvalues",
    "bscores",
    "fit_4pl",
    "load_wells",
    "logistic4",
    "median_polish",
    "robust_z",
    "run_stats",
    "ssmd",
    "stars",
    "two_sample_summary",
    "z_prime",
]
