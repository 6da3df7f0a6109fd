"""Per-field processing: preprocess, detect, crop, classify -> one cell table.

:class:`FieldProcessor` is the protocol the engine schedules: built once per worker from
validated :class:`EngineParams` (so the CLI, a Dask task and a test call the same thing), then
``process(image, meta)`` per field. :class:`PipelineProcessor` is the default implementation
(classical or learned detector + timm classifier); :func:`get_processor` caches one per worker
process. For cross-field batching a field is split into ``prepare`` (detect, compose),
``crops``/``classify`` (driven by :class:`hcs.engine.batching.FieldBatcher`) and ``finish``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hcs.errors import InputError
from hcs.timing import stage

__all__ = ["EngineParams", "FieldMeta", "FieldProcessor", "PipelineProcessor", "PreparedField",
           "box_label_mask", "check_processor", "compose_field", "field_crops", "get_processor",
           "nucleus_channel_index"]

_NUCLEAR = re.compile(r"hoechst|dapi|nucle|draq|sytox|h2b", re.IGNORECASE)


class EngineParams(BaseModel):
    """Everything a worker needs to process fields; validated once, sent to every task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate: str
    assay: str | None = None  # None with model None: a detection-only run (no class columns)
    model: str | None = None
    detector: str = "threshold"
    nucleus_channel: str | int | None = None
    batch_size: int = Field(64, ge=1, le=4096)
    seed: int = 0
    device: str = "auto"
    torch_threads: int = Field(1, ge=1)
    channel_map: tuple[tuple[str, str], ...] = ()
    timepoint: int = Field(0, ge=0)
    measure: Literal["none", "basic", "full"] = "basic"
    labels: bool = False  # keep each field's label mask for the task to write into the plate
    cell_channel: str | None = None  # NAME[:cytoplasm|:membrane]: grow cells from the nuclei

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and v != "cpu" and not re.fullmatch(r"cuda(:\d+)?", v):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v


@dataclass(frozen=True)
class FieldMeta:
    """Where a field comes from: names written into every row of its cell table."""

    plate: str
    well: str
    row: int
    col: int
    field: int
    channels: tuple[str, ...]
    pixel_size_um: float
    image_channels: tuple[int, ...] | None = None  # plate channels in the image; None: all
    timepoint: int = 0
    z_step_um: float | None = None


class FieldProcessor(Protocol):
    """Turns one field ``(c, z, y, x)`` (timepoint already chosen) into its cell table."""

    def process(self, image: np.ndarray, meta: FieldMeta) -> pd.DataFrame: ...


def nucleus_channel_index(channels: tuple[str, ...] | list[str], wanted: str | int | None) -> int:
    """Index of the nuclear-stain channel: ``wanted`` (name or index), else the first channel
    whose name looks nuclear (Hoechst, DAPI, DRAQ5 ...), else 0.

    Examples
    --------
    >>> nucleus_channel_index(["Brightfield", "HOECHST 33342", "PI"], None)
    1
    >>> nucleus_channel_index(["a", "b"], "b")
    1
    """
    return _channel_index(list(channels), wanted) if wanted is not None else next(
        (i for i, c in enumerate(channels) if _NUCLEAR.search(str(c))), 0)


def _channel_index(channels: list[str], wanted: str | int) -> int:
    if isinstance(wanted, int) or str(wanted).isdigit():
        i = int(wanted)
        if not 0 <= i < len(channels):
            raise InputError(f"channel index {i} is outside the plate's {len(channels)} channels")
        return i
    low = [c.lower() for c in channels]
    if str(wanted).lower() not in low:
        raise InputError(f"channel {wanted!r} is not in the plate (channels: {channels})")
    return low.index(str(wanted).lower())


def field_crops(
    planes: np.ndarray, boxes: np.ndarray, size: int, margin: float = 0.0,
    square: bool = True, pad_mode: str = "constant",
) -> np.ndarray:
    """``N x size x size x C`` float32 crops of a composed field ``(H, W, C)``, one per box,
    cut exactly as for training (:func:`hcs.classify.crops.crop_box`).

    Examples
    --------
    >>> img = np.zeros((20, 20, 1), np.float32); img[5:10, 5:10] = 255
    >>> c = field_crops(img, np.array([[5.0, 5.0, 10.0, 10.0]]), size=5)
    >>> c.shape, float(c.min())
    ((1, 5, 5, 1), 255.0)
    """
    from hcs.classify.crops import crop_box

    out = np.zeros((len(boxes), size, size, planes.shape[2]), np.float32)
    for i, box in enumerate(boxes):
        out[i] = crop_box(planes, box, size, margin, square, pad_mode)
    return out


