"""Streaming parse of a Harmony index XML (FORMATS.md 1.2-1.4): one pass, constant memory.

Used by :func:`hcs.io.harmony.read_harmony`. ``iterparse`` with end events only; ``Image``,
``Map/Entry``, ``Plate`` and ``Well`` elements are read and cleared as they end, and tags are
matched without their namespace (V5, V6 and the V7 GUID namespace alike).

Per-plane fields are kept as raw text columns (converted in bulk later). Channel-level fields of
an ``Image`` (V5 repeats them in every ``Image``) are read from the first ``Image`` of each
``ChannelID`` only: they are constant per channel in every real index seen, and reading them
once is what keeps a 100k-image index at a few seconds. Units come from the ``Unit`` attributes
of the first occurrence of each field.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hcs.errors import InputError

#: Index file names, most preferred first (matched case-insensitively).
INDEX_NAMES: tuple[str, ...] = ("index.xml", "index.idx.xml", "index.ref.xml", "index.flex.xml")

#: Per-plane Image fields; everything else in an Image is channel metadata.
_PLANE_FIELDS = (
    "id", "URL", "Row", "Col", "FieldID", "PlaneID", "TimepointID", "SequenceID", "FlimID",
    "ChannelID", "PositionX", "PositionY", "PositionZ", "MeasurementTimeOffset",
)  # fmt: skip
_PLANE_SET = frozenset(_PLANE_FIELDS) | {"State", "GroupID", "AbsPositionZ", "AbsTime"}
_PLATE_FIELDS = (
    "PlateID", "MeasurementID", "MeasurementStartTime", "Name", "PlateTypeName", "PlateRows",
    "PlateColumns",
)  # fmt: skip
_WANTED = ("Image", "Entry", "Plate", "Well", "Wells", "Map", "Maps", "User", "InstrumentType")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def find_index(path: str | Path) -> Path:
    """Locate the Harmony index for ``path``.

    ``path`` may be the index itself, the folder holding it (the ``Images/`` folder, or a
    folder whose index sits above image sub-folders) or the measurement folder with the index
    in ``Images/``. Prefers ``Index.xml`` > ``Index.idx.xml`` > ``Index.ref.xml`` >
    ``Index.flex.xml``, case-insensitively; folders are listed with ``iterdir`` (no glob, so
    names with brackets or spaces are safe).

    Raises
    ------
    InputError
        If no index is found.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder")

    def pick(folder: Path) -> Path | None:
        found = {c.name.lower(): c for c in folder.iterdir() if c.is_file()}
        return next((found[n] for n in INDEX_NAMES if n in found), None)

    hit = pick(p)
    if hit is None:
        images = [c for c in p.iterdir() if c.is_dir() and c.name.lower() == "images"]
        hit = pick(images[0]) if images else None
    if hit is None:
        raise InputError(
            f"{p}: no Harmony index found (looked for Index.xml, Index.idx.xml, Index.ref.xml, "
            "Index.flex.xml here and in Images/)"
        )
    return hit


class HarmonyIndex:
    """Everything one streaming pass over the index collects."""

    def __init__(self) -> None:
        self.namespace = ""
        self.version: str | None = None
        self.root_tag = ""
        self.top: dict[str, str | None] = {}
        self.plate: dict[str, str | None] = {}
        self.entries: dict[int, dict[str, Any]] = {}  # ChannelID -> merged Map/Entry fields
        self.image_channel: dict[int, dict[str, Any]] = {}  # ChannelID -> first Image's fields
        self.units: dict[str, str] = {}
        self.cols: dict[str, list[str | None]] = {f: [] for f in _PLANE_FIELDS}


def _fields(el: ET.Element, units: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in el:
        name = _local(c.tag)
        out[name] = (c.text or "").strip()
        unit = c.get("Unit")
        if unit and name not in units:
            units[name] = unit
    return out


def parse_index(index: Path) -> HarmonyIndex:
    """Parse a Harmony index in one streaming pass.

    Raises
    ------
    InputError
        Malformed XML (naming the file, line and column), an unreadable file, or a root element
        other than ``EvaluationInputData``.
    """
    res = HarmonyIndex()
    cols = res.cols
    prefix: str | None = None
    wanted: dict[str, str] = {}
    last = None
    try:
        with open(index, "rb") as fh:  # bytes: expat honours the declaration and skips a BOM
            for _, el in ET.iterparse(fh, events=("end",)):
                tag = el.tag
                last = el
                if prefix is None:
                    prefix = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
                    wanted = {prefix + w: w for w in _WANTED}
                name = wanted.get(tag)
                if name is None:  # a leaf in the index namespace (the common case) or foreign
                    if tag.startswith(prefix) or _local(tag) not in _WANTED:
                        continue
                    name = _local(tag)
                if name == "Image":
                    if len(el) == 0:  # Wells/Well/Image reference
                        continue
                    d = {c.tag: c.text for c in el}
                    p = prefix if el.tag.startswith(prefix) else el.tag[: -len("Image")]
                    if p + "Row" not in d:  # mixed namespaces: slow path
                        d = {p + _local(k): v for k, v in d.items()}
                    for f in _PLANE_FIELDS:
                        cols[f].append(d.get(p + f))
                    ch = d.get(p + "ChannelID")
                    if ch is not None and ch.strip().isdigit():
                        cid = int(ch)
                        if cid not in res.image_channel:
                            extra = _fields(el, res.units)
                            res.image_channel[cid] = {
                                k: v for k, v in extra.items() if k not in _PLANE_SET
                            }
                    el.clear()
                elif name == "Entry" and el.get("ChannelID"):
                    try:
                        cid = int(el.get("ChannelID", ""))
                    except ValueError:
                        raise InputError(
                            f"{index}: Map/Entry with non-numeric ChannelID "
                            f"{el.get('ChannelID')!r}"
                        ) from None
                    res.entries.setdefault(cid, {}).update(_fields(el, res.units))
                    el.clear()
                elif name == "Plate":
                    res.plate = {
                        k: v for k, v in _fields(el, {}).items() if k in _PLATE_FIELDS
                    }
                    el.clear()
                elif name in ("Well", "Wells", "Map", "Maps"):
                    el.clear()
                elif name in ("User", "InstrumentType"):
                    res.top[name] = (el.text or "").strip()
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{index}, line {line}, column {col}: malformed XML ({exc.msg})") from None
    except OSError as exc:
        raise InputError(f"{index}: cannot read ({exc.strerror})") from None
    if last is not None:  # the root ends last
        res.root_tag, res.version = last.tag, last.get("Version")
    res.namespace = res.root_tag[1 : res.root_tag.index("}")] if "}" in res.root_tag else ""
    if _local(res.root_tag) != "EvaluationInputData":
        raise InputError(
            f"{index}: not a Harmony index (root element is {_local(res.root_tag)!r}, expected "
            "EvaluationInputData)"
        )
    return res


def schema_name(namespace: str) -> str:
    """``v5``, ``v6``, ``v7`` from the root namespace, else ``unknown``."""
    for v in ("V7", "V6", "V5"):
        if namespace.endswith(f"Harmony{v}"):
            return v.lower()
    return "unknown"
