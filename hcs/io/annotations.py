"""Cell annotations -> one tidy table of (image, box, class).

Three sources are read into the same table (columns :data:`ANNOTATION_COLUMNS`):

- Pascal VOC XML (one file per image, ``<object><name>`` + ``<bndbox>``), as written by LabelImg;
- VGG Image Annotator (VIA 2) JSON project/export files (rectangles, polygons, circles, ellipses);
- class folders (``root/<class>/<image>``): one whole-image "box" per file.

``source`` names the image a box comes from, so training and evaluation can split by image (no
image in two splits). Boxes are in pixels, ``x1``/``y1`` exclusive as in VOC ``xmax``/``ymax``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.io.acquisition import resolve_inside

ANNOTATION_COLUMNS: list[str] = [
    "image", "source", "x0", "y0", "x1", "y1", "label", "width", "height",
]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _relabel(name: str, class_map: Mapping[str, str] | None, where: str) -> str | None:
    if class_map is None:
        return name
    if name in class_map:
        return class_map[name]
    raise InputError(
        f"{where}: class {name!r} is not in the class map ({', '.join(map(repr, class_map))})"
    )


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    for c in ("x0", "y0", "x1", "y1"):
        df[c] = df[c].astype(float)
    for c in ("width", "height"):
        df[c] = df[c].astype("Int64")
    return df


def _voc_image(xml: Path, filename: str | None) -> Path:
    """The image of a VOC file: ``<filename>`` next to the XML, else the XML's stem + suffix."""
    if filename:
        p = resolve_inside(xml.parent, filename.strip(), where=str(xml))
        if p.exists():
            return p
    for suffix in IMAGE_SUFFIXES:
        p = xml.with_suffix(suffix)
        if p.exists():
            return p
    raise InputError(f"{xml}: image {filename!r} not found next to the annotation file")


def _num(obj: ET.Element, tag: str, xml: Path, k: int) -> float:
    text = obj.findtext(f"bndbox/{tag}")
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{xml}: object {k}: <bndbox><{tag}> is {text!r}, not a number") from None


