"""A run folder from a simulation (``hcs simulate`` + ``hcs convert``), for tests and docs.

The truth objects of the simulation become the ``cells/`` tables of a run whose "classifier" is
the true class blurred by noise: the class probabilities are ``softmax(margin * onehot(true) +
noise * N(0, 1))``, so confidences spread and a few cells are misclassified, as with a real model.
``wells.parquet`` and ``stats.parquet`` are then made by the real :mod:`hcs.aggregate` and
:func:`hcs.stats.run_stats`. This stands in for ``hcs run`` until the engine writes run folders.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.aggregate import counts_from_cells, well_table, write_table
from hcs.assays import get_assay
from hcs.errors import InputError
from hcs.layouts import LAYOUT_COLUMNS


def simulated_cells(truth: pd.DataFrame, classes: list[str], margin: float = 3.0,
                    noise: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Cells-contract table from the simulator's ``truth/cells.parquet`` (see module doc)."""
    rng = np.random.default_rng(seed)
    idx = pd.Categorical(truth["class"], categories=classes).codes
    if (idx < 0).any():
        raise InputError(f"truth classes {sorted(set(truth['class']) - set(classes))} are not"
                         f" classes of the assay ({classes})")
    logits = margin * np.eye(len(classes))[idx] + noise * rng.standard_normal((len(truth),
                                                                                len(classes)))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = truth[["plate", "well", "row", "col", "field", "cell_id", "x", "y", "bbox_x0",
                 "bbox_y0", "bbox_x1", "bbox_y1"]].copy()
    out["area"] = ((truth["bbox_x1"] - truth["bbox_x0"]) * (truth["bbox_y1"] - truth["bbox_y0"])
                   * np.pi / 4).round().astype("int64")
    out["det_score"] = rng.uniform(0.7, 1.0, len(truth)).round(4)
    out["assay"] = truth["assay"]
    out["model"] = "simulated"
    for i, c in enumerate(classes):
        out[f"p_{c}"] = p[:, i]
    out["label"] = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
    out["confidence"] = p.max(axis=1)
    out["qc_border"] = truth["touches_border"].astype(bool)
    return out


def simulated_run(sim_dir: str | Path, plate: str | Path, out: str | Path,
                  noise: float = 1.0, seed: int = 0) -> Path:
    """Write a run folder (``run.json``, ``cells/``, ``wells.parquet``, ``stats.parquet``) from
    a simulation folder and its converted plate. Returns ``out``."""
    from hcs import __version__
    from hcs.stats import run_stats

    sim_dir, out = Path(sim_dir), Path(out)
    params = json.loads((sim_dir / "simulation.json").read_text())
    assay = get_assay(params["assay"])
    truth = pd.read_parquet(sim_dir / "truth" / "cells.parquet")
    cells = simulated_cells(truth, list(assay.classes), noise=noise, seed=seed)
    for (well, field), grp in cells.groupby(["well", "field"]):
        write_table(grp.reset_index(drop=True), out / "cells" / str(well) / f"{field}.parquet",
                    overwrite=True)
    truth_wells = pd.read_parquet(sim_dir / "truth" / "wells.parquet")
    layout = truth_wells[[c for c in LAYOUT_COLUMNS if c in truth_wells]].copy()
    layout.attrs["geometry"] = tuple(params["plate"])
    wells = well_table(counts_from_cells(cells, assay), assay, layout=layout)
    write_table(wells, out / "wells.parquet", overwrite=True)
    write_table(run_stats(wells), out / "stats.parquet", overwrite=True)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    run = {
        "plate": str(Path(plate).resolve()), "plate_name": params.get("plate_name"),
        "plate_format": int(np.prod(params["plate"])),
        "instrument": f"simulated {params.get('format')} export",
        "assay": assay.name,
        "model": {"name": "simulated", "sha256": None,
                  "training_data": "none: truth labels blurred by Gaussian logit noise"},
        "detector": "simulation truth boxes",
        "parameters": {"noise": noise, "seed": seed, "simulation_seed": params.get("seed")},
        "hcs_version": __version__, "started": now, "finished": now,
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    return out
