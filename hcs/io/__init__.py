"""Readers for instrument exports and the OME-Zarr plate writer/reader.

:func:`open_export` picks the reader for an export folder; the readers themselves
(:mod:`hcs.io.harmony`, :mod:`hcs.io.scanr`, :mod:`hcs.io.tiff_folder`) are imported only when
used, so importing :mod:`hcs.io` stays cheap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from hcs.errors import InputError

if TYPE_CHECKING:
    from hcs.io.acquisition import Acquisition

__all__ = ["FORMATS", "detect_format", "open_export"]

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


def detect_format(src: str | Path) -> str | None:
    """Guess the export format of ``src``: ``harmony``, ``scanr`` or ``None``.

    Harmony: an index XML (``Index.xml``, ``Index.idx.xml``, ``Index.ref.xml``,
    ``Index.flex.xml``) in ``src``, ``src/Images`` or ``src`` itself. ScanR: ``metadata.ome.xml``
    or ``experiment_descriptor.xml`` in ``src`` or ``src/data``, or file names with ``--W00001--``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "A1--W00001--P00001--Z00000--T00000--dapi.tif").write_bytes(b"")
    >>> detect_format(d)
    'scanr'
    """
    src = Path(src)
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

    Returns
    -------
    Acquisition
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if fmt not in ("auto", *FORMATS):
        raise InputError(f"unknown export format {fmt!r}; choose auto, {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(src) or ("tiff-folder" if pattern else "")
        if not fmt:
            raise InputError(
                f"{src}: cannot tell the export format: looked for a Harmony index "
                "(Index.xml, Index.idx.xml, Index.ref.xml, Index.flex.xml in the folder or "
                "Images/), ScanR metadata (data/metadata.ome.xml, experiment_descriptor.xml) or "
                "ScanR file names (--W00001--); for a plain TIFF folder pass --pattern"
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
