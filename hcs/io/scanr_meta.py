"""Parsers for the metadata files of an Olympus/Evident scanR export (FORMATS.md section 2).

- file names ``<prefix>--W00014--P00001--Z00000--T00000--<channel>.tif`` (:func:`parse_scanr_name`);
- scanR 3.x ``data/metadata.ome.xml`` (:func:`parse_scanr_ome`);
- the older ``experiment_descriptor.xml`` and ``AcquisitionLog.dat`` are in
  :mod:`hcs.io.scanr_descriptor`.

All stage coordinates are returned as the files state them (micrometres, Cartesian: Y up); the
reader (:mod:`hcs.io.scanr`) flips Y into image orientation.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from hcs.errors import InputError
from hcs.io.acquisition import LENGTH_TO_UM

#: scanR image file names (FORMATS.md 2.2); the channel is everything after the 5th ``--``.
SCANR_NAME_RE = re.compile(
    r"^(?P<prefix>.*?)--W(?P<well>\d{5})--P(?P<pos>\d{5})--Z(?P<z>\d{5})--T(?P<t>\d{5})"
    r"--(?P<channel>.+)\.tiff?$",
    re.IGNORECASE,
)
_TIME_TO_S = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}


class ScanrName(NamedTuple):
    """Fields of a scanR file name: ``well`` and ``pos`` 1-based, ``z`` and ``t`` 0-based."""

    prefix: str
    well: int
    pos: int
    z: int
    t: int
    channel: str


def parse_scanr_name(name: str) -> ScanrName | None:
    """Parse a scanR image file name; ``None`` when it does not follow the scanR pattern.

    Examples
    --------
    >>> parse_scanr_name("B2--W00014--P00001--Z00000--T00000--405 nm #1.tif")
    ScanrName(prefix='B2', well=14, pos=1, z=0, t=0, channel='405 nm #1')
    >>> parse_scanr_name("--W00100--P00002--Z00003--T00004--nucleus-dapi.tiff").channel
    'nucleus-dapi'
    >>> parse_scanr_name("notes.txt") is None
    True
    """
    m = SCANR_NAME_RE.match(name)
    if m is None:
        return None
    return ScanrName(
        m["prefix"], int(m["well"]), int(m["pos"]), int(m["z"]), int(m["t"]), m["channel"]
    )


def local_tag(tag: str) -> str:
    """An XML tag without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def _quantity(
    attrs: dict[str, str], key: str, where: str, factors: dict[str, float], default_unit: str
) -> float:
    """``attrs[key]`` converted with ``factors`` by its ``<key>Unit`` (OME default unit if
    absent); NaN when the attribute is missing."""
    value = attrs.get(key)
    if value is None or value == "":
        return math.nan
    unit = attrs.get(f"{key}Unit", default_unit)
    try:
        return float(value) * factors[unit]
    except (KeyError, ValueError):
        raise InputError(f"{where}: cannot read {key}={value!r} {unit}") from None


def _length_um(attrs: dict[str, str], key: str, where: str) -> float:
    return _quantity(attrs, key, where, LENGTH_TO_UM, "µm")


def _time_s(attrs: dict[str, str], key: str, where: str) -> float:
    return _quantity(attrs, key, where, _TIME_TO_S, "s")


def _int_attr(attrs: dict[str, str], key: str, default: int, where: str) -> int:
    try:
        return int(attrs.get(key, default))
    except ValueError:
        raise InputError(f"{where}: {key}={attrs[key]!r} is not an integer") from None


@dataclass
class OmeImage:
    """One OME ``Image`` of a scanR 3.x export: one well position (field)."""

    image_id: str
    name: str
    well: int | None
    pos: int | None
    label: str | None
    size_yx: tuple[int, int]
    pixel_type: str
    significant_bits: int | None
    pixel_size_um: tuple[float, float] | None
    channels: list[dict[str, Any]] = field(default_factory=list)
    #: one dict per TiffData: c, z, t, file, ifd, x_um, y_um, z_um, delta_t_s, exposure_s
    planes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ScanrOme:
    """Parsed scanR ``metadata.ome.xml``."""

    path: Path
    creator: str
    images: list[OmeImage]


_IMAGE_ID_RE = re.compile(r"W(\d+)\s*P(\d+)")
_IMAGE_NAME_RE = re.compile(r"Well\s+(\d+),\s*Position\s+(\d+)\s*\(([^)]*)\)")


