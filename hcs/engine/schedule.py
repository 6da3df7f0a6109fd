"""Scheduling a run's fields on Dask: groups of fields, per-field second attempts, progress.

Each task processes ``fields_per_task`` consecutive fields (:func:`hcs.engine.tasks.process_fields`:
their crops share inference batches). A field that fails inside its group, and every field of a
group whose task fails as a whole (an inference error, a lost worker), is submitted again alone;
a field that fails alone too is recorded with ``attempts = 2``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from hcs.engine.processor import EngineParams
from hcs.engine.tasks import process_fields
from hcs.records import failure_record, utc_timestamp

__all__ = ["execute", "field_groups"]


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
    client = handle.client
    token = uuid.uuid4().hex[:8]
    p = params.model_dump()
    out = str(run_dir.resolve())
    futures: dict[Any, tuple[str, list[tuple[str, int]]]] = {}
    for g in field_groups(todo, fields_per_task):
        fut = client.submit(process_fields, p, out, g, pure=False, resources=handle.resources,
                            key=f"fields-{g[0][0]}-{g[0][1]}-{len(g)}-{token}")
        futures[fut] = ("group", g)
    t0 = time.perf_counter()
    with _progress(progress, len(todo)) as bar:
        task = bar.add_task("fields", total=len(todo), cells_per_s=0.0, failed=0)
        ac = as_completed(list(futures))
        try:
            for fut in ac:
                kind, items = futures.pop(fut)
                again: list[tuple[str, int]] = []
                if fut.status == "finished":
                    res = fut.result()
                    summary.fields_done += len(res["fields"])
                    summary.cells += int(res["n_cells"])
                    summary.tasks.append(res)
                    advance = len(res["fields"])
                    again = [(f["well"], f["field"]) for f in res["failed"]]
                else:
                    exc = fut.exception()
                    advance = 0
                    if kind == "group":
                        again = list(items)
                    else:
                        summary.failures.append(failure_record(*items[0], exc, attempts=2,
                                                                            time=utc_timestamp()))
                        summary.fields_failed += 1
                        advance = 1
                fut.release()
                if kind == "group":
                    for well, fld in again:  # second attempt, alone
                        retry = client.submit(process_fields, p, out, [(well, fld)], True,
                                              pure=False, resources=handle.resources,
                                              key=f"field-{well}-{fld}-{token}")
                        futures[retry] = ("single", [(well, fld)])
                        ac.add(retry)
                rate = summary.cells / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=advance, cells_per_s=rate, failed=summary.fields_failed)
        except BaseException:
            client.cancel(list(futures))
            raise
