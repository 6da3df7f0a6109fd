"""An annotation folder ``ANN``: which cells of a run to label, their images, and the labels.

``hcs annotate RUN --out ANN`` (:func:`prepare_session`) draws a sample of cells of the run
(:func:`spread_order` or, with a model, :func:`uncertain_order`), cuts each cell's crop as the
model sees it (:func:`hcs.annotate.cells.cell_crops`) and a larger per-channel context view
into ``ANN/img/``, and records everything in ``ANN/annotate.json`` and ``ANN/sample.csv``. The
labels are kept by a :class:`LabelStore`: ``ANN/labels.csv`` (``plate, well, field, cell_id,
label, annotator, time``, one row per cell) and ``ANN/skipped.csv``, each rewritten atomically
at every change, so a closed tab, Ctrl-C or a killed process loses nothing.

Running ``hcs annotate`` again on the same ``ANN`` with the same sampling options continues the
sample; other options (``--strategy uncertain --model M``, a larger ``--n``) add a new round of
cells drawn among those not sampled yet, so a labelled cell is never drawn again.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.annotate.cells import CropSpec, cell_crops, read_field_planes, read_run_cells
from hcs.atomic import atomic_write, atomic_write_text
from hcs.errors import InputError

__all__ = ["LABEL_COLUMNS", "LabelStore", "Session", "cell_stem", "check_out", "check_sampling",
           "context_window", "display_rgb", "margins", "parse_stem", "prepare_session",
           "read_session", "spread_order", "uncertain_order"]

LABEL_COLUMNS = ["plate", "well", "field", "cell_id", "label", "annotator", "time"]
SKIP_COLUMNS = ["plate", "well", "field", "cell_id", "annotator", "time"]
#: additive display colours of channels whose plate metadata gives none
_COLOURS = [(1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.0, 0.6, 1.0), (1.0, 1.0, 0.0)]
CONTEXT_PAD = 4.0  # the context view is this many times the cell box's longer side
CONTEXT_MIN = 64  # ... and at least this many pixels


def cell_stem(well: str, field: int, cell_id: int) -> str:
    """File stem of a cell's images, its key in the page and in exported files.

    Examples
    --------
    >>> cell_stem("B03", 2, 17)
    'B03_f2_c17'
    """
    return f"{well}_f{int(field)}_c{int(cell_id)}"


_STEM = re.compile(r"^([A-Za-z]{1,2}\d{1,3})_f(\d+)_c(\d+)$")


def parse_stem(stem: str) -> tuple[str, int, int] | None:
    """``(well, field, cell_id)`` of a :func:`cell_stem`, ``None`` if ``stem`` is not one.

    Examples
    --------
    >>> parse_stem("B03_f2_c17"), parse_stem("notes")
    (('B03', 2, 17), None)
    """
    m = _STEM.match(stem)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------- sampling


def _interleave(lists: list[list[int]]) -> list[int]:
    """Round-robin merge: first items of every list, then the second ones, ..."""
    out: list[int] = []
    depth = max((len(x) for x in lists), default=0)
    for i in range(depth):
        out += [x[i] for x in lists if i < len(x)]
    return out


def spread_order(cells: pd.DataFrame, seed: int = 0,
                 conditions: pd.Series | None = None) -> np.ndarray:
    """Row positions of ``cells`` in a seeded order spread over conditions, wells and fields.

    The order takes one cell of every condition in turn; within a condition its wells in turn,
    within a well its fields in turn, and within a field its cells in random order. The first
    ``n`` positions are a sample stratified at every level.

    Parameters
    ----------
    cells
        ``well, field`` per cell.
    seed
        Random seed (the same seed gives the same order).
    conditions
        Condition of each cell (index aligned with ``cells``); ``None``: one condition.

    Examples
    --------
    >>> c = pd.DataFrame({"well": ["A01"] * 4 + ["B01"] * 2, "field": [0, 0, 1, 1, 0, 0]})
    >>> o = spread_order(c, seed=1, conditions=pd.Series(["x"] * 4 + ["y"] * 2))
    >>> sorted(c["well"].iloc[o[:2]]), sorted(c["well"].iloc[o[:4]].tolist())
    (['A01', 'B01'], ['A01', 'A01', 'B01', 'B01'])
    """
    rng = np.random.default_rng(seed)
    cells = cells.reset_index(drop=True)
    cond = (pd.Series(["" for _ in range(len(cells))]) if conditions is None
            else conditions.reset_index(drop=True).astype(str).fillna(""))
    frame = pd.DataFrame({"cond": cond, "well": cells["well"].astype(str),
                          "field": cells["field"].astype(int)})
    per_cond = []
    for _, c_rows in frame.groupby("cond", sort=True):
        per_well = []
        for _, w_rows in c_rows.groupby("well", sort=True):
            per_field = [list(rng.permutation(f_rows.index.to_numpy()))
                         for _, f_rows in w_rows.groupby("field", sort=True)]
            per_well.append(_interleave([per_field[i] for i in rng.permutation(len(per_field))]))
        per_cond.append(_interleave([per_well[i] for i in rng.permutation(len(per_well))]))
    return np.asarray(_interleave([per_cond[i] for i in rng.permutation(len(per_cond))]), int)


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of every row (0: the model cannot decide).

    Examples
    --------
    >>> margins(np.array([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05]])).round(2).tolist()
    [0.1, 0.85]
    """
    s = np.sort(np.asarray(probs, float), axis=1)
    return s[:, -1] - s[:, -2]


