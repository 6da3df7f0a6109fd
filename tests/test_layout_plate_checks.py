"""Issue 15 item 10: a layout that does not fit the run's plate is an error naming the well
and line; NaN or infinite readouts are counted and flagged, never silently dropped or called
``zero_variance``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.aggregate import write_table
from hcs.plate import parse_well
from hcs.stats.run import run_stats, stats_for_run
from hcs.synth.fixtures import write_disc_plate

WELLS = ["A01", "A02", "B01", "B02"]


def _hcs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True,
                          timeout=300)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 96-well plate with wells A01..B02 and a run folder of hand-made cell tables."""
    tmp = tmp_path_factory.mktemp("lay")
    plate, _ = write_disc_plate(tmp / "p", WELLS, fields=1, size=64, seed=0)
    run = tmp / "run"
    rng = np.random.default_rng(0)
    for w in WELLS:
        labels = rng.choice(["live", "dead"], 20)
        write_table(pd.DataFrame({"plate": "P", "well": w, "label": labels}),
                    run / "cells" / w / "0.parquet")
    (run / "run.json").write_text(json.dumps({"plate": str(plate.resolve()),
                                              "plate_name": "P", "assay": "livedead"}))
    return run


def _layout(path: Path, rows: list[str]) -> Path:
    path.write_text("well,condition,role\n" + "\n".join(rows) + "\n")
    return path


def test_layout_well_outside_the_plate_names_well_and_line(run_dir, tmp_path):
    lay = _layout(tmp_path / "l.csv", ["A01,ctrl,negative_control", "A02,ctrl,negative_control",
                                       "B01,drug,", "P24,drug,"])
    before = _tree(run_dir)
    res = _hcs("aggregate", str(run_dir), "--layout", str(lay), "--out",
               str(tmp_path / "w.parquet"))
    assert res.returncode == 2
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith(f"error: {lay}:5: well P24 is outside the 8 x 12 plate ")
    assert not (tmp_path / "w.parquet").exists() and _tree(run_dir) == before
    # hcs stats on the run's wells with such a layout: the same refusal
    wells = tmp_path / "run"
    wells.mkdir()
    (wells / "run.json").write_text((run_dir / "run.json").read_text())
    ok = _layout(tmp_path / "ok.csv", ["A01,ctrl,negative_control", "A02,ctrl,negative_control",
                                       "B01,drug,", "B02,drug,"])
    res = _hcs("aggregate", str(run_dir), "--layout", str(ok), "--out",
               str(wells / "wells.parquet"))
    assert res.returncode == 0, res.stderr
    res = _hcs("stats", str(wells), "--layout", str(lay))
    assert res.returncode == 2 and f"{lay}:5: well P24 is outside the 8 x 12" in res.stderr
    assert not (wells / "stats.parquet").exists()


def test_layout_sharing_no_well_with_the_plate_is_an_error(run_dir, tmp_path):
    lay = _layout(tmp_path / "l.csv", ["G11,ctrl,negative_control", "G12,ctrl,negative_control",
                                       "H11,drug,", "H12,drug,"])
    res = _hcs("aggregate", str(run_dir), "--layout", str(lay), "--out",
               str(tmp_path / "w.parquet"))
    assert res.returncode == 2
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {lay}: the layout shares no")
    assert "layout: 4 wells, G11..H12; plate: 4 wells, A01..B02" in line
    assert not (tmp_path / "w.parquet").exists()


def _wells(values: dict[str, float]) -> pd.DataFrame:
    w = pd.DataFrame({"plate": "P", "well": list(values), "usable": True,
                      "freq_x": list(values.values()),
                      "condition": ["ctrl"] * 3 + ["drug"] * (len(values) - 3),
                      "role": ["negative_control"] * 3 + ["sample"] * (len(values) - 3)})
    w["row"] = [parse_well(x)[0] for x in w["well"]]
    w["col"] = [parse_well(x)[1] for x in w["well"]]
    return w


def test_infinite_readout_is_flagged_not_zero_variance():
    vals = {"A01": 0.10, "A02": 0.12, "A03": 0.11, "B01": 0.30, "B02": 0.32, "B03": np.inf,
            "B04": 0.31}
    stats = run_stats(_wells(vals), qc=False, dose=False)
    row = stats[(stats.kind == "comparison") & (stats.readout == "freq_x")].iloc[0]
    # the t-test runs on the 3 finite drug wells; the infinite one is counted and named
    assert row["status"] == "ok" and row["n"] == 3 and row["n_excluded"] == 1
    assert row["n_nonfinite"] == 1 and row["nonfinite_wells"] == "B03"
    assert "1 well(s) with a NaN or infinite value left out: B03" in row["message"]
    assert row["mean"] == pytest.approx(0.31)
    finite = {k: v for k, v in vals.items() if k != "B03"}
    ref = run_stats(_wells(finite), qc=False, dose=False).iloc[0]
    assert row["p"] == pytest.approx(ref["p"]) and ref["n_nonfinite"] == 0
    # NaN in a usable well likewise (a well flagged no_cells is expected to be NaN: not counted)
    w = _wells({**vals, "B03": np.nan})
    w.loc[len(w)] = {"plate": "P", "well": "C01", "usable": False, "freq_x": np.nan,
                     "condition": "drug", "role": "sample", "row": 2, "col": 0}
    row = run_stats(w, qc=False, dose=False).iloc[0]
    assert row["n_nonfinite"] == 1 and row["nonfinite_wells"] == "B03" and row["n_excluded"] == 2


def test_nonfinite_readout_visible_in_cli_and_report(tmp_path):
    vals = {"A01": 0.10, "A02": 0.12, "A03": 0.11, "B01": 0.30, "B02": 0.32, "B03": -np.inf,
            "B04": 0.31}
    run = tmp_path / "run"
    write_table(_wells(vals), run / "wells.parquet")
    res = _hcs("stats", str(run))
    assert res.returncode == 0, res.stderr
    assert ("warning: 1 usable well(s) have a NaN or infinite freq_x, left out of the tests "
            "(n_nonfinite, nonfinite_wells): B03") in res.stderr
    stats = pd.read_parquet(run / "stats.parquet")
    comp = stats[stats.kind == "comparison"]
    assert comp["n_nonfinite"].tolist() == [1] and comp["status"].tolist() == ["ok"]
    from hcs.report.sections import stats_table

    block = stats_table(stats)
    text = " ".join(b.get("text", "") for b in block["blocks"])
    assert "1 usable well(s) have a NaN or infinite readout" in text and "B03" in text
    # a stats table of an earlier hcs (no n_nonfinite column) still makes a report, no warning
    old = stats_table(stats.drop(columns=["n_nonfinite", "nonfinite_wells"]))
    assert not any("NaN" in b.get("text", "") for b in old["blocks"])


def test_stats_for_run_without_run_json_still_checks_shared_wells(tmp_path):
    run = tmp_path / "run"
    write_table(_wells({"A01": 0.1, "A02": 0.1, "A03": 0.1, "B01": 0.2}), run / "wells.parquet")
    lay = _layout(tmp_path / "l.csv", ["H12,ctrl,negative_control"])
    from hcs.errors import InputError

    with pytest.raises(InputError, match="shares no well"):
        stats_for_run(run, layout=lay)
