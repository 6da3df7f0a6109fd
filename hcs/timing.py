"""Per-stage CPU and wall seconds of field processing (issue 20), for benchmarks.

Off unless the environment variable ``HCS_STAGE_TIMES`` is set to ``1`` when :mod:`hcs.timing`
is first imported (or :func:`enable` is called): then every ``with stage(name):`` block adds its
CPU seconds (:func:`time.process_time`, all threads of the process) and wall seconds to a
per-process total. Off, :func:`stage` returns one shared do-nothing context manager, so the
hooks left in the field path cost a function call each.

Stages of one field, in order (:data:`STAGES`): ``read`` (the plate chunks),
``background/threshold`` (smoothing, background surface, noise, threshold, hole filling),
``seeds/watershed`` (distance transform, seeds, watershed, size filter, detections),
``measurements`` (the detection table and :func:`hcs.measure.measure_objects`), ``image QC``,
``compose`` (the classifier's input planes), ``crop``, ``classify`` and ``write`` (the cell table
and its parquet file). Stages may nest (a detector called inside a timed block); the totals of
the stages above do not overlap.

Examples
--------
>>> from hcs import timing
>>> timing.enable(True); timing.reset()
>>> with timing.stage("read"):
...     _ = sum(range(1000))
>>> timing.totals()["read"]["calls"]
1
>>> timing.enable(False)
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

__all__ = ["STAGES", "enable", "enabled", "reset", "stage", "totals"]

STAGES: tuple[str, ...] = ("read", "background/threshold", "seeds/watershed", "measurements",
                           "image QC", "compose", "crop", "classify", "write")

_ENABLED = os.environ.get("HCS_STAGE_TIMES", "") not in ("", "0")
_TOTALS: dict[str, dict[str, float]] = {}
_OFF = nullcontext()


class _Stage(AbstractContextManager):
    __slots__ = ("name", "cpu", "wall")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> _Stage:
        self.cpu = time.process_time()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        t = _TOTALS.setdefault(self.name, {"cpu": 0.0, "wall": 0.0, "calls": 0})
        t["cpu"] += time.process_time() - self.cpu
        t["wall"] += time.perf_counter() - self.wall
        t["calls"] += 1


def stage(name: str) -> AbstractContextManager:
    """Context manager adding the block's CPU and wall seconds to stage ``name`` (when on)."""
    return _Stage(name) if _ENABLED else _OFF


def enable(on: bool = True) -> None:
    """Switch stage timing on or off in this process (the default comes from
    ``HCS_STAGE_TIMES``)."""
    global _ENABLED
    _ENABLED = bool(on)


def enabled() -> bool:
    """True when :func:`stage` records."""
    return _ENABLED


def reset() -> None:
    """Forget the totals recorded so far."""
    _TOTALS.clear()


def totals() -> dict[str, dict[str, float]]:
    """``{stage: {"cpu": s, "wall": s, "calls": n}}`` recorded since the last :func:`reset`
    (a copy), stages in :data:`STAGES` order, then any others."""
    order = [s for s in STAGES if s in _TOTALS] + [s for s in _TOTALS if s not in STAGES]
    return {s: dict(_TOTALS[s]) for s in order}
