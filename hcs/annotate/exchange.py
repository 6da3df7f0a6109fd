"""Labelling elsewhere: the sample's crops as class-less files (``hcs annotate --export``) and
their labels read back (``hcs annotate --import``).

- ``folders``: ``ANN/export/folders/<well>_f<field>_c<cell_id>.png`` (``.tif`` for crops of 2 or
  4+ channels), the crop exactly as the model sees it (8 bit). Sort the files into subfolders
  named by class (``DIR/<class>/<file>``) with any file manager or tool, then import ``DIR``.
- ``via``: ``ANN/export/via/`` holds the crops as PNG (as shown on the labelling page) and
  ``via_project.json``, a VGG Image Annotator 2 project with one file attribute ``class``
  (a radio button per class). Open the project in VIA (``via.html``, offline), label, save the
  project (or export the annotations as JSON) and import that JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hcs.annotate.cells import CropSpec, cell_crops
from hcs.annotate.session import display_rgb, parse_stem, read_session
from hcs.atomic import atomic_dir
from hcs.errors import InputError

__all__ = ["export_session", "import_labels"]

_MARK = "hcs-export.json"


def _ours(path: Path) -> str | None:
    mark = path / _MARK
    try:
        if json.loads(mark.read_text()).get("written_by") == "hcs annotate --export":
            return None
    except (OSError, ValueError):
        pass
    return f"{path} was not written by hcs annotate --export"


def export_session(ann_dir: str | Path, fmt: str) -> Path:
    """Write the sample's crops for labelling in another tool; returns the export folder
    (``ANN/export/<fmt>``, replaced if an earlier export wrote it)."""
    from PIL import Image

    if fmt not in ("folders", "via"):
        raise InputError(f"--export {fmt}: expected folders or via")
    s = read_session(ann_dir)
    m = s.meta
    c = m["crop"]
    spec = CropSpec(tuple(c["roles"]), tuple(c["modes"]), int(c["size"]), float(c["margin"]),
                    bool(c["square"]), str(c["pad_mode"]))
    crops = cell_crops(m["run"], s.sample, spec, dict(m["channels"]), plate=m["plate"],
                       timepoint=int(m.get("timepoint") or 0))
    out = Path(ann_dir) / "export" / fmt
    files = []
    with atomic_dir(out, overwrite=True, not_ours=_ours) as tmp:
        for stem, crop in zip(s.sample["stem"], crops, strict=True):
            if fmt == "via":
                name = f"{stem}.png"
                Image.fromarray(display_rgb(crop)).save(tmp / name)
            else:
                u8 = np.clip(np.rint(crop), 0, 255).astype(np.uint8)
                if u8.shape[2] in (1, 3):
                    name = f"{stem}.png"
                    Image.fromarray(u8[:, :, 0] if u8.shape[2] == 1 else u8).save(tmp / name)
                else:
                    import tifffile

                    name = f"{stem}.tif"
                    tifffile.imwrite(tmp / name, np.moveaxis(u8, 2, 0),
                                     metadata={"axes": "CYX"})
            files.append(name)
        if fmt == "via":
            (tmp / "via_project.json").write_text(json.dumps(_via_project(files, s.classes),
                                                             indent=1))
        (tmp / "README.txt").write_text(_readme(fmt, s.classes, Path(ann_dir)))
        (tmp / _MARK).write_text(json.dumps({"written_by": "hcs annotate --export",
                                             "format": fmt, "cells": len(files)}))
    return out


def _readme(fmt: str, classes: list[str], ann: Path) -> str:
    if fmt == "folders":
        how = ("Make one subfolder per class (" + ", ".join(classes) + ") and move each crop "
               "into the folder of its class; leave a crop out to skip it. Then run\n"
               f"  hcs annotate --import THIS_FOLDER --out {ann}\n")
    else:
        how = ("Open via_project.json in the VGG Image Annotator 2 (via.html: Project > Load),"
               " choose each image's class, save the project, then run\n"
               f"  hcs annotate --import via_project.json --out {ann}\n")
    return ("Crops of hcs annotate, named WELL_fFIELD_cCELLID, exactly as the model sees them."
            "\n" + how)


def _via_project(files: list[str], classes: list[str]) -> dict[str, Any]:
    meta = {f: {"filename": f, "size": -1, "regions": [], "file_attributes": {"class": ""}}
            for f in files}
    return {
        "_via_settings": {
            "ui": {"annotation_editor_height": 25, "annotation_editor_fontsize": 0.8,
                   "leftsidebar_width": 18, "image_grid": {"img_height": 80, "rshape_fill":
                   "none", "rshape_fill_opacity": 0.3, "rshape_stroke": "yellow",
                   "rshape_stroke_width": 2, "show_region_shape": True,
                   "show_image_policy": "all"},
                   "image": {"region_label": "__via_region_id__", "region_color":
                             "__via_default_region_color__", "region_label_font":
                             "10px Sans", "on_image_annotation_editor_placement":
                             "NEAR_REGION"}},
            "core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
            "project": {"name": "hcs-annotate"}},
        "_via_img_metadata": meta,
        "_via_attributes": {"region": {}, "file": {"class": {
            "type": "radio", "description": "cell class",
            "options": dict.fromkeys(classes, ""), "default_options": {}}}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": list(meta),
    }


def _via_labels(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable VIA JSON file ({exc})") from None
    entries = data.get("_via_img_metadata", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise InputError(f"{path}: no VIA image metadata (_via_img_metadata)")
    out: dict[str, str] = {}
    for key, e in entries.items():
        if not isinstance(e, dict) or "filename" not in e:
            raise InputError(f"{path}: entry {key!r} is not a VIA image record")
        value = (e.get("file_attributes") or {}).get("class", "")
        if isinstance(value, dict):  # a checkbox attribute: the options ticked
            ticked = [k for k, v in value.items() if v]
            if len(ticked) > 1:
                raise InputError(f"{path}: {e['filename']}: several classes ticked {ticked}")
            value = ticked[0] if ticked else ""
        if str(value).strip():
            out[Path(str(e["filename"])).stem] = str(value).strip()
    return out


def _folder_labels(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    where: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() not in (".png", ".tif", ".tiff", ".jpg", ".jpeg"):
                continue
            if f.stem in out:
                raise InputError(f"{f}: the same cell is also in {where[f.stem]}")
            out[f.stem], where[f.stem] = sub.name, f
    return out


def import_labels(source: str | Path, ann_dir: str | Path,
                  annotator: str | None = None) -> dict[str, int]:
    """Read labels given elsewhere into ``ANN/labels.csv`` (a cell labelled again is replaced).

    Parameters
    ----------
    source
        A folder of class subfolders (``folders`` export sorted by class) or a VIA JSON file
        (project or annotation export).
    ann_dir
        The annotation folder the crops were exported from.
    annotator
        Name recorded with the labels (default ``import:<source name>``).

    Returns
    -------
    dict
        Labels per class imported.

    Raises
    ------
    InputError
        A class folder / value that is not a class, a file that is not a cell of the sample
        (both named), a cell in two class folders.
    """
    source = Path(source)
    s = read_session(ann_dir)
    if source.is_dir():
        labels = _folder_labels(source)
    elif source.is_file():
        labels = _via_labels(source)
    else:
        raise InputError(f"--import {source}: no such folder or file")
    stems = set(s.sample["stem"])
    for stem, label in labels.items():
        if label not in s.classes:
            raise InputError(f"{source}: {stem}: {label!r} is not a class "
                             f"({', '.join(s.classes)})")
        if parse_stem(stem) is None or stem not in stems:
            raise InputError(f"{source}: {stem} is not a cell of the sample of {ann_dir}")
    who = annotator or f"import:{source.name}"
    s.store.set_many(labels, who)
    out = dict.fromkeys(s.classes, 0)
    for label in labels.values():
        out[label] += 1
    return out
