"""Parsers for the metadata files of an Olympus/Evident scanR export (FORMATS.md section 2).

- file names ``<prefix>--W00014--P00001--Z00000--T00000--<channel>.tif`` (:func:`parse_scanr_name`);
- scanR 3.x ``data/metadata.ome.xml`` (:func:`parse_scanr_ome`);
- older scanR ``experiment_descriptor.xml``, LabVIEW-flattened XML
  (:func:`parse_experiment_descriptor`);
- ``AcquisitionLog.dat``, per-image stage positions and times (:func:`parse_acquisition_log`).

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

#: scanR image file names (FORMATS.md 2.2); the channel is everything after the 5th ``--``.
SCANR_NAME_RE = re.compile(
    r"^(?P<prefix>.*?)--W(?P<well>\d{5})--P(?P<pos>\d{5})--Z(?P<z>\d{5})--T(?P<t>\d{5})"
    r"--(?P<channel>.+)\.tiff?$",
    re.IGNORECASE,
)
_LENGTH_TO_UM = {"m": 1e6, "mm": 1e3, "µm": 1.0, "um": 1.0, "nm": 1e-3, "pm": 1e-6}
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


def _local(tag: str) -> str:
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
    return _quantity(attrs, key, where, _LENGTH_TO_UM, "µm")


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
            tag = _local(elem.tag)
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
        well = well if well is not None else int(m[1])
        pos = pos if pos is not None else int(m[2])
        label = m[3].strip() or None
    pixels = next((e for e in elem if _local(e.tag) == "Pixels"), None)
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
        ctag = _local(child.tag)
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
            uuid = next((u for u in child if _local(u.tag) == "UUID"), None)
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


# ----- experiment_descriptor.xml (LabVIEW "Flatten To XML") -----------------------------------


def read_xml_text(path: Path) -> str:
    """Text of an XML file whose encoding may be undeclared ISO-8859-1; BOM and declaration
    stripped so that ElementTree can parse the string."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)


@dataclass
class Descriptor:
    """What hcs uses from an ``experiment_descriptor.xml`` (keys of FORMATS.md 2.4)."""

    path: Path
    plate_name: str | None = None
    rows: int | None = None
    columns: int | None = None
    pixel_size_um: float | None = None
    #: acquired channels in order (idle and Autofocus entries dropped): name, exposure_ms
    channels: list[dict[str, Any]] = field(default_factory=list)
    n_slices: int | None = None
    z_step_um: float | None = None
    n_timepoints: int | None = None
    time_step_s: float | None = None
    #: per-field (x, y) stage offsets in um, Cartesian as written
    subpositions: list[tuple[float, float]] = field(default_factory=list)
    #: (W number, label) from ``well selection table + cDNA``
    wells: list[tuple[int, str | None]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)


def _leaf_value(elem: ET.Element) -> tuple[str, str] | None:
    """(Name, Val) of a LabVIEW leaf element, ``None`` for containers and non-leaves."""
    name = val = None
    for child in elem:
        t = _local(child.tag)
        if t == "Name":
            name = (child.text or "").strip()
        elif t == "Val":
            val = (child.text or "").strip()
    return None if val is None else (name or "", val)


def _container_name(elem: ET.Element) -> str:
    name_el = next((c for c in elem if _local(c.tag) == "Name"), None)
    return "" if name_el is None else (name_el.text or "").strip()


def _leaves(elem: ET.Element) -> list[tuple[str, str]]:
    """All (Name, Val) leaves below ``elem`` in document order."""
    out = []
    for e in elem.iter():
        if e is not elem and (lv := _leaf_value(e)) is not None:
            out.append(lv)
    return out


