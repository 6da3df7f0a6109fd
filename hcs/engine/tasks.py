"""The tasks: read fields chunk by chunk, process them, write each cell table atomically.

:func:`process_fields` is what a Dask worker runs for a group of fields (and
:func:`process_field`, a group of one, what the single-process baseline calls): the plate and
the :class:`~hcs.engine.processor.PipelineProcessor` are opened once per worker process and
reused; a field is read plane by plane, only the channels detection and classification use, of
the chosen timepoint (one zarr chunk per plane, so every read is exactly one chunk); crops of
consecutive fields share inference batches (:mod:`hcs.engine.batching`); and
``cells/<well>/<field>.parquet`` appears only when complete.
"""

from __future__ import annotations

import ctypes
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hcs.atomic import atomic_write_parquet as _atomic_parquet
from hcs.engine.processor import EngineParams, FieldMeta, get_processor
from hcs.errors import InputError, PlateDataError
from hcs.plate import parse_well
from hcs.records import failure_record
from hcs.timing import stage

__all__ = ["atomic_write_parquet", "cells_path", "process_field", "process_fields", "read_field"]

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
    """Peak resident size of this process: ``VmHWM``. Not ``ru_maxrss``, which a spawned
    process inherits from its parent across fork + exec (a Dask worker would report the peak of
    the process that started the cluster)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    A field's transient arrays (float planes, watershed labels, ~200 MB for 1080 px) are freed
    after each field, but glibc keeps freed blocks in its arenas; without a trim the resident
    size of a worker creeps up with fragmentation, i.e. with the number of fields it ran.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def read_field(params: EngineParams, well: str, field: int,
               channels: tuple[int, ...] | None = None) -> tuple[Any, FieldMeta]:
    """Channels ``channels`` (plate indices; all when None) of timepoint ``params.timepoint``
    of one field, as ``(c, z, y, x)``, read chunk by chunk."""
    plate = _plate(params.plate)
    arr = plate.field(well, field)
    t = params.timepoint
    if t >= arr.sizes["t"]:
        raise InputError(f"well {well} field {field}: no timepoint {t} "
                         f"(the field has {arr.sizes['t']})")
    names = tuple(plate.channels) or tuple(str(i) for i in range(arr.sizes["c"]))
    chans = list(range(arr.sizes["c"])) if channels is None else list(channels)
    files = _check_chunks(plate, well, field, t, chans, arr.sizes["z"])
    arr = arr.isel(t=t) if channels is None else arr.isel(t=t, c=list(channels))
    try:
        image = arr.data.compute(scheduler="synchronous")  # one chunk per plane: aligned reads
    except Exception as exc:
        shown = ", ".join(str(f) for f in files[:2]) + (" ..." if len(files) > 2 else "")
        raise PlateDataError(f"well {well} field {field}: cannot read the plate chunk {shown} "
                             f"({type(exc).__name__}: {exc}); convert the export again"
                             ) from None
    r, c = parse_well(well)
    meta = FieldMeta(plate=str(plate.name or Path(params.plate).name), well=well, row=r, col=c,
                     field=int(field), channels=names,
                     pixel_size_um=float(plate.pixel_size_um[1]),
                     z_step_um=plate.z_step_um,
                     image_channels=None if channels is None else tuple(channels), timepoint=t)
    return image, meta


def _check_chunks(plate: Any, well: str, field: int, t: int, channels: list[int],
                  size_z: int) -> list[Path]:
    """The chunk files of the planes read; a missing one is a :class:`PlateDataError`.

    A missing chunk reads as zeros (the fill value), i.e. as an empty field. hcs stores every
    chunk it writes, so an absent file of a plane not recorded missing at convert is damage.
    """
    recorded = {(int(m["t"]), int(m["c"]), int(m["z"])) for m in plate.missing_planes(well, field)}
    planes = [(t, c, z) for c in channels for z in range(size_z)]
    files = plate.chunk_files(well, field, planes)
    seen: list[Path] = []
    for (pt, pc, pz), paths in files.items():
        for f in paths:
            if not f.is_file() and (pt, pc, pz) not in recorded:
                raise PlateDataError(f"well {well} field {field}: chunk file {f} (t {pt}, c {pc},"
                                     f" z {pz}) is missing from the plate; convert the export "
                                     "again")
            if f not in seen:
                seen.append(f)
    return seen


def missing_plane_count(plate: Any, well: str, field: int, t: int,
                        channels: list[int] | None) -> int:
    """Planes of ``well``/``field`` at timepoint ``t`` in ``channels`` (all when None) that
    convert recorded as missing (written as zeros)."""
    return sum(1 for m in plate.missing_planes(well, field)
               if int(m["t"]) == t and (channels is None or int(m["c"]) in channels))


def process_fields(params: EngineParams | dict, run_dir: str, items: list[tuple[str, int]],
                   raise_errors: bool = False) -> dict[str, Any]:
    """Process a group of fields, batching crops across them, and write each cell table.

    A field that cannot be read or detected is reported in ``failed`` (the others go on; the
    engine retries it alone); an error in inference or writing fails the whole task.

    Returns
    -------
    dict
        ``fields`` (``well, field, n_cells`` per field written), ``failed`` (``well, field,
        error_type, error``), ``n_cells``, ``seconds`` (task time), ``read_seconds``,
        ``batches``, ``padded`` (blank crops completing the last batch), ``pid``, ``rss`` and
        ``peak_rss`` (bytes, of the worker process).
    """
    from hcs.engine.batching import FieldBatcher

    if isinstance(params, dict):
        params = EngineParams(**params)
    t0 = time.perf_counter()
    processor = get_processor(params)
    batcher = FieldBatcher(processor, params.batch_size)
    written: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    t_read = 0.0

    n_missing: dict[tuple[str, int], int] = {}

    def write(prepared: list[Any]) -> None:
        for prep in prepared:
            with stage("write"):
                write_one(prep)

    def write_one(prep: Any) -> None:
        cells = processor.finish(prep)
        if prep.qc is not None:  # stored with the table: a field without cells keeps it
            cells.attrs["image_qc"] = prep.qc
        m = prep.meta
        # planes convert recorded missing (zeros): every cell of the field carries the flag
        cells["field_missing_planes"] = pd.Series(
            n_missing.get((m.well, int(m.field)), 0), index=cells.index, dtype="int64")
        if prep.labels:  # the label images first, then the table (resume)
            from hcs.engine.labels import label_name, write_field_labels

            plate = _plate(params.plate)
            for base, mask in prep.labels.items():
                write_field_labels(plate, m.well, m.field, mask,
                                   label_name(int(plate.shape[0]), m.timepoint, base),
                                   m.timepoint)
            prep.labels = None
        atomic_write_parquet(cells, cells_path(run_dir, m.well, m.field))
        written.append({"well": m.well, "field": m.field, "n_cells": len(cells)})

    for well, field in items:
        try:
            t1 = time.perf_counter()
            with stage("read"):
                channels = processor.read_channels(tuple(_plate(params.plate).channels))
                image, meta = read_field(params, well, int(field), channels)
                n_missing[(well, int(field))] = missing_plane_count(
                    _plate(params.plate), well, int(field), params.timepoint,
                    None if channels is None else list(channels))
            t_read += time.perf_counter() - t1
            prep = processor.prepare(image, meta)
            del image
        except Exception as exc:
            if raise_errors:
                raise
            failed.append(failure_record(well, field, exc))
            continue
        write(batcher.add(prep) if processor.needs_crops else [prep])  # detection only: now
        del prep
    write(batcher.flush())
    release_memory()
    return {"fields": written, "failed": failed, "n_cells": sum(w["n_cells"] for w in written),
            "seconds": time.perf_counter() - t0, "read_seconds": t_read,
            "batches": batcher.batches, "padded": batcher.padded, "pid": os.getpid(),
            "rss": _rss_bytes(), "peak_rss": _peak_rss_bytes(),
            "ru_maxrss": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}


def process_field(params: EngineParams | dict, run_dir: str, well: str, field: int) -> dict:
    """Process one field (a group of one) and write its cell table; errors propagate.

    Returns
    -------
    dict
        ``well, field, n_cells, seconds`` (task time), ``read_seconds``, ``pid``, ``rss`` and
        ``peak_rss`` (bytes, of the worker process).
    """
    res = process_fields(params, run_dir, [(well, int(field))], raise_errors=True)
    return {"well": well, "field": int(field), "n_cells": res["n_cells"],
            "seconds": res["seconds"], "read_seconds": res["read_seconds"], "pid": res["pid"],
            "rss": res["rss"], "peak_rss": res["peak_rss"]}
