"""OME-NGFF HCS plates: open lazily (:func:`open_plate`); written by
:func:`hcs.io.convert.write_plate`.

A plate written by hcs is read back as a :class:`Plate` whose fields are lazy
:class:`xarray.DataArray` views (dask arrays over the zarr chunks, one chunk per plane) with
dims ``(t, c, z, y, x)`` and physical coordinates (um, s). Both NGFF 0.5 (zarr v3) and 0.4
(zarr v2) plates open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from hcs.errors import InputError
from hcs.io.plate_meta import downsample2, pyramid_shapes, to_json_safe
from hcs.plate import PlateGeometry, parse_well, row_name, well_name

__all__ = [
    "Plate",
    "downsample2",
    "is_plate",
    "open_plate",
    "pyramid_shapes",
    "to_json_safe",
]


def _ome_attrs(group: zarr.Group) -> dict[str, Any]:
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", attrs))


def is_plate(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an OME-NGFF plate group (0.4 or 0.5)."""
    p = Path(path)
    if not p.is_dir() or not ((p / "zarr.json").is_file() or (p / ".zattrs").is_file()):
        return False
    try:
        return "plate" in _ome_attrs(zarr.open_group(str(p), mode="r"))
    except Exception:
        return False


class Plate:
    """An OME-NGFF HCS plate opened read-only.

    Attributes
    ----------
    path
        The plate folder.
    geometry
        Rows x columns of the plate.
    wells
        Names (``A01`` ..) of the wells present, row-major.
    channels
        Channel names (from ``omero`` labels).
    pixel_size_um
        (y, x) pixel size of level 0 in micrometres; ``None`` when the export did not state it
        (the NGFF scale is then 1.0 per pixel).
    z_step_um
        Z spacing of level 0 in micrometres (the NGFF z scale); ``None`` with ``pixel_size_um``.
    attrs
        The ``hcs`` plate attributes (provenance, channels, missing planes), ``{}`` if absent.
    ngff
        NGFF version, ``"0.5"`` or ``"0.4"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_plate(self.path):
            if not self.path.exists():
                raise InputError(f"{self.path}: no such plate (the path does not exist)")
            raise InputError(f"{self.path}: not an OME-NGFF plate (no plate metadata found); "
                             "an export is converted first (hcs convert, or hcs analyze)")
        self._root = zarr.open_group(str(self.path), mode="r")
        ome = _ome_attrs(self._root)
        plate = ome["plate"]
        self.ngff: str = str(ome.get("version") or plate.get("version"))
        self.name: str | None = plate.get("name")
        self._rows = [r["name"] for r in plate["rows"]]
        self._cols = [c["name"] for c in plate["columns"]]
        self.geometry = PlateGeometry(len(self._rows), len(self._cols))
        self._well_paths: dict[str, str] = {}
        for w in plate["wells"]:
            name = well_name(int(w["rowIndex"]), int(w["columnIndex"]))
            self._well_paths[name] = w["path"]
        self.wells: list[str] = sorted(self._well_paths, key=parse_well)
        self.attrs: dict[str, Any] = dict(self._root.attrs.get("hcs", {}))
        self._first_image = self._image_group(self.wells[0], self.fields(self.wells[0])[0])
        first = _ome_attrs(self._first_image)
        self._multiscale = first["multiscales"][0]
        omero = first.get("omero", {})
        self.channels: list[str] = [ch["label"] for ch in omero.get("channels", [])]
        scale0 = self._scale(0)
        self.pixel_size_um: tuple[float, float] | None = (scale0[3], scale0[4])
        if "pixel_size_um" in self.attrs and self.attrs["pixel_size_um"] is None:
            self.pixel_size_um = None  # export did not state it; the NGFF scale is 1 per pixel
        self.z_step_um: float | None = None if self.pixel_size_um is None else scale0[2]

    def __repr__(self) -> str:
        return (
            f"Plate({str(self.path)!r}, {self.geometry.rows}x{self.geometry.columns}, "
            f"{len(self.wells)} wells, channels={self.channels})"
        )

    def _scale(self, level: int) -> list[float]:
        ds = self._multiscale["datasets"][level]
        return [float(v) for v in ds["coordinateTransformations"][0]["scale"]]

    def _well_group(self, well: str) -> zarr.Group:
        r, c = parse_well(well)
        name = well_name(r, c)
        if name not in self._well_paths:
            raise InputError(f"{self.path}: well {well} not in the plate (has {len(self.wells)})")
        return self._root[self._well_paths[name]]

    def fields(self, well: str) -> list[int]:
        """Field indices of one well (as written in the well metadata)."""
        images = _ome_attrs(self._well_group(well))["well"]["images"]
        return [int(im["path"]) for im in images]

    def _image_group(self, well: str, field: int) -> zarr.Group:
        if field not in self.fields(well):
            raise InputError(f"{self.path}: well {well} has no field {field}")
        return self._well_group(well)[str(field)]

    def image_group(self, well: str, field: int) -> zarr.Group:
        """The zarr group of one field's image (read-only; ``.path`` is its path in the
        plate)."""
        return self._image_group(well, field)

    @property
    def n_levels(self) -> int:
        return len(self._multiscale["datasets"])

    def field(self, well: str, field: int, level: int = 0) -> Any:
        """One field as a lazy :class:`xarray.DataArray` with dims (t, c, z, y, x).

        Coordinates: ``c`` channel names, ``t`` in seconds, ``z``/``y``/``x`` in micrometres
        (pixel index times the level's scale). Data are dask arrays chunked like the zarr
        chunks (one plane per chunk); call ``.compute()`` or ``.values`` to read.
        """
        import dask.array as da
        import xarray as xr

        img = self._image_group(well, field)
        ms = _ome_attrs(img)["multiscales"][0]
        if not 0 <= level < len(ms["datasets"]):
            raise InputError(
                f"{self.path}: level {level} does not exist (0..{len(ms['datasets']) - 1})"
            )
        ds = ms["datasets"][level]
        arr = img[ds["path"]]
        data = da.from_zarr(arr, chunks=arr.chunks)
        scale = [float(v) for v in ds["coordinateTransformations"][0]["scale"]]
        t, c, z, y, x = arr.shape
        channels = self.channels if len(self.channels) == c else [str(i) for i in range(c)]
        coords = {
            "t": np.arange(t) * scale[0],
            "c": channels,
            "z": np.arange(z) * scale[2],
            "y": np.arange(y) * scale[3],
            "x": np.arange(x) * scale[4],
        }
        return xr.DataArray(
            data,
            dims=("t", "c", "z", "y", "x"),
            coords=coords,
            name=f"{well_name(*parse_well(well))}/{field}",
            attrs={"units": {"t": "second", "z": "micrometer", "y": "micrometer",
                             "x": "micrometer"}},
        )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._first_image[self._multiscale["datasets"][0]["path"]].dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        """(t, c, z, y, x) of level 0 of the first field."""
        return tuple(self._first_image[self._multiscale["datasets"][0]["path"]].shape)

    def missing_planes(self, well: str | None = None,
                       field: int | None = None) -> list[dict[str, Any]]:
        """Planes recorded missing at convert (``attrs["missing_planes"]``: ``well, field, t,
        c, z, path, reason``), all of them or those of one well / field. They were written as
        zeros; every analysis of the field must say so."""
        recs = self.attrs.get("missing_planes") or []
        w = None if well is None else well_name(*parse_well(well))
        return [dict(m) for m in recs if (w is None or m.get("well") == w)
                and (field is None or int(m.get("field", -1)) == int(field))]

    def chunk_files(self, well: str, field: int, planes: list[tuple[int, int, int]],
                    level: int = 0) -> dict[tuple[int, int, int], list[Path]]:
        """The files holding each ``(t, c, z)`` plane of a field at ``level``: its chunks, or
        the shard holding them (one file per plane, or per field for a sharded plate).

        A plate hcs writes stores every chunk, zero planes included, so an absent file is
        damage, not "all zeros" (see :func:`hcs.engine.tasks.read_field`).
        """
        import itertools

        img = self._image_group(well, field)
        ds = _ome_attrs(img)["multiscales"][0]["datasets"][level]
        arr = img[ds["path"]]
        grid = arr.shards or arr.chunks
        yx = list(itertools.product(*(range(-(-n // g)) for n, g in
                                      zip(arr.shape[3:], grid[3:], strict=True))))
        root = self.path / arr.path
        out: dict[tuple[int, int, int], list[Path]] = {}
        for t, c, z in planes:
            out[(t, c, z)] = [root / arr.metadata.encode_chunk_key(
                (t // grid[0], c // grid[1], z // grid[2], iy, ix)) for iy, ix in yx]
        return out

    def row_names(self) -> list[str]:
        return list(self._rows)

    def well_path(self, well: str) -> str:
        """Zarr path of a well, e.g. ``B03`` -> ``B/3``."""
        r, c = parse_well(well)
        return f"{row_name(r)}/{c + 1}"


def open_plate(path: str | Path) -> Plate:
    """Open an OME-NGFF HCS plate (0.5 or 0.4) read-only.

    Parameters
    ----------
    path
        The ``.ome.zarr`` plate folder.

    Returns
    -------
    Plate
        Lazy view: ``plate.field("B03", 0)`` is an xarray DataArray over dask.
    """
    return Plate(path)