def parse_experiment_descriptor(path: str | Path) -> Descriptor:
    """Parse a scanR ``experiment_descriptor.xml`` (LabVIEW-flattened ``LVData`` XML).

    Containers are ``Cluster``/``Array`` elements with a ``Name``; leaves are typed elements
    (``String``, ``I32``, ``DBL``, ``U8``, ``Boolean``, ``EW`` ...) with ``Name`` and ``Val``.
    Keys as Bio-Formats' ``ScanrHandler`` reads them (FORMATS.md 2.4): ``Rows``/``Columns``
    inside ``format typedef``; channels are clusters with a ``name`` and an ``idle`` leaf (idle
    != 0 and ``Autofocus`` dropped); ``subposition list`` holds X, Y pairs in order; ``well
    selection table + cDNA`` alternates well numbers and labels. The file may be ISO-8859-1
    without an encoding declaration.
    """
    path = Path(path)
    try:
        root = ET.fromstring(read_xml_text(path))
    except ET.ParseError as exc:
        raise InputError(f"{path}: not well-formed XML ({exc})") from None
    d = Descriptor(path)

    def num(v: str, key: str, kind: type = float) -> Any:
        try:
            return int(float(v)) if kind is int else float(v)
        except ValueError:
            raise InputError(f"{path}: {key!r} value {v!r} is not a number") from None

    def walk(elem: ET.Element) -> None:
        for child in elem:
            tag = _local(child.tag)
            if tag not in ("Cluster", "Array"):
                if (lv := _leaf_value(child)) is not None:
                    d.values.setdefault(*lv)
                continue
            cname = _container_name(child)
            if cname == "format typedef":
                for key, v in _leaves(child):
                    if key in ("Rows", "Columns"):
                        setattr(d, key.lower(), num(v, key, int))
            elif cname == "subposition list":
                vals = [num(v, "subposition list") for _, v in _leaves(child)]
                if len(vals) % 2:
                    raise InputError(f"{path}: subposition list has an X without a Y")
                d.subpositions = list(zip(vals[0::2], vals[1::2], strict=True))
            elif cname == "well selection table + cDNA":
                for _, v in _leaves(child):
                    if v[:1].isdigit():
                        d.wells.append((num(v, "well number", int), None))
                    elif d.wells and v:
                        d.wells[-1] = (d.wells[-1][0], v)
            elif tag == "Cluster" and _is_channel(child):
                leaves = dict(lv for c in child if (lv := _leaf_value(c)) is not None)
                name = " ".join(leaves["name"].split())
                if leaves["idle"] not in ("0", "FALSE", "false") or name == "Autofocus":
                    continue
                exp = leaves.get("exposure time")
                d.channels.append(
                    {"name": name, "exposure_ms": num(exp, "exposure time") if exp else None}
                )
            else:
                walk(child)

    walk(root)
    vals = d.values
    d.plate_name = vals.get("plate name") or None
    if "conversion factor um/pixel" in vals:
        d.pixel_size_um = num(vals["conversion factor um/pixel"], "conversion factor um/pixel")
    if "# slices" in vals:
        d.n_slices = num(vals["# slices"], "# slices", int)
    if "slices distance" in vals:
        d.z_step_um = num(vals["slices distance"], "slices distance")
    if "timeloop real" in vals:
        d.n_timepoints = num(vals["timeloop real"], "timeloop real", int)
    elif "timeloop count" in vals:
        d.n_timepoints = num(vals["timeloop count"], "timeloop count", int) + 1
    if "timeloop delay [ms]" in vals:
        d.time_step_s = num(vals["timeloop delay [ms]"], "timeloop delay [ms]") / 1000.0
    return d


def _is_channel(cluster: ET.Element) -> bool:
    names = {lv[0] for c in cluster if (lv := _leaf_value(c)) is not None}
    return {"name", "idle"} <= names


_LOG_RE = re.compile(
    r"^W=(\d+)\tP=(\d+)\tT=(\d+)\tZ=(\d+)\tX=([^\t]+)\tY=([^\t]+)\tZ=([^\t]+)\tT=([^\t\r\n]+)"
)


def parse_acquisition_log(path: str | Path) -> dict[tuple[int, int, int, int], tuple[float, ...]]:
    """Parse ``AcquisitionLog.dat``: ``(W, P, T, Z) -> (x_um, y_um, z_um, time_s)``.

    Lines are ``W=<w>\\tP=<p>\\tT=<t>\\tZ=<z>\\tX=<um>\\tY=<um>\\tZ=<um>\\tT=<s>`` (FORMATS.md 2.6);
    other lines (headers, comments) are skipped. A malformed number is an error naming the line.
    """
    path = Path(path)
    out: dict[tuple[int, int, int, int], tuple[float, ...]] = {}
    text = read_xml_text(path)  # same encoding tolerance
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _LOG_RE.match(line)
        if m is None:
            continue
        key = (int(m[1]), int(m[2]), int(m[3]), int(m[4]))
        try:
            out[key] = tuple(float(m[i]) for i in range(5, 9))
        except ValueError:
            raise InputError(f"{path}:{lineno}: cannot read the numbers in {line!r}") from None
    return out
