"""End to end: ``hcs analyze`` (export -> report, resumable) and ``hcs demo`` (a simulated
screen analysed and checked against its truth).

See :mod:`hcs.analyze.pipeline`, :mod:`hcs.analyze.demo`, :mod:`hcs.analyze.recovery` and
:mod:`hcs.analyze.manifest`.
"""

from hcs.analyze.demo import DEMOS, DemoResult, run_demo
from hcs.analyze.pipeline import DEFAULT_MODELS, AnalyzeResult, analyze

__all__ = ["DEFAULT_MODELS", "DEMOS", "AnalyzeResult", "DemoResult", "analyze",
           "run_demo"]
