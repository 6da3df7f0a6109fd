"""Write an :class:`~hcs.io.acquisition.Acquisition` as an OME-NGFF HCS plate (DESIGN.md).

Layout written (``ngff="0.5"``, zarr v3)::

    OUT.ome.zarr/                 plate group: ome.plate (rows, columns, wells, field_count,
      zarr.json                   acquisitions) + hcs (provenance, channels, missing planes)
      B/3/                        well group: ome.well.images = fields
        0/                        one multiscale image per field, axes t,c,z,y,x
          0/  1/  2/ ...          levels: 0 lossless full size, then 2x means down to <= 256 px
      vendor/                     vendor metadata files, byte for byte

Level 0 has one chunk per (t, c, z) plane and one shard per field; ``ngff="0.4"`` writes the same
tree on zarr v2 (no shards) for older viewers.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_multiscales_metadata, write_plate_metadata, write_well_metadata

from hcs.atomic import WRITTEN_BY, atomic_dir, check_replaceable
from hcs.errors import InputError, OutputError
from hcs.io.acquisition import KEY_COLUMNS, Acquisition, probe_tiff, read_plane
from hcs.io.plate_meta import (
    copy_vendor,
    downsample2,
    missing_records,
    omero_metadata,
    provenance,
    pyramid_shapes,
    to_json_safe,
)
from hcs.io.shards import FieldPyramidWriter
from hcs.params import PlateDtype
from hcs.plate import row_name, well_name

__all__ = ["PLATE_DTYPES", "fit_plane", "write_plate"]

#: Plate dtypes ``write_plate(dtype=...)`` / ``hcs convert --dtype`` accept.
PLATE_DTYPES: tuple[str, ...] = get_args(PlateDtype)
AXES_05 = [
    {"name": "t", "type": "time", "unit": "second"},
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def fit_plane(
    arr: np.ndarray, dtype: np.dtype, path: str | Path, *, reinterpret_signed: bool = False
) -> np.ndarray:
    """``arr`` as ``dtype`` when every value survives unchanged, else an error naming ``path``.

    A plane whose dtype or range the plate dtype cannot hold (a float plane with fractions in a
    uint16 plate, negative values in an unsigned plate, values above 65535 in uint16 ...) is
    an :class:`~hcs.errors.InputError`: casting would silently change the pixels.
    ``reinterpret_signed`` views a signed plane as unsigned of the same width first (scanR
    records the signedness wrongly, :mod:`hcs.io.scanr`).

    Examples
    --------
    >>> fit_plane(np.array([1.0, 2.0], dtype=np.float32), np.dtype("uint16"), "a.tif")
    array([1, 2], dtype=uint16)
    >>> fit_plane(np.array([0.5]), np.dtype("uint16"), "a.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: a.tif: the float64 plane (values 0.5 .. 0.5) cannot be stored in ...
    """
    if reinterpret_signed and arr.dtype.kind == "i":
        arr = arr.view(f"uint{8 * arr.dtype.itemsize}")
    if arr.dtype == dtype:
        return arr
    if np.can_cast(arr.dtype, dtype, "safe"):
        return arr.astype(dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = arr.astype(dtype)
        same = np.array_equal(out.astype(arr.dtype), arr, equal_nan=dtype.kind == "f")
    if same:
        return out
    lo, hi = (np.nanmin(arr), np.nanmax(arr)) if np.isfinite(arr).any() else (arr.min(), arr.max())
    wide = np.promote_types(arr.dtype, dtype)
    hint = f"; convert with --dtype {wide}" if str(wide) in PLATE_DTYPES else ""
    raise InputError(
        f"{path}: the {arr.dtype} plane (values "
        f"{float(lo):.6g} .. {float(hi):.6g}) cannot be stored in the plate's {dtype} "
        f"without changing its values{hint}"
    )


def _image_shape_dtype(acq: Acquisition, missing: set[tuple]) -> tuple[tuple[int, int], np.dtype]:
    if acq.image_shape is not None and acq.dtype is not None:
        return (int(acq.image_shape[0]), int(acq.image_shape[1])), np.dtype(acq.dtype)
    for rec in acq.planes.itertuples(index=False):
        key = tuple(int(getattr(rec, k)) for k in KEY_COLUMNS)
        if key not in missing:
            shape, dtype = probe_tiff(rec.path, int(rec.page))
            return tuple(acq.image_shape or shape), np.dtype(acq.dtype or dtype)  # type: ignore[return-value]
    raise InputError(f"{acq.source}: no readable plane in the export (all planes are missing)")


def _time_step(acq: Acquisition) -> float:
    times = acq.planes.groupby("t")["time_s"].median().sort_index().to_numpy(dtype=float)
    if len(times) > 1 and np.isfinite(times).all():
        step = float(np.median(np.diff(times)))
        if step > 0:
            return step
    return 1.0


class _Rate:
    """Thread-safe plane/byte counter feeding the progress bar."""

    def __init__(self, advance: Callable[[int, int], None] | None) -> None:
        self.lock = threading.Lock()
        self.planes = 0
        self.bytes = 0
        self.advance = advance

    def add(self, planes: int, nbytes: int) -> None:
        with self.lock:
            self.planes += planes
            self.bytes += nbytes
            if self.advance is not None:
                self.advance(planes, nbytes)


def _compressors(zarr_format: int) -> Any:
    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        return [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")]
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE)


def _array_kwargs(shape: tuple[int, ...], dtype: np.dtype, zarr_format: int) -> dict[str, Any]:
    """``create_array`` arguments of one pyramid level: a chunk per plane, a shard per array."""
    kwargs: dict[str, Any] = {
        "shape": shape,
        "chunks": (1, 1, 1, *shape[3:]),
        "dtype": dtype,
        "fill_value": 0,
        "compressors": _compressors(zarr_format),
        # every chunk stored, zeros too: an absent chunk is damage, never "all zeros"
        "config": {"write_empty_chunks": True},
    }
    if zarr_format == 3:
        kwargs["shards"] = shape
        kwargs["dimension_names"] = ["t", "c", "z", "y", "x"]
    else:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    return kwargs


def _write_field(
    well_group: zarr.Group,
    field: int,
    planes: pd.DataFrame,
    missing: set[tuple],
    size: tuple[int, int, int, int, int],
    dtype: np.dtype,
    levels: list[tuple[int, int]],
    zarr_format: int,
    rate: _Rate,
    reinterpret_signed: bool = False,
    single_page: bool = False,
    writer: FieldPyramidWriter | None = None,
    field_dir: Path | None = None,
) -> np.ndarray:
    """Read one field's planes, write its pyramid; return per-channel (p0.1, p99.9) of the
    lowest level for the display window. ``writer`` writes the zarr v3 shards directly
    (:mod:`hcs.io.shards`, the same bytes) into ``field_dir``; without it the arrays are
    written through zarr."""
    data = np.zeros(size, dtype=dtype)
    plane_bytes = size[3] * size[4] * dtype.itemsize
    for rec in planes.itertuples(index=False):
        key = (int(rec.row), int(rec.col), int(rec.field), int(rec.z), int(rec.channel), int(rec.t))
        if key not in missing:
            plane = read_plane(rec.path, int(rec.page), expect_shape=size[3:],
                               single_page=single_page)
            data[int(rec.t), int(rec.channel), int(rec.z)] = fit_plane(
                plane, dtype, rec.path, reinterpret_signed=reinterpret_signed
            )
    pyramid = [data]
    for _ in levels[1:]:
        pyramid.append(downsample2(pyramid[-1]))
    if writer is not None:
        writer.write(field_dir, pyramid)
    else:
        image = well_group.create_group(str(field))
        for i, level in enumerate(pyramid):
            arr = image.create_array(str(i), **_array_kwargs(level.shape, dtype, zarr_format))
            arr[...] = level
    level = pyramid[-1]
    # count planes once written, so the bar's MB/s is the end-to-end rate
    n_planes = size[0] * size[1] * size[2]
    rate.add(n_planes, n_planes * plane_bytes)
    flat = level.transpose(1, 0, 2, 3, 4).reshape(size[1], -1)
    return np.percentile(flat, [0.1, 99.9], axis=1).T


def _progress_bar(total: int, enabled: bool) -> tuple[Any, Callable[[int, int], None] | None]:
    """A progress display (bar on a terminal, periodic lines otherwise) and its advance()."""
    if not enabled:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hcs.progress import make_progress

    progress = make_progress("converting planes", [
        TextColumn("converting planes"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[mb_per_s]} MB/s"), TimeElapsedColumn(), TimeRemainingColumn(),
    ])
    task = progress.add_task("convert", total=total, mb_per_s="")
    start = time.perf_counter()
    done = {"bytes": 0}

    def advance(planes: int, nbytes: int) -> None:
        done["bytes"] += nbytes
        mbps = done["bytes"] / 1e6 / max(time.perf_counter() - start, 1e-6)
        progress.update(task, advance=planes, mb_per_s=f"{mbps:.1f}")

    return progress, advance


def write_plate(
    acq: Acquisition,
    out: str | Path,
    *,
    ngff: str = "0.5",
    overwrite: bool = False,
    strict: bool = False,
    workers: int | None = None,
    progress: bool = True,
    dtype: str | None = None,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write an acquisition as an OME-NGFF HCS plate, atomically.

    Parameters
    ----------
    acq
        The acquisition (from :func:`hcs.io.open_export` or a reader).
    out
        Output folder, conventionally ``<name>.ome.zarr``.
    ngff
        ``"0.5"`` (zarr v3, sharded) or ``"0.4"`` (zarr v2, for older viewers).
    overwrite
        Replace an existing ``out``; without it an existing ``out`` is an
        :class:`~hcs.errors.OutputExistsError`, raised before any work.
    strict
        Refuse exports with missing planes (:class:`~hcs.errors.InputError` naming them); by
        default missing planes are written as zeros and listed in
        ``attrs["hcs"]["missing_planes"]``.
    workers
        Threads reading and writing fields in parallel (default ``os.cpu_count()``). At most this
        many fields are held in memory at once.
    progress
        Show a progress bar (planes done / total and MB/s) on stderr.
    dtype
        Plate dtype (one of :data:`PLATE_DTYPES`); default the dtype of the first image. Every
        plane must fit it exactly (:func:`fit_plane`), else an error names the file.
    inputs
        Further inputs ``out`` must stay clear of (the export folder the user named); the
        acquisition's own folder, vendor files and image folders are always included.

    Returns
    -------
    Path
        ``out``. The plate is built in ``OUT.partial-<pid>`` and renamed at the end, so a failed
        conversion leaves nothing that looks like a plate (:func:`hcs.atomic.atomic_dir`).

    Raises
    ------
    InputError
        Bad export, a plane the plate dtype cannot hold, or ``out`` that is, contains or lies
        inside an input, or exists and is not an hcs plate (with ``overwrite``).
    OutputError
        The disk is full (or a quota is exceeded) while writing; the partial plate is removed.
    """
    out = Path(out)
    if ngff not in ("0.5", "0.4"):
        raise InputError(f"unsupported NGFF version {ngff!r}; choose 0.5 or 0.4")
    if dtype is not None and str(dtype) not in PLATE_DTYPES:
        raise InputError(f"unsupported plate dtype {dtype!r}; choose {', '.join(PLATE_DTYPES)}")
    image_dirs = {os.path.dirname(p) for p in acq.planes["path"].dropna()}
    inputs = [acq.source, *acq.vendor_files, *sorted(image_dirs), *inputs]
    check_replaceable(out, inputs=inputs, overwrite=overwrite)
    if not len(acq.planes):
        raise InputError(f"{acq.source}: the export lists no planes")
    missing_df = acq.missing_planes()
    missing_list = missing_records(missing_df)
    if strict and missing_list:
        first = ", ".join(
            f"well {m['well']} field {m['field']} t {m['t']} c {m['c']} z {m['z']} "
            f"({m['path'] or 'no file'}: {m['reason']})"
            for m in missing_list[:3]
        )
        raise InputError(f"{acq.source}: {len(missing_list)} missing plane(s) (--strict): {first}")
    missing = {tuple(int(getattr(r, k)) for k in KEY_COLUMNS) for r in missing_df.itertuples()}
    for f in acq.vendor_files:
        if not Path(f).is_file():
            raise InputError(f"{f}: vendor metadata file listed by the reader does not exist")
    shape, plate_dtype = _image_shape_dtype(acq, missing)
    if dtype is not None:
        plate_dtype = np.dtype(dtype)
    elif plate_dtype == np.bool_:
        plate_dtype = np.dtype("uint8")  # a 1-bit TIFF: 0/1 as uint8, values unchanged
    elif str(plate_dtype) not in PLATE_DTYPES:
        raise InputError(
            f"{acq.planes['path'].iloc[0]}: {plate_dtype} images cannot be stored in a plate; "
            f"convert with --dtype (one of {', '.join(PLATE_DTYPES)}) that holds their values"
        )

    try:
        with atomic_dir(out, inputs=inputs, overwrite=overwrite) as partial:
            _write_tree(acq, partial, ngff, shape, plate_dtype, missing, missing_list, workers,
                        progress)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or isinstance(exc, OutputError):
            raise
        where = exc.filename or out.parent / f"{out.name}.partial-{os.getpid()}"
        raise OutputError(
            exc.errno, f"{out}: {exc.strerror or os.strerror(exc.errno)} while writing {where} "
            "(disk full or quota exceeded); the partial plate was removed"
        ) from None
    return out


def _write_tree(
    acq: Acquisition,
    root_path: Path,
    ngff: str,
    shape: tuple[int, int],
    dtype: np.dtype,
    missing: set[tuple],
    missing_list: list[dict],
    workers: int | None,
    show_progress: bool,
) -> None:
    fmt = FormatV05() if ngff == "0.5" else FormatV04()
    zarr_format = fmt.zarr_format
    root = zarr.open_group(str(root_path), mode="a", zarr_format=zarr_format)  # holds the marker
    size_tcz = (acq.size_t, acq.size_c, acq.size_z)
    levels = pyramid_shapes(shape)
    writer = None
    if zarr_format == 3:
        writer = FieldPyramidWriter.create(
            [(*size_tcz, ly, lx) for ly, lx in levels], dtype,
            lambda s: _array_kwargs(s, dtype, zarr_format),
        )
    pixel = acq.pixel_size_um or (1.0, 1.0)
    z_step = acq.z_step_um or 1.0
    t_step = _time_step(acq)

    # --- pixels: one task per field, at most `workers` fields in memory -----------------------
    groups = {k: g for k, g in acq.planes.groupby(["row", "col", "field"], sort=True)}
    well_groups: dict[tuple[int, int], zarr.Group] = {}
    for r, c, _ in groups:
        if (r, c) not in well_groups:
            well_groups[(r, c)] = root.require_group(row_name(int(r))).require_group(str(c + 1))
    n_planes = len(groups) * int(np.prod(size_tcz))
    bar, advance = _progress_bar(n_planes, show_progress)
    rate = _Rate(advance)
    windows: list[np.ndarray] = []
    n_workers = max(1, workers or os.cpu_count() or 1)
    t0 = time.perf_counter()
    if bar is not None:
        bar.start()
    try:
        pool = ThreadPoolExecutor(max_workers=n_workers)
        try:
            futures = [
                pool.submit(
                    _write_field, well_groups[(r, c)], int(f), sub, missing,
                    (*size_tcz, *shape), dtype, levels, zarr_format, rate,
                    acq.vendor_format == "scanr", acq.vendor_format == "tiff-folder", writer,
                    root_path / well_groups[(r, c)].path / str(int(f)),
                )
                for (r, c, f), sub in groups.items()
            ]
            wait(futures, return_when=FIRST_EXCEPTION)
            for fut in futures:
                if fut.done() and not fut.cancelled() and fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
            windows = [fut.result() for fut in futures]
        finally:
            # on failure or Ctrl-C: drop queued fields, let running ones finish, then clean up
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.perf_counter() - t0

    # --- metadata ------------------------------------------------------------------------------
    omero = omero_metadata(acq, windows, dtype)
    datasets = [
        {
            "path": str(i),
            "coordinateTransformations": [
                {"type": "scale", "scale": [t_step, 1.0, z_step, pixel[0] * 2**i, pixel[1] * 2**i]}
            ],
        }
        for i in range(len(levels))
    ]
    stage = acq.planes.groupby(["row", "col", "field"])[["stage_x_um", "stage_y_um"]].first()

    def image_metadata(key: tuple[int, int, int]) -> None:
        r, c, f = key
        img = well_groups[(r, c)][str(f)]
        write_multiscales_metadata(
            img, datasets=datasets, fmt=fmt, axes=AXES_05, name=f"{well_name(r, c)} field {f}",
            metadata={"omero": {**omero, "channels": [dict(ch) for ch in omero["channels"]]}},
        )
        sx, sy = stage.loc[(r, c, f)]
        img.attrs["hcs"] = to_json_safe(
            {"well": well_name(r, c), "field": int(f), "stage_x_um": sx, "stage_y_um": sy}
        )

    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        list(pool.map(image_metadata, list(groups)))
    fields_per_well: dict[tuple[int, int], list[int]] = {}
    for r, c, f in groups:
        fields_per_well.setdefault((r, c), []).append(int(f))
    for (r, c), fields in fields_per_well.items():
        write_well_metadata(
            well_groups[(r, c)], [{"path": str(f), "acquisition": 0} for f in fields], fmt=fmt
        )
    write_plate_metadata(
        root,
        rows=acq.geometry.row_names(),
        columns=acq.geometry.column_names(),
        wells=[f"{row_name(int(r))}/{c + 1}" for r, c in fields_per_well],
        fmt=fmt,
        acquisitions=[{"id": 0, "name": str(acq.plate_name)}],
        field_count=max(len(f) for f in fields_per_well.values()),
        name=str(acq.plate_name),
    )
    vendor = copy_vendor(acq.vendor_files, acq.source, root_path / "vendor")
    hcs_attrs = {"written_by": WRITTEN_BY, **provenance(acq, missing_list, vendor, ngff)}
    hcs_attrs["dtype"] = str(dtype)
    hcs_attrs["stats"] = {
        "wells": len(fields_per_well),
        "fields": len(groups),
        "planes": rate.planes,
        "missing": len(missing_list),
        "bytes": rate.bytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(rate.bytes / 1e6 / max(seconds, 1e-9), 2),
        "workers": n_workers,
    }
    root.attrs["hcs"] = hcs_attrs
