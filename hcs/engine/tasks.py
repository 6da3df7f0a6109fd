"""The per-field task: read one field lazily, process it, write its cell table atomically.

:func:`process_field` is what a Dask worker runs (and what the single-process baseline calls):
the plate and the :class:`~hcs.engine.processor.FieldProcessor` are opened once per worker
process and reused, the field is read plane by plane (one zarr chunk per plane, only the
channels the pipeline needs), and ``cells/<well>/<field>.parquet`` appears only when complete.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hcs.atomic import atomic_write_parquet as _atomic_parquet
from hcs.engine.processor import EngineParams, FieldMeta, get_processor
from hcs.plate import parse_well

__all__ = ["atomic_write_parquet", "cells_path", "process_field"]

_PLATES: dict[str, Any] = {}
_PLATES_LOCK = threading.Lock()


def cells_path(run_dir: str | Path, well: str, field: int) -> Path:
    """``RUN_DIR/cells/<well>/<field>.parquet``.

    Examples
    --------
    >>> cells_path("run", "B03", 2).as_posix()
    'run/cells/B03/2.parquet'
    """
    return Path(run_dir) / "cells" / well / f"{int(field)}.parquet"


def atomic_write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    return _atomic_parquet(df, path, fsync=True)


def _plate(path: str) -> Any:
    from hcs.io.omezarr import open_plate

    with _PLATES_LOCK:
        if path not in _PLATES:
            _PLATES[path] = open_plate(path)
        return _PLATES[path]


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def read_field(params: EngineParams, well: str, field: int) -> tuple[Any, FieldMeta]:
    """The channels the pipeline uses of timepoint 0 of one field, as ``(c, z, y, x)``."""
    plate = _plate(params.plate)
    arr = plate.field(well, field).isel(t=0)
    image = arr.data.compute(scheduler="synchronous")  # one zarr chunk per plane: aligned reads
    r, c = parse_well(well)
    meta = FieldMeta(plate=str(plate.name or Path(params.plate).name), well=well, row=r, col=c,
                     field=int(field), channels=tuple(plate.channels) or tuple(
                         str(i) for i in range(image.shape[0])),
                     pixel_size_um=float(plate.pixel_size_um[1]))
    return image, meta


def process_field(params: EngineParams | dict, run_dir: str, well: str, field: int) -> dict:
    """Process one field and write its cell table; return a summary for progress and benchmarks.

    Returns
    -------
    dict
        ``well, field, n_cells, seconds`` (task time), ``read_seconds``, ``pid``, ``peak_rss``
        (bytes, of the worker process so far).
    """
    if isinstance(params, dict):
        params = EngineParams(**params)
    t0 = time.perf_counter()
    processor = get_processor(params)
    image, meta = read_field(params, well, field)
    t_read = time.perf_counter() - t0
    cells = processor.process(image, meta)
    atomic_write_parquet(cells, cells_path(run_dir, well, field))
    return {"well": well, "field": int(field), "n_cells": len(cells),
            "seconds": time.perf_counter() - t0, "read_seconds": t_read, "pid": os.getpid(),
            "peak_rss": _peak_rss_bytes()}