def parse_scanr_ome(path: str | Path) -> ScanrOme:
    """Parse a scanR 3.x ``metadata.ome.xml`` (any OME namespace version), streaming.

    Parameters
    ----------
    path
        The OME-XML file.

    Returns
    -------
    ScanrOme
        One :class:`OmeImage` per ``Image`` (well ``W`` and position ``P`` from the image ID
        ``Image:W14P1``, the well label from the name ``Well 14, Position 1 (B2)``), with the
        plane list from ``TiffData`` joined to ``Plane`` on (C, Z, T). Positions in um as
        written (Y not flipped), times in seconds.
    """
    path = Path(path)
    images: list[OmeImage] = []
    creator = ""
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            tag = local_tag(elem.tag)
            if event == "start":
                if tag == "OME":
                    creator = elem.get("Creator", "")
                continue
            if tag == "Image":
                images.append(_parse_image(elem, path))
                elem.clear()
    except ET.ParseError as exc:
        raise InputError(f"{path}: not well-formed XML ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not images:
        raise InputError(f"{path}: no OME Image element; not a scanR metadata.ome.xml")
    return ScanrOme(path, creator, images)


def _parse_image(elem: ET.Element, path: Path) -> OmeImage:
    image_id = elem.get("ID", "")
    where = f"{path}: Image {image_id!r}"
    name = elem.get("Name", "")
    well = pos = None
    if m := _IMAGE_ID_RE.search(image_id):
        well, pos = int(m[1]), int(m[2])
    label = None
    if m := _IMAGE_NAME_RE.search(name):
        if well is not None and (int(m[1]), int(m[2])) != (well, pos):
            raise InputError(f"{where}: the ID says well {well} position {pos}, the name "
                             f"{name!r} says well {m[1]} position {m[2]}")
        well = well if well is not None else int(m[1])
        pos = pos if pos is not None else int(m[2])
        label = m[3].strip() or None
    pixels = next((e for e in elem if local_tag(e.tag) == "Pixels"), None)
    if pixels is None:
        raise InputError(f"{where}: has no Pixels element")
    pa = dict(pixels.attrib)
    size_yx = (_int_attr(pa, "SizeY", 0, where), _int_attr(pa, "SizeX", 0, where))
    psx, psy = _length_um(pa, "PhysicalSizeX", where), _length_um(pa, "PhysicalSizeY", where)
    pixel_size = None if math.isnan(psx) else (psx if math.isnan(psy) else psy, psx)
    sig = pa.get("SignificantBits")
    image = OmeImage(
        image_id=image_id,
        name=name,
        well=well,
        pos=pos,
        label=label,
        size_yx=size_yx,
        pixel_type=pa.get("Type", ""),
        significant_bits=int(sig) if sig and sig.isdigit() else None,
        pixel_size_um=pixel_size,
    )
    plane_info: dict[tuple[int, int, int], dict[str, float]] = {}
    tiffdata: list[tuple[dict[str, str], str | None]] = []
    for child in pixels:
        ctag = local_tag(child.tag)
        ca = dict(child.attrib)
        if ctag == "Channel":
            image.channels.append(
                {
                    "name": ca.get("Name", f"C{len(image.channels)}"),
                    "acquisition_mode": ca.get("AcquisitionMode"),
                    "illumination_type": ca.get("IlluminationType"),
                    "contrast_method": ca.get("ContrastMethod"),
                    "excitation_nm": _length_um(ca, "ExcitationWavelength", where) * 1e3
                    if "ExcitationWavelengthUnit" in ca
                    else _float_or_none(ca.get("ExcitationWavelength")),
                    "emission_nm": _length_um(ca, "EmissionWavelength", where) * 1e3
                    if "EmissionWavelengthUnit" in ca
                    else _float_or_none(ca.get("EmissionWavelength")),
                }
            )
        elif ctag == "TiffData":
            uuid = next((u for u in child if local_tag(u.tag) == "UUID"), None)
            tiffdata.append((ca, None if uuid is None else uuid.get("FileName")))
        elif ctag == "Plane":
            key = tuple(_int_attr(ca, k, 0, where) for k in ("TheC", "TheZ", "TheT"))
            plane_info[key] = {  # type: ignore[index]
                "x_um": _length_um(ca, "PositionX", where),
                "y_um": _length_um(ca, "PositionY", where),
                "z_um": _length_um(ca, "PositionZ", where),
                "delta_t_s": _time_s(ca, "DeltaT", where),
                "exposure_s": _time_s(ca, "ExposureTime", where),
            }
    for ta, fname in tiffdata:
        if not fname:
            raise InputError(f"{where}: TiffData without UUID FileName (unsupported layout)")
        if _int_attr(ta, "PlaneCount", 1, where) != 1:
            raise InputError(f"{where}: TiffData {fname!r} with PlaneCount != 1 is not supported")
        c, z, t = (_int_attr(ta, k, 0, where) for k in ("FirstC", "FirstZ", "FirstT"))
        nan = math.nan
        info = plane_info.get(
            (c, z, t),
            {"x_um": nan, "y_um": nan, "z_um": nan, "delta_t_s": nan, "exposure_s": nan},
        )
        image.planes.append(
            {"c": c, "z": z, "t": t, "file": fname, "ifd": _int_attr(ta, "IFD", 0, where), **info}
        )
    return image


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
