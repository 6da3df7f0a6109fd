"""Reader for Harmony exports (Opera Phenix, Operetta, Operetta CLS): index XML + TIFF planes.

FORMATS.md section 1 describes the format. In short: the index (``Index.xml``, ``Index.idx.xml``,
``Index.ref.xml`` or ``Index.flex.xml``) lists one ``Images/Image`` per TIFF plane with its well,
field, plane, channel and timepoint IDs, stage position and file ``URL``. Schema V5 repeats the
channel metadata in every ``Image``; V6/V7 keep it once per channel in ``Maps/Map/Entry``
(any ``Map`` block) and an ``Image``'s own value wins.

The index is parsed in one streaming pass (``iterparse``, elements cleared as they end), so
indexes of ~100k planes read in a few seconds.

Vendor IDs become dense 0-based indices. ``SequenceID`` and ``FlimID`` are part of the plane key:

- if every ``ChannelID`` comes with a single ``SequenceID`` (channels grouped into acquisition
  sequences, as in V7), the sequence says nothing more than the channel and is ignored;
  otherwise the same channel was acquired in several sequences and (TimepointID, SequenceID)
  pairs are folded, in sorted order, into dense ``t``;
- likewise if a ``ChannelID`` comes with several ``FlimID``\\ s, (ChannelID, FlimID) pairs become
  distinct dense channels, named ``"<name> (flim <id>)"``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.io.acquisition import (
    CHANNEL_TYPES,
    LENGTH_TO_UM,
    Acquisition,
    Channel,
    check_unique_keys,
    dense_index,
    inside_export,
    probe_tiff,
    resolve_inside,
)
from hcs.io.flatfield import flatfield_surface, parse_flatfield_profile
from hcs.io.harmony_index import INDEX_NAMES, find_index, parse_index, schema_name
from hcs.plate import MAX_ROWS, PlateGeometry

__all__ = ["INDEX_NAMES", "find_index", "flatfield_surface", "read_harmony"]


def _num(cols: dict[str, list], name: str, index: Path, required: bool) -> pd.Series:
    values = cols[name]
    try:  # fast path: every value numeric (None -> NaN)
        arr = np.asarray(values, dtype=np.float64)
        if not (required and np.isnan(arr).any()):
            return pd.Series(arr)
    except (TypeError, ValueError):
        pass
    raw = pd.Series(values, dtype=object)
    vals = pd.to_numeric(raw.str.strip(), errors="coerce")
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    bad = vals.isna() & (~blank | required)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        what = "missing" if blank[i] else f"not a number ({raw[i]!r})"
        raise InputError(f"{index}: Image {cols['id'][i]!r} (#{i + 1}): {name} is {what}")
    return vals.astype("float64")


class _UrlResolver:
    """``resolve_inside`` for many URLs: one realpath and one directory listing per folder.

    Also answers whether each file exists (from the listing, no stat per plane), and, when a
    bare file name is absent next to the index, looks for it one folder level down (Harmony V7
    can place the index above the image folders; FORMATS.md 1.1).
    """

    def __init__(self, base: Path, allow_outside: bool, index: Path):
        self.base, self.allow, self.index = base, allow_outside, index
        self.dirs: dict[str, str] = {}
        self.listings: dict[str, dict[str, bool]] = {}  # folder -> {file name: is symlink}
        self._below: dict[str, str] | None = None

    def _listing(self, folder: str) -> dict[str, bool]:
        got = self.listings.get(folder)
        if got is None:
            try:
                with os.scandir(folder) as it:
                    got = {e.name: e.is_symlink() for e in it}
            except OSError:
                got = {}
            self.listings[folder] = got
        return got

    def _below_index(self) -> dict[str, str]:
        if self._below is None:
            self._below = {}
            for sub in sorted(self.base.iterdir()):
                if sub.is_dir() and not sub.is_symlink():
                    for f in sorted(sub.iterdir()):
                        if f.is_file() and not f.is_symlink():
                            self._below.setdefault(f.name, str(f))
        return self._below

    def __call__(self, url: str | None, image_id: str | None) -> tuple[str | None, bool]:
        u = (url or "").strip().replace("\\", "/")
        if not u:
            return None, False
        where = f"{self.index}: Image {image_id!r} URL"
        head, _, name = u.rpartition("/")
        if ":" in u or u.startswith("/") or ".." in u.split("/") or name in ("", "."):
            p = resolve_inside(self.base, u, allow_outside=self.allow, where=where)
            return str(p), p.is_file()
        d = self.dirs.get(head)
        if d is None:
            d = str(resolve_inside(self.base, head or ".", allow_outside=self.allow, where=where))
            self.dirs[head] = d
        listing = self._listing(d)
        link = listing.get(name)
        if link:  # a symlink may point outside the export
            p = resolve_inside(self.base, u, allow_outside=self.allow, where=where)
            return str(p), p.is_file()
        if link is None and not head:
            below = self._below_index().get(name)
            if below is not None:
                return below, True
        return os.path.join(d, name), link is not None


def _varies_within(values: pd.Series, groups: pd.Series) -> bool:
    """Whether ``values`` take more than one value inside any group."""
    return bool((values.groupby(groups).nunique() > 1).any())


def _channel(
    merged: dict[str, Any], cid: int, flim: int | None, index: Path, units: dict[str, str]
) -> Channel:
    def num(key: str) -> float | None:
        try:
            return float(merged[key])
        except (KeyError, TypeError, ValueError):
            return None

    def unit_um(key: str) -> float | None:
        v = num(key)
        f = LENGTH_TO_UM.get(units.get(key, "m"), 1e6)
        return None if v is None else v * f

    raw_type = str(merged.get("ChannelType") or "").strip()
    ctype = raw_type.lower()
    if ctype not in CHANNEL_TYPES:
        transmitted = str(merged.get("IlluminationType", "")).lower() == "transmitted"
        ctype = "brightfield" if transmitted else "fluorescence"
    name = merged.get("ChannelName") or f"Channel {cid}"
    if flim is not None:
        name = f"{name} (flim {flim})"
    meta: dict[str, Any] = {"vendor_channel_id": cid, "vendor_channel_type": raw_type or None}
    if flim is not None:
        meta["vendor_flim_id"] = flim
    for key, out, conv in (
        ("ExposureTime", "exposure_s", num),
        ("ObjectiveMagnification", "objective_magnification", num),
        ("ObjectiveNA", "objective_na", num),
        ("ExcitationPower", "excitation_power_percent", num),
        ("MaxIntensity", "max_intensity_hint", num),
        ("ImageResolutionX", "pixel_size_x_um", unit_um),
        ("ImageResolutionY", "pixel_size_y_um", unit_um),
    ):
        v = conv(key)
        if v is not None:
            meta[out] = v
    bx, by = num("BinningX"), num("BinningY")
    if bx is not None and by is not None:
        meta["binning"] = (int(bx), int(by))
    sx, sy = num("ImageSizeX"), num("ImageSizeY")
    if sx is not None and sy is not None:
        meta["image_size_yx"] = (int(sy), int(sx))
    for key, out in (
        ("CameraType", "camera"),
        ("AcquisitionType", "acquisition_type"),
        ("IlluminationType", "illumination_type"),
        ("ImageType", "image_type"),
        ("OrientationMatrix", "orientation_matrix"),
        ("CropArea", "crop_area"),
    ):
        if merged.get(key):
            meta[out] = merged[key]
    flat = None
    if merged.get("FlatfieldProfile"):
        # Metadata only (never applied by default): an unreadable profile must not block the
        # images, so it is kept verbatim with a warning.
        try:
            flat = parse_flatfield_profile(
                merged["FlatfieldProfile"], where=f"{index}: FlatfieldProfile of ChannelID {cid}"
            )
        except InputError as exc:
            warnings.warn(f"{exc}; kept as text in metadata['flatfield_raw']", stacklevel=3)
            meta["flatfield_raw"] = merged["FlatfieldProfile"]
    return Channel(
        name=name,
        channel_type=ctype,
        excitation_nm=num("MainExcitationWavelength"),
        emission_nm=num("MainEmissionWavelength"),
        flatfield=flat,
        metadata=meta,
    )


def _z_step(planes: pd.DataFrame) -> float | None:
    """Z spacing from sorted unique PositionZ, per channel (channels carry focus offsets)."""
    if planes["z"].nunique() < 2 or planes["stage_z_um"].isna().all():
        return None
    per = planes.groupby(["channel", "z"])["stage_z_um"].median().dropna()
    diffs = [np.diff(np.sort(g.to_numpy())) for _, g in per.groupby(level="channel")]
    diffs = np.concatenate([d for d in diffs if len(d)]) if diffs else np.array([])
    diffs = diffs[np.abs(diffs) > 1e-9]
    return round(float(np.median(diffs)), 6) if len(diffs) else None


def _vendor_files(index: Path) -> list[Path]:
    """The index and the measurement's Assaylayout/FFC_Profile XML files, each checked to
    resolve inside the measurement folder (:func:`inside_export`)."""
    folder = index.parent
    measurement = folder.parent if folder.name.lower() == "images" else folder
    files = [index]
    for sub in sorted(measurement.iterdir()):
        if sub.is_dir() and sub.name.lower() in ("assaylayout", "ffc_profile"):
            files += sorted(
                f for f in sub.iterdir() if f.is_file() and f.name.lower().endswith(".xml")
            )
    return [inside_export(measurement, f, "vendor metadata file") for f in files]


def read_harmony(path: str | Path, *, allow_outside: bool = False) -> Acquisition:
    """Read a Harmony export (Opera Phenix / Operetta CLS) into an :class:`Acquisition`.

    Parameters
    ----------
    path
        The index file, the ``Images/`` folder, the measurement folder, or a folder whose index
        sits above image sub-folders (see :func:`find_index`).
    allow_outside
        Accept local image paths outside the export folder (remote URLs are always refused).

    Returns
    -------
    Acquisition
        ``vendor_format="harmony"``; ``source`` is the folder holding the index. Stage positions
        are in micrometres in image orientation (``stage_y_um = -PositionY``); the plane table
        keeps planes whose file is absent (see ``Acquisition.missing_planes``) and planes with
        an empty URL (``path`` None). ``Channel.flatfield`` holds the parsed FlatfieldProfile;
        it is never applied to pixels here (see :func:`flatfield_surface`).

    Raises
    ------
    InputError
        Malformed XML (file and line), a URL leaving the export or remote, duplicate plane
        keys, missing or non-numeric IDs.
    """
    index = find_index(path)
    base = index.parent
    vendor = _vendor_files(index)  # before parsing: the index too must lie inside the export
    idx = parse_index(index)
    cols = idx.cols
    n = len(cols["id"])
    if n == 0:
        raise InputError(f"{index}: the index lists no Images")

    ids = cols["id"]
    row = _num(cols, "Row", index, True).astype("int64") - 1
    col = _num(cols, "Col", index, True).astype("int64") - 1
    field_id = _num(cols, "FieldID", index, True)
    plane_id = _num(cols, "PlaneID", index, True)
    chan_id = _num(cols, "ChannelID", index, True).astype("int64")
    tp = _num(cols, "TimepointID", index, False).fillna(0)
    seq = _num(cols, "SequenceID", index, False).fillna(0).astype("int64")
    flim = _num(cols, "FlimID", index, False).fillna(0).astype("int64")

    # Fold SequenceID into t / FlimID into channel only where they add information.
    fold_seq = _varies_within(seq, chan_id)
    fold_flim = _varies_within(flim, chan_id)
    t_key = pd.Series(list(zip(tp, seq, strict=True))) if fold_seq else tp
    c_key = pd.Series(list(zip(chan_id, flim, strict=True))) if fold_flim else chan_id

    u = {k: LENGTH_TO_UM.get(idx.units.get(k, "m"), 1e6)
         for k in ("PositionX", "PositionY", "PositionZ")}
    resolve = _UrlResolver(base, allow_outside, index)
    resolved = [resolve(url, i) for url, i in zip(cols["URL"], ids, strict=True)]
    paths = pd.Series([r[0] for r in resolved], dtype=object)
    first_file = next((r[0] for r in resolved if r[1]), None)
    planes = pd.DataFrame(
        {
            "row": row,
            "col": col,
            "field": dense_index(field_id),
            "z": dense_index(plane_id),
            "channel": dense_index(c_key),
            "t": dense_index(t_key),
            "path": paths,
            "page": 0,
            "stage_x_um": _num(cols, "PositionX", index, False) * u["PositionX"],
            "stage_y_um": -_num(cols, "PositionY", index, False) * u["PositionY"],
            "stage_z_um": _num(cols, "PositionZ", index, False) * u["PositionZ"],
            "time_s": _num(cols, "MeasurementTimeOffset", index, False),
            "sequence_id": seq,
            "flim_id": flim,
        }
    )
    check_unique_keys(planes, index, extra=["sequence_id", "flim_id"])

    # Plate geometry.
    plate = idx.plate
    try:
        n_rows, n_cols = int(plate["PlateRows"]), int(plate["PlateColumns"])
    except (KeyError, TypeError, ValueError):
        n_rows = n_cols = 0
    if n_rows < 1 or n_cols < 1:  # not stated (or 0, as for slides): the smallest plate fitting
        try:
            geometry = PlateGeometry.smallest_fitting(int(row.max()), int(col.max()))
        except InputError as exc:
            raise InputError(f"{index}: {exc}") from None
    else:
        try:
            geometry = PlateGeometry(n_rows, n_cols)
        except InputError as exc:
            bad = "PlateRows" if not 1 <= n_rows <= MAX_ROWS else "PlateColumns"
            raise InputError(f"{index}: Plate {bad}={plate[bad]!r}: {exc}") from None
    off = ~((row >= 0) & (row < geometry.rows) & (col >= 0) & (col < geometry.columns))
    if off.any():
        i = int(np.flatnonzero(off.to_numpy())[0])
        raise InputError(
            f"{index}: Image {ids[i]!r} lies in row {row[i] + 1}, column {col[i] + 1}, outside "
            f"the {geometry.rows} x {geometry.columns} plate"
        )

    # Channels: Map/Entry fields, overridden by the first Image of the channel.
    keys = sorted(set(c_key))
    channels = []
    for k in keys:
        cid, fl = (int(k[0]), int(k[1])) if fold_flim else (int(k), None)
        merged = dict(idx.entries.get(cid, {}))
        merged.update(idx.image_channel.get(cid, {}))
        channels.append(_channel(merged, cid, fl, index, idx.units))

    first = channels[0].metadata
    pixel = None
    if "pixel_size_y_um" in first and "pixel_size_x_um" in first:
        pixel = (first["pixel_size_y_um"], first["pixel_size_x_um"])

    shape, dtype = first.get("image_size_yx"), None
    if first_file is not None:
        shape, dtype = probe_tiff(first_file)

    attrs: dict[str, Any] = {
        "schema": schema_name(idx.namespace),
        "namespace": idx.namespace,
        "index_version": idx.version,
        "instrument_type": idx.top.get("InstrumentType"),
        "plate_type": plate.get("PlateTypeName"),
        "plate_id": plate.get("PlateID"),
        "measurement_id": plate.get("MeasurementID"),
        "measurement_start_time": plate.get("MeasurementStartTime"),
        "sequence_folded_into_t": fold_seq,
        "flim_folded_into_channel": fold_flim,
    }
    return Acquisition(
        plate_name=plate.get("Name") or plate.get("PlateID") or base.name,
        geometry=geometry,
        channels=channels,
        planes=planes,
        pixel_size_um=pixel,
        source=base,
        vendor_format="harmony",
        image_shape=tuple(shape) if shape else None,
        dtype=dtype,
        z_step_um=_z_step(planes),
        index_file=index,
        vendor_files=vendor,
        instrument=idx.top.get("InstrumentType"),
        attrs=attrs,
        sources={"pixel_size_um": f"metadata: {index}" if pixel else
                 f"unknown: {index} has no ImageResolutionX/Y",
                 "z_step_um": f"metadata: {index} (PositionZ)",
                 "channel_names": f"metadata: {index}"},
    )

