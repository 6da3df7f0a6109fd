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
    h0, w0 = lab.shape
    levels, datasets = [], []
    for ds in ms["datasets"]:
        shape = image[ds["path"]].shape
        sy, sx = max(1, round(h0 / shape[-2])), max(1, round(w0 / shape[-1]))
        levels.append(lab[::sy, ::sx][: shape[-2], : shape[-1]])
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
        attrs = {"ome": {"version": version, "multiscales": multiscales,
                         "image-label": image_label}, "hcs": hcs}
    else:
        attrs = {"multiscales": multiscales, "image-label": image_label, "hcs": hcs}
    paths = [d["path"] for d in datasets]
    dims = [a["name"] for a in ms["axes"]] if fmt == 3 else None
    tmp = base / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        writer = _DirectWriter.get(fmt, tuple(paths), tuple(lv.shape for lv in levels),
                                   lab.dtype.str, None if dims is None else tuple(dims))
        if writer is not None:
            base.mkdir(exist_ok=True)
            writer.write(tmp, levels, attrs)
        else:
            _write_with_zarr(tmp, fmt, paths, levels, dims, attrs)
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


def _array_kwargs(shape: tuple[int, ...], dtype: str,
                  dims: tuple[str, ...] | None) -> dict[str, Any]:
    """What ``create_array`` gets for one level: the whole level in one chunk."""
    return {"shape": (1, 1, 1, *shape), "dtype": np.dtype(dtype),
            "chunks": (1, 1, 1, *shape),
            **({"dimension_names": list(dims)} if dims is not None else {})}


def _write_with_zarr(tmp: Path, fmt: int, paths: list[str], levels: list[np.ndarray],
                     dims: list[str] | None, attrs: dict[str, Any]) -> None:
    """Write the label image through zarr (what :class:`_DirectWriter` reproduces)."""
    import zarr

    g = zarr.create_group(str(tmp), zarr_format=fmt, attributes=attrs)
    for path, level in zip(paths, levels, strict=True):
        arr = g.create_array(path, **_array_kwargs(level.shape, level.dtype.str,
                                                   None if dims is None else tuple(dims)))
        arr[...] = level[None, None, None]