def uncertain_order(probs: np.ndarray) -> np.ndarray:
    """Row positions by increasing margin (:func:`margins`), ties in row order."""
    return np.argsort(margins(probs), kind="stable")


# ---------------------------------------------------------------------------------- images


def display_rgb(crop: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 image of a model crop (``H x W x C``, 0-255 scale): one channel
    grey, three as RGB (the composite the model sees), others blended in fixed colours.

    Examples
    --------
    >>> display_rgb(np.full((2, 2, 1), 300.0))[0, 0].tolist()
    [255, 255, 255]
    """
    c = crop.shape[2]
    if c == 1:
        rgb = np.repeat(crop, 3, axis=2)
    elif c == 3:
        rgb = crop
    else:
        rgb = sum(crop[:, :, i:i + 1] * np.asarray(_COLOURS[i % 4], np.float32)
                  for i in range(c))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, format="PNG")


def _channel_colours(plate: Any) -> list[str]:
    """``#rrggbb`` display colour of each plate channel (OME ``omero`` metadata)."""
    try:
        group = plate.image_group(plate.wells[0], plate.fields(plate.wells[0])[0])
        attrs = dict(group.attrs)
        chans = dict(attrs.get("ome", attrs)).get("omero", {}).get("channels", [])
        out = ["#" + str(ch.get("color", "FFFFFF")).lstrip("#").ljust(6, "F")[:6].lower()
               for ch in chans]
    except Exception:  # noqa: BLE001 - colours are cosmetic
        out = []
    if len(out) != len(plate.channels):
        out = ["#" + "".join(f"{int(v * 255):02x}" for v in _COLOURS[i % 4])
               for i in range(len(plate.channels))]
    return out


def context_window(box: Any) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square context view around a cell box (``CONTEXT_PAD`` x its
    longer side, at least ``CONTEXT_MIN`` pixels), in field pixels.

    Examples
    --------
    >>> context_window((100, 100, 120, 110))
    (70, 65, 80)
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(CONTEXT_MIN, int(round(CONTEXT_PAD * max(x1 - x0, y1 - y0))))
    return int(round((x0 + x1) / 2 - side / 2)), int(round((y0 + y1) / 2 - side / 2)), side


def write_cell_images(run_dir: Path, sample: pd.DataFrame, spec: CropSpec,
                      channels: dict[str, str], img_dir: Path, timepoint: int,
                      plate_path: Path) -> None:
    """``img/<stem>.png`` (the model crop) and ``img/<stem>_c<i>.png`` (context view of plate
    channel ``i``, 8-bit, windowed at the field's 1st-99.8th percentiles) of every cell."""
    from hcs.io.omezarr import open_plate

    img_dir.mkdir(parents=True, exist_ok=True)
    crops = cell_crops(run_dir, sample, spec, channels, plate=plate_path, timepoint=timepoint)
    for stem, crop in zip(sample["stem"], crops, strict=True):
        _save_png(img_dir / f"{stem}.png", display_rgb(crop))
    pl = open_plate(plate_path)
    for (well, field), rows in sample.groupby(["well", "field"], sort=True):
        planes = read_field_planes(pl, str(well), int(field), timepoint)
        h, w = planes.shape[1:]
        wins = [np.percentile(p[::2, ::2], [1.0, 99.8]) for p in planes]
        for stem, box in zip(rows["stem"], rows[["bbox_x0", "bbox_y0", "bbox_x1",
                                                  "bbox_y1"]].to_numpy(float), strict=True):
            ax, ay, side = context_window(box)
            sx0, sy0, sx1, sy1 = max(ax, 0), max(ay, 0), min(ax + side, w), min(ay + side, h)
            for i, (p, (lo, hi)) in enumerate(zip(planes, wins, strict=True)):
                out = np.zeros((side, side), np.uint8)
                if sx1 > sx0 and sy1 > sy0:
                    v = (p[sy0:sy1, sx0:sx1].astype(np.float32) - lo) / max(hi - lo, 1e-6)
                    out[sy0 - ay:sy1 - ay, sx0 - ax:sx1 - ax] = np.clip(v * 255, 0, 255)
                _save_png(img_dir / f"{stem}_c{i}.png", out)


# ---------------------------------------------------------------------------------- labels


class LabelStore:
    """The labels and skips of an annotation folder, each change written at once (atomically)
    to ``labels.csv`` / ``skipped.csv``. Keys are :func:`cell_stem` strings."""

    def __init__(self, ann_dir: str | Path, plate: str) -> None:
        self.dir = Path(ann_dir)
        self.plate = plate
        self.labels: dict[str, dict[str, Any]] = {}
        self.skipped: dict[str, dict[str, Any]] = {}
        for name, store, cols in (("labels.csv", self.labels, LABEL_COLUMNS),
                                  ("skipped.csv", self.skipped, SKIP_COLUMNS)):
            path = self.dir / name
            if not path.is_file():
                continue
            try:
                table = pd.read_csv(path, dtype={"plate": str, "well": str, "label": str,
                                                 "annotator": str, "time": str})
            except Exception as exc:  # noqa: BLE001 - pandas raises several types
                raise InputError(f"{path}: cannot read ({exc})") from None
            if list(table.columns) != cols:
                raise InputError(f"{path}: expected columns {', '.join(cols)}")
            for row in table.to_dict("records"):
                store[cell_stem(row["well"], row["field"], row["cell_id"])] = row

    def _write(self, name: str, store: dict[str, dict[str, Any]], cols: list[str]) -> None:
        text = pd.DataFrame(list(store.values()), columns=cols).to_csv(index=False,
                                                                        lineterminator="\n")
        atomic_write(self.dir / name, lambda t: t.write_text(text, encoding="utf-8"),
                     fsync=True)

    def set_many(self, labels: dict[str, str], annotator: str) -> None:
        """Label many cells (``stem -> label``) with one write of ``labels.csv``."""
        for stem, label in labels.items():
            self._set(stem, label, annotator, False)
        self._write("labels.csv", self.labels, LABEL_COLUMNS)
        self._write("skipped.csv", self.skipped, SKIP_COLUMNS)

    def set(self, stem: str, label: str | None, annotator: str, skip: bool = False) -> None:
        """Give ``stem`` the label ``label`` (replacing any), or remove its label (``None``);
        ``skip``: mark it skipped (a skipped cell has no label). Written at once."""
        changed_l, changed_s = self._set(stem, label, annotator, skip)
        if changed_l:
            self._write("labels.csv", self.labels, LABEL_COLUMNS)
        if changed_s:
            self._write("skipped.csv", self.skipped, SKIP_COLUMNS)

    def _set(self, stem: str, label: str | None, annotator: str, skip: bool
             ) -> tuple[bool, bool]:
        key = parse_stem(stem)
        if key is None:
            raise InputError(f"not a cell key: {stem!r}")
        well, field, cid = key
        row = {"plate": self.plate, "well": well, "field": field, "cell_id": cid}
        changed_l = changed_s = False
        if label is not None and not skip:
            self.labels[stem] = {**row, "label": label, "annotator": annotator, "time": _now()}
            changed_l = True
        elif stem in self.labels:
            del self.labels[stem]
            changed_l = True
        if skip:
            self.skipped[stem] = {**row, "annotator": annotator, "time": _now()}
            changed_s = True
        elif stem in self.skipped:
            del self.skipped[stem]
            changed_s = True
        return changed_l, changed_s

    def counts(self, classes: list[str]) -> dict[str, int]:
        """Labels given per class (every class, 0 included)."""
        out = dict.fromkeys(classes, 0)
        for row in self.labels.values():
            out[str(row["label"])] = out.get(str(row["label"]), 0) + 1
        return out


# ---------------------------------------------------------------------------------- session


@dataclass
class Session:
    """An annotation folder as read back: ``annotate.json``, the sample, the labels."""

    dir: Path
    meta: dict[str, Any]
    sample: pd.DataFrame
    store: LabelStore

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


def read_session(ann_dir: str | Path) -> Session:
    """The :class:`Session` of an annotation folder written by :func:`prepare_session`."""
    ann_dir = Path(ann_dir)
    path = ann_dir / "annotate.json"
    if not path.is_file():
        raise InputError(f"{ann_dir}: not an annotation folder (no annotate.json); make one "
                         "with hcs annotate RUN --out {ann_dir}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    sample = _read_sample(ann_dir / "sample.csv")
    return Session(ann_dir, meta, sample, LabelStore(ann_dir, str(meta["plate_name"])))


def _read_sample(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"plate": str, "well": str, "condition": str,
                                    "prediction": str, "stem": str},
                       keep_default_na=False, na_values={"confidence": [""], "margin": [""]})


def check_sampling(n: int, strategy: str, model: str | None) -> None:
    """Refuse sampling options that cannot work (one line naming the option)."""
    if strategy not in ("spread", "uncertain"):
        raise InputError(f"--strategy {strategy}: expected spread or uncertain")
    if strategy == "uncertain" and model is None:
        raise InputError("--strategy uncertain needs --model (the model whose margins rank "
                         "the cells)")
    if n < 1:
        raise InputError(f"--n {n}: expected at least 1 cell")


def check_out(ann_dir: str | Path, run_dir: str | Path, plate: str | Path | None = None) -> None:
    """Refuse an annotation folder inside the run or its plate, or an existing folder that
    ``hcs annotate`` did not write (before anything is created)."""
    from hcs.annotate.cells import run_plate

    _check_out(Path(ann_dir), Path(run_dir), run_plate(run_dir, plate))


def _check_out(ann_dir: Path, run_dir: Path, plate: Path) -> None:
    for what, inp in (("run folder", run_dir), ("plate", plate)):
        if ann_dir.resolve().is_relative_to(inp.resolve()):
            raise InputError(f"--out {ann_dir}: lies inside the {what} {inp}; hcs never writes "
                             "into an input (choose a folder outside it)")
    if ann_dir.exists() and not ann_dir.is_dir():
        raise InputError(f"--out {ann_dir}: exists and is not a folder")
    if ann_dir.is_dir() and any(p.name != "run.lock" for p in ann_dir.iterdir()) and not (
            ann_dir / "annotate.json").is_file():
        raise InputError(f"--out {ann_dir}: a folder that hcs annotate did not write (no "
                         "annotate.json); choose a new or empty folder")


def _conditions(run_dir: Path, cells: pd.DataFrame) -> pd.Series:
    wells_path = run_dir / "wells.parquet"
    if wells_path.is_file():
        wells = pd.read_parquet(wells_path)
        if "condition" in wells:
            cond = wells.assign(well=wells["well"].astype(str)).set_index("well")["condition"]
            cond = cond[~cond.index.duplicated()]
            return cells["well"].astype(str).map(cond).astype("string").fillna("")
    return pd.Series([""] * len(cells), index=cells.index, dtype="string")


def _model_probs(run_dir: Path, cells: pd.DataFrame, model: str, channels: dict[str, str],
                 plate: Path, timepoint: int) -> tuple[np.ndarray, list[str]]:
    """Probabilities of ``model`` for ``cells``: the run's ``p_*`` columns when the run was made
    with that model (``run.json``'s ``model_path`` is its folder and, when recorded, its card
    checksum is the card's), else the model run on the cells' crops (as ``hcs run`` would)."""
    from hcs.engine.model import model_card, trained_channel_map
    from hcs.io.omezarr import open_plate
    from hcs.runinfo import read_run_json

    run = read_run_json(run_dir)
    try:
        folder, card = model_card(model)
    except InputError:
        folder, card = Path(model).resolve(), None
    p_cols = [c for c in cells if c.startswith("p_")]
    if run.get("model_path"):
        same = Path(str(run["model_path"])).resolve() == Path(folder).resolve() and (
            card is None or not run.get("model_card_sha256")
            or run["model_card_sha256"] == getattr(card, "card_sha256", None))
    else:  # an older run.json: the cell tables' model column
        same = card is not None and "model" in cells and set(cells["model"].astype(str)) == {
            card.name}
    if same and len(p_cols) >= 2:
        return cells[p_cols].to_numpy(float), [c[2:] for c in p_cols]
    if card is None:
        raise InputError(f"--model {model}: not a model folder hcs annotate can run; annotate a "
                         "run made with it (hcs run PLATE --model MODEL), whose p_* columns are "
                         "then used")
    names = [str(c) for c in open_plate(plate).channels]
    # roles the given map leaves open: the plate channels the model was trained on
    channels = trained_channel_map(card, names, channels)
    if getattr(card, "kind", None) == "features":  # from the run's measurements, as hcs run
        return _features_probs(run_dir, cells, folder, card, channels, names), list(card.classes)
    from hcs.classify.infer import predict_proba
    from hcs.engine.model import load_classifier

    spec = CropSpec.from_card(card)
    crops = cell_crops(run_dir, cells, spec, channels, plate=plate, timepoint=timepoint)
    net = load_classifier(folder, card.card_sha256)
    return predict_proba(net, crops, 64, "cpu"), list(card.classes)


def _features_probs(run_dir: Path, cells: pd.DataFrame, folder: Path, card: Any,
                    channels: dict[str, str], names: list[str]) -> np.ndarray:
    """A features model's probabilities of ``cells`` from the run's measurement columns (its
    channel roles matched to the plate channels ``names`` as ``hcs run`` matches them)."""
    from hcs.engine.model import load_classifier, plate_channel_for

    cols = card.columns({c.name: names[plate_channel_for(c.name, names, channels)]
                         for c in card.channels})
    key = ["well", "field", "cell_id"]
    table = read_run_cells(run_dir, cols)
    missing = [c for c in cols if c not in table]
    if missing:
        raise InputError(f"--model {folder}: a features model needs measurement {missing[0]!r}, "
                         f"which run {run_dir} does not hold (hcs run --measure basic|full)")
    x = cells[key].merge(table[key + cols], on=key, how="left")[cols].to_numpy(np.float64)
    return load_classifier(folder, card.card_sha256).predict_proba(x)


def prepare_session(
    run_dir: str | Path,
    out: str | Path,
    assay: Any,
    *,
    n: int | None = None,
    strategy: str | None = None,
    model: str | None = None,
    channels: dict[str, str] | None = None,
    seed: int | None = None,
    plate: str | Path | None = None,
    pool: int = 2000,
) -> Session:
    """Draw (or continue) the sample of an annotation folder and write its images.

    Parameters
    ----------
    run_dir
        The run whose cells are labelled.
    out
        The annotation folder ``ANN`` (created; an existing one is continued).
    assay
        The :class:`~hcs.assays.Assay` (built-in or user-defined) whose classes are labelled.
    n, strategy, model, seed
        The sampling options of this round; ``None``: as the folder's last round (for a new
        folder: 200, ``spread``, no model, 0). Options equal to the last round's continue it;
        others draw a new round among the cells not sampled yet.
    n
        Cells in this round.
    strategy
        ``spread`` (:func:`spread_order` over conditions from ``RUN/wells.parquet``, wells,
        fields) or ``uncertain`` (the smallest margins of ``model`` among ``pool`` spread cells
        not sampled yet).
    model
        Model folder or shipped name: its crop is the one shown (and for ``uncertain``, its
        probabilities rank the cells); ``None``: the assay's declared input.
    channels
        ``role -> plate channel`` (``--channels``), over the run's own map.
    seed
        Random seed of the sampling.
    plate
        The plate, when ``run.json`` names none that exists here.
    pool
        Spread cells the model scores for ``uncertain`` (at least ``10 n``).

    Returns
    -------
    Session
    """
    from hcs import __version__
    from hcs.annotate.cells import run_channel_map, run_plate
    from hcs.assays import ASSAYS, assay_to_dict
    from hcs.engine.model import plate_channel_for
    from hcs.io.omezarr import open_plate
    from hcs.runinfo import read_run_json

    run_dir, ann = Path(run_dir), Path(out)
    meta_path = ann / "annotate.json"
    old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    last = old["rounds"][-1]["options"] if old else {"strategy": "spread", "model": None,
                                                     "n": 200, "seed": 0}
    strategy = strategy if strategy is not None else last["strategy"]
    model = model if model is not None else last["model"]
    n = int(n if n is not None else last["n"])
    seed = int(seed if seed is not None else last["seed"])
    check_sampling(n, strategy, model)
    plate_path = run_plate(run_dir, plate).resolve()
    _check_out(ann, run_dir, plate_path)
    run = read_run_json(run_dir)
    timepoint = int(run.get("timepoint") or 0)
    mapping = run_channel_map(run_dir, channels)
    pl = open_plate(plate_path)
    spec = None
    if model is not None:
        try:  # the crop the model sees; a model of another kind: the assay's declared input
            spec = CropSpec.from_card(model, assay if assay.name.lower() not in ASSAYS else None)
        except InputError:
            if not Path(model).is_dir():
                raise
        model = str(Path(model).resolve()) if Path(model).exists() else model
    if spec is None:
        spec = CropSpec.from_assay(assay, roles=list(channels) if channels else None)
    chan_idx = [plate_channel_for(r, list(pl.channels), mapping) for r in spec.roles]
    classes = list(assay.classes)
    round_opts = {"strategy": strategy, "model": model, "n": n, "seed": seed}
    if old is not None:
        if Path(old["run"]) != run_dir.resolve() or list(old["classes"]) != classes:
            raise InputError(f"{ann}: labels of run {old['run']} with classes "
                             f"{','.join(old['classes'])}; use another --out for run "
                             f"{run_dir} / classes {','.join(classes)}")
        sample = _read_sample(ann / "sample.csv")
        if old["rounds"][-1]["options"] == round_opts:
            return read_session(ann)  # the same options: continue the last round
    else:
        sample = pd.DataFrame()
    cells = read_run_cells(run_dir, ["x", "y", "bbox_*", "p_*", "label", "confidence", "model"])
    if not len(cells):
        raise InputError(f"{run_dir}: the run has no cells to label")
    cells["condition"] = _conditions(run_dir, cells)
    cells["stem"] = [cell_stem(w, f, c) for w, f, c in
                     cells[["well", "field", "cell_id"]].itertuples(index=False)]
    free = cells[~cells["stem"].isin(set(sample["stem"]) if len(sample) else set())]
    free = free.reset_index(drop=True)
    if not len(free):
        raise InputError(f"{run_dir}: every cell of the run is already in {ann}")
    order = spread_order(free, seed + len(old["rounds"]) if old else seed, free["condition"])
    pred = (free["label"].astype("string").fillna("").astype(str) if "label" in free
            else pd.Series([""] * len(free)))
    conf = free["confidence"].astype(float) if "confidence" in free else pd.Series(
        np.full(len(free), np.nan))
    marg = pd.Series(np.full(len(free), np.nan))
    if strategy == "uncertain":
        order = order[:max(pool, 10 * n)]
        probs, mclasses = _model_probs(run_dir, free.iloc[order], str(model), mapping,
                                       plate_path, timepoint)
        by_margin = uncertain_order(probs)
        order = order[by_margin]
        pred.iloc[order] = np.asarray(mclasses, object)[probs[by_margin].argmax(axis=1)]
        conf.iloc[order] = probs[by_margin].max(axis=1)
        marg.iloc[order] = margins(probs[by_margin])
    pick = order[:n]
    rnd = len(old["rounds"]) if old else 0
    new = pd.DataFrame({
        "round": rnd, "plate": free["plate"].iloc[pick].astype(str).to_numpy(),
        "well": free["well"].iloc[pick].astype(str).to_numpy(),
        "field": free["field"].iloc[pick].to_numpy(int),
        "cell_id": free["cell_id"].iloc[pick].to_numpy(int),
        "condition": free["condition"].iloc[pick].astype(str).to_numpy(),
        "prediction": pred.iloc[pick].to_numpy(), "confidence": conf.iloc[pick].to_numpy(),
        "margin": marg.iloc[pick].to_numpy(),
        **{c: free[c].iloc[pick].to_numpy(float) for c in
           ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")},
        "stem": free["stem"].iloc[pick].to_numpy(),
    })
    if not len(new):
        raise InputError(f"{run_dir}: every cell of the run is already in {ann}")
    ann.mkdir(parents=True, exist_ok=True)
    try:
        write_cell_images(run_dir, new, spec, mapping, ann / "img", timepoint, plate_path)
    except BaseException:
        if old is None:  # a new folder (checked empty): the images are all ours
            import shutil

            shutil.rmtree(ann / "img", ignore_errors=True)
        raise
    sample = pd.concat([sample, new], ignore_index=True) if len(sample) else new
    atomic_write_text(ann / "sample.csv", sample.to_csv(index=False, lineterminator="\n"))
    is_builtin = assay.name.lower() in ASSAYS
    meta = {
        "hcs_version": __version__, "run": str(run_dir.resolve()), "plate": str(plate_path),
        "plate_name": str(free["plate"].iloc[0]), "timepoint": timepoint,
        "assay": assay.name if is_builtin else assay_to_dict(assay), "classes": classes,
        "channels": {r: pl.channels[i] for r, i in zip(spec.roles, chan_idx, strict=True)},
        "plate_channels": list(pl.channels), "channel_colours": _channel_colours(pl),
        "crop": {"roles": list(spec.roles), "modes": list(spec.modes), "size": spec.size,
                 "margin": spec.margin, "square": spec.square, "pad_mode": spec.pad_mode},
        "context": {"pad": CONTEXT_PAD, "min": CONTEXT_MIN},
        "strategy": strategy, "model": model, "seed": int(seed), "n": int(n),
        "sample": {"cells": len(sample), "rounds": rnd + 1},
        "rounds": [*(old["rounds"] if old else []),
                   {"options": round_opts, "cells": len(new), "time": _now()}],
    }
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return read_session(ann)
