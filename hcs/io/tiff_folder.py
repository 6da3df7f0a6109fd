"""Read a plain folder of TIFFs whose names encode well, field, channel, z and time.

For exports without vendor metadata (Cellomics, ImageXpress-like, hand-made folders): a regular
expression with named groups says what each file name means. Groups:

- ``well`` (``B03``, ``b3``, ``AF48``) or ``row`` + ``col``: ``row`` is a letter (``B``) or a
  1-based number, ``col`` a 1-based number;
- optional ``field``, ``channel``, ``z``, ``t``: any text; each axis is re-indexed densely in
  sorted order (numerically when all values are numbers), so fields may start at 0 or 1.

The pattern is searched (``re.search``) in the file name, not the path. Hidden files (names
starting with ``.``: macOS ``._`` resource forks, ``.DS_Store``) and non-TIFF files are
ignored silently; TIFF files the pattern does not match are ignored too, with a warning, and
their number is kept in ``Acquisition.attrs["ignored_files"]``. Each file must hold one plane:
a multi-page TIFF (a stack) or an RGB TIFF is an error naming it, never read as its first page.

Pixel size, z step and channel names come from the files themselves when they state them
(:func:`hcs.io.physical.tiff_physical`: OME-TIFF ``PhysicalSizeX`` and ``Channel Name``,
MetaSeries (ImageXpress) spatial calibration and illumination setting, ImageJ ``unit`` +
resolution, TIFF resolution in inch or centimetre, never the 72/96 dpi defaults).
Only the first file of each channel is read for this, and the channels must agree.
"""

from __future__ import annotations

import os
import re
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
    count_pages,
    dense_index,
    multi_page_message,
    probe_tiff,
    resolve_inside,
)
from hcs.io.physical import TiffPhysical, apply_user_metadata, guess_channel_type, tiff_physical
from hcs.plate import PlateGeometry, parse_well, row_index

__all__ = ["read_tiff_folder", "DEFAULT_PATTERN"]

#: Default file-name pattern: a well name after ``_`` or at the start, then optional field
#: (``s``/``f``), channel (``w``/``d``/``c``), ``z`` and ``t`` numbers, each optionally after
#: ``_``, and the GUID ImageXpress may append. Matches ImageXpress ``Plate1_B03_s2_w1.tif`` and
#: ``Plate1_B03_s2_w1D15D7E4E-3DBD-4C45-8B68-D9D6F1C0A5E4.tif`` (not its ``_thumb`` files),
#: Cellomics-like ``AS_09047_050428030001_O01f00d2.TIF``, plain ``B03_f1_c2_z0_t0.tiff`` and
#: OME-TIFF ``B03_s1_w2.ome.tif``.
DEFAULT_PATTERN = (
    r"(?:^|_)(?P<well>[A-Z]{1,2}\d{1,3})"
    r"(?:_?[sf](?P<field>\d+))?(?:_?[wdc](?P<channel>\d+))?"
    r"(?:_?z(?P<z>\d+))?(?:_?t(?P<t>\d+))?"
    r"(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})?"
    r"\.(?i:(?:ome\.)?tiff?)$"
)
_TIFF_EXT = (".tif", ".tiff")


def _sort_key(values: pd.Series) -> pd.Series:
    """Numeric values when every value is a number, else the text itself."""
    num = pd.to_numeric(values, errors="coerce")
    return num if num.notna().all() else values.astype(str)


