"""Read an Olympus/Evident scanR export into an :class:`~hcs.io.acquisition.Acquisition`.

Metadata, in order of preference (FORMATS.md section 2):

1. scanR 3.x ``data/metadata.ome.xml`` (or ``metadata.ome.xml`` in the experiment folder): the
   OME-XML is the authority for which files belong to the acquisition. Files it references that
   are absent become missing planes (listed by ``Acquisition.missing_planes()``, with a
   warning). Image files that follow the scanR naming but are *not* referenced are an
   :class:`~hcs.errors.InputError`: metadata and folder disagree (e.g. the OME-XML of another
   acquisition was copied in), and guessing would either drop images silently or mix two
   acquisitions. Move the stray files out, or remove the OME-XML to read by file names.
2. older scanR ``experiment_descriptor.xml`` (+ ``AcquisitionLog.dat`` for per-image positions).
3. file names alone: ``<prefix>--W<well>--P<pos>--Z<z>--T<t>--<channel>.tif``.

Wells: ``W`` is 1-based, row-major over the full plate, so the plate format must be known: from
the descriptor (``format typedef`` Rows/Columns), else ``plate_format``; the scanR 3.x OME-XML
has no plate element, so it needs ``plate_format`` (the error suggests the format implied by the
well labels). Labels (``Well 14, Position 1 (B2)``, file prefixes that are well names) are
cross-checked against the chosen format. Stage Y is flipped into image orientation
(``stage_y_um = -PositionY``). int16/int8 TIFFs are reinterpreted as uint16/uint8 (scanR records
the signedness wrongly; ``Acquisition.dtype`` says uint, consumers ``.view()`` the raw plane);
no 12-bit masking is applied.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.io.acquisition import (
    Acquisition,
    Channel,
    check_unique_keys,
    dense_index,
    inside_export,
    probe_tiff,
    resolve_inside,
)
from hcs.io.scanr_descriptor import Descriptor, parse_acquisition_log, parse_experiment_descriptor
from hcs.io.scanr_meta import ScanrOme, parse_scanr_name, parse_scanr_ome
from hcs.io.scanr_wells import add_prefix_labels, check_labels, plate_geometry
from hcs.plate import well_name

__all__ = ["read_scanr", "locate_scanr"]

_TIFF_EXT = (".tif", ".tiff")
_TRANSMITTED = {"bf", "brightfield", "bright field", "transmission", "transmitted", "trans"}


def locate_scanr(path: str | Path) -> tuple[Path, Path]:
    """(experiment folder, image folder) of a scanR export given the folder, its ``data/``
    folder or a metadata file inside either.

    A folder named ``data`` is the image folder of the experiment folder above it. Without a
    ``data/`` sub-folder the images are read next to the metadata (as Bio-Formats does).
    """
    p = Path(path).expanduser()
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise InputError(f"{p}: not a folder (expected a scanR experiment or its data/ folder)")
    if (p / "data").is_dir():
        return p, p / "data"
    if p.name.lower() == "data":
        return p.parent, p
    return p, p


def read_scanr(
    path: str | Path, *, plate_format: int | None = None, allow_outside: bool = False
) -> Acquisition:
    """Read a scanR export (experiment folder or its ``data/`` folder).

    Parameters
    ----------
    path
        The experiment folder, its ``data/`` folder, or a metadata file in either.
    plate_format
        Number of wells (6 .. 1536); required unless ``experiment_descriptor.xml`` states the
        plate rows/columns. Checked against the descriptor and the well labels when present.
    allow_outside
        Accept files (e.g. symlinks) that resolve outside the export folder.

    Returns
    -------
    Acquisition
        ``vendor_format="scanr"``; ``attrs["scanr_metadata"]`` says which source was used
        (``ome``, ``descriptor`` or ``file names``).

    Raises
    ------
    InputError
        Unknown plate format, a well number outside the plate (naming the file), labels that
        contradict the format, duplicate planes, files the OME-XML does not reference, or no
        scanR image at all.
    """
    exp_dir, data_dir = locate_scanr(path)
    ome_path = next(
        (p for p in (data_dir / "metadata.ome.xml", exp_dir / "metadata.ome.xml") if p.is_file()),
        None,
    )
    desc_path = next(
        (d / "experiment_descriptor.xml" for d in (exp_dir, data_dir)
         if (d / "experiment_descriptor.xml").is_file()),
        None,
    )
    log_path = next(
        (d / "AcquisitionLog.dat" for d in (exp_dir, data_dir)
         if (d / "AcquisitionLog.dat").is_file()),
        None,
    )
    if data_dir != exp_dir:  # a data/ folder linked from elsewhere holds images from outside
        resolve_inside(exp_dir, data_dir.name, allow_outside=allow_outside, where=str(exp_dir))
    dat_path = exp_dir / "experiment_descriptor.dat"  # the descriptor's binary twin
    for meta in (ome_path, desc_path, log_path, dat_path if dat_path.is_file() else None):
        if meta is not None:  # parsed and copied into vendor/: must lie inside the export
            inside_export(exp_dir, meta, "scanR metadata file")
    files, ignored = _list_images(data_dir, allow_outside)
    desc = parse_experiment_descriptor(desc_path) if desc_path else None
    attrs: dict[str, Any] = {"ignored_files": ignored}
    if ome_path is not None:
        ome = parse_scanr_ome(ome_path)
        records, channels, labels = _records_from_ome(ome, files, data_dir, allow_outside, attrs)
        source_kind = "ome"
    else:
        if not files:
            raise InputError(
                f"{data_dir}: no scanR image (*--W#####--P#####--Z#####--T#####--*.tif)"
            )
        log = parse_acquisition_log(log_path) if log_path else {}
        records, channels, labels = _records_from_names(files, desc, log, desc_path)
        source_kind = "descriptor" if desc is not None else "file names"
    geometry = plate_geometry(desc, plate_format, labels, exp_dir)
    check_labels(labels, geometry, plate_format, ome_path or desc_path or data_dir)

    planes = pd.DataFrame.from_records(records)
    rc = []
    for w, fpath in zip(planes["W"], planes["path"], strict=True):
        try:
            rc.append(geometry.well_from_index(int(w)))
        except InputError as exc:
            raise InputError(f"{fpath}: {exc} (plate format wrong? pass --plate-format)") from None
    planes["row"] = [r for r, _ in rc]
    planes["col"] = [c for _, c in rc]
    planes["field"] = dense_index(planes["P"])
    planes["z"] = dense_index(planes["Z"])
    planes["t"] = dense_index(planes["T"])
    planes["channel"] = planes["channel_name"].map({c.name: i for i, c in enumerate(channels)})
    check_unique_keys(planes, data_dir)

    first = next((p for p in planes["path"] if Path(p).is_file()), None)
    if first is None:
        raise InputError(f"{data_dir}: none of the image files the metadata lists exists")
    shape, tiff_dtype = probe_tiff(first)
    expect = attrs.pop("_size_yx", None)
    if expect and tuple(expect) != tuple(shape) and expect != (0, 0):
        raise InputError(
            f"{first}: plane is {shape[0]} x {shape[1]} px, the metadata says "
            f"{expect[0]} x {expect[1]}"
        )
    dtype = tiff_dtype
    if dtype.kind == "i":  # scanR records signedness wrongly: reinterpret, never clip
        dtype = np.dtype(f"uint{8 * dtype.itemsize}")
    attrs.update(scanr_metadata=source_kind, tiff_dtype=str(tiff_dtype))
    if labels:
        attrs["well_labels"] = {
            well_name(*geometry.well_from_index(w)): lab for w, lab in sorted(labels.items())
        }
    pixel_size = attrs.pop("_pixel_size", None)
    z_step = attrs.pop("_z_step", None)
    sources = {"pixel_size_um": f"metadata: {ome_path}", "z_step_um": f"metadata: {ome_path}",
               "channel_names": f"metadata: {ome_path}" if ome_path else "scanR file names"}
    if desc is not None:
        if not pixel_size and desc.pixel_size_um:
            pixel_size = (desc.pixel_size_um, desc.pixel_size_um)
            sources["pixel_size_um"] = f"metadata: {desc_path}"
        if not z_step and desc.z_step_um:
            z_step = desc.z_step_um
            sources["z_step_um"] = f"metadata: {desc_path}"
        if ome_path is None and desc.channels:
            sources["channel_names"] = f"metadata: {desc_path}"
    if not pixel_size:
        sources["pixel_size_um"] = (f"unknown: {ome_path or desc_path or data_dir} does not "
                                    "state it")
    vendor = [p for p in (ome_path, desc_path, log_path) if p is not None]
    if dat_path.is_file():
        vendor.append(dat_path)
    return Acquisition(
        plate_name=(desc.plate_name if desc and desc.plate_name else exp_dir.resolve().name),
        geometry=geometry,
        channels=channels,
        planes=planes,
        pixel_size_um=pixel_size,
        source=exp_dir,
        vendor_format="scanr",
        image_shape=(int(shape[0]), int(shape[1])),
        dtype=dtype,
        z_step_um=z_step if z_step and planes["z"].max() > 0 else None,
        index_file=ome_path or desc_path,
        vendor_files=vendor,
        instrument=attrs.pop("_creator", None) or "scanR",
        attrs=attrs,
        sources=sources,
    )


def _list_images(data_dir: Path, allow_outside: bool) -> tuple[dict[str, Any], int]:
    """scanR-named TIFFs in ``data_dir`` (name -> (ScanrName, path)) and the count of other
    TIFFs, which are ignored with a warning."""
    files: dict[str, Any] = {}
    ignored = []
    base = data_dir.resolve()
    with os.scandir(data_dir) as it:  # no glob: names contain '#', '[' and spaces
        for entry in it:
            if not entry.name.lower().endswith(_TIFF_EXT) or not entry.is_file():
                continue
            parsed = parse_scanr_name(entry.name)
            if parsed is None:
                ignored.append(entry.name)
                continue
            # only a symlink can leave the folder; resolving every plain file is slow
            path = (
                resolve_inside(data_dir, entry.name, allow_outside=allow_outside,
                               where=str(data_dir))
                if entry.is_symlink() else base / entry.name
            )
            files[entry.name] = (parsed, str(path))
    if ignored:
        warnings.warn(
            f"{data_dir}: ignored {len(ignored)} TIFF file(s) without scanR names, e.g. "
            f"{sorted(ignored)[0]!r}",
            stacklevel=3,
        )
    return dict(sorted(files.items())), len(ignored)


def _is_plain_name(name: str) -> bool:
    """A bare file name (no folder part, no drive, not ``..``) that resolves inside its folder
    unless it is a symlink."""
    return not any(ch in name for ch in "/\\:\0") and name not in ("", ".", "..")


def _channel(name: str, meta: dict[str, Any]) -> Channel:
    illum = (meta.get("illumination_type") or "").lower()
    contrast = (meta.get("contrast_method") or "").lower()
    if contrast == "phase" or (meta.get("acquisition_mode") or "").lower() == "phasecontrast":
        ctype = "phase"
    elif illum == "transmitted" or " ".join(name.lower().split()) in _TRANSMITTED:
        ctype = "brightfield"
    else:
        ctype = "fluorescence"
    clean = {k: v for k, v in meta.items() if v is not None and k not in ("name",)
             and not (isinstance(v, float) and math.isnan(v))}
    ex, em = clean.pop("excitation_nm", None), clean.pop("emission_nm", None)
    return Channel(name, ctype, excitation_nm=ex, emission_nm=em, metadata=clean)


def _records_from_ome(
    ome: ScanrOme,
    files: dict[str, Any],
    data_dir: Path,
    allow_outside: bool,
    attrs: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[Channel], dict[int, str]]:
    base = ome.path.parent
    base_r = base.resolve()
    same_dir = base_r == data_dir.resolve()
    records: list[dict[str, Any]] = []
    chan_meta: dict[str, dict[str, Any]] = {}
    labels: dict[int, str] = {}
    referenced: set[str] = set()
    for img in ome.images:
        where = f"{ome.path}: Image {img.image_id!r}"
        for pl in img.planes:
            well, pos = img.well, img.pos
            parsed = parse_scanr_name(Path(pl["file"]).name)
            if well is None or pos is None:  # no W/P in the Image ID: take the file name's
                well, pos = (parsed.well, parsed.pos) if parsed else (None, None)
            elif parsed is not None and (parsed.well, parsed.pos) != (well, pos):
                # both written by scanR at acquisition: a contradiction means an edited or
                # foreign OME-XML or renamed files; either choice could put images in the wrong
                # well, so refuse rather than pick one
                raise InputError(
                    f"{base / pl['file']}: the file name says well W{parsed.well} position "
                    f"P{parsed.pos}, but {ome.path} lists it under Image {img.image_id!r} "
                    f"(well {well}, position {pos}); metadata and files disagree"
                )
            if well is None or pos is None:
                raise InputError(f"{where}: cannot tell the well/position (ID nor file name)")
            if pl["c"] >= len(img.channels):
                raise InputError(f"{where}: TiffData FirstC={pl['c']} but only "
                                 f"{len(img.channels)} Channel elements")
            cmeta = img.channels[pl["c"]]
            name = " ".join(cmeta["name"].split())
            chan_meta.setdefault(name, {**cmeta, "exposure_s": pl["exposure_s"],
                                        "significant_bits": img.significant_bits})
            fname = pl["file"]
            if same_dir and fname in files:  # a plain name listed in the folder: checked
                path = files[fname][1]
            elif same_dir and _is_plain_name(fname):  # absent file: nothing to follow
                path = str(base_r / fname)
            else:
                path = str(resolve_inside(base, fname, allow_outside=allow_outside, where=where))
            referenced.add(Path(path).name)
            records.append(
                {"W": well, "P": pos, "Z": pl["z"], "T": pl["t"], "channel_name": name,
                 "file": pl["file"], "path": str(path), "page": pl["ifd"],
                 "stage_x_um": pl["x_um"], "stage_y_um": -pl["y_um"],
                 "stage_z_um": pl["z_um"], "time_s": pl["delta_t_s"]}
            )
        if img.label and img.well is not None:
            labels.setdefault(img.well, img.label)
    add_prefix_labels(labels, [parse_scanr_name(Path(r["file"]).name) for r in records])
    stray = sorted(n for n in files if n not in referenced)
    if stray:
        raise InputError(
            f"{ome.path}: {len(stray)} scanR image file(s) in the folder are not referenced by "
            f"this OME-XML (e.g. {stray[0]!r}); it may belong to another acquisition. Move the "
            "stray files out, or remove/rename the OME-XML to read the images by file name"
        )
    missing = sum(
        not (r["file"] in files if same_dir and _is_plain_name(r["file"])
             else Path(r["path"]).is_file())
        for r in records
    )
    if records and missing == len(records):
        raise InputError(f"{ome.path}: none of the {missing} image files it lists exists in {base}")
    if missing:
        warnings.warn(f"{ome.path}: {missing} of {len(records)} referenced image files are "
                      "missing; they are recorded as missing planes", stacklevel=3)
    attrs["missing_files"] = missing
    first = ome.images[0]
    attrs["_size_yx"] = first.size_yx
    attrs["_pixel_size"] = first.pixel_size_um
    attrs["_creator"] = ome.creator or None
    if first.significant_bits:
        attrs["significant_bits"] = first.significant_bits
    attrs["_z_step"] = _z_step(records)
    channels = [_channel(n, m) for n, m in chan_meta.items()]
    return records, channels, labels


def _z_step(records: list[dict[str, Any]]) -> float | None:
    """Median spacing of the per-Z mean stage Z (None for a single plane)."""
    df = pd.DataFrame.from_records(records, columns=["Z", "stage_z_um"]).dropna()
    zs = df.groupby("Z")["stage_z_um"].mean().sort_index().to_numpy()
    if len(zs) < 2:
        return None
    return float(abs(np.median(np.diff(zs))))


def _records_from_names(
    files: dict[str, Any],
    desc: Descriptor | None,
    log: dict[tuple[int, int, int, int], tuple[float, ...]],
    desc_path: Path | None,
) -> tuple[list[dict[str, Any]], list[Channel], dict[int, str]]:
    names_in_files = sorted({" ".join(p.channel.split()) for p, _ in files.values()})
    if desc is not None and desc.channels:
        channels = [_channel(c["name"], {"exposure_s": c["exposure_ms"] / 1000.0
                                         if c["exposure_ms"] is not None else None})
                    for c in desc.channels]
    else:
        channels = [_channel(n, {}) for n in names_in_files]
    known = {c.name for c in channels}
    sub = desc.subpositions if desc is not None else []
    z_step = desc.z_step_um if desc is not None and desc.z_step_um else math.nan
    t_step = desc.time_step_s if desc is not None and desc.time_step_s is not None else math.nan
    records = []
    for fname, (p, path) in files.items():
        name = " ".join(p.channel.split())
        if name not in known:
            raise InputError(
                f"{path}: channel {p.channel!r} is not among the channels of {desc_path} "
                f"({', '.join(repr(c.name) for c in channels)})"
            )
        if (p.well, p.pos, p.t, p.z) in log:
            x, y, z_um, t_s = log[(p.well, p.pos, p.t, p.z)]
        else:
            x, y = sub[p.pos - 1] if 0 < p.pos <= len(sub) else (math.nan, math.nan)
            z_um, t_s = p.z * z_step, p.t * t_step
        records.append(
            {"W": p.well, "P": p.pos, "Z": p.z, "T": p.t, "channel_name": name, "file": fname,
             "path": path, "page": 0, "stage_x_um": x, "stage_y_um": -y,
             "stage_z_um": z_um, "time_s": t_s}
        )
    labels = {w: lab for w, lab in desc.wells if lab} if desc is not None else {}
    add_prefix_labels(labels, [p for p, _ in files.values()])
    return records, channels, labels
