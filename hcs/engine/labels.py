"""Label images in the plate: the nuclei masks of a run, as NGFF ``image-label`` images.

:func:`write_field_labels` writes ``<field>/labels/<name>`` next to a field's image (the image
and its metadata are never touched): a multiscale label image with the field's axes
``(t, c, z, y, x)`` of shape ``(1, 1, 1, H, W)`` at level 0 and the image's own pyramid (each
level nearest-neighbour subsampled to the image level's shape, with the image level's scale),
``image-label`` metadata (``source``, one colour and one ``cell_id`` property per label), and
the ``labels`` group listing it. Each label value is the ``cell_id`` of the run's cell table.

Atomic per field: the image is written under a hidden temporary name in ``labels/`` and
renamed into place (a killed run never leaves half a label image under its real name); a
label image already there is replaced only if hcs wrote it (its ``hcs`` attribute). The cell
table is written after it, so a field whose cell table exists has its final label image, and
a resumed run rewrites the labels of every field it processes, identically.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from hcs.errors import InputError

__all__ = ["label_name", "write_field_labels"]

_MARK = "hcs run"


def label_name(timepoints: int, timepoint: int, base: str = "nuclei") -> str:
    """``nuclei`` (``cells``), or ``nuclei_t<T>`` on a plate with several timepoints.

    Examples
    --------
    >>> label_name(1, 0), label_name(5, 3), label_name(1, 0, "cells")
    ('nuclei', 'nuclei_t3', 'cells')
    """
    return base if timepoints <= 1 else f"{base}_t{int(timepoint)}"


def _colour(i: int) -> list[int]:
    """A distinct, reproducible colour per label value (golden-angle hue)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 1.0)
    return [int(r * 255), int(g * 255), int(b * 255), 255]


def _ome(attrs: dict[str, Any], zarr_format: int) -> dict[str, Any]:
    return attrs.get("ome", {}) if zarr_format == 3 else attrs


def write_field_labels(plate: Any, well: str, field: int, labels: np.ndarray,
                       name: str = "nuclei", timepoint: int = 0) -> Path:
    """Write one field's label mask as ``<field>/labels/<name>`` of ``plate`` (an open
    :class:`hcs.io.omezarr.Plate`); returns the label image folder.

    Raises
    ------
    InputError
        A label image of that name exists that hcs did not write, or the plate is read-only.
    """
    import zarr

    image = plate.image_group(well, field)
    folder = Path(plate.path) / image.path
    fmt = int(image.metadata.zarr_format)
    ms = _ome(dict(image.attrs), fmt)["multiscales"][0]
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise InputError(f"well {well} field {field}: a label mask must be 2-D, got {lab.shape}")
    lab = lab.astype(np.uint32 if lab.max(initial=0) < 2 ** 32 else np.uint64)
    base = folder / "labels"
    target = base / name
    if target.exists() and _MARK not in json.dumps(_read_attrs(target, fmt).get("hcs", {})):
        raise InputError(f"{target}: a label image hcs did not write is in the way; remove it "
                         "or run with --no-labels")
    for stale in base.glob(f".{name}.*.tmp"):  # half-written by a killed run (ours: the name)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = base / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        g = zarr.open_group(str(tmp), mode="w", zarr_format=fmt)
        datasets = []
        h0, w0 = lab.shape
        for ds in ms["datasets"]:
            shape = image[ds["path"]].shape
            sy, sx = max(1, round(h0 / shape[-2])), max(1, round(w0 / shape[-1]))
            level = lab[::sy, ::sx][: shape[-2], : shape[-1]]
            arr = g.create_array(ds["path"], shape=(1, 1, 1, *level.shape), dtype=level.dtype,
                                 chunks=(1, 1, 1, *level.shape),
                                 **({"dimension_names": [a["name"] for a in ms["axes"]]}
                                    if fmt == 3 else {}))
            arr[...] = level[None, None, None]
            datasets.append({"path": ds["path"],
                             "coordinateTransformations": ds["coordinateTransformations"]})
        ids = _label_ids(lab)
        version = "0.5" if fmt == 3 else "0.4"
        image_label = {"version": version, "source": {"image": "../../"},
                       "colors": [{"label-value": int(i), "rgba": _colour(int(i))} for i in ids],
                       "properties": [{"label-value": int(i), "cell_id": int(i)} for i in ids]}
        multiscales = [{"name": name, "axes": ms["axes"], "datasets": datasets,
                        **({"version": version} if fmt == 2 else {})}]
        hcs = {"written_by": _MARK, "timepoint": int(timepoint)}
        if fmt == 3:
            g.attrs.update({"ome": {"version": version, "multiscales": multiscales,
                                    "image-label": image_label}, "hcs": hcs})
        else:
            g.attrs.update({"multiscales": multiscales, "image-label": image_label,
                            "hcs": hcs})
        if target.exists():  # ours (checked above): from an interrupted or earlier run
            old = base / f".{name}.{uuid.uuid4().hex}.old"
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(tmp, target)
    except PermissionError as exc:
        raise InputError(f"{folder}: cannot write label images into the plate ({exc}); "
                         "run with --no-labels") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _list_label(base, name, fmt)
    return target


def _label_ids(lab: np.ndarray) -> np.ndarray:
    """The non-zero values of a label mask, ascending (``np.unique`` without 0).

    Examples
    --------
    >>> _label_ids(np.array([[0, 5, 5], [2, 0, 9]], np.uint32)).tolist()
    [2, 5, 9]
    """
    top = int(lab.max(initial=0))
    if top <= 4 * lab.size:  # a bincount (one pass) instead of np.unique's hash or sort
        ids = np.flatnonzero(np.bincount(lab.ravel(), minlength=top + 1))
    else:
        ids = np.unique(lab)
    return ids[ids != 0]


def _read_attrs(group: Path, fmt: int) -> dict[str, Any]:
    meta = group / ("zarr.json" if fmt == 3 else ".zattrs")
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("attributes", {}) if fmt == 3 else data


def _list_label(base: Path, name: str, fmt: int) -> None:
    """Add ``name`` to the ``labels`` group's list (the group is the field's own: no other
    task writes it)."""
    import zarr

    g = zarr.open_group(str(base), mode="a", zarr_format=fmt)
    ome = _ome(dict(g.attrs), fmt)
    names = list(ome.get("labels", []))
    if name in names:
        return
    names.append(name)
    if fmt == 3:
        g.attrs["ome"] = {**ome, "version": "0.5", "labels": names}
    else:
        g.attrs["labels"] = names
