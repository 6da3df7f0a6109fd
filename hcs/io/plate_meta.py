"""Pure helpers of the plate writer: pyramid levels, JSON-safe attributes, provenance, omero.

Kept apart from :mod:`hcs.io.convert` (the I/O pipeline) so the reader and ``hcs info`` can
use them without pulling in the writer.
"""

from __future__ import annotations

import math
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.io.acquisition import Acquisition
from hcs.plate import well_name
from hcs.records import sha256_file, utc_timestamp

#: A pyramid stops once the larger image side is at most this many pixels.
MIN_LEVEL_SIZE = 256


def to_json_safe(obj: Any) -> Any:
    """Recursively turn numpy scalars, paths, tuples, NaN and datetimes into plain JSON values.

    Examples
    --------
    >>> to_json_safe({"a": np.float32(1.5), "b": (1, float("nan")), "c": Path("x")})
    {'a': 1.5, 'b': [1, None], 'c': 'x'}
    """
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return to_json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def pyramid_shapes(shape_yx: tuple[int, int]) -> list[tuple[int, int]]:
    """(y, x) of each pyramid level: halve (rounding up) until <= 256 px, at least two levels.

    Examples
    --------
    >>> pyramid_shapes((1080, 1080))
    [(1080, 1080), (540, 540), (270, 270), (135, 135)]
    >>> pyramid_shapes((100, 60))
    [(100, 60), (50, 30)]
    """
    shapes = [tuple(shape_yx)]
    while len(shapes) < 2 or max(shapes[-1]) > MIN_LEVEL_SIZE:
        y, x = shapes[-1]
        if y == 1 and x == 1:
            break
        shapes.append((max(1, -(-y // 2)), max(1, -(-x // 2))))
    return [(int(y), int(x)) for y, x in shapes]


def downsample2(arr: np.ndarray) -> np.ndarray:
    """2x2 block mean over the last two axes (edges replicated for odd sizes), same dtype.

    Integer means round half up (exact integer arithmetic, no float copy of the field).

    Examples
    --------
    >>> downsample2(np.array([[0, 2, 4], [2, 4, 7]], dtype=np.uint16))
    array([[2, 6]], dtype=uint16)
    """
    y, x = arr.shape[-2:]
    if y % 2 or x % 2:
        pad = [(0, 0)] * (arr.ndim - 2) + [(0, y % 2), (0, x % 2)]
        arr = np.pad(arr, pad, mode="edge")
    quads = (arr[..., 0::2, 0::2], arr[..., 1::2, 0::2], arr[..., 0::2, 1::2], arr[..., 1::2, 1::2])
    if arr.dtype.kind == "u":
        # unsigned: sum in the next wider unsigned type, +2 and >> 2 is the rounded mean
        total = np.add(quads[0], quads[1], dtype=f"u{2 * arr.dtype.itemsize}")
        total += quads[2]
        total += quads[3]
        total += 2
        total >>= 2
        return total.astype(arr.dtype)
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize <= 4:
        wide = np.int64 if arr.dtype.itemsize == 4 else np.int32
        total = quads[0].astype(wide)
        for q in quads[1:]:
            total += q
        return ((total + 2) // 4).astype(arr.dtype)
    total = quads[0].astype(np.float64)
    for q in quads[1:]:
        total += q
    return (total / 4).astype(arr.dtype)


def missing_records(missing: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "well": well_name(int(r.row), int(r.col)),
            "field": int(r.field),
            "t": int(r.t),
            "c": int(r.channel),
            "z": int(r.z),
            "path": None if pd.isna(r.path) else str(r.path),
            "reason": str(r.reason),
        }
        for r in missing.itertuples(index=False)
    ]


def copy_vendor(files: list[Path], source: Path, dest: Path) -> list[str]:
    """Copy vendor files verbatim; keep names, use sub-folders only when names collide."""
    files = [Path(f) for f in files]
    names = [f.name for f in files]
    collide = len(set(names)) != len(names)
    written = []
    for f in files:
        if not f.is_file():
            raise InputError(f"{f}: vendor metadata file listed by the reader does not exist")
        rel = Path(f.name)
        if collide:
            try:
                rel = f.resolve().relative_to(Path(source).resolve())
            except ValueError:
                rel = Path(f.parent.name) / f.name
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        written.append(rel.as_posix())
    return written


def omero_metadata(acq: Acquisition, windows: list[np.ndarray], dtype: np.dtype) -> dict[str, Any]:
    if np.issubdtype(dtype, np.integer):
        lo, hi = float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
    else:
        lo = float(min(w[:, 0].min() for w in windows)) if windows else 0.0
        hi = float(max(w[:, 1].max() for w in windows)) if windows else 1.0
    stack = np.stack(windows) if windows else np.zeros((1, acq.size_c, 2))
    channels = []
    for c, ch in enumerate(acq.channels):
        start = float(np.median(stack[:, c, 0]))
        end = float(np.median(stack[:, c, 1]))
        if end <= start:
            end = start + 1.0
        channels.append(
            {
                "label": ch.name,
                "color": (ch.color or "FFFFFF").upper(),
                "active": True,
                "window": {"min": lo, "max": max(hi, end), "start": start, "end": end},
            }
        )
    return {"channels": channels, "rdefs": {"model": "color"}}


def provenance(acq: Acquisition, missing: list[dict], vendor: list[str], fmt: str) -> dict:
    from hcs import __version__
    from hcs.io.physical import fill_sources

    fill_sources(acq)
    return to_json_safe(
        {
            "version": __version__,
            "ngff": fmt,
            "vendor_format": acq.vendor_format,
            "source": str(Path(acq.source).resolve()),
            "index_file": str(acq.index_file) if acq.index_file else None,
            "index_sha256": sha256_file(Path(acq.index_file)) if acq.index_file else None,
            "converted_at": utc_timestamp(),
            "plate_name": acq.plate_name,
            "geometry": {"rows": acq.geometry.rows, "columns": acq.geometry.columns},
            "instrument": acq.instrument,
            "attrs": acq.attrs,
            "pixel_size_um": list(acq.pixel_size_um) if acq.pixel_size_um else None,
            "z_step_um": acq.z_step_um,
            "sources": dict(acq.sources),
            "channels": [
                {
                    "name": ch.name,
                    "type": ch.channel_type,
                    "excitation_nm": ch.excitation_nm,
                    "emission_nm": ch.emission_nm,
                    "color": ch.color,
                    "flatfield": ch.flatfield,
                    "metadata": ch.metadata,
                }
                for ch in acq.channels
            ],
            "vendor_files": vendor,
            "missing_planes": missing,
        }
    )
