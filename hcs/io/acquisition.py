"""The one in-memory model every reader returns (DESIGN.md, "Acquisition").

A reader (Harmony, ScanR, TIFF folder) turns an instrument export into an :class:`Acquisition`:
plate name and geometry, a table of planes, channel metadata and the verbatim vendor files.
The writer (:mod:`hcs.io.omezarr`) only ever sees this model.

The plane table (``Acquisition.planes``) has one row per plane and the columns of
:data:`PLANE_COLUMNS`:

- ``row``, ``col``: 0-based plate coordinates;
- ``field``, ``z``, ``channel``, ``t``: dense 0-based indices (readers re-index the vendor IDs);
- ``path``: absolute path of the TIFF holding the plane, or ``None`` when the export lists the
  plane without an image (empty URL); ``page``: page index inside that TIFF;
- ``stage_x_um``, ``stage_y_um``, ``stage_z_um``: stage position in micrometres, image
  orientation (Y grows downwards), NaN when unknown; ``time_s``: time offset in seconds or NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.plate import PlateGeometry, well_name

PLANE_COLUMNS: list[str] = [
    "row",
    "col",
    "field",
    "z",
    "channel",
    "t",
    "path",
    "page",
    "stage_x_um",
    "stage_y_um",
    "stage_z_um",
    "time_s",
]
KEY_COLUMNS: list[str] = ["row", "col", "field", "z", "channel", "t"]

CHANNEL_TYPES = ("fluorescence", "brightfield", "phase")

#: Length units as instrument metadata spell them (OME ``UnitsLength`` symbols, Harmony's
#: ``Unit`` attributes) -> micrometres.
LENGTH_TO_UM: dict[str, float] = {"m": 1e6, "cm": 1e4, "mm": 1e3, "um": 1.0, "µm": 1.0,
                                  "μm": 1.0, "nm": 1e-3, "pm": 1e-6}


@dataclass
class Channel:
    """Metadata of one channel.

    Parameters
    ----------
    name
        Channel name as the instrument wrote it (whitespace normalised).
    channel_type
        ``fluorescence``, ``brightfield`` or ``phase``.
    excitation_nm, emission_nm
        Main wavelengths in nm, ``None`` when unknown (emission 0 means none, e.g. brightfield).
    color
        Display colour as ``RRGGBB`` hex; derived from the emission wavelength when ``None``.
    flatfield
        Parsed vendor flatfield profile (Harmony ``FlatfieldProfile``), if any.
    metadata
        Any further per-channel vendor fields (exposure, objective, binning ...).
    """

    name: str
    channel_type: str = "fluorescence"
    excitation_nm: float | None = None
    emission_nm: float | None = None
    color: str | None = None
    flatfield: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = " ".join(str(self.name).split())
        self.channel_type = self.channel_type.lower()
        if self.channel_type not in CHANNEL_TYPES:
            raise InputError(
                f"channel {self.name!r}: unknown type {self.channel_type!r}; expected one of "
                f"{CHANNEL_TYPES}"
            )
        if self.color is None:
            self.color = default_color(self.channel_type, self.emission_nm)


def default_color(channel_type: str, emission_nm: float | None) -> str:
    """Display colour for a channel: grey for transmitted light, else by emission wavelength."""
    if channel_type != "fluorescence" or not emission_nm:
        return "FFFFFF"
    if emission_nm < 500:
        return "0000FF"
    if emission_nm < 560:
        return "00FF00"
    if emission_nm < 610:
        return "FFFF00"
    if emission_nm < 700:
        return "FF0000"
    return "FF00FF"


@dataclass
class Acquisition:
    """One plate acquisition as read from an instrument export.

    Attributes
    ----------
    plate_name
        Plate name or barcode.
    geometry
        Plate rows x columns.
    channels
        One :class:`Channel` per dense channel index.
    planes
        Plane table (see module docstring).
    pixel_size_um
        (y, x) pixel size in micrometres, ``None`` when the export does not say.
    z_step_um
        Z spacing in micrometres, ``None`` for single planes or when unknown.
    image_shape
        (y, x) size of every plane in pixels (from the metadata or the first TIFF).
    dtype
        Pixel dtype, taken from the TIFF files (never from vendor bit-depth hints).
    source
        The export folder (everything the export references must lie inside it).
    index_file
        The metadata file the reader parsed (index XML, OME-XML ...), or ``None``.
    vendor_format
        ``harmony``, ``scanr`` or ``tiff-folder``.
    vendor_files
        Metadata files copied verbatim under ``plate.ome.zarr/vendor/``.
    instrument
        Instrument name as the export states it (``Phenix``, ``Sonata`` ...), if known.
    attrs
        Further plate-level metadata (measurement id, start time, plate type ...).
    sources
        Where ``pixel_size_um``, ``z_step_um`` and the channel names came from, by those keys
        (``metadata: <file>``, ``OME-TIFF PhysicalSizeX in <file>``, ``--pixel-size``,
        ``default``, ``unknown: <why>`` ...; see :mod:`hcs.io.physical`).
    """

    plate_name: str
    geometry: PlateGeometry
    channels: list[Channel]
    planes: pd.DataFrame
    pixel_size_um: tuple[float, float] | None
    source: Path
    vendor_format: str
    image_shape: tuple[int, int] | None = None
    dtype: np.dtype | None = None
    z_step_um: float | None = None
    index_file: Path | None = None
    vendor_files: list[Path] = field(default_factory=list)
    instrument: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing_cols = [c for c in PLANE_COLUMNS if c not in self.planes.columns]
        if missing_cols:
            raise ValueError(f"plane table lacks columns {missing_cols}")
        self.planes = self.planes[PLANE_COLUMNS].reset_index(drop=True)

    # ----- sizes -------------------------------------------------------------------------
    @property
    def n_fields(self) -> int:
        return int(self.planes["field"].max()) + 1 if len(self.planes) else 0

    @property
    def size_z(self) -> int:
        return int(self.planes["z"].max()) + 1 if len(self.planes) else 0

    @property
    def size_t(self) -> int:
        return int(self.planes["t"].max()) + 1 if len(self.planes) else 0

    @property
    def size_c(self) -> int:
        return len(self.channels)

    def wells(self) -> list[tuple[int, int]]:
        """0-based (row, col) of every well with at least one plane, row-major."""
        pairs = self.planes[["row", "col"]].drop_duplicates().sort_values(["row", "col"])
        return [(int(r), int(c)) for r, c in pairs.itertuples(index=False)]

    def well_names(self) -> list[str]:
        return [well_name(r, c) for r, c in self.wells()]

    def fields_of(self, row: int, col: int) -> list[int]:
        """Dense field indices present in one well."""
        sel = self.planes[(self.planes["row"] == row) & (self.planes["col"] == col)]
        return sorted(int(f) for f in sel["field"].unique())

    def missing_planes(self) -> pd.DataFrame:
        """Planes the export lists but whose image is absent (no URL, or the file is missing).

        Every plane of every (well, field) present is expected for each (t, channel, z); a key
        absent from the table is missing too. Returns the key columns plus ``path`` and
        ``reason``.
        """
        p = self.planes
        listed_no_file = p["path"].isna()
        file_absent = ~listed_no_file & ~p["path"].map(
            lambda s: isinstance(s, str) and Path(s).is_file()
        )
        out = [
            p.loc[listed_no_file, KEY_COLUMNS + ["path"]].assign(reason="no image in index"),
            p.loc[file_absent, KEY_COLUMNS + ["path"]].assign(reason="file not found"),
        ]
        # Keys never listed at all (sparse export): full grid per present (well, field).
        fields = p[["row", "col", "field"]].drop_duplicates()
        if len(fields):
            grid = fields.merge(
                pd.DataFrame({"t": range(self.size_t)}), how="cross"
            ).merge(pd.DataFrame({"channel": range(self.size_c)}), how="cross").merge(
                pd.DataFrame({"z": range(self.size_z)}), how="cross"
            )
            have = p[KEY_COLUMNS].drop_duplicates()
            absent = grid.merge(have, how="left", on=KEY_COLUMNS, indicator=True)
            absent = absent[absent["_merge"] == "left_only"][KEY_COLUMNS]
            out.append(absent.assign(path=None, reason=(
                "no file matching the pattern" if self.vendor_format == "tiff-folder"
                else "not listed in index")))
        res = pd.concat([o for o in out if len(o)], ignore_index=True) if any(
            len(o) for o in out
        ) else pd.DataFrame(columns=KEY_COLUMNS + ["path", "reason"])
        return res.sort_values(KEY_COLUMNS).reset_index(drop=True)


def check_unique_keys(
    planes: pd.DataFrame, source: Path | str, extra: list[str] | None = None
) -> None:
    """Raise :class:`InputError` naming the first duplicated plane key and its files.

    ``extra`` lists vendor key columns (e.g. Harmony sequence/flim IDs) that are part of the key
    while the table still carries them.
    """
    keys = KEY_COLUMNS + (extra or [])
    dup = planes.duplicated(keys, keep=False)
    if dup.any():
        first = planes[dup].sort_values(keys).head(2)
        r = first.iloc[0]
        files = ", ".join(str(x) for x in first["path"].tolist())
        raise InputError(
            f"{source}: duplicate plane for well {well_name(int(r['row']), int(r['col']))} "
            f"field {int(r['field'])} z {int(r['z'])} channel {int(r['channel'])} "
            f"t {int(r['t'])} ({files})"
        )


def dense_index(values: pd.Series) -> pd.Series:
    """Map sorted unique values to 0..n-1 (vendor IDs may be 0- or 1-based, with gaps)."""
    uniq = sorted(values.dropna().unique())
    lookup = {v: i for i, v in enumerate(uniq)}
    return values.map(lookup).astype("int64")


def resolve_inside(base: Path, ref: str, *, allow_outside: bool = False, where: str = "") -> Path:
    """Resolve a path written in vendor metadata relative to ``base``, refusing escapes.

    Paths in vendor metadata are never trusted: absolute paths, ``..`` that leaves the export
    folder, symlinks pointing outside it and remote URLs (``http:``, ``s3:`` ...) are refused
    unless ``allow_outside`` is set (remote URLs are refused even then: hcs reads local files).

    Parameters
    ----------
    base
        The export folder.
    ref
        The path or URL as written in the metadata.
    allow_outside
        Accept local paths outside ``base`` (the user's explicit choice).
    where
        Names the metadata file and element for the error message.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> resolve_inside(d, "Images/a.tiff") == (d / "Images" / "a.tiff").resolve()
    True
    """
    prefix = f"{where}: " if where else ""
    ref = ref.strip()
    if "://" in ref or ref.lower().startswith(("http:", "https:", "s3:", "gs:", "ftp:")):
        raise InputError(
            f"{prefix}remote URL {ref!r} refused: hcs reads local exports only "
            "(download the images next to the index first)"
        )
    p = Path(ref.replace("\\", "/"))
    target = (p if p.is_absolute() else base / p).resolve()
    base_r = base.resolve()
    if not allow_outside and not target.is_relative_to(base_r):
        raise InputError(
            f"{prefix}path {ref!r} leaves the export folder {base}; refused "
            "(pass --allow-outside to read files outside the export)"
        )
    return target


def inside_export(base: Path, path: str | Path, what: str = "metadata file") -> Path:
    """``path``, a file hcs takes from the export ``base`` by itself (index, vendor metadata),
    unless it resolves (symlinks followed) outside ``base``.

    Unlike image paths (:func:`resolve_inside`), ``--allow-outside`` does not apply: these files
    are parsed and copied byte for byte into the plate's ``vendor/`` folder, so a symlink
    leading out of the export would copy an unrelated (possibly private) file into a plate
    that is shared.

    Raises
    ------
    InputError
        Naming the file, where it leads and the export.
    """
    path = Path(path)
    target = path.resolve()
    if not target.is_relative_to(Path(base).resolve()):
        raise InputError(
            f"{path}: {what} resolves to {target}, outside the export {base}; refused (hcs "
            "takes no file from outside an export; replace the link by a copy of the file)"
        )
    return path


def read_plane(
    path: str | Path,
    page: int = 0,
    *,
    expect_shape: tuple[int, int] | None = None,
    single_page: bool = False,
) -> np.ndarray:
    """Read one 2-D plane from a TIFF, with an error naming the file when it is unreadable.

    Parameters
    ----------
    path
        TIFF file.
    page
        Page index inside the file.
    expect_shape
        (y, x) the metadata promises; a different shape is an error.
    single_page
        The file must hold one plane (a TIFF folder: one file per plane); a multi-page file
        (a z stack, a time series, channels as pages) is an error, never read as its first page.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            n_pages = len(tf.pages)
            if single_page and n_pages > 1:
                raise InputError(multi_page_message(path, n_pages))
            if page >= n_pages:
                raise InputError(f"{path}: has {n_pages} pages, page {page} requested")
            pg = tf.pages[page]
            arr = decode_with_libtiff(path, pg, page)
            if arr is None:
                arr = pg.asarray()
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt/truncated files
        raise InputError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 2:
        arr = np.squeeze(arr)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            raise InputError(
                f"{path}: an RGB(A) image ({arr.shape[0]} x {arr.shape[1]} px, {arr.shape[-1]} "
                "samples per pixel); hcs reads one grey-level plane per channel: save each "
                "channel as a grey-level TIFF"
            )
        if arr.ndim != 2:
            raise InputError(f"{path}: expected a 2-D plane, got shape {arr.shape}")
    if expect_shape is not None and tuple(arr.shape) != tuple(expect_shape):
        raise InputError(
            f"{path}: plane is {arr.shape[0]} x {arr.shape[1]} px, expected "
            f"{expect_shape[0]} x {expect_shape[1]}"
        )
    return arr


#: TIFF compressions (none, LZW, deflate x2), predictors (none, horizontal, float) and sample
#: formats (uint, int, float) that :func:`decode_with_libtiff` decodes.
_LIBTIFF_COMPRESSION = frozenset({1, 5, 8, 32946})
_LIBTIFF_PREDICTOR = frozenset({1, 2, 3})
_LIBTIFF_SAMPLEFORMAT = frozenset({1, 2, 3})


def decode_with_libtiff(path: str | Path, page: Any, index: int) -> np.ndarray | None:
    """The pixels of a plain grey-level TIFF page decoded by libtiff, else ``None``.

    libtiff (``imagecodecs.tiff_decode``) decodes LZW about twice as fast as tifffile's own
    decoder and releases the GIL (measured in ``docs/scaling.md``). It is used only for pages
    tifffile has already parsed as one sample per pixel, min-is-black, contiguous, fill order 1,
    8-64 bit, with no compression, LZW or deflate; the result must have the shape and dtype
    tifffile announces. Anything else, and any libtiff error, returns ``None`` and the caller
    decodes with tifffile (which gives its own error for a damaged file). Both decoders are
    lossless: the pixels are the same.

    Parameters
    ----------
    path
        The TIFF file.
    page
        ``tifffile.TiffPage`` of the plane (already parsed).
    index
        Its index among the file's pages.
    """
    try:
        import imagecodecs

        plain = (
            int(page.compression) in _LIBTIFF_COMPRESSION
            and int(page.predictor) in _LIBTIFF_PREDICTOR
            and int(page.sampleformat) in _LIBTIFF_SAMPLEFORMAT
            and page.samplesperpixel == 1
            and int(page.photometric) == 1
            and int(page.planarconfig) == 1
            and int(page.fillorder) == 1
            and page.bitspersample in (8, 16, 32, 64)
            and len(page.shape) == 2
        )
        if not plain:
            return None
        with open(path, "rb") as fh:
            arr = imagecodecs.tiff_decode(fh.read(), index=index)
    except Exception:  # libtiff refuses it: let tifffile decode (or explain) it
        return None
    if arr.shape != tuple(page.shape) or arr.dtype != page.dtype:
        return None
    return arr


def multi_page_message(path: str | Path, n_pages: int) -> str:
    """The one-line refusal of a multi-page TIFF where one plane per file is expected."""
    return (
        f"{path}: holds {n_pages} pages (a stack); a TIFF folder needs one plane per file, "
        "with z, t and channel in the file name: split the stack into single-plane TIFFs"
    )


def count_pages(path: str | Path) -> int:
    """Number of pages (IFDs) in a TIFF, with an error naming the file when it is unreadable."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            return len(tf.pages)
    except Exception as exc:
        raise InputError(f"{path}: cannot read TIFF header ({type(exc).__name__}: {exc})") from exc


def probe_tiff(path: str | Path, page: int = 0) -> tuple[tuple[int, int], np.dtype]:
    """(y, x) shape and dtype of one TIFF page, from its header only."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            pg = tf.pages[page]
            shape = tuple(int(s) for s in pg.shape if s != 1)[-2:]
            return (shape[0], shape[1]), np.dtype(pg.dtype)
    except Exception as exc:
        raise InputError(f"{path}: cannot read TIFF header ({type(exc).__name__}: {exc})") from exc


def nan_or(value: Any) -> float:
    """Float of ``value``, NaN when ``None`` or unparsable."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f


def default_field_positions(
    n_fields: int, image_shape: tuple[int, int], pixel_size_um: tuple[float, float]
) -> list[tuple[float, float]]:
    """Well-relative (x, y) in um, image orientation, of ``n_fields`` abutting fields on a square
    grid centred on the well, numbered row by row from the top left (as Harmony does).

    Examples
    --------
    >>> default_field_positions(2, (100, 100), (1.0, 1.0))
    [(-50.0, 0.0), (50.0, 0.0)]
    """
    side = math.ceil(math.sqrt(n_fields))
    n_rows = math.ceil(n_fields / side)
    w, h = image_shape[1] * pixel_size_um[1], image_shape[0] * pixel_size_um[0]
    return [
        ((i % side - (side - 1) / 2) * w, (i // side - (n_rows - 1) / 2) * h)
        for i in range(n_fields)
    ]
