"""Training labels for the engine's own detections of a simulated plate (``--truth-boxes
detected``).

The engine (:class:`hcs.engine.processor.PipelineProcessor`) does not see the simulator's object
boxes: it detects nuclei on the nuclear channel and classifies one crop per detected nucleus.
A cell-in-cell structure holds 2-6 nuclei (host crescent + internalised cells), so the engine
finds several small boxes inside one truth box. A model trained on truth boxes would therefore
be applied at inference to crops it never saw. This module runs the engine's detector on every
field of the plate and labels each detection by the truth object it lies in:

- a detection belongs to the object whose member nucleus (``truth/members.parquet``) is nearest
  its centroid, among the objects whose box contains the centroid; a detection inside no truth
  box (debris, a split fragment at an edge) is *dropped*;
- per object, the detection nearest the host's nucleus (``nucleus_x, nucleus_y`` of the truth
  table) is its *primary* detection and gets the object's class;
- every other detection of the object gets the assay's ``extra_nucleus_class``
  (:class:`hcs.assays.Assay`; cic: ``f_category``, which is excluded from counting) so that each
  structure is counted once, or, for assays without one, the object's class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError

MEMBERS_FILE = Path("truth") / "members.parquet"


def label_detections(
    boxes: np.ndarray,
    centres: np.ndarray,
    objects: pd.DataFrame,
    members: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray]:
    """Match one field's detections to its truth objects.

    Parameters
    ----------
    boxes
        ``N x 4`` detection boxes (``x0, y0, x1, y1``; unused but for their count).
    centres
        ``N x 2`` detection centroids ``(x, y)`` (pixel-centre convention, as
        :meth:`hcs.detect.Detections.to_frame`).
    objects
        The field's truth rows: ``cell_id``, ``bbox_x0 .. bbox_y1``, ``nucleus_x, nucleus_y``.
    members
        The field's member rows: ``cell_id, nucleus_x, nucleus_y``.

    Returns
    -------
    (obj, primary)
        Per detection, the row position in ``objects`` (-1: inside no truth box) and whether
        it is its object's primary (host-nucleus) detection.

    Examples
    --------
    >>> objs = pd.DataFrame({"cell_id": [1, 2], "bbox_x0": [0., 50.], "bbox_y0": [0., 0.],
    ...     "bbox_x1": [40., 90.], "bbox_y1": [40., 40.], "nucleus_x": [10., 70.],
    ...     "nucleus_y": [10., 20.]})
    >>> mem = pd.DataFrame({"cell_id": [1, 1, 2], "nucleus_x": [10., 30., 70.],
    ...     "nucleus_y": [10., 30., 20.]})
    >>> c = np.array([[11., 9.], [29., 31.], [69., 21.], [45., 45.]])
    >>> o, p = label_detections(np.zeros((4, 4)), c, objs, mem)
    >>> o.tolist(), p.tolist()
    ([0, 0, 1, -1], [True, False, True, False])
    """
    n = len(centres)
    obj = np.full(n, -1, np.int64)
    primary = np.zeros(n, bool)
    if n == 0 or objects.empty:
        return obj, primary
    tb = objects[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(float)
    px, py = centres[:, 0] + 0.5, centres[:, 1] + 0.5  # pixel centres -> pixel-edge frame
    inside = ((px[:, None] >= tb[None, :, 0]) & (px[:, None] < tb[None, :, 2])
              & (py[:, None] >= tb[None, :, 1]) & (py[:, None] < tb[None, :, 3]))
    pos = {cid: k for k, cid in enumerate(objects["cell_id"].to_numpy())}
    m_obj = members["cell_id"].map(pos).to_numpy()
    keep = ~pd.isna(m_obj)
    m_obj = m_obj[keep].astype(np.int64)
    m_xy = members.loc[keep, ["nucleus_x", "nucleus_y"]].to_numpy(float)
    # distance of each detection to each member nucleus; members of objects whose box does not
    # contain the detection are out of the running
    d = np.hypot(centres[:, None, 0] - m_xy[None, :, 0], centres[:, None, 1] - m_xy[None, :, 1])
    d = np.where(inside[:, m_obj], d, np.inf)
    best = np.argmin(d, axis=1) if d.shape[1] else np.zeros(n, np.int64)
    ok = np.isfinite(d[np.arange(n), best]) if d.shape[1] else np.zeros(n, bool)
    # a containing box without a listed member nucleus: take the smallest containing box
    area = (tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1])
    fallback = np.argmin(np.where(inside, area[None, :], np.inf), axis=1)
    obj = np.where(ok, m_obj[best] if d.shape[1] else -1,
                   np.where(inside.any(axis=1), fallback, -1))
    host = objects[["nucleus_x", "nucleus_y"]].to_numpy(float)
    for k in np.unique(obj[obj >= 0]):
        idx = np.flatnonzero(obj == k)
        dist = np.hypot(centres[idx, 0] - host[k, 0], centres[idx, 1] - host[k, 1])
        primary[idx[np.argmin(dist)]] = True
    return obj, primary


def detected_truth(
    sim_dir: str | Path,
    plate: str | Path,
    assay: str,
    detector: str = "threshold",
    nucleus_channel: str | int | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per engine detection of a simulated plate, labelled by the truth it lies in.

    Parameters
    ----------
    sim_dir
        The folder ``hcs simulate`` wrote.
    plate
        Its converted plate.
    assay
        Registry name (gives the class of non-primary detections).
    detector, nucleus_channel
        As ``hcs run --detector / --nucleus-channel``.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`hcs.train.truth.read_truth` (``well, field, source, label,
        x0 .. y1``) for the detection boxes, plus ``object_id`` (truth ``cell_id``),
        ``object_class``, ``primary`` and ``det_score``. Unmatched detections are dropped
        (their number is logged).
    """
    from hcs.assays import get_assay
    from hcs.detect import detect
    from hcs.engine.processor import nucleus_channel_index
    from hcs.io.omezarr import open_plate
    from hcs.train.truth import read_truth

    spec = get_assay(assay)
    truth = read_truth(sim_dir)
    mpath = Path(sim_dir) / MEMBERS_FILE
    if not mpath.is_file():
        raise InputError(f"{sim_dir}: no {MEMBERS_FILE} (needed to match detections to objects)")
    members = pd.read_parquet(mpath, columns=["well", "field", "cell_id", "nucleus_x",
                                              "nucleus_y"])
    for col in ("nucleus_x", "nucleus_y"):
        if col not in truth:
            raise InputError(f"{sim_dir}: the truth table lacks {col}")
    pl = open_plate(plate)
    px = None if pl.pixel_size_um is None else float(pl.pixel_size_um[1])
    nuc = nucleus_channel_index(tuple(pl.channels), nucleus_channel)
    by_field = dict(tuple(members.groupby(["well", "field"], sort=False)))
    rows, n_unmatched, n_missed = [], 0, 0
    groups = truth.groupby(["well", "field"], sort=False)
    for k, ((well, fld), objs) in enumerate(groups):
        if well not in pl.wells or int(fld) not in pl.fields(str(well)):
            raise InputError(f"{plate}: well {well} field {fld} of the truth is not in the plate")
        plane = np.asarray(pl.field(str(well), int(fld)).isel(t=0, c=nuc).values).max(axis=0)
        det = detect(plane, method=detector, pixel_size_um=px)
        frame = det.to_frame()
        objs = objs.reset_index(drop=True)
        mem = by_field.get((well, fld), members.iloc[:0])
        obj, primary = label_detections(det.boxes, frame[["x", "y"]].to_numpy(float), objs, mem)
        n_unmatched += int((obj < 0).sum())
        n_missed += len(objs) - len(np.unique(obj[obj >= 0]))
        m = obj >= 0
        cls = objs["label"].to_numpy(object)[obj[m]]
        label = np.where(primary[m] | (spec.extra_nucleus_class is None), cls,
                         spec.extra_nucleus_class or "")
        rows.append(pd.DataFrame({
            "well": well, "field": int(fld), "source": f"{well}/{int(fld)}",
            "x0": frame["bbox_x0"].to_numpy()[m], "y0": frame["bbox_y0"].to_numpy()[m],
            "x1": frame["bbox_x1"].to_numpy()[m], "y1": frame["bbox_y1"].to_numpy()[m],
            "label": label, "object_id": objs["cell_id"].to_numpy()[obj[m]],
            "object_class": cls, "primary": primary[m],
            "det_score": frame["det_score"].to_numpy()[m],
        }))
        if log is not None and ((k + 1) % 25 == 0 or k + 1 == groups.ngroups):
            log(f"detected {k + 1}/{groups.ngroups} fields "
                f"({sum(len(r) for r in rows)} matched detections)")
    table = pd.concat(rows, ignore_index=True)
    if table.empty:
        raise InputError(f"{plate}: the detector found no cell inside any truth object")
    if log is not None:
        log(f"{len(table)} detections matched to {len(truth) - n_missed} of {len(truth)} truth "
            f"objects ({n_missed} objects without a detection); {n_unmatched} detections "
            "outside every truth box dropped")
    return table
