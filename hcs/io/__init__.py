"""Readers for instrument exports and the OME-Zarr plate writer/reader.

:func:`open_export` picks the reader for an export folder; the readers themselves
(:mod:`hcs.io.harmony`, :mod:`hcs.io.scanr`, :mod:`hcs.io.tiff_folder`) are imported only when
used, so importing :mod:`hcs.io` stays cheap.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hcs.errors import InputError

if TYPE_CHECKING:
    from hcs.io.acquisition import Acquisition

__all__ = ["FORMATS", "detect_format", "open_export", "simulation_export"]

#: Export formats :func:`open_export` knows.
FORMATS = ("harmony", "scanr", "tiff-folder")

_HARMONY_INDEX = {"index.xml", "index.idx.xml", "index.ref.xml", "index.flex.xml"}
_SCANR_META = {"metadata.ome.xml", "experiment_descriptor.xml"}
_SCANR_NAME = re.compile(r"--W\d{5}--", re.IGNORECASE)


def _names(folder: Path) -> list[str]:
    # iterdir, not glob: vendor folder names contain [ ] and spaces (FORMATS.md section 3)
    try:
        return [p.name for p in folder.iterdir()]
    except OSError:
        return []


def simulation_export(src: str | Path) -> Path | None:
    """``src/export`` when ``src`` is a ``hcs simulate`` output (``export/`` + ``truth/``)
    rather than an export itself, else ``None``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "export").mkdir(); (d / "truth").mkdir()
    >>> simulation_export(d) == d / "export", simulation_export(d / "export")
    (True, None)
    """
    src = Path(src)
    if src.is_dir() and (src / "export").is_dir() and (src / "truth").is_dir():
        return src / "export"
    return None


def detect_format(src: str | Path) -> str | None:
    """Guess the export format of ``src``: ``harmony``, ``scanr`` or ``None``.

    Harmony: an index XML (``Index.xml``, ``Index.idx.xml``, ``Index.ref.xml``,
    ``Index.flex.xml``) in ``src``, ``src/Images`` or ``src`` itself. ScanR: ``metadata.ome.xml``
    or ``experiment_descriptor.xml`` in ``src`` or ``src/data``, or file names with ``--W00001--``.
    A ``hcs simulate`` output (``export/`` + ``truth/``) has the format of its ``export/``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "A1--W00001--P00001--Z00000--T00000--dapi.tif").write_bytes(b"")
    >>> detect_format(d)
    'scanr'
    """
    src = Path(src)
    inner = simulation_export(src)
    if inner is not None and _detect(src) is None:
        return _detect(inner)
    return _detect(src)


def _detect(src: Path) -> str | None:
    if src.is_file():
        if src.name.lower() in _HARMONY_INDEX:
            return "harmony"
        if src.name.lower() in _SCANR_META:
            return "scanr"
        return None
    for folder in (src, src / "Images", src / "images"):
        if any(n.lower() in _HARMONY_INDEX for n in _names(folder)):
            return "harmony"
    for folder in (src, src / "data"):
        names = _names(folder)
        if any(n.lower() in _SCANR_META or _SCANR_NAME.search(n) for n in names):
            return "scanr"
    return None


def open_export(
    src: str | Path,
    fmt: str = "auto",
    pattern: str | None = None,
    plate_format: int | str | None = None,
    allow_outside: bool = False,
    *,
    pixel_size_um: float | tuple[float, float] | None = None,
    z_step_um: float | None = None,
    channel_names: list[str] | str | None = None,
    override_metadata: bool = False,
) -> Acquisition:
    """Read an instrument export with the right reader.

    Parameters
    ----------
    src
        Export folder (or its index file).
    fmt
        ``auto`` (detect), ``harmony``, ``scanr`` or ``tiff-folder``.
    pattern
        File-name pattern for ``tiff-folder`` exports (see :mod:`hcs.io.tiff_folder`; its
        ``DEFAULT_PATTERN`` when ``fmt="tiff-folder"`` is given without one); giving one with
        ``fmt="auto"`` selects the TIFF-folder reader when no Harmony or ScanR metadata is
        found.
    plate_format
        Plate format (96, 384, 1536 ...) where the export does not state it (ScanR, TIFF folder).
    allow_outside
        Let the metadata reference files outside ``src``.
    pixel_size_um, z_step_um, channel_names, override_metadata
        User-given pixel size (um; one value for x and y), z step (um) and channel names (in
        the reader's channel order), applied by :func:`hcs.io.physical.apply_user_metadata`: a
        value contradicting the metadata is refused unless ``override_metadata``.

    Returns
    -------
    Acquisition
        With ``sources`` saying where its pixel size, z step and channel names came from.

    Notes
    -----
    ``src`` may be a ``hcs simulate`` output folder: its ``export/`` is read (said on stderr).
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    inner = simulation_export(src)
    if inner is not None and _detect(src) is None:
        print(f"{src} is a `hcs simulate` output: reading its export {inner}", file=sys.stderr)
        src = inner
    acq = _read(src, fmt, pattern, plate_format, allow_outside)
    from hcs.io.physical import apply_user_metadata

    return apply_user_metadata(acq, pixel_size_um=pixel_size_um, z_step_um=z_step_um,
                               channel_names=channel_names,
                               override_metadata=override_metadata)


def _read(src: Path, fmt: str, pattern: str | None, plate_format: int | str | None,
          allow_outside: bool) -> Acquisition:
    if fmt not in ("auto", *FORMATS):
        raise InputError(f"unknown export format {fmt!r}; choose auto, {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(src) or ("tiff-folder" if pattern else "")
        if not fmt:
            raise InputError(
                f"{src}: cannot tell the export format: looked for a Harmony index "
                "(Index.xml, Index.idx.xml, Index.ref.xml, Index.flex.xml in the folder or "
                "Images/), ScanR metadata (data/metadata.ome.xml, experiment_descriptor.xml) or "
                "ScanR file names (--W00001--); for a plain TIFF folder pass --format "
                "tiff-folder (and --pattern unless the names are like B03_s1_w1.tif)"
            )
    if fmt == "harmony":
        from hcs.io.harmony import read_harmony

        return read_harmony(src, allow_outside=allow_outside)
    if fmt == "scanr":
        from hcs.io.scanr import read_scanr

        return read_scanr(src, plate_format=plate_format, allow_outside=allow_outside)
    from hcs.io.tiff_folder import DEFAULT_PATTERN, read_tiff_folder

    return read_tiff_folder(
        src, pattern or DEFAULT_PATTERN, plate_format=plate_format, allow_outside=allow_outside
    )