def read_voc(
    path: str | Path, class_map: Mapping[str, str] | None = None, *, allow_empty: bool = True
) -> pd.DataFrame:
    """Read Pascal VOC annotations (one XML file, or every ``*.xml`` in a folder).

    Parameters
    ----------
    path
        An XML file or a folder of them (file names may contain spaces and parentheses).
    class_map
        VOC object name -> class name (e.g. ``{"Living Cell": "live"}``); a name outside the map
        is an error naming the file. ``None`` keeps the names as written.
    allow_empty
        Accept images without any object (they add no row).

    Returns
    -------
    pandas.DataFrame
        One row per box, columns :data:`ANNOTATION_COLUMNS`.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a (1).png").write_bytes(b"")
    >>> _ = (d / "a (1).xml").write_text(
    ...     "<annotation><filename>a (1).png</filename><size><width>9</width>"
    ...     "<height>8</height></size><object><name>Dead Cell</name><bndbox><xmin>1</xmin>"
    ...     "<ymin>2</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></object></annotation>")
    >>> read_voc(d, {"Dead Cell": "dead"})[["source", "x0", "y1", "label"]].to_dict("records")
    [{'source': 'a (1).png', 'x0': 1.0, 'y1': 6.0, 'label': 'dead'}]
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.xml"))
        if not files:
            raise InputError(f"{path}: no Pascal VOC *.xml file in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder")
    rows: list[dict] = []
    for xml in files:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise InputError(f"{xml}: not valid XML ({exc})") from None
        if root.tag != "annotation":
            raise InputError(f"{xml}: root element is <{root.tag}>, not a VOC <annotation>")
        image = _voc_image(xml, root.findtext("filename"))
        w, h = root.findtext("size/width"), root.findtext("size/height")
        objs = root.findall("object")
        if not objs and not allow_empty:
            raise InputError(f"{xml}: no <object> in this annotation")
        for k, obj in enumerate(objs):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise InputError(f"{xml}: object {k} has no <name>")
            x0, y0, x1, y1 = (_num(obj, t, xml, k) for t in ("xmin", "ymin", "xmax", "ymax"))
            if x1 <= x0 or y1 <= y0:
                raise InputError(f"{xml}: object {k} ({name}) has an empty box {x0, y0, x1, y1}")
            rows.append(dict(
                image=str(image), source=image.name, x0=x0, y0=y0, x1=x1, y1=y1,
                label=_relabel(name, class_map, str(xml)),
                width=int(w) if w and w.strip().isdigit() else None,
                height=int(h) if h and h.strip().isdigit() else None,
            ))
    return _table(rows)


def _via_box(shape: dict, where: str) -> tuple[float, float, float, float]:
    kind = shape.get("name")
    try:
        if kind == "rect":
            x, y = float(shape["x"]), float(shape["y"])
            return x, y, x + float(shape["width"]), y + float(shape["height"])
        if kind in ("polygon", "polyline"):
            xs = np.asarray(shape["all_points_x"], float)
            ys = np.asarray(shape["all_points_y"], float)
            return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if kind == "circle":
            cx, cy, r = float(shape["cx"]), float(shape["cy"]), float(shape["r"])
            return cx - r, cy - r, cx + r, cy + r
        if kind == "ellipse":
            cx, cy = float(shape["cx"]), float(shape["cy"])
            rx, ry = float(shape["rx"]), float(shape["ry"])
            return cx - rx, cy - ry, cx + rx, cy + ry
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: {kind} region lacks a valid field ({exc})") from None
    raise InputError(f"{where}: unsupported VIA region shape {kind!r}")


def read_via(
    path: str | Path,
    attribute: str | None = None,
    class_map: Mapping[str, str] | None = None,
    images: str | Path | None = None,
) -> pd.DataFrame:
    """Read a VGG Image Annotator (VIA 2) JSON file into the annotation table.

    Parameters
    ----------
    path
        VIA JSON (a project file with ``_via_img_metadata`` or a plain export).
    attribute
        Region attribute holding the class; default: the only attribute present.
    class_map
        Attribute value -> class name, as for :func:`read_voc`.
    images
        Folder of the images (default: the JSON's folder).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "via.json").write_text(json.dumps({"x.png1": {"filename": "x.png", "regions": [
    ...     {"shape_attributes": {"name": "rect", "x": 2, "y": 3, "width": 4, "height": 5},
    ...      "region_attributes": {"type": "one_in_one"}}]}}))
    >>> read_via(d / "via.json")[["x0", "y0", "x1", "y1", "label"]].values.tolist()
    [[2.0, 3.0, 6.0, 8.0, 'one_in_one']]
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    meta = data.get("_via_img_metadata", data) if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: not a VIA 2 project or export (expected an object of images)")
    base = Path(images) if images is not None else path.parent
    rows: list[dict] = []
    for key, entry in meta.items():
        where = f"{path}: image {key!r}"
        if not isinstance(entry, dict) or "filename" not in entry:
            raise InputError(f"{where}: entry has no 'filename'")
        image = resolve_inside(base, entry["filename"], where=where)
        regions = entry.get("regions", [])
        if isinstance(regions, dict):  # VIA 1 stores regions as {"0": {...}}
            regions = list(regions.values())
        for k, reg in enumerate(regions):
            attrs = reg.get("region_attributes", {}) or {}
            if attribute is None:
                if len(attrs) != 1:
                    raise InputError(
                        f"{where}: region {k} has attributes {sorted(attrs)}; pass the class one"
                    )
                value = next(iter(attrs.values()))
            elif attribute in attrs:
                value = attrs[attribute]
            else:
                raise InputError(f"{where}: region {k} has no attribute {attribute!r}")
            if isinstance(value, dict):  # checkbox attributes: {"option": true}
                value = next((o for o, on in value.items() if on), "")
            x0, y0, x1, y1 = _via_box(reg.get("shape_attributes", {}), f"{where} region {k}")
            rows.append(dict(
                image=str(image), source=image.name, x0=x0, y0=y0, x1=x1, y1=y1,
                label=_relabel(str(value).strip(), class_map, f"{where} region {k}"),
                width=None, height=None,
            ))
    return _table(rows)


def read_class_folders(root: str | Path, classes: list[str] | None = None) -> pd.DataFrame:
    """One row per image of ``root/<class>/``: the whole image is the box.

    Parameters
    ----------
    root
        Folder whose sub-folders are class names.
    classes
        Expected class names (all must exist and be non-empty); default: every sub-folder.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "dead").mkdir(); _ = (d / "dead" / "c1.png").write_bytes(b"")
    >>> read_class_folders(d)[["source", "label"]].values.tolist()
    [['dead/c1.png', 'dead']]
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of class folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = list(classes) if classes is not None else found
    if not names:
        raise InputError(f"{root}: no class sub-folder")
    missing = [c for c in names if c not in found]
    if missing:
        raise InputError(f"{root}: class folder(s) {missing} missing (found {found})")
    rows: list[dict] = []
    for c in names:
        files = sorted(
            p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not files:
            raise InputError(f"{root / c}: class folder {c!r} holds no image ({IMAGE_SUFFIXES})")
        for f in files:
            rows.append(dict(
                image=str(f), source=f"{c}/{f.name}", x0=np.nan, y0=np.nan, x1=np.nan,
                y1=np.nan, label=c, width=None, height=None,
            ))
    return _table(rows)
