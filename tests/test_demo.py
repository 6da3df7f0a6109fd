"""``hcs demo``: the simulated ARHGAP36 screen analysed by the shipped model, against its truth.

The default run does the whole demo (simulate -> convert -> run -> aggregate -> stats -> truth
recovery -> report) at a reduced size on an in-process Dask cluster, checks the recovered
per-well frequencies against ``truth/wells.parquet`` with numbers computed here independently,
and checks what re-running skips and re-does. The full-size demo (the README's ``hcs demo``, on
the embedded local cluster) is the ``slow`` test; .ci/run runs it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hcs.analyze import DEMOS, run_demo
from hcs.cli import app
from hcs.params import RunParams

REPO = Path(__file__).resolve().parents[1]
CIC_MODEL = REPO / "models" / "cic-sim"
LIVEDEAD_MODEL = REPO / "models" / "livedead-sim"
MITOSIS_MODEL = REPO / "models" / "mitosis-sim-xyz"

#: Reduced demo: 4 conditions x 4 wells x one 540 px field (~30 objects per well).
REDUCED = {"wells_per_condition": 4, "fields": 1, "size": 540}


def _needs(model: Path) -> None:
    if not (model / "model.yaml").is_file() and not (model / "ensemble.yaml").is_file():
        pytest.fail(f"the shipped model {model.name} is missing from models/")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, scheduler):
    _needs(CIC_MODEL)
    out = tmp_path_factory.mktemp("demo") / "demo"
    lines: list[str] = []
    t0 = time.perf_counter()
    res = run_demo(out, "cic", **REDUCED, run=RunParams(scheduler=scheduler), progress=False,
                   log=lines.append)
    return res, lines, time.perf_counter() - t0


def _truth_and_estimate(folder: Path) -> pd.DataFrame:
    truth = pd.read_parquet(folder / "sim" / "truth" / "wells.parquet")
    est = pd.read_parquet(folder / "run" / "wells.parquet")
    # true frequencies straight from the simulator's object counts (F-category excluded)
    analysed = truth["n_total"] - truth["n_f_category"]
    t = pd.DataFrame({"well": truth["well"], "true_all_cic": truth["n_cic"] / analysed,
                      "true_non_cic": truth["n_non_cic"] / analysed})
    return t.merge(est, on="well")


def test_demo_reduced_recovers_the_truth(demo):
    res, lines, seconds = demo
    folder = res.analysis.folder
    assert res.analysis.ran == ["simulate", "convert", "run", "aggregate", "stats",
                                "truth recovery", "report"]
    rec = json.loads((folder / "demo.json").read_text())
    assert rec == res.recovery and rec["reference"] == "control"
    m = _truth_and_estimate(folder)
    assert len(m) == 16
    # demo.json's figures, recomputed here from the two wells tables
    for readout, true_col in (("all_cic", "true_all_cic"), ("non_cic", "true_non_cic")):
        x, y = m[true_col].to_numpy(float), m[f"freq_{readout}"].to_numpy(float)
        r = float(np.corrcoef(x, y)[0, 1])
        mae = float(np.abs(y - x).mean())
        assert rec["frequencies"][readout]["r"] == pytest.approx(r, abs=1e-4)
        assert rec["frequencies"][readout]["mae"] == pytest.approx(mae, abs=1e-4)
    # the estimates track the truth: stated tolerances for this reduced plate
    freq = rec["frequencies"]
    assert freq["all_cic"]["r"] >= 0.7, freq["all_cic"]
    assert freq["all_cic"]["mae"] <= 0.06, freq["all_cic"]
    assert freq["cells"]["r"] >= 0.75, freq["cells"]
    # every truncation lowers total CICs (by 0.085-0.13) in the estimate too; 4 wells per
    # condition are too few for significance (the slow full-size test checks that)
    comp = pd.DataFrame(rec["comparisons"]).query("readout == 'all_cic'")
    assert len(comp) == 3 and (comp["expected_diff"] <= -0.08).all()
    assert (comp["est_diff"] < 0).all(), comp[["condition", "est_diff"]]
    assert rec["wrong_direction_list"] == []
    # the summary is in the report (provenance table, from run.json)
    run = json.loads((folder / "run" / "run.json").read_text())
    assert run["truth_recovery"]["reference"] == "control"
    html = res.analysis.report.read_text()
    assert "truth_recovery.per_well_vs_truth.all_cic" in html
    assert seconds < 120, f"reduced demo took {seconds:.0f} s"


def test_demo_rerun_skips_current_stages(demo, scheduler):
    res, _, _ = demo
    folder = res.analysis.folder
    kw = dict(**REDUCED, run=RunParams(scheduler=scheduler), progress=False)
    again = run_demo(folder, "cic", log=lambda _: None, **kw)
    assert again.analysis.ran == []
    assert again.recovery == res.recovery
    # a deleted output: that stage again; its bytes are the same, so nothing after it
    (folder / "demo.json").unlink()
    again = run_demo(folder, "cic", log=lambda _: None, **kw)
    assert again.analysis.ran == ["truth recovery"]
    # a changed report parameter: the report only
    lines: list[str] = []
    again = run_demo(folder, "cic", gallery=False, log=lines.append, **kw)
    assert again.analysis.ran == ["report"]
    assert "[7] report: running (parameters changed (gallery))" in lines
    assert "Cell gallery" not in again.analysis.report.read_text()


def test_demo_cli_reduced(scheduler, tmp_path):
    """``hcs demo`` (README), at a small size; an assay without a demo is one clear error."""
    _needs(CIC_MODEL)
    out = tmp_path / "cic"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--wells-per-condition", "2",
                                 "--size", "256", "--scheduler", scheduler, "--no-gallery",
                                 "-q"])
    assert r.exit_code == 0, r.output
    assert f"report: {out / 'report.html'}" in r.output
    assert "truth recovery (8 wells, reference 'control')" in r.output
    assert "all_cic" in r.output and (out / "demo.json").is_file()
    r = CliRunner().invoke(app, ["demo", "--assay", "cancer", "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "no demo for assay 'cancer'" in r.output


def test_demo_cli_livedead_reduced(scheduler, tmp_path):
    """``hcs demo --assay livedead --out DIR`` (README), at a small size."""
    _needs(LIVEDEAD_MODEL)
    out = tmp_path / "ld"
    r = CliRunner().invoke(app, ["demo", "--assay", "livedead", "--out", str(out),
                                 "--wells-per-condition", "1", "--size", "256",
                                 "--scheduler", scheduler, "--no-gallery", "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "demo.json").read_text())
    assert rec["assay"] == "livedead" and rec["reference"] == "DMSO"
    assert set(rec["frequencies"]) == {"live", "dead", "cells", "analysed_cells"}
    assert rec["dose_response"][0]["construct"] == "doxorubicin"


def test_demo_cli_mitosis_reduced(scheduler, tmp_path):
    """``hcs demo --assay mitosis --out DIR`` (README): z-stacks through the x/y/z ensemble."""
    _needs(MITOSIS_MODEL)
    out = tmp_path / "mit"
    r = CliRunner().invoke(app, ["demo", "--assay", "mitosis", "--out", str(out),
                                 "--wells-per-condition", "2", "--size", "384",
                                 "--scheduler", scheduler, "--no-gallery", "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "demo.json").read_text())
    assert rec["assay"] == "mitosis" and rec["reference"] == "DMSO"
    assert {"mitotic", "prometaphase_metaphase"} <= set(rec["frequencies"])
    from hcs.io.omezarr import open_plate

    assert open_plate(out / "plate.ome.zarr").shape[2] == DEMOS["mitosis"].z_planes
    cells = pd.concat(pd.read_parquet(f) for f in (out / "run" / "cells").rglob("*.parquet"))
    # every view won for some cells: the side views are used on the z-stack
    assert set(cells["view_mitotic"]) | set(cells["view_stage"]) == {"z", "y", "x"}
    # per well, the mitotic fraction follows the truth (DMSO 15%, nocodazole 30% mitotic)
    assert rec["frequencies"]["mitotic"]["mae"] < 0.08


@pytest.mark.slow
def test_demo_full_size_mitosis(tmp_path):
    """``hcs demo --assay mitosis``: the arrest screen on z-stacks; the mitotic increase and the
    prometaphase/metaphase increase of nocodazole are recovered."""
    _needs(MITOSIS_MODEL)
    r = CliRunner().invoke(app, ["demo", "--assay", "mitosis", "--out",
                                 str(tmp_path / "demo"), "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert rec["frequencies"]["mitotic"]["r"] >= 0.9
    assert rec["frequencies"]["prometaphase_metaphase"]["r"] >= 0.9
    assert rec["recovered_all"], (rec["missed_list"], rec["wrong_direction_list"])
    shutil.rmtree(tmp_path / "demo")  # 3.2 GB of z-stacks: free the disk for the next tests


@pytest.mark.slow
def test_demo_full_size(tmp_path):
    """The README's ``hcs demo``: default size, embedded local cluster; effects recovered."""
    _needs(CIC_MODEL)
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "-q"])
    seconds = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "demo" / "demo.json").read_text())
    spec = DEMOS["cic"]
    assert rec["simulation"]["size"] == spec.size
    assert rec["built_in_shown_by_truth"] >= 8
    assert rec["recovered_all"], (rec["missed_list"], rec["wrong_direction_list"])
    assert rec["frequencies"]["all_cic"]["r"] >= 0.8
    print(f"full-size demo: {seconds:.0f} s")