class _DirectWriter:
    """Writes a label image's files as zarr v3 does, without zarr's per-call machinery.

    Going through zarr costs ~5 ms of its event-loop machinery per array and per metadata
    document, most of a label image's cost on a 1080 x 1080 field. Here the ``zarr.json`` of
    each level is produced once by zarr itself (``create_array`` into a memory store with the
    arguments :func:`_write_with_zarr` gives) and copied, the group's ``zarr.json`` is the
    dict of zarr's own ``GroupMetadata`` with the attributes put in, serialised as zarr does,
    and each level's one chunk is encoded with the Zstd configuration zarr recorded (zarr's
    ``ZstdCodec`` is numcodecs' ``Zstd``). A chunk that is all fill value is not written, as
    zarr does not write it. Any other metadata (a codec chain other than bytes + zstd, another
    chunk key encoding, zarr v2, a big-endian machine) gives no writer and the caller goes
    through zarr; ``tests/test_labels.py`` checks that both give identical files.
    """

    _cache: dict[tuple[Any, ...], _DirectWriter | None] = {}

    def __init__(self, paths: tuple[str, ...], level_json: list[bytes], encoder: Any,
                 chunk_key: str, write_empty: bool, group_dict: dict[str, Any],
                 indent: int | None) -> None:
        self.paths = paths
        self.group_dict = group_dict
        self.indent = indent
        self.level_json = level_json
        self.encoder = encoder
        self.chunk_key = chunk_key
        self.write_empty = write_empty

    @classmethod
    def get(cls, fmt: int, paths: tuple[str, ...], shapes: tuple[tuple[int, ...], ...],
            dtype: str, dims: tuple[str, ...] | None) -> _DirectWriter | None:
        """The writer for label images of these levels (cached), or ``None``."""
        import zarr

        key = (fmt, paths, shapes, dtype, dims, zarr.__version__,
               bool(zarr.config.get("array.write_empty_chunks")),
               zarr.config.get("json_indent"))
        if key not in cls._cache:
            cls._cache[key] = cls._make(*key[:5]) if len(cls._cache) < 64 else None
        return cls._cache[key]

    @classmethod
    def _make(cls, fmt: int, paths: tuple[str, ...], shapes: tuple[tuple[int, ...], ...],
              dtype: str, dims: tuple[str, ...] | None) -> _DirectWriter | None:
        import sys

        import zarr
        from numcodecs import Zstd

        if fmt != 3 or sys.byteorder != "little" or any("/" in p for p in paths):
            return None
        store: dict[str, Any] = {}
        g = zarr.open_group(zarr.storage.MemoryStore(store), mode="w", zarr_format=3)
        for path, shape in zip(paths, shapes, strict=True):
            g.create_array(path, **_array_kwargs(shape, dtype, dims))
        level_json = [store[f"{p}/zarr.json"].to_bytes() for p in paths]
        chunk_key, encoder = None, None
        for raw in level_json:
            meta = json.loads(raw)
            codecs = meta.get("codecs") or []
            if ([c.get("name") for c in codecs] != ["bytes", "zstd"]
                    or codecs[0].get("configuration", {}).get("endian", "little") != "little"
                    or meta.get("attributes") or meta.get("fill_value") != 0):
                return None
            cfg = codecs[1].get("configuration", {})
            try:
                encoder = Zstd(level=int(cfg["level"]), checksum=bool(cfg["checksum"]))
            except (KeyError, TypeError, ValueError):
                return None
            cke = meta.get("chunk_key_encoding", {})
            sep = cke.get("configuration", {}).get("separator", "/")
            if cke.get("name") != "default" or sep not in ("/", "."):
                return None
            chunk_key = sep.join(["c"] + ["0"] * len(meta["shape"]))
        if chunk_key is None:
            return None
        # the group's zarr.json as zarr's GroupMetadata serialises it (its to_bytes: the
        # dataclass as a dict, json with zarr's indent); the attributes go in at write time
        # (a deep copy of them through dataclasses.asdict cost ~5 ms a field)
        from zarr.core.group import GroupMetadata

        group_dict = GroupMetadata(zarr_format=3).to_dict()
        if "attributes" not in group_dict:
            return None
        return cls(paths, level_json, encoder, chunk_key,
                   bool(zarr.config.get("array.write_empty_chunks")), group_dict,
                   zarr.config.get("json_indent"))

    def write(self, folder: Path, levels: list[np.ndarray], attrs: dict[str, Any]) -> None:
        """Write the group (with ``attrs``) and its levels into ``folder`` (must not exist)."""
        group = json.dumps({**self.group_dict, "attributes": attrs}, indent=self.indent,
                           allow_nan=True).encode()
        os.mkdir(folder)
        (folder / "zarr.json").write_bytes(group)
        for i, level in enumerate(levels):
            level_dir = folder / self.paths[i]
            os.mkdir(level_dir)
            (level_dir / "zarr.json").write_bytes(self.level_json[i])
            if not self.write_empty and not level.any():
                continue
            chunk = level_dir / self.chunk_key
            chunk.parent.mkdir(parents=True, exist_ok=True)
            chunk.write_bytes(bytes(self.encoder.encode(np.ascontiguousarray(level))))


def _label_ids(lab: np.ndarray) -> np.ndarray:
    """The non-zero values of a label mask, ascending (``np.unique`` without 0).

    Examples
    --------
    >>> _label_ids(np.array([[0, 5, 5], [2, 0, 9]], np.uint32)).tolist()
    [2, 5, 9]
    """
    top = int(lab.max(initial=0))
    if top <= 4 * lab.size and lab.dtype.itemsize <= 4:
        # a bincount of the foreground pixels instead of np.unique's hash or sort
        ids = np.flatnonzero(np.bincount(lab[lab != 0].ravel(), minlength=top + 1))
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
