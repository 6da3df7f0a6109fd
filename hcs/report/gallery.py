"""Cell gallery of the report: example crops per class and one field with coloured boxes.

Images go into the HTML as small JPEG thumbnails (base64 data URIs), never as raw arrays.
Channels are blended additively in their OME ``omero`` colours and display windows; a white
(brightfield/phase) channel is drawn at :data:`WHITE_WEIGHT` so the fluorescence stays visible.
Only a sample of fields is read (:func:`sample_cell_files`), each once, and only the crop
regions (and a downsampled field for the overlay) are composited, so the gallery costs the same
for a 96- and a 1536-well plate.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

WHITE_WEIGHT = 0.4
CROP_PX = 96
OVERLAY_PX = 720
READ_THREADS = 4
_CELL_COLUMNS = ("plate", "well", "field", "cell_id", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
                 "label", "confidence")


def sample_cell_files(run_dir: Path, max_files: int = 24) -> tuple[list[Path], int]:
    """Up to ``max_files`` per-field cell files spread evenly over the run, and how many exist."""
    files = sorted((run_dir / "cells").glob("*/*.parquet"))
    if len(files) <= max_files:
        return files, len(files)
    idx = np.unique(np.linspace(0, len(files) - 1, max_files).round().astype(int))
    return [files[i] for i in idx], len(files)


def read_cells(files: list[Path]) -> pd.DataFrame:
    """The gallery columns (and ``p_<class>``) of the given cell files, concatenated."""
    import pyarrow.parquet as pq

    parts = []
    for f in files:
        names = pq.read_schema(f).names
        cols = [c for c in names if c in _CELL_COLUMNS or c.startswith("p_")]
        parts.append(pq.read_table(f, columns=cols).to_pandas())
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def class_examples(cells: pd.DataFrame, classes: list[str], n: int = 6) -> pd.DataFrame:
    """Per class, the ``n`` most confident cells (``kind = best``) and the ``n`` most borderline
    ones (smallest margin between the top two class probabilities, ``kind = borderline``)."""
    if not len(cells) or "label" not in cells:
        return pd.DataFrame()
    cells = cells.copy()
    pcols = [f"p_{c}" for c in classes if f"p_{c}" in cells]
    if "confidence" not in cells:
        cells["confidence"] = cells[pcols].max(axis=1) if pcols else np.nan
    if len(pcols) >= 2:
        top2 = -np.sort(-cells[pcols].to_numpy(float), axis=1)[:, :2]
        cells["margin"] = top2[:, 0] - top2[:, 1]
    else:
        cells["margin"] = cells["confidence"]
    out = []
    for c in classes:
        sel = cells[cells["label"].astype(str) == c]
        if not len(sel):
            continue
        best = sel.sort_values(["confidence", "cell_id"], ascending=[False, True]).head(n)
        rest = sel.drop(best.index)
        border = rest.sort_values(["margin", "cell_id"]).head(n)
        out += [best.assign(kind="best"), border.assign(kind="borderline")]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


class FieldImages:
    """Reads fields of a plate (t = 0, max over z) with their display colours and windows."""

    def __init__(self, plate_path: str | Path) -> None:
        from hcs.io.omezarr import open_plate

        self.plate = open_plate(plate_path)
        self.colours: list[tuple[float, float, float]] = []
        self.windows: list[tuple[float, float] | None] = []

    def _image(self, well: str, field: int) -> Any:
        import zarr

        if field not in self.plate.fields(well):
            from hcs.errors import InputError

            raise InputError(f"{self.plate.path}: well {well} has no field {field}")
        return zarr.open_group(str(Path(self.plate.path) / self.plate.well_path(well)
                                   / str(field)), mode="r")

    def _display(self, group: Any) -> None:
        attrs = dict(group.attrs)
        omero = dict(attrs.get("ome", attrs)).get("omero", {})
        self.colours, self.windows = [], []
        for ch in omero.get("channels", []):
            hexc = str(ch.get("color", "FFFFFF")).lstrip("#").ljust(6, "F")[:6]
            rgb = tuple(int(hexc[i:i + 2], 16) / 255 for i in (0, 2, 4))
            if min(rgb) > 0.9:
                rgb = tuple(WHITE_WEIGHT * v for v in rgb)
            self.colours.append(rgb)  # type: ignore[arg-type]
            win = ch.get("window", {})
            self.windows.append((float(win["start"]), float(win["end"]))
                                if "start" in win and "end" in win else None)

    def planes(self, well: str, field: int, level: int = 0) -> tuple[np.ndarray, list]:
        """(c, y, x) planes of a field (pyramid ``level``, -1 the lowest; t = 0, max over z)
        and the display window of each channel (the OME ``omero`` window, else the
        1st-99.8th percentile of a 4x-strided sample)."""
        group = self._image(well, int(field))
        attrs = dict(group.attrs)
        ms = dict(attrs.get("ome", attrs))["multiscales"][0]
        # the zarr array read directly: the same bytes as Plate.field(), without a dask graph
        # per field (which doubled the read time of the gallery)
        data = np.asarray(group[ms["datasets"][level]["path"]][0]).max(axis=1)
        if not self.colours:
            self._display(group)
        windows = [self.windows[i] if i < len(self.windows) and self.windows[i] is not None
                   else tuple(np.percentile(p[::4, ::4], [1, 99.8])) for i, p in enumerate(data)]
        return data, windows


def composite(planes: np.ndarray, colours: list, windows: list) -> np.ndarray:
    """Blend (c, y, x) planes additively into RGB uint8, each channel scaled to its window.

    Examples
    --------
    >>> planes = np.stack([np.zeros((2, 2)), np.full((2, 2), 10.0)])
    >>> composite(planes, [(1, 0, 0), (0, 0, 1)], [(0, 10), (0, 10)])[0, 0].tolist()
    [0, 0, 255]
    """
    default = [(1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.0, 0.4, 1.0), (1.0, 1.0, 0.0)]
    out = np.zeros((*planes.shape[1:], 3), np.float32)
    for i, plane in enumerate(planes):
        colour = colours[i] if i < len(colours) else default[i % len(default)]
        lo, hi = (float(v) for v in windows[i])
        v = np.clip((plane.astype(np.float32) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        out += v[..., None] * np.asarray(colour, np.float32)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def cut(planes: np.ndarray, box: tuple[float, float, float, float],
        pad: float = 1.5) -> np.ndarray:
    """Square region of (c, y, x) planes around a box (side = ``pad`` x the longer box side),
    zero outside the field.

    Examples
    --------
    >>> r = cut(np.ones((1, 20, 20)), (0, 0, 10, 10))  # 15 px square centred on (5, 5)
    >>> r.shape, r[0, 0, 0], r[0, 5, 5]
    ((1, 15, 15), np.float64(0.0), np.float64(1.0))
    """
    x0, y0, x1, y1 = box
    side = max(8 if pad > 1 else 1, int(round(pad * max(x1 - x0, y1 - y0))))
    ax = int(round((x0 + x1) / 2 - side / 2))
    ay = int(round((y0 + y1) / 2 - side / 2))
    out = np.zeros((planes.shape[0], side, side), planes.dtype)
    h, w = planes.shape[-2:]
    sx0, sy0, sx1, sy1 = max(ax, 0), max(ay, 0), min(ax + side, w), min(ay + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - ay:sy1 - ay, sx0 - ax:sx1 - ax] = planes[:, sy0:sy1, sx0:sx1]
    return out


def crop(planes: np.ndarray, box: tuple[float, float, float, float], colours: list,
         windows: list, pad: float = 1.5, size: int = CROP_PX) -> Image.Image:
    """Colour thumbnail (``size`` px square) of the region :func:`cut` around a box; only that
    region is composited, never the whole field."""
    rgb = composite(cut(planes, box, pad), colours, windows)
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS)


def shrink(planes: np.ndarray, size: int = OVERLAY_PX) -> tuple[np.ndarray, int]:
    """Block-mean downsampling of (c, y, x) planes by the smallest integer factor that brings
    the longer side to at most ``size``; returns the planes and the factor."""
    f = max(1, -(-max(planes.shape[-2:]) // size))
    if f == 1:
        return planes, 1
    c, h, w = planes.shape
    h2, w2 = h // f, w // f
    blocks = planes[:, :h2 * f, :w2 * f].reshape(c, h2, f, w2, f)
    return blocks.mean(axis=(2, 4), dtype=np.float32), f


def to_data_uri(img: Image.Image, quality: int = 82) -> str:
    """JPEG data URI of a PIL image."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def overlay(rgb: np.ndarray, cells: pd.DataFrame, colours: dict[str, str],
            factor: int = 1) -> Image.Image:
    """An RGB field (downsampled by ``factor``) with one box per cell in its class colour."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for c in cells.itertuples():
        box = [c.bbox_x0 / factor, c.bbox_y0 / factor, c.bbox_x1 / factor, c.bbox_y1 / factor]
        draw.rectangle(box, outline=colours.get(str(c.label), "#ffffff"), width=2)
    return img


def build_gallery(plate_path: str | Path, cells: pd.DataFrame, classes: list[str],
                  colours: dict[str, str], n: int = 6) -> dict[str, Any]:
    """Thumbnails for the report: ``{"classes": [{"name", "colour", "best": [...],
    "borderline": [...]}], "overlay": {"uri", "well", "field", "n"}}``; each crop ``{"uri",
    "well", "field", "cell_id", "confidence", "margin"}``. Each field is read once."""
    images = FieldImages(plate_path)
    examples = class_examples(cells, classes, n)
    target = None
    if len(cells):
        # the field showing the most classes (then the most cells) is the most informative
        per = cells.groupby(["well", "field"])["label"].agg(["nunique", "size"])
        target = per.sort_values(["nunique", "size"], ascending=False).index[0]
    keys = set() if not len(examples) else set(zip(examples["well"], examples["field"],
                                                   strict=True))
    keys |= {target} if target is not None else set()
    thumbs: dict[int, dict[str, Any]] = {}
    out: dict[str, Any] = {"classes": [], "overlay": None}
    order = sorted(keys, key=lambda k: (str(k[0]), int(k[1])))
    # fields are read a few at a time in threads (zarr decompression releases the GIL); a
    # small batch bounds the memory to a few fields
    with ThreadPoolExecutor(READ_THREADS) as pool:
        batches = (order[i:i + READ_THREADS] for i in range(0, len(order), READ_THREADS))
        read = (item for batch in batches for item in zip(batch, pool.map(
            lambda k: images.planes(str(k[0]), int(k[1])), batch), strict=True))
        for (well, field), (planes, windows) in read:
            if len(examples):
                sel = examples[(examples["well"] == well) & (examples["field"] == field)]
                for i, ex in sel.iterrows():
                    thumb = crop(planes, (ex.bbox_x0, ex.bbox_y0, ex.bbox_x1, ex.bbox_y1),
                                 images.colours, windows)
                    thumbs[i] = {"uri": to_data_uri(thumb), "well": str(ex.well),
                                 "field": int(ex.field), "cell_id": int(ex.cell_id),
                                 "confidence": float(ex.confidence), "margin": float(ex.margin)}
            if (well, field) == target:
                small, factor = shrink(planes)
                rgb = composite(small, images.colours, windows)
                sel = cells[(cells["well"] == well) & (cells["field"] == field)]
                out["overlay"] = {"uri": to_data_uri(overlay(rgb, sel, colours, factor), 85),
                                  "well": str(well), "field": int(field), "n": len(sel)}
    for c in classes:
        entry: dict[str, Any] = {"name": c, "colour": colours.get(c, "#888"), "best": [],
                                 "borderline": []}
        if len(examples):
            for i, ex in examples[examples["label"].astype(str) == c].iterrows():
                entry[ex.kind].append(thumbs[i])
        if entry["best"]:
            out["classes"].append(entry)
    return out
