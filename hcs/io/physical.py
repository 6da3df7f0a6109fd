"""Pixel size, z step and channel names: read from TIFF files, given by the user, and where each
value came from.

Every reader records in ``Acquisition.sources`` where its pixel size, z step and channel names
came from (``metadata: <file>``, ``OME-TIFF PhysicalSizeX in <file>``, ``ImageJ resolution
tags in <file>``, ``TIFF resolution tags in <file>``, ``file names``, ``default``, or
``unknown: <why>``).
:func:`apply_user_metadata` then applies what the user gave (``--pixel-size``, ``--z-step``,
``--channel-names``), refusing a value that contradicts the metadata unless told to override it.
:func:`tiff_physical` reads what one TIFF file says about itself, with tifffile's own parsers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcs.errors import InputError
from hcs.io.acquisition import LENGTH_TO_UM

if TYPE_CHECKING:
    from hcs.io.acquisition import Acquisition

__all__ = ["SOURCE_KEYS", "TiffPhysical", "apply_user_metadata", "fill_sources",
           "guess_channel_type", "parse_channel_names", "tiff_physical", "unit_to_um"]

#: Keys of ``Acquisition.sources``.
SOURCE_KEYS = ("pixel_size_um", "z_step_um", "channel_names")

#: Relative difference above which a user value contradicts the metadata.
TOLERANCE = 0.01

#: Resolutions (pixels per inch) that image software writes when it knows nothing: a TIFF
#: saying 72 or 96 dpi says nothing about the microscope.
SCREEN_DPI = (72.0, 96.0)

#: A pixel size from plain TIFF resolution tags outside this range (um) is not a microscope's
#: (e.g. 26 dpi = 977 um per pixel): it is treated as unknown.
PLAUSIBLE_UM = (0.01, 50.0)

#: The vendor unit table plus the spellings ImageJ and OME-TIFF files use.
_UNITS_UM = {
    **LENGTH_TO_UM, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\\u00b5m": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6,
    "inch": 25400.0, "in": 25400.0, "Å": 1e-4, "angstrom": 1e-4,
}


def unit_to_um(unit: str | None) -> float | None:
    """Micrometres per ``unit`` (OME ``PhysicalSizeXUnit`` or ImageJ ``unit``); ``None`` for a
    unit that is not a length (``pixel``, empty).

    Examples
    --------
    >>> unit_to_um("micron"), unit_to_um("nm"), unit_to_um("pixel")
    (1.0, 0.001, None)
    """
    if unit is None:
        return None
    key = str(unit).strip()
    return _UNITS_UM.get(key) or _UNITS_UM.get(key.lower())  # exact first: "Å", not "å"


@dataclass
class TiffPhysical:
    """What one TIFF file says about its pixels: ``pixel_size_um`` (y, x), ``z_step_um``,
    ``channel_names`` (OME-TIFF only) and, per value, where it came from or why it is unknown."""

    pixel_size_um: tuple[float, float] | None = None
    z_step_um: float | None = None
    channel_names: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)


def tiff_physical(path: str | Path) -> TiffPhysical:
    """Pixel size, z step and channel names one TIFF file states about itself.

    In order: OME-TIFF ``Pixels`` ``PhysicalSizeX/Y`` (+ unit, default um), ``PhysicalSizeZ``
    and ``Channel Name``; MetaSeries (MetaMorph, ImageXpress) ``spatial-calibration-x/y`` (+
    units) and ``_IllumSetting_``; ImageJ ``unit`` with ``XResolution``/``YResolution`` (pixels per
    unit) and ``spacing``; plain TIFF ``XResolution``/``YResolution`` with ``ResolutionUnit``
    inch or centimetre. Resolution with unit NONE, the screen defaults 72/96 dpi and sizes
    outside :data:`PLAUSIBLE_UM` are not pixel sizes: the result is unknown, and
    ``sources["pixel_size_um"]`` says why.

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> p = Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.zeros((4, 4), np.uint8), imagej=True,
    ...                  resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "um"})
    >>> tiff_physical(p).pixel_size_um
    (0.65, 0.65)
    """
    import tifffile

    path = Path(path)
    out = TiffPhysical()
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            if tf.is_ome and tf.ome_metadata:
                _from_ome(tifffile.xml2dict(tf.ome_metadata), path, out)
            if out.pixel_size_um is None and tf.is_metaseries:
                _from_metaseries(tf.metaseries_metadata or {}, path, out)
            if out.pixel_size_um is None and tf.is_imagej:
                _from_imagej(tf.imagej_metadata or {}, page, path, out)
            if out.pixel_size_um is None and "pixel_size_um" not in out.sources:
                _from_tags(page, path, out)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    return out


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _from_ome(tree: dict[str, Any], path: Path, out: TiffPhysical) -> None:
    image = _first(tree.get("OME", {}).get("Image"))
    pixels = (image or {}).get("Pixels") or {}
    size = {a: pixels.get(f"PhysicalSize{a}") for a in "XYZ"}
    if size["X"] is not None:
        x = float(size["X"]) * (unit_to_um(pixels.get("PhysicalSizeXUnit", "µm")) or math.nan)
        y_raw = size["Y"] if size["Y"] is not None else size["X"]
        y_unit = pixels.get("PhysicalSizeYUnit", pixels.get("PhysicalSizeXUnit", "µm"))
        y = float(y_raw) * (unit_to_um(y_unit) or math.nan)
        if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0:
            out.pixel_size_um = (round(y, 9), round(x, 9))
            out.sources["pixel_size_um"] = f"OME-TIFF PhysicalSizeX in {path}"
        else:
            out.sources["pixel_size_um"] = (f"unknown: OME-TIFF PhysicalSizeX in {path} has no "
                                            "length unit")
    if size["Z"] is not None:
        z = float(size["Z"]) * (unit_to_um(pixels.get("PhysicalSizeZUnit", "µm")) or math.nan)
        if math.isfinite(z) and z > 0:
            out.z_step_um = round(z, 9)
            out.sources["z_step_um"] = f"OME-TIFF PhysicalSizeZ in {path}"
    channels = pixels.get("Channel")
    channels = channels if isinstance(channels, list) else [channels] if channels else []
    names = [c.get("Name") for c in channels if isinstance(c, dict)]
    if names and all(names):
        out.channel_names = [str(n) for n in names]
        out.sources["channel_names"] = f"OME-TIFF Channel Name in {path}"


def _from_metaseries(meta: dict[str, Any], path: Path, out: TiffPhysical) -> None:
    """MetaMorph / ImageXpress ``PlaneInfo``: ``spatial-calibration-x/y`` in
    ``spatial-calibration-units``, the channel as ``_IllumSetting_``."""
    plane = meta.get("PlaneInfo") or {}
    illum = plane.get("_IllumSetting_")
    if illum and str(illum).strip():
        out.channel_names = [str(illum).strip()]
        out.sources["channel_names"] = f"MetaSeries _IllumSetting_ in {path}"
    if plane.get("spatial-calibration-state") is False:
        out.sources["pixel_size_um"] = f"unknown: MetaSeries spatial calibration off in {path}"
        return
    factor = unit_to_um(plane.get("spatial-calibration-units"))
    x, y = plane.get("spatial-calibration-x"), plane.get("spatial-calibration-y", None)
    if factor is None or not x:
        return
    y = y or x
    if float(x) > 0 and float(y) > 0:
        out.pixel_size_um = (round(float(y) * factor, 9), round(float(x) * factor, 9))
        out.sources["pixel_size_um"] = f"MetaSeries spatial-calibration in {path}"


def _from_imagej(meta: dict[str, Any], page: Any, path: Path, out: TiffPhysical) -> None:
    unit = meta.get("unit")
    factor = unit_to_um(unit)
    if factor is None:
        if unit not in (None, "", "pixel"):
            out.sources["pixel_size_um"] = f"unknown: ImageJ unit {unit!r} in {path} is no length"
        return
    if 282 not in page.tags:
        return
    xres, yres = page.get_resolution()
    if xres > 0 and yres > 0:
        out.pixel_size_um = (round(factor / yres, 9), round(factor / xres, 9))
        out.sources["pixel_size_um"] = f"ImageJ resolution tags in {path}"
    spacing = meta.get("spacing")
    if spacing and float(spacing) > 0:
        out.z_step_um = round(float(spacing) * factor, 9)
        out.sources["z_step_um"] = f"ImageJ spacing in {path}"


def _from_tags(page: Any, path: Path, out: TiffPhysical) -> None:
    import tifffile

    if 282 not in page.tags or 283 not in page.tags:
        out.sources["pixel_size_um"] = f"unknown: no resolution tags in {path}"
        return
    unit = int(page.tags.valueof(296, default=2))  # TIFF: inch when the tag is absent
    raw = page.get_resolution()
    shown = f"{raw[0]:g} x {raw[1]:g}"
    if unit == tifffile.RESUNIT.NONE or unit not in (2, 3, 4, 5):
        out.sources["pixel_size_um"] = (f"unknown: TIFF resolution {shown} in {path} has no unit "
                                        "(ResolutionUnit NONE)")
        return
    dpi = page.get_resolution(tifffile.RESUNIT.INCH)
    if any(abs(d - s) <= 0.01 * s for d in dpi for s in SCREEN_DPI) or min(raw) <= 1:
        out.sources["pixel_size_um"] = (f"unknown: TIFF resolution {dpi[0]:g} x {dpi[1]:g} dpi "
                                        f"in {path} is a software default, not a pixel size")
        return
    per_um = page.get_resolution(tifffile.RESUNIT.MICROMETER)
    size = (1.0 / per_um[1], 1.0 / per_um[0])  # (y, x)
    lo, hi = PLAUSIBLE_UM
    if not all(lo <= s <= hi for s in size):
        out.sources["pixel_size_um"] = (
            f"unknown: TIFF resolution {shown} per {tifffile.RESUNIT(unit).name.lower()} in "
            f"{path} means {size[1]:.4g} x {size[0]:.4g} um pixels, not a microscope's "
            f"({lo:g}-{hi:g} um)")
        return
    out.pixel_size_um = (round(size[0], 9), round(size[1], 9))
    out.sources["pixel_size_um"] = f"TIFF resolution tags in {path}"


def parse_channel_names(text: str | list[str] | None) -> list[str] | None:
    """``"DNA,PH3,Cells"`` -> ``["DNA", "PH3", "Cells"]`` (``None`` stays ``None``).

    Examples
    --------
    >>> parse_channel_names(" DNA, PH3 ,Cells")
    ['DNA', 'PH3', 'Cells']
    """
    if text is None:
        return None
    names = [" ".join(n.split()) for n in (text.split(",") if isinstance(text, str) else text)]
    if not names or any(not n for n in names):
        raise InputError(f"--channel-names {text!r}: expected comma-separated names, none empty")
    if len(set(names)) != len(names):
        raise InputError(f"--channel-names {text!r}: names must differ")
    return names


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > TOLERANCE * max(abs(a), abs(b))


def _from_metadata(source: str | None) -> bool:
    """Whether a value came from metadata the instrument or the files wrote (not a file-name
    key, a default or the user)."""
    s = source or ""
    return s.startswith(("metadata", "OME-TIFF", "MetaSeries", "ImageJ", "TIFF resolution"))


def fill_sources(acq: Acquisition) -> None:
    """Give every key of :data:`SOURCE_KEYS` a source in ``acq.sources`` (``unknown`` /
    ``default`` for values the reader did not set)."""
    s = acq.sources
    if acq.pixel_size_um is None:
        s.setdefault("pixel_size_um", "unknown: the export does not state it")
        if not s["pixel_size_um"].startswith("unknown"):
            s["pixel_size_um"] = "unknown: " + s["pixel_size_um"]
    else:
        s.setdefault("pixel_size_um", "metadata")
    if acq.z_step_um is None:
        s["z_step_um"] = ("default (one z plane)" if acq.size_z <= 1
                          else "unknown: the export does not state it")
    else:
        s.setdefault("z_step_um", "metadata")
    s.setdefault("channel_names", "default")


def apply_user_metadata(
    acq: Acquisition,
    *,
    pixel_size_um: float | tuple[float, float] | None = None,
    z_step_um: float | None = None,
    channel_names: list[str] | str | None = None,
    override_metadata: bool = False,
) -> Acquisition:
    """Apply user-given pixel size, z step and channel names to ``acq`` (in place).

    Parameters
    ----------
    acq
        The acquisition a reader returned (its ``sources`` say where its values came from).
    pixel_size_um
        Pixel size in um: one value for x and y, or ``(y, x)``.
    z_step_um
        Z spacing in um.
    channel_names
        One name per channel, in the reader's channel order (a list, or comma-separated text).
    override_metadata
        Replace values the metadata states; without it a value differing by more than 1 %
        (or other channel names) is an :class:`~hcs.errors.InputError` naming both.

    Returns
    -------
    Acquisition
        ``acq``, with ``sources`` updated (``--pixel-size`` ...).
    """
    src = acq.sources
    fill_sources(acq)
    hint = "; pass --override-metadata to use yours"
    if pixel_size_um is not None:
        yx = (tuple(float(v) for v in pixel_size_um) if isinstance(pixel_size_um, tuple | list)
              else (float(pixel_size_um), float(pixel_size_um)))
        if len(yx) != 2 or not all(math.isfinite(v) and v > 0 for v in yx):
            raise InputError(f"--pixel-size {pixel_size_um}: expected a positive size in um")
        lo, hi = PLAUSIBLE_UM
        if not all(lo <= v <= hi for v in yx):  # nm or a lost decimal point: areas off by 1e6
            raise InputError(f"--pixel-size {pixel_size_um}: not a microscope pixel size in um "
                             f"({lo:g}-{hi:g}; 0.65 um for a 10x objective, 0.1-0.2 at 60x)")
        old = acq.pixel_size_um
        if old is not None and any(_differs(a, b) for a, b in zip(old, yx, strict=True)):
            if not override_metadata:
                raise InputError(
                    f"--pixel-size {_fmt(yx)} um contradicts the pixel size {_fmt(old)} um "
                    f"({src['pixel_size_um']}){hint}")
        if old is None or override_metadata or not _from_metadata(src["pixel_size_um"]):
            acq.pixel_size_um = (yx[0], yx[1])
            src["pixel_size_um"] = "--pixel-size"
    if z_step_um is not None:
        z = float(z_step_um)
        if not (math.isfinite(z) and z > 0):
            raise InputError(f"--z-step {z_step_um}: expected a positive step in um")
        old_z = acq.z_step_um
        if old_z is not None and _differs(old_z, z) and not override_metadata:
            raise InputError(f"--z-step {z:.4g} um contradicts the z step {old_z:.4g} um "
                             f"({src['z_step_um']}){hint}")
        if old_z is None or override_metadata or not _from_metadata(src["z_step_um"]):
            acq.z_step_um = z
            src["z_step_um"] = "--z-step"
    names = parse_channel_names(channel_names)
    if names is not None:
        have = [c.name for c in acq.channels]
        if len(names) != len(have):
            raise InputError(
                f"--channel-names: {len(names)} name(s) given ({', '.join(names)}), but the "
                f"export has {len(have)} channel(s): {', '.join(have)} ({src['channel_names']}); "
                "give one name per channel, in this order")
        differ = [(a, b) for a, b in zip(have, names, strict=True) if a.lower() != b.lower()]
        if differ and _from_metadata(src["channel_names"]) and not override_metadata:
            raise InputError(
                f"--channel-names {','.join(names)} contradicts the channel names "
                f"{', '.join(have)} ({src['channel_names']}){hint}")
        if differ:
            guessed = not _from_metadata(src["channel_names"])
            for ch, name in zip(acq.channels, names, strict=True):
                ch.metadata.setdefault("name_in_export", ch.name)
                ch.name = name
                if guessed:  # the type was guessed from the old name: guess it again
                    ch.channel_type = guess_channel_type(name)
            src["channel_names"] = "--channel-names"
    return acq


def guess_channel_type(name: str) -> str:
    """``brightfield`` for a transmitted-light name (``BF``, ``Brightfield``, ``phase`` ...),
    else ``fluorescence``.

    Examples
    --------
    >>> guess_channel_type("BF"), guess_channel_type("DNA")
    ('brightfield', 'fluorescence')
    """
    low = name.strip().lower()
    if low in ("bf", "brightfield", "bright field", "transmitted", "tl"):
        return "brightfield"
    return "phase" if low in ("phase", "phase contrast", "pc") else "fluorescence"


def _fmt(yx: tuple[float, ...]) -> str:
    return f"{yx[1]:.4g}" if yx[0] == yx[1] else f"{yx[1]:.4g} x {yx[0]:.4g}"
