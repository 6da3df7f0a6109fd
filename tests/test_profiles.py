"""``hcs export profiles`` (issue 16): the pycytominer / CytoTable convention, checked with
pycytominer itself (aggregate, annotate, normalize)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hcs.engine.run import run_plate
from hcs.synth.fixtures import write_disc_plate

pycytominer = pytest.importorskip("pycytominer", reason="pycytominer is in the test extra")

WELLS = ["A01", "A02", "B01", "B02"]


def _hcs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True)


def test_profiles_work_with_pycytominer(tmp_path, scheduler) -> None:
    plate, truth = write_disc_plate(tmp_path / "p", WELLS, fields=2, size=160, nuclei=4, seed=7)
    run = tmp_path / "run"
    assert run_plate(plate, None, None, run, scheduler=scheduler, progress=False,
                     labels=False).ok
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,ctrl,negative_control\nA02,ctrl,"
                      "negative_control\nB01,drug,sample\nB02,drug,sample\n")
    assert _hcs("aggregate", str(run), "-l", str(layout)).returncode == 0
    r = _hcs("export", "profiles", str(run), "--out", str(tmp_path / "cells.parquet"))
    assert r.returncode == 0, r.stderr
    r = _hcs("export", "profiles", str(run), "--out", str(tmp_path / "wells.parquet"),
             "--level", "well")
    assert r.returncode == 0, r.stderr
    cells = pd.read_parquet(tmp_path / "cells.parquet")
    wells = pd.read_parquet(tmp_path / "wells.parquet")
    assert len(cells) == len(truth) and len(wells) == len(WELLS)
    assert cells.columns[:4].tolist() == ["Metadata_Plate", "Metadata_Well", "Metadata_Site",
                                          "Metadata_ObjectNumber"]
    assert {"Metadata_condition", "Metadata_role", "Metadata_x"} <= set(cells.columns)
    feats = [c for c in cells.columns if not c.startswith("Metadata_")]
    assert feats and all(c.startswith("Nuclei_") for c in feats)
    # the ObjectNumber is the cell table's cell_id
    a01 = pd.read_parquet(run / "cells" / "A01" / "0.parquet")
    sel = cells[(cells.Metadata_Well == "A01") & (cells.Metadata_Site == 0)]
    assert sel["Metadata_ObjectNumber"].tolist() == a01["cell_id"].tolist()
    np.testing.assert_array_equal(sel["Nuclei_AreaShape_Area"], a01["Nuclei_AreaShape_Area"])

    # pycytominer: its aggregate of our cells is our well level
    agg = pycytominer.aggregate(cells, strata=["Metadata_Plate", "Metadata_Well"],
                                features="infer", operation="median")
    agg = agg.sort_values("Metadata_Well").reset_index(drop=True)
    for c in feats:
        np.testing.assert_allclose(agg[c].to_numpy(), wells[c].to_numpy(), err_msg=c)
    assert wells["Metadata_Object_Count"].tolist() == truth.groupby("well").size().tolist()
    platemap = pd.read_csv(layout).rename(columns={"condition": "treatment"})
    ann = pycytominer.annotate(agg, platemap=platemap, join_on=["Metadata_well",
                                                                "Metadata_Well"])
    assert ann["Metadata_treatment"].tolist() == ["ctrl", "ctrl", "drug", "drug"]
    norm = pycytominer.normalize(ann, features="infer", method="standardize",
                                 samples="Metadata_role == 'negative_control'")
    ctrl = norm[norm["Metadata_role"] == "negative_control"]["Nuclei_AreaShape_Area"]
    assert ctrl.mean() == pytest.approx(0.0, abs=1e-9)

    r = _hcs("export", "profiles", str(run), "--out", str(tmp_path / "cells.parquet"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'cells.parquet'} exists (use --overwrite to replace it)"]
    r = _hcs("export", "profiles", str(run), "--out", str(tmp_path / "x.parquet"), "--level",
             "plate")
    assert r.returncode == 2 and "--level" in r.stderr and not (tmp_path / "x.parquet").exists()
