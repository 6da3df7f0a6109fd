"""Older scanR metadata: ``experiment_descriptor.xml`` (LabVIEW "Flatten To XML") and
``AcquisitionLog.dat`` (per-image stage positions and times), FORMATS.md section 2.4.

Stage coordinates are returned as the files state them (micrometres, Cartesian: Y up).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcs.errors import InputError
from hcs.io.scanr_meta import local_tag


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
        t = local_tag(child.tag)
        if t == "Name":
            name = (child.text or "").strip()
        elif t == "Val":
            val = (child.text or "").strip()
    return None if val is None else (name or "", val)


def _container_name(elem: ET.Element) -> str:
    name_el = next((c for c in elem if local_tag(c.tag) == "Name"), None)
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
            tag = local_tag(child.tag)
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
