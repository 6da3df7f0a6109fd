"""The HTML screen report: one self-contained file per run (``hcs report RUN_DIR``).

:func:`build_report` reads a run folder and writes the page; :mod:`hcs.report.sections` builds
each section, :mod:`hcs.report.figures` and :mod:`hcs.report.curves` the plotly figures,
:mod:`hcs.report.gallery` the cell thumbnails.
"""

from hcs.report.builder import build_report, load_run

__all__ = ["build_report", "load_run"]