def read_tiff_folder(
    path: str | Path,
    pattern: str = DEFAULT_PATTERN,
    *,
    plate_format: int | None = None,
    channel_names: list[str] | None = None,
    pixel_size_um: float | None = None,
    z_step_um: float | None = None,
    override_metadata: bool = False,
    allow_outside: bool = False,
) -> Acquisition:
    """Read a folder of single-plane TIFFs described by a file-name pattern.

    Parameters
    ----------
    path
        The folder (not searched recursively).
    pattern
        Regular expression with named groups ``well`` (or ``row`` and ``col``) and optional
        ``field``, ``channel``, ``z``, ``t`` (see the module docstring); default
        :data:`DEFAULT_PATTERN`.
    plate_format
        Number of wells; default: the smallest standard plate holding every well found.
    channel_names
        Names of the channels in the sorted order of the captured ``channel`` values (or the
        name of the single channel); default: OME-TIFF channel names, else the captured text.
    pixel_size_um, z_step_um
        Pixel size and z step in um, where the files do not state them.
    override_metadata
        Let ``pixel_size_um``, ``z_step_um`` and ``channel_names`` replace what the files state
        (see :func:`hcs.io.physical.apply_user_metadata`).
    allow_outside
        Accept files (symlinks) that resolve outside the folder.

    Returns
    -------
    Acquisition
        ``vendor_format="tiff-folder"``; plate name = folder name.

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ["P1_B03_s1_w1.tif", "P1_B03_s2_w1.tif", "P1_C12_s1_w1.tif", "notes.txt"]:
    ...     tifffile.imwrite(d / name, np.zeros((4, 4), np.uint16))
    >>> acq = read_tiff_folder(d, channel_names=["DAPI"])
    >>> acq.well_names(), acq.n_fields, acq.channels[0].name, acq.geometry.n_wells
    (['B03', 'C12'], 2, 'DAPI', 96)
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"file-name pattern {pattern!r} is not a valid regex ({exc})") from None
    groups = set(rx.groupindex)
    if "well" not in groups and not {"row", "col"} <= groups:
        raise InputError(
            f"file-name pattern {pattern!r} needs a named group 'well' or both 'row' and 'col'"
        )

    records = []
    ignored: list[str] = []
    with os.scandir(folder) as it:  # no glob: names may contain [ ] and spaces
        for entry in it:
            if not entry.is_file() or entry.name.startswith("."):
                continue  # hidden: macOS ._ resource forks, .DS_Store, editors' backups
            m = rx.search(entry.name)
            if m is None:
                if entry.name.lower().endswith(_TIFF_EXT):
                    ignored.append(entry.name)
                continue
            p = resolve_inside(folder, entry.name, allow_outside=allow_outside, where=str(folder))
            row, col = _row_col(m, entry.name, folder)
            g = m.groupdict()
            records.append(
                {"row": row, "col": col, "path": str(p), "file": entry.name,
                 **{k: g.get(k) or "0" for k in ("field", "z", "t")},
                 "channel_text": g.get("channel") or "",
                 **{f"_has_{k}": bool(g.get(k)) for k in ("field", "channel", "z", "t")}}
            )
    if not records:
        which = "the default pattern" if pattern == DEFAULT_PATTERN else f"the pattern {pattern!r}"
        example = (f"; {len(ignored)} TIFF file(s) such as {sorted(ignored)[0]!r} do not match: "
                   f"give --pattern{_pattern_hint(sorted(ignored)[0])} (docs/formats.md)"
                   if ignored else _no_tiff_hint(folder))
        raise InputError(f"{folder}: no file name matches {which}{example}")
    if ignored:
        warnings.warn(
            f"{folder}: ignored {len(ignored)} TIFF file(s) not matching the pattern, e.g. "
            f"{sorted(ignored)[0]!r}",
            stacklevel=2,
        )
    planes = pd.DataFrame.from_records(records).sort_values("file", ignore_index=True)
    for axis in ("field", "channel", "z", "t"):  # 'B03_s1.tif' next to 'B03_s1_w2.tif'
        has = planes.pop(f"_has_{axis}")
        if has.any() and not has.all():
            raise InputError(
                f"{folder}: the pattern finds a {axis} in {planes['file'][has].iloc[0]!r} but "
                f"none in {planes['file'][~has].iloc[0]!r}; every file needs the same parts "
                "(move the others away, or give a --pattern that excludes them)")

    max_row, max_col = int(planes["row"].max()), int(planes["col"].max())
    if plate_format is not None:
        geometry = PlateGeometry.from_format(plate_format)
        outside = planes[(planes["row"] >= geometry.rows) | (planes["col"] >= geometry.columns)]
        if len(outside):
            raise InputError(
                f"{folder / outside['file'].iloc[0]}: well is outside the {geometry.rows} x "
                f"{geometry.columns} plate (--plate-format {plate_format})"
            )
    else:
        try:
            geometry = PlateGeometry.smallest_fitting(max_row, max_col)
        except InputError as exc:
            far = planes[(planes["row"] >= 32) | (planes["col"] >= 48)]["file"].iloc[0]
            raise InputError(f"{folder / far}: {exc}") from None

    for axis in ("field", "z", "t"):
        planes[axis] = dense_index(_sort_key(planes[axis]))
    chan_key = _sort_key(planes["channel_text"])
    planes["channel"] = dense_index(chan_key)
    firsts = planes.drop_duplicates("channel").sort_values("channel")
    texts = firsts["channel_text"]
    if channel_names is not None and len(channel_names) != len(texts):
        raise InputError(
            f"{folder}: {len(channel_names)} channel name(s) given, but the file names hold "
            f"{len(texts)} channel(s): {', '.join(repr(t) for t in texts)}"
        )
    for p in firsts["path"]:  # a stack would be read as its first page: refuse it here already
        n_pages = count_pages(p)
        if n_pages > 1:
            raise InputError(multi_page_message(p, n_pages))
    physical = [tiff_physical(p) for p in firsts["path"]]
    pixel, z_step, sources = _agree(physical, list(firsts["path"]))
    file_names = [p.channel_names[0] if p.channel_names and len(p.channel_names) == 1 else None
                  for p in physical]
    if all(file_names) and len(set(file_names)) == len(file_names):
        names = [str(n) for n in file_names]
        sources["channel_names"] = physical[0].sources["channel_names"]
    else:
        names = [t if t else "channel" for t in texts]
        sources["channel_names"] = ("file names (channel group of the pattern)" if any(texts)
                                    else "default")
    channels = [Channel(n, guess_channel_type(n)) for n in names]
    if len({c.name for c in channels}) != len(channels):
        raise InputError(f"{folder}: duplicate channel names {[c.name for c in channels]}")
    planes["page"] = 0
    for col in ("stage_x_um", "stage_y_um", "stage_z_um", "time_s"):
        planes[col] = float("nan")
    check_unique_keys(planes, folder)
    shape, dtype = probe_tiff(planes["path"].iloc[0])
    # channels of different bit depths (an 8-bit brightfield next to 16-bit fluorescence): the
    # plate takes the type holding every channel's first file (each plane is still checked)
    dtype = np.result_type(dtype, *(probe_tiff(p)[1] for p in firsts["path"]))
    acq = Acquisition(
        plate_name=folder.resolve().name,
        geometry=geometry,
        channels=channels,
        planes=planes,
        pixel_size_um=pixel,
        z_step_um=z_step if planes["z"].max() > 0 else None,
        source=folder,
        vendor_format="tiff-folder",
        image_shape=shape,
        dtype=dtype,
        attrs={"pattern": pattern, "ignored_files": len(ignored)},
        sources=sources,
    )
    return apply_user_metadata(acq, pixel_size_um=pixel_size_um, z_step_um=z_step_um,
                               channel_names=channel_names,
                               override_metadata=override_metadata)


#: Well-known file-name schemes the default pattern does not read, with the pattern that does.
KNOWN_PATTERNS = {
    # Harmony (Opera Phenix, Operetta CLS) images copied without their index XML
    r"^r\d+c\d+f\d+p\d+-ch\d+sk\d+": (
        r"r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)p(?P<z>\d+)-ch(?P<channel>\d+)"
        r"sk(?P<t>\d+)fk\d+fl\d+\.tiff?$"),
}


def _pattern_hint(name: str) -> str:
    """`` such as '...'`` when ``name`` follows a known scheme, else ``""``."""
    for rx, suggestion in KNOWN_PATTERNS.items():
        if re.search(rx, name):
            return f" such as '{suggestion}' (Harmony images without their index XML)"
    return ""


def _no_tiff_hint(folder: Path) -> str:
    """Why a folder holds no TIFF: name the first subfolder that does (ImageXpress puts its
    images in ``TimePoint_1/``; the reader does not search subfolders)."""
    for depth in range(1, 4):  # a few levels, breadth first: never a walk of a whole disk
        for sub in sorted(folder.glob("/".join(["*"] * depth))):
            if not sub.is_dir() or any(part.startswith(".") for part in sub.parts[-depth:]):
                continue
            with os.scandir(sub) as it:
                if any(e.is_file() and e.name.lower().endswith(_TIFF_EXT) for e in it):
                    return (f"; the folder holds no TIFF, but {sub.relative_to(folder)}/ does "
                            "(the reader does not search subfolders: give that folder)")
    return "; the folder holds no TIFF"


def _agree(physical: list[TiffPhysical], paths: list[str]
           ) -> tuple[tuple[float, float] | None, float | None, dict[str, str]]:
    """Pixel size and z step the first file of every channel states; they must agree (1 %)."""
    sources: dict[str, str] = {}
    out: list[Any] = []
    for key in ("pixel_size_um", "z_step_um"):
        known = [(getattr(p, key), p.sources[key], path)
                 for p, path in zip(physical, paths, strict=True) if getattr(p, key)]
        if not known:
            why = next((p.sources[key] for p in physical if key in p.sources), None)
            out.append(None)
            if why:
                sources[key] = why
            continue
        first = known[0]
        for other in known[1:]:
            a, b = np.atleast_1d(first[0]), np.atleast_1d(other[0])
            if np.any(np.abs(a - b) > 0.01 * np.maximum(np.abs(a), np.abs(b))):
                raise InputError(
                    f"{other[2]}: {key} {other[0]} ({other[1]}) differs from {first[0]} "
                    f"({first[1]}) of another channel")
        out.append(first[0])
        sources[key] = first[1]
    return out[0], out[1], sources


def _row_col(m: re.Match[str], name: str, folder: Path) -> tuple[int, int]:
    g = m.groupdict()
    try:
        if g.get("well"):
            return parse_well(g["well"])
        r, c = (g.get("row") or "").strip(), (g.get("col") or "").strip()
        row = int(r) - 1 if r.isdigit() else row_index(r)
        col = int(c) - 1
    except (InputError, ValueError, TypeError):
        raise InputError(
            f"{folder / name}: cannot read a well from the captured text "
            f"{ {k: v for k, v in g.items() if k in ('well', 'row', 'col')} }"
        ) from None
    if row < 0 or col < 0:
        raise InputError(f"{folder / name}: row/column numbers start at 1")
    return row, col