def box_label_mask(boxes: np.ndarray, shape: tuple[int, ...], ids: np.ndarray) -> np.ndarray:
    """A label mask of the ellipse inscribed in each box (``x0, y0, x1, y1``), value ``ids[i]``:
    what a box-only (learned) detector's objects are measured on. Where ellipses overlap the
    later box wins.

    Examples
    --------
    >>> m = box_label_mask(np.array([[0.0, 0.0, 5.0, 5.0]]), (6, 6), np.array([7]))
    >>> int(m.max()), int((m == 7).sum()), int(m[2, 2])
    (7, 21, 7)
    """
    from skimage.draw import ellipse

    out = np.zeros(shape[:2], np.int32)
    for (x0, y0, x1, y1), i in zip(np.asarray(boxes, float), ids, strict=True):
        rr, cc = ellipse((y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5, max((y1 - y0) / 2, 0.5),
                         max((x1 - x0) / 2, 0.5), shape=out.shape)
        out[rr, cc] = int(i)
    return out


def compose_field(planes: np.ndarray, indices: list[int], modes: list[str]) -> np.ndarray:
    """``(H, W, C)`` float32 model input of a field: the chosen planes, each rescaled to 0-255
    by its field's 1-99.8 percentiles (``percentile``) or, for 8-bit data, used as is
    (``none``; 16-bit planes are always rescaled, their values have no 0-255 meaning)."""
    from hcs.classify.crops import rescale_0_255

    out = []
    for i, m in zip(indices, modes, strict=True):
        p = planes[i]
        if m == "none" and p.dtype == np.uint8:
            out.append(p.astype(np.float32))
        else:
            out.append(rescale_0_255(p, 0.0, 100.0) if np.ptp(p) == 0 else rescale_0_255(p))
    return np.stack(out, axis=-1)


def _resolve_device(device: str) -> str:
    """``auto``: the worker's CUDA device (by worker name, round robin) or the CPU."""
    import torch

    if device != "auto":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    index = 0
    try:
        from distributed import get_worker

        name = get_worker().name
        index = int(name) % torch.cuda.device_count() if str(name).isdigit() else 0
    except (ImportError, ValueError):
        pass
    return f"cuda:{index}"


@dataclass(eq=False)
class ViewSource:
    """What the crops of a field are cut from for a projection ensemble: the composed z-stack
    ``(Z, H, W, C)`` (``None`` when only the z view is used), its z max projection, the views
    and the side views' rows per plane (:mod:`hcs.classify.projections`)."""

    stack: np.ndarray | None
    projection: np.ndarray
    views: tuple[str, ...]
    zscale: float


@dataclass(eq=False)
class PreparedField:
    """A detected field waiting for its crops to be classified (see :mod:`hcs.engine.batching`).

    ``composed`` is the ``(H, W, C)`` classifier input (a :class:`ViewSource` for a projection
    ensemble), kept only until every crop is cut, so a worker holds composed planes, not crops,
    however many cells a field has.
    """

    meta: FieldMeta
    frame: pd.DataFrame
    boxes: np.ndarray
    composed: np.ndarray | ViewSource | None
    shape: tuple[int, int]
    probs: np.ndarray
    cut: int = 0
    done: int = 0
    labels: dict[str, np.ndarray] | None = None  # nuclei (and cells) masks, params.labels
    qc: dict[str, Any] | None = None  # image QC of the field (hcs.engine.imageqc.field_qc)

    @property
    def n(self) -> int:
        return len(self.boxes)


class PipelineProcessor:
    """Detection (classical on the nuclear channel, or a learned detector folder) + the model of
    ``params.model`` on crops + measurements (:func:`hcs.measure.measure_objects`) of every
    detected object on every plate channel (``params.measure``).

    Without a model (``params.model`` None: a detection-only run) the cell table has no class
    columns (``assay``, ``model``, ``p_<class>``, ``label``, ``confidence``).

    ``params.model`` may be a projection ensemble (:mod:`hcs.classify.ensemble`): each cell is
    then cut in every view the plate allows (z only for a 2-D plate; z, y and x for a z-stack),
    each member classifies its view, the least-entropy view wins per level, and the cell table
    gets a ``view_<level>`` column naming the winning view.
    """

    def __init__(self, params: EngineParams, load: bool = True) -> None:
        from hcs.engine.detector import EngineDetector, detector_info, load_engine_detector
        from hcs.engine.model import load_classifier, model_card, run_assay

        self.params = params
        if load:
            import torch

            torch.set_num_threads(params.torch_threads)
            self.device = _resolve_device(params.device)
            self.detector = load_engine_detector(params.detector, self.device)
        else:  # what it reads and how, from the cards alone: no torch, no weights
            self.device = params.device
            info = detector_info(params.detector)
            self.detector = EngineDetector(info["kind"], info["name"], info["sha256"],
                                           info["channels"])
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._views: tuple[str, ...] | None = None
        self.features = False
        if params.model is None:  # detection only
            if params.assay is not None:
                raise InputError(f"assay {params.assay}: a run with an assay needs a model")
            self.assay = self.rule = self.model = self.card = None
            self.ensemble = False
            self._known: dict[str, str] = {}
            self.roles: list[str] = []
            self.modes: list[str] = []
            return
        if params.assay is None:
            raise InputError(f"model {params.model}: a run with a model needs its assay")
        folder, card = model_card(params.model)
        self.assay = run_assay(params.assay, card)
        self.rule = self.assay.rule
        spec = self.assay.inputs
        self._known = {c.name: c.rescale for c in spec.channels + spec.optional_channels}
        self.roles = [c.name for c in card.channels]
        self.modes = [self._known.get(r, "percentile") for r in self.roles]
        if load:
            import torch

            torch.manual_seed(params.seed)
            self.model = load_classifier(folder, card.card_sha256)
            self.card = self.model.card
        else:
            self.model, self.card = None, card
        self.features = getattr(self.card, "kind", "cnn") == "features"
        if self.features and params.measure == "none":
            raise InputError(f"model {card.name} classifies cells by their measurements: run "
                             "with --measure basic (or full), not none")
        from hcs.classify.ensemble import Ensemble

        self.ensemble = isinstance(self.card, Ensemble)
        self._order = [list(self.card.classes).index(c) for c in self.assay.classes]

    @property
    def classifies(self) -> bool:
        """False for a detection-only run (no model)."""
        return self.card is not None

    @property
    def needs_crops(self) -> bool:
        """True when the model classifies crops (a features model reads measurements)."""
        return self.card is not None and not self.features

    def plan(self, channels: tuple[str, ...]) -> _Plan:
        """Which plate channels detection and classification read (resolved once per plate)."""
        if channels not in self._plans:
            mapping = dict(self.params.channel_map)
            nuc = nucleus_channel_index(channels, self.params.nucleus_channel)
            det_idx, det_modes = self.detector.plate_channels(list(channels), nuc, mapping,
                                                              self._known)
            from hcs.engine.model import plate_channel_for

            cls_idx = [plate_channel_for(r, list(channels), mapping) for r in self.roles]
            read = set(det_idx) | set(cls_idx)
            cell = None
            if self.params.cell_channel:
                name, _, stain = self.params.cell_channel.partition(":")
                cell = (_channel_index(list(channels), name.strip()), stain.strip() or
                        "cytoplasm")
                read.add(cell[0])
            if self.params.measure != "none":  # measurements are on every plate channel
                read |= set(range(len(channels)))
            self._plans[channels] = _Plan(tuple(sorted(read)), det_idx, det_modes, cls_idx,
                                          cell)
        return self._plans[channels]

    def read_channels(self, channels: tuple[str, ...]) -> tuple[int, ...]:
        """Plate channel indices to read for a plate with ``channels`` (all others are never
        read)."""
        return self.plan(channels).read

    def prepare(self, image: np.ndarray, meta: FieldMeta) -> PreparedField:
        """Detect the cells of one field ``(c, z, y, x)`` and compose its classifier input.

        ``image`` holds the plate channels ``meta.image_channels`` (all when None), in order.
        """
        if image.ndim != 4:
            raise InputError(f"well {meta.well} field {meta.field}: expected (c, z, y, x), "
                             f"got shape {image.shape}")
        present = meta.image_channels or tuple(range(len(meta.channels)))
        if len(present) != image.shape[0]:
            raise InputError(f"well {meta.well} field {meta.field}: {image.shape[0]} channels "
                             f"read, {len(present)} expected")
        pos = {c: i for i, c in enumerate(present)}
        plan = self.plan(meta.channels)
        planes = image.max(axis=1)  # z max-projection, dtype kept
        with stage("image QC"):
            qc = self.image_qc(planes, meta, present)
        if self.detector.kind == "method":
            det_in = planes[pos[plan.det_idx[0]]]
        else:
            det_in = compose_field(planes, [pos[i] for i in plan.det_idx], plan.det_modes)
        det = self.detector.detect(det_in, meta.pixel_size_um)
        del det_in
        with stage("measurements"):
            frame = det.to_frame()
        masks = {"nuclei": det.labels} if det.labels is not None else {}
        measured = masks
        if not masks and self.params.measure != "none" and len(frame):
            # a box detector (learned): objects are measured on the ellipse in each box
            measured = {"nuclei": box_label_mask(np.asarray(det.boxes), planes.shape[1:],
                                                 frame["cell_id"].to_numpy())}
        if plan.cell is not None and det.labels is not None:
            from hcs.detect.cells import detect_cells

            cells = detect_cells(None, planes[pos[plan.cell[0]]], meta.pixel_size_um,
                                 stain=plan.cell[1], nuclei=det)
            masks["cells"] = cells.labels
        if self.params.measure != "none" and measured:
            from hcs.measure import measure_objects

            with stage("measurements"):
                parts = [frame.reset_index(drop=True)]
                comps = {"Nuclei": measured["nuclei"]}
                if "cells" in masks:
                    comps["Cells"] = masks["cells"]
                    comps["Cytoplasm"] = np.where(masks["nuclei"] > 0, 0, masks["cells"])
                for comp, lab in comps.items():
                    parts.append(measure_objects(
                        lab, planes, [meta.channels[i] for i in present],
                        pixel_size_um=meta.pixel_size_um, level=self.params.measure,
                        compartment=comp, ids=frame["cell_id"].to_numpy()
                    ).reset_index(drop=True))
                frame = pd.concat(parts, axis=1)
        boxes = np.asarray(det.boxes, np.float32)
        keep = masks if self.params.labels and masks else None
        if not self.classifies:
            return PreparedField(meta, frame, boxes, None, planes.shape[1:],
                                 np.zeros((len(boxes), 0), np.float32), labels=keep, qc=qc)
        if self.features:  # classified from the field's measurements, no crops
            cols = self.card.columns({r: meta.channels[i]
                                      for r, i in zip(self.roles, plan.cls_idx, strict=True)})
            missing = [c for c in cols if c not in frame]
            if missing and len(frame):
                raise InputError(f"well {meta.well} field {meta.field}: model {self.card.name} "
                                 f"needs measurement {missing[0]!r}, which this run does not "
                                 "measure (--measure full?)")
            x = frame[cols].to_numpy(np.float64) if len(frame) else np.zeros((0, len(cols)))
            probs = self.model.predict_proba(x)
            return PreparedField(meta, frame, boxes, None, planes.shape[1:], probs,
                                 cut=len(boxes), done=len(boxes), labels=keep, qc=qc)
        cls_pos = [pos[i] for i in plan.cls_idx]
        width = len(self.card.classes)
        with stage("compose"):
            if self.ensemble:
                composed: np.ndarray | ViewSource = self._view_source(image, planes, cls_pos,
                                                                      meta)
                width += len(self.card.levels)  # + the winning view of each level
            else:
                composed = compose_field(planes, cls_pos, self.modes)
        probs = np.zeros((len(boxes), width), np.float32)
        return PreparedField(meta, frame, boxes, composed, planes.shape[1:], probs,
                             labels=keep, qc=qc)

    def image_qc(self, planes: np.ndarray, meta: FieldMeta,
                 present: tuple[int, ...]) -> dict[str, Any]:
        """Image QC (:func:`hcs.engine.imageqc.field_qc`) of a field's planes as read: focus on
        the nuclear channel (the first channel read when it was not), saturation and
        background of every channel read."""
        from hcs.engine.imageqc import field_qc

        nuc = nucleus_channel_index(meta.channels, self.params.nucleus_channel)
        return field_qc(planes, [meta.channels[i] for i in present],
                        present.index(nuc) if nuc in present else 0)

    def _view_source(self, image: np.ndarray, planes: np.ndarray, cls_pos: list[int],
                     meta: FieldMeta) -> ViewSource:
        """Composed stack / projection of a field for the ensemble's views on this plate."""
        from hcs.classify.projections import compose_stack, z_scale

        views = tuple(self.card.views(image.shape[1]))
        if self._views is not None and views != self._views:
            raise InputError(f"well {meta.well} field {meta.field}: {image.shape[1]} z planes "
                             f"give views {views}, other fields of the run gave {self._views}")
        self._views = views
        if views == ("z",):
            return ViewSource(None, compose_field(planes, cls_pos, self.modes), views, 1.0)
        stack = compose_stack(image, cls_pos, self.modes)
        return ViewSource(stack, stack.max(axis=0), views,
                          z_scale(meta.z_step_um, meta.pixel_size_um))

    def crops(self, prep: PreparedField, start: int, stop: int) -> np.ndarray:
        """Crops ``start:stop`` of a prepared field, cut as in training (``N x V x S x S x C``,
        one per view, for an ensemble)."""
        boxes = prep.boxes[start:stop]
        src = prep.composed
        if isinstance(src, ViewSource):
            from hcs.classify.projections import view_crops

            out = []
            for v in src.views:
                c = self.card.crop_for(v)
                if v == "z":
                    out.append(field_crops(src.projection, boxes, c.size, c.margin, c.square,
                                           c.pad_mode))
                else:
                    out.append(view_crops(src.stack, boxes, c.size, [v], c.margin, c.square,
                                          c.pad_mode, src.zscale)[:, 0])
            return np.stack(out, axis=1)
        c = self.card.crop
        return field_crops(src, boxes, c.size, c.margin, c.square, c.pad_mode)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (card class order) of one batch of crops: one forward pass (per
        member and view for an ensemble, whose winning view indices follow as extra columns)."""
        from hcs.classify.infer import predict_proba

        if self.ensemble:
            proba, win = self.model.predict(crops, list(self._views or ("z",)),
                                            max(len(crops), 1), self.device)
            return np.concatenate([proba, win.astype(np.float32)], axis=1)
        return predict_proba(self.model, crops, max(len(crops), 1), self.device)

    def finish(self, prep: PreparedField) -> pd.DataFrame:
        """The cell table of a field whose crops are all classified."""
        from hcs.assays.rules import apply_rule

        if not self.classifies:
            return _cell_table(prep.frame, None, [], (), prep.meta, prep.shape, None, None)

        k = len(self.card.classes)
        probs = prep.probs[:, :k][:, self._order]
        labels = apply_rule(probs, self.assay.classes, self.rule) if len(probs) else []
        extra = {}
        if self.assay.paired_class is not None:
            extra["pair_of"] = pair_column(prep.frame, labels, prep.meta.pixel_size_um,
                                           self.assay.paired_class, self.assay.pair_max_um)
        if self.ensemble:
            views = np.asarray(self._views or ("z",), dtype=object)
            for j, level in enumerate(self.card.levels):
                extra[f"view_{level}"] = pd.Series(views[prep.probs[:, k + j].astype(int)],
                                                   dtype="string")
        return _cell_table(prep.frame, probs, labels, self.assay.classes, prep.meta,
                           prep.shape, self.assay.name, self.card.name, extra)

    def process(self, image: np.ndarray, meta: FieldMeta) -> pd.DataFrame:
        """Cell table of one field ``(c, z, y, x)``: DESIGN.md ``cells/`` columns, by cell_id.

        The same path as a group of one field in :func:`hcs.engine.tasks.process_fields`.
        """
        from hcs.engine.batching import FieldBatcher

        if not self.needs_crops:
            return self.finish(self.prepare(image, meta))
        batcher = FieldBatcher(self, self.params.batch_size)
        done = batcher.add(self.prepare(image, meta)) + batcher.flush()
        return self.finish(done[0])


def pair_column(frame: pd.DataFrame, labels: Any, pixel_size_um: float, paired_class: str,
                max_um: float) -> pd.Series:
    """``pair_of`` of a field's cell table: the ``cell_id`` of the detection a detection is the
    second half of (:func:`hcs.assays.rules.pair_partners`, e.g. an anaphase's other chromatin
    mass), else -1. Aggregation counts a pair once.

    Examples
    --------
    >>> f = pd.DataFrame({"cell_id": [1, 2, 3], "x": [10.0, 25.0, 200.0], "y": [5.0] * 3})
    >>> pair_column(f, ["ana", "ana", "ana"], 0.5, "ana", 15.0).tolist()
    [-1, 1, -1]
    """
    from hcs.assays.rules import pair_partners

    n = len(frame)
    if n == 0:
        return pd.Series(np.zeros(0, np.int64), dtype="int64")
    xy = frame[["x", "y"]].to_numpy(float) * float(pixel_size_um or 1.0)
    partner = pair_partners(list(labels), xy, paired_class, max_um)
    ids = frame["cell_id"].to_numpy(np.int64)
    return pd.Series(np.where(partner >= 0, ids[np.maximum(partner, 0)], -1), dtype="int64")


@dataclass(frozen=True)
class _Plan:
    read: tuple[int, ...]
    det_idx: list[int]
    det_modes: list[str]
    cls_idx: list[int]
    cell: tuple[int, str] | None = None  # plate channel and stain of the cell segmentation


def _cell_table(frame: pd.DataFrame, probs: np.ndarray | None, labels: Any,
                classes: tuple[str, ...], meta: FieldMeta, shape: tuple[int, ...],
                assay: str | None, model: str | None,
                extra: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """DESIGN.md ``cells/`` columns; ``probs`` None (a detection-only run): no class columns.
    Measurement columns (CellProfiler names, :mod:`hcs.measure`) come last."""
    n = len(frame)
    head = pd.DataFrame({
        "plate": pd.Series([meta.plate] * n, dtype="string"),
        "well": pd.Series([meta.well] * n, dtype="string"),
        "row": np.full(n, meta.row, np.int64),
        "col": np.full(n, meta.col, np.int64),
        "field": np.full(n, meta.field, np.int64),
    })
    frame = frame.drop(columns=[c for c in ("class_id",) if c in frame])
    feats = [c for c in frame.columns if c[:1].isupper()]  # Nuclei_..., Cells_...
    out = pd.concat([head, frame.drop(columns=feats).reset_index(drop=True)], axis=1)
    if probs is not None:
        out["assay"] = pd.Series([assay] * n, dtype="string")
        out["model"] = pd.Series([model] * n, dtype="string")
        for j, c in enumerate(classes):
            out[f"p_{c}"] = probs[:, j].astype(np.float32) if n else np.zeros(0, np.float32)
        out["label"] = pd.Series([str(v) for v in labels], dtype="string")
        out["confidence"] = probs.max(axis=1).astype(np.float32) if n else np.zeros(
            0, np.float32)
    for name, values in (extra or {}).items():
        out[name] = pd.Series(values.to_numpy(), index=out.index, dtype=values.dtype)
    h, w = shape
    out["qc_border"] = ((out["bbox_x0"] <= 0) | (out["bbox_y0"] <= 0)
                        | (out["bbox_x1"] >= w) | (out["bbox_y1"] >= h)).astype(bool)
    if feats:
        out = pd.concat([out, frame[feats].reset_index(drop=True).astype("float64")], axis=1)
    return out.sort_values("cell_id", kind="stable").reset_index(drop=True)


_PROCESSORS: dict[str, PipelineProcessor] = {}
_LOCK = threading.Lock()


def check_processor(params: EngineParams) -> PipelineProcessor:
    """A processor of ``params`` that checks them (assay, model card, detector, channels) and
    plans what to read, without importing torch or loading any weights: ``hcs run`` checks a
    run with it in the main process while the workers load the model (a model that passes its
    card and checksum but cannot be built fails there, before the first field:
    :func:`hcs.engine.run._warm_up`). It cannot process fields."""
    return PipelineProcessor(params, load=False)


def get_processor(params: EngineParams) -> PipelineProcessor:
    """The worker's :class:`PipelineProcessor` for ``params`` (built on first use)."""
    key = params.model_dump_json()
    with _LOCK:
        if key not in _PROCESSORS:
            _PROCESSORS[key] = PipelineProcessor(params)
        return _PROCESSORS[key]
