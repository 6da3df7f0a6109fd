"""Scheduling a run's fields on Dask: groups of fields, per-field second attempts, progress.

Each task processes ``fields_per_task`` consecutive fields (:func:`hcs.engine.tasks.process_fields`:
their crops share inference batches). A field that fails inside its group, and every field of a
group whose task fails as a whole (an inference error, a lost worker), is submitted again alone;
a field that fails alone too is recorded with ``attempts = 2``.

A run whose fields keep failing the same way stops early: after :data:`STOP_AFTER` fields in a
row failed twice with the same error (its well and numbers aside) and no
field succeeded in between, the remaining tasks are cancelled and :class:`RunStopped` says it
once (the failed fields are in ``failures.parquet``; ``--resume`` redoes the rest).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcs.engine.processor import EngineParams
from hcs.engine.tasks import process_fields
from hcs.errors import HcsError
from hcs.records import failure_record, utc_timestamp

__all__ = ["STOP_AFTER", "FailureStreak", "RunJob", "RunStopped", "execute", "execute_runs",
           "field_groups"]

#: Identical failures in a row (no field succeeding in between) that stop a run.
STOP_AFTER = 3


class RunStopped(HcsError):
    """The run stopped early: its fields kept failing with the same error."""


class FailureStreak:
    """Counts fields failing with the same error, no field succeeding in between.

    Examples
    --------
    >>> s = FailureStreak(3)
    >>> for well, f in [("A01", 0), ("A01", 1)]:
    ...     _ = s.failed(well, f, "ValueError", f"well {well} field {f}: no pixel size")
    >>> s.succeeded(); s.failed("B02", 0, "ValueError", "well B02 field 0: no pixel size")
    False
    >>> [s.failed("B02", i, "ValueError", f"well B02 field {i}: no pixel size")
    ...  for i in (1, 2)]
    [False, True]
    """

    def __init__(self, limit: int = STOP_AFTER) -> None:
        self.limit = limit
        self.key: tuple[str, str] | None = None
        self.count = 0

    @staticmethod
    def normalise(well: str, message: str) -> str:
        """The message without the failing well's name and with every number as ``#``, so
        the same error on other fields (other wells, fields, chunk paths) compares equal.

        Examples
        --------
        >>> FailureStreak.normalise("B03", "well B03 field 2: O/3/2/0 unreadable")
        'well <well> field #: O/#/#/# unreadable'
        """
        return re.sub(r"\d+", "#", message.replace(well, "<well>"))

    def failed(self, well: str, field_: int, error_type: str, message: str) -> bool:
        """Count a field that failed for good; True when the run should stop."""
        key = (error_type, self.normalise(well, message))
        self.count = self.count + 1 if key == self.key else 1
        self.key = key
        return self.count >= self.limit

    def succeeded(self) -> None:
        self.key, self.count = None, 0


def _progress(enabled: bool, total: int):  # noqa: ANN202 - rich types only when enabled
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hcs.progress import make_progress

    return make_progress("fields", [
        TextColumn("fields"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[cells_per_s]:.1f} cells/s"),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    ], enabled)


def field_groups(todo: list[tuple[str, int]], size: int) -> list[list[tuple[str, int]]]:
    """Consecutive groups of ``size`` fields (the last may be shorter).

    Examples
    --------
    >>> field_groups([("A01", 0), ("A01", 1), ("A02", 0)], 2)
    [[('A01', 0), ('A01', 1)], [('A02', 0)]]
    """
    return [todo[i: i + size] for i in range(0, len(todo), size)]


def execute(handle: Any, params: EngineParams, run_dir: Path, todo: list[tuple[str, int]],
             summary: Any, progress: bool, as_completed: Any,
             fields_per_task: int = 4) -> None:
    """Submit the groups; a field that fails in its group (or whose group task fails) is
    submitted again alone; a field failing alone is recorded (2 attempts in all)."""
    execute_runs(handle, [RunJob(params, run_dir, todo, summary)], progress, as_completed,
                 fields_per_task)


@dataclass
class RunJob:
    """The fields one run still has to do: its parameters, run folder, ``(well, field)`` list
    and the :class:`hcs.engine.run.RunSummary` that collects what happened."""

    params: EngineParams
    run_dir: Path
    todo: list[tuple[str, int]]
    summary: Any


def execute_runs(handle: Any, jobs: list[RunJob], progress: bool, as_completed: Any,
                 fields_per_task: int = 4) -> None:
    """Submit the field groups of several runs (the plates of a screen) at once, into one
    task graph on one cluster, so no worker waits for one plate to finish before the next
    starts; each run's results go to its own folder and summary.

    A field that fails in its group (or whose group task fails) is submitted again alone; a
    field failing alone is recorded in its run's summary (2 attempts in all). A streak of
    identical failures (:class:`FailureStreak`, counted per run) stops everything.
    """
    client = handle.client
    token = uuid.uuid4().hex[:8]
    dumped = [j.params.model_dump() for j in jobs]
    outs = [str(j.run_dir.resolve()) for j in jobs]
    # one index per run in the task keys: two plates have the same well names
    futures: dict[Any, tuple[int, str, list[tuple[str, int]]]] = {}
    for i, job in enumerate(jobs):
        for g in field_groups(job.todo, fields_per_task):
            fut = client.submit(process_fields, dumped[i], outs[i], g, pure=False,
                                resources=handle.resources,
                                key=f"fields-{i}-{g[0][0]}-{g[0][1]}-{len(g)}-{token}")
            futures[fut] = (i, "group", g)
    t0 = time.perf_counter()
    streaks = [FailureStreak() for _ in jobs]

    def record(i: int, failure: dict[str, Any]) -> None:
        """A field failed its second attempt: record it; stop the run after a streak."""
        summary, streak = jobs[i].summary, streaks[i]
        summary.failures.append(failure)
        summary.fields_failed += 1
        if streak.failed(failure["well"], failure["field"], failure["error_type"],
                         failure["error"]):
            raise RunStopped(
                f"stopped: {streak.count} fields failed with the same error and none "
                f"succeeded (last: well {failure['well']} field {failure['field']}: "
                f"{failure['error_type']}: {' '.join(str(failure['error']).split())}); fix the "
                "cause and run again (hcs run: with --resume; failed fields are in "
                "failures.parquet)")

    total = sum(len(j.todo) for j in jobs)
    with _progress(progress, total) as bar:
        task = bar.add_task("fields", total=total, cells_per_s=0.0, failed=0)
        ac = as_completed(list(futures))
        try:
            for fut in ac:
                i, kind, items = futures.pop(fut)
                summary = jobs[i].summary
                again: list[tuple[str, int]] = []
                if fut.status == "finished":
                    res = fut.result()
                    if res["fields"]:
                        streaks[i].succeeded()
                    summary.fields_done += len(res["fields"])
                    summary.cells += int(res["n_cells"])
                    summary.tasks.append(res)
                    advance = len(res["fields"])
                    if kind == "group":
                        again = [(f["well"], f["field"]) for f in res["failed"]]
                    for f in res["failed"] if kind == "single" else []:
                        advance += 1
                        record(i, {**f, "attempts": 2, "time": utc_timestamp()})
                else:
                    exc = fut.exception()
                    advance = 0
                    if kind == "group":
                        again = list(items)
                    else:
                        advance = 1
                        record(i, failure_record(*items[0], exc, attempts=2,
                                                 time=utc_timestamp()))
                fut.release()
                if kind == "group":
                    for well, fld in again:  # second attempt, alone
                        # errors come back as records, not raised: a worker logs a raised
                        # error with its whole traceback
                        retry = client.submit(process_fields, dumped[i], outs[i], [(well, fld)],
                                              False, pure=False, resources=handle.resources,
                                              key=f"field-{i}-{well}-{fld}-{token}")
                        futures[retry] = (i, "single", [(well, fld)])
                        ac.add(retry)
                cells = sum(j.summary.cells for j in jobs)
                failed = sum(j.summary.fields_failed for j in jobs)
                rate = cells / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=advance, cells_per_s=rate, failed=failed)
        except BaseException:
            client.cancel(list(futures))
            raise