@pytest.mark.slow
def test_demo_full_size_livedead(tmp_path):
    """``hcs demo --assay livedead``: the dose series; dead fraction tracks the truth."""
    _needs(LIVEDEAD_MODEL)
    r = CliRunner().invoke(app, ["demo", "--assay", "livedead", "--out",
                                 str(tmp_path / "demo"), "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert rec["frequencies"]["dead"]["r"] >= 0.9
    assert rec["recovered_all"], (rec["missed_list"], rec["wrong_direction_list"])


def test_builtin_comparisons_classifies_each_comparison():
    """Hand-made truth and statistics: recovered, missed, wrong direction and spurious."""
    from hcs.analyze.recovery import builtin_comparisons

    rows = []
    # (condition, expected dead fraction, dead cells drawn per 100): B's counts equal DMSO's
    for i, (cond, p_dead, dead) in enumerate([("DMSO", 0.1, 10)] * 4 + [("drug A", 0.5, 50)] * 4
                                             + [("drug B", 0.11, 10)] * 4
                                             + [("drug C", 0.3, 30)] * 4):
        n_dead = dead + (i % 2)  # a little replicate variation
        rows.append({"plate": "p", "well": f"A{i + 1:02d}", "condition": cond,
                     "role": "negative_control" if cond == "DMSO" else "sample",
                     "n_live": 100 - n_dead, "n_dead": n_dead,
                     "expected_freq_live": 1 - p_dead, "expected_freq_dead": p_dead})
    truth = pd.DataFrame(rows)

    def stat(cond: str, readout: str, diff: float, p_adj: float) -> dict:
        return {"kind": "comparison", "plate": "all", "readout": f"freq_{readout}",
                "condition": cond, "diff": diff, "p_adj": p_adj}

    est = pd.DataFrame([stat("drug A", "dead", 0.35, 1e-6), stat("drug A", "live", -0.35, 1e-6),
                        stat("drug B", "dead", 0.05, 0.01), stat("drug B", "live", -0.05, 0.01),
                        stat("drug C", "dead", -0.1, 0.02), stat("drug C", "live", 0.1, 0.3)])
    comp = builtin_comparisons(truth, est, "livedead", "DMSO").set_index(
        ["readout", "condition"])
    assert comp.loc[("dead", "drug A"), "expected_diff"] == pytest.approx(0.4)
    assert comp.loc[("dead", "drug A"), ["built_in", "truth_significant", "recovered"]].all()
    assert comp.loc[("dead", "drug B"), "small_recovered"]  # expected +0.01: not built in
    assert not comp.loc[("dead", "drug B"), "built_in"]
    assert comp.loc[("dead", "drug C"), "wrong_direction"]
    assert not comp.loc[("live", "drug C"), "recovered"]  # right direction, not significant
    assert comp["truth_significant"].sum() == 4  # drugs A and C, both readouts
