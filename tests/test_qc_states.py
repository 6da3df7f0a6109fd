"""Issue 18 items 2 and 5: well states in QC, QC statuses from values, normalised readouts and
bounded dose-response fits of frequencies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcs.aggregate import well_table
from hcs.stats import run_stats
from hcs.stats.dose import fit_4pl, logistic4
from hcs.stats.qc import bscores, plate_qc


def _layout() -> pd.DataFrame:
    rows = []
    for r in range(8):
        for c in range(12):
            role = "negative_control" if c == 0 else "positive_control" if c == 11 else "sample"
            rows.append({"well": f"{'ABCDEFGH'[r]}{c + 1:02d}", "condition": role, "role": role})
    lay = pd.DataFrame(rows)
    lay.attrs["geometry"] = (8, 12)
    return lay


def half_imaged(z_bad: bool = False) -> pd.DataFrame:
    """A 96-well livedead layout of which only rows A-D (48 wells) were imaged.

    Interior imaged wells have ~150 cells, edge wells ~140; controls differ in the dead share
    (negative 0.1, positive 0.8) unless ``z_bad`` (then they overlap).
    """
    rng = np.random.default_rng(1)
    rows = []
    for r in range(4):
        for c in range(12):
            edge = r == 0 or c in (0, 11)
            n = int(140 if edge else 150) + int(rng.integers(-3, 4))
            share = 0.1 if c == 0 else 0.8 if c == 11 else 0.3
            if z_bad and c in (0, 11):
                share = 0.4 + rng.normal(0, 0.1)
            dead = int(round(n * min(max(share + rng.normal(0, 0.01), 0), 1)))
            rows.append({"well": f"{'ABCD'[r]}{c + 1:02d}", "n_live": n - dead, "n_dead": dead})
    return well_table(pd.DataFrame(rows), "livedead", layout=_layout())


def test_half_imaged_plate_qc_counts_imaged_wells_only():
    w = half_imaged()
    assert len(w) == 96 and int(w["missing"].sum()) == 48  # rows E-H: not imaged
    q = plate_qc(w, w[["freq_dead"]], (8, 12)).set_index("readout")
    cnt = q.loc["n_detected"]
    assert cnt["n_imaged"] == 48 and cnt["n_plate_wells"] == 96
    # 48 never-imaged wells with 0 cells would all be "outliers" (or drag the median to 0)
    assert cnt["n_outliers"] == 0 and cnt["outlier_wells"] == ""
    img = w[~w["missing"]]
    edge = (img.row == 0) | (img.col == 0) | (img.row == 7) | (img.col == 11)
    expected = img.loc[edge, "n_detected"].median() - img.loc[~edge, "n_detected"].median()
    assert cnt["edge_effect"] == pytest.approx(expected) and expected == pytest.approx(-10, abs=4)
    # B-scores of the imaged wells only (the not-imaged half is no row of zeros)
    b = bscores(img["n_detected"].to_numpy(float), img["row"].to_numpy(), img["col"].to_numpy())
    assert cnt["n_bscore_outliers"] == int((np.abs(b) > 3).sum())
    assert q.loc["freq_dead", "status"] == "good"


def test_comparisons_count_not_imaged_apart_from_flagged():
    w = half_imaged()
    w.loc[w.well == "B05", ["n_detected", "n_analysed", "n_live", "n_dead"]] = 0
    w.loc[w.well == "B05", "no_cells"] = True
    from hcs.aggregate import _finish

    s = run_stats(_finish(w))
    row = s[(s.kind == "comparison") & (s.readout == "freq_dead")
            & (s.condition == "sample")].iloc[0]
    # sample wells: 10 columns x 8 rows; rows E-H (40) not imaged, B05 imaged but flagged
    assert (row["n"], row["n_excluded"], row["n_not_imaged"]) == (39, 1, 40)
    lay = _layout()
    lay.loc[lay.well.isin(["H02", "H03"]), ["condition", "role"]] = ["ghost", "sample"]
    g = run_stats(well_table(pd.DataFrame({"well": ["A01", "A02", "A12", "B01", "B12"],
                                           "n_live": 5, "n_dead": 5}), "livedead", layout=lay))
    ghost = g[(g.kind == "comparison") & (g.condition == "ghost")].iloc[0]
    assert ghost["status"] == "not_imaged" and ghost["n_not_imaged"] == 2


def test_imaged_but_empty_well_is_an_outlier_not_imaged_is_not():
    w = half_imaged()
    w.loc[w.well == "B05", ["n_detected", "n_analysed", "n_live", "n_dead"]] = 0
    w.loc[w.well == "B05", "no_cells"] = True
    q = plate_qc(w, w[["freq_dead"]], (8, 12)).set_index("readout")
    assert q.loc["n_detected", "outlier_wells"] == "B05"


def test_failing_controls_are_unusable_with_the_numbers():
    w = half_imaged(z_bad=True)
    s = run_stats(w)
    q = s[(s.kind == "qc") & (s.readout == "freq_dead")].iloc[0]
    assert q["z_prime"] < 0 and q["status"] == "unusable"
    assert f"Z' = {q['z_prime']:.3g} < 0: unusable" in q["message"]
    assert q["ssmd_status"] == "unusable" and abs(q["ssmd"]) < 2
    good = run_stats(half_imaged())
    g = good[(good.kind == "qc") & (good.readout == "freq_dead")].iloc[0]
    assert g["z_prime"] >= 0.5 and g["status"] == "good" and g["ssmd_status"] == "good"


def test_marginal_z_prime():
    w = pd.DataFrame({"plate": "p", "well": [f"A{i:02d}" for i in range(1, 7)],
                      "row": 0, "col": range(6), "usable": True,
                      "role": ["positive_control"] * 3 + ["negative_control"] * 3,
                      "x": [9.0, 10, 11, 0, 1, 2]})
    q = plate_qc(w, w[["x"]]).iloc[0]
    assert q["z_prime"] == pytest.approx(1 / 3) and q["status"] == "marginal"


def test_percent_of_control_and_npi_by_hand():
    lay = pd.DataFrame({"well": ["A01", "A02", "A03", "A04", "A05", "A06"],
                        "condition": ["neg", "neg", "pos", "pos", "drug", "drug"],
                        "role": ["negative_control"] * 2 + ["positive_control"] * 2
                        + ["sample"] * 2})
    counts = pd.DataFrame({"well": lay["well"], "n_live": [80, 70, 10, 30, 50, 60],
                           "n_dead": [20, 30, 90, 70, 50, 40]})
    w = well_table(counts, "livedead", layout=lay).set_index("well")
    # dead share: neg 0.2, 0.3 (mean 0.25); pos 0.9, 0.7 (mean 0.8); drug 0.5, 0.4
    assert w.loc["A05", "poc_dead"] == pytest.approx(100 * 0.5 / 0.25)
    assert w.loc["A06", "poc_dead"] == pytest.approx(160.0)
    assert w.loc["A05", "npi_dead"] == pytest.approx(100 * (0.25 - 0.5) / (0.25 - 0.8))
    assert w.loc["A01", "npi_dead"] == pytest.approx(100 * 0.05 / -0.55)
    assert w.loc["A03", "npi_dead"] == pytest.approx(100 * (0.25 - 0.9) / (0.25 - 0.8))
    assert w.loc["A05", "poc_n_detected"] == pytest.approx(100.0)
    s = run_stats(w.reset_index(), readouts=["npi_dead", "poc_dead"])
    row = s[(s.kind == "comparison") & (s.readout == "npi_dead") & (s.condition == "drug")]
    drug = np.mean([100 * (0.25 - v) / -0.55 for v in (0.5, 0.4)])
    assert row["mean"].iloc[0] == pytest.approx(drug)


def test_not_imaged_control_does_not_enter_normalisation():
    w = half_imaged()
    neg = w[(w.role == "negative_control") & ~w.missing]
    assert w[(w.role == "negative_control") & w.missing]["poc_dead"].isna().all()
    assert neg["poc_dead"].mean() == pytest.approx(100.0)


def test_saturating_frequencies_fit_inside_0_1():
    # frequencies that reach 1 at the three highest doses and fall at the lowest: an unbounded
    # 4PL overshoots the plateau; the bounded one stays in [0, 1]
    dose = np.repeat([0.0, 0.01, 0.1, 1, 10, 100, 1000], 3)
    rng = np.random.default_rng(4)
    y = np.clip(logistic4(dose, -0.3, 1.4, 0.5, 1.0) + rng.normal(0, 0.03, dose.size), 0, 1)
    free = fit_4pl(dose, y)
    bounded = fit_4pl(dose, y, bounds=(0, 1))
    assert free["bottom"] < 0 or free["top"] > 1
    assert 0 <= bounded["bottom"] <= bounded["top"] <= 1
    assert bounded["bounds"] == "[0, 1]" and "at the bound" in bounded["message"]
    assert bounded["top_ci_high"] <= 1 and bounded["bottom_ci_low"] >= 0


def test_dose_response_bounds_frequencies_only():
    lay = pd.DataFrame({"well": [f"A{i:02d}" for i in range(1, 15)] +
                        [f"B{i:02d}" for i in range(1, 15)]})
    doses = np.tile(np.repeat([0.0, 0.01, 0.1, 1, 10, 100, 1000], 2), 2)
    lay["condition"] = [f"d{d:g}" for d in doses]
    lay["construct"], lay["dose"], lay["dose_unit"] = "drug", doses, "uM"
    lay["role"] = np.where(doses == 0, "negative_control", "sample")
    n = 200
    dead = np.round(n * np.clip(logistic4(doses, -0.2, 1.3, 2.0, 0.6), 0, 1)).astype(int)
    counts = pd.DataFrame({"well": lay["well"], "n_live": n - dead, "n_dead": dead})
    w = well_table(counts, "livedead", layout=lay)
    s = run_stats(w, readouts=["dead", "n_detected"])
    d = s[s.kind == "dose_response"].set_index("readout")
    assert d.loc["freq_dead", "bounds"] == "[0, 1]"
    assert d.loc["freq_dead", "status"] == "ok"
    assert 0 <= d.loc["freq_dead", "bottom"] and d.loc["freq_dead", "top"] <= 1
    assert "bottom at the bound 0" in d.loc["freq_dead", "message"]
    assert pd.isna(d.loc["n_detected", "bounds"]) or d.loc["n_detected", "bounds"] == ""
    logit = run_stats(w, readouts=["dead"], transform="logit")
    assert logit.loc[logit.kind == "dose_response", "bounds"].fillna("").eq("").all()


# --- the report ---------------------------------------------------------------------------------


def _report(folder, wells: pd.DataFrame) -> dict:
    import json

    from hcs.aggregate import write_table
    from hcs.report import load_run
    from hcs.report.builder import build_context

    folder.mkdir(parents=True, exist_ok=True)
    write_table(wells, folder / "wells.parquet")
    write_table(run_stats(wells), folder / "stats.parquet")
    (folder / "run.json").write_text(json.dumps({"assay": "livedead", "plate_format": 96}))
    ctx = build_context(load_run(folder), gallery=False)
    ctx["figs"] = {k: json.loads(v) for k, v in ctx["figures"].items()}
    return ctx


def _section(ctx: dict, sid: str) -> dict:
    return next(s for s in ctx["sections"] if s["id"] == sid)


def test_report_keeps_not_imaged_flagged_and_usable_apart(tmp_path):
    w = half_imaged(z_bad=True)
    w.loc[w.well == "B05", ["n_detected", "n_analysed", "n_live", "n_dead"]] = 0
    w.loc[w.well == "B05", "no_cells"] = True
    from hcs.aggregate import _finish

    w = _finish(w)
    ctx = _report(tmp_path / "run", w)
    facts = dict(_section(ctx, "summary")["blocks"][0]["items"])
    assert facts["wells imaged"] == "48 of the 96 wells of the plate"
    assert facts["layout wells not imaged"].startswith("48 ")
    assert facts["imaged wells flagged"] == "1 (no_cells 1)"
    heat = ctx["figs"]["heat-0-n_detected"]
    z = np.array(heat["data"][0]["z"], dtype=float)
    assert np.isnan(z[4:]).all() and np.isfinite(z[:4]).all()  # rows E-H grey, not 0
    hover = np.array(heat["data"][0]["customdata"], dtype=object)
    assert hover[5, 0, 5] == "not imaged (ignored)" and hover[1, 4, 5] == "no_cells"
    crosses = heat["data"][1]
    assert list(zip(crosses["x"], crosses["y"], strict=True)) == [(5, "B")]  # only B05
    counts = ctx["figs"]["qc-counts"]
    assert sum(len(t["y"]) for t in counts["data"] if t["type"] == "box") == 48
    qc = _section(ctx, "qc")
    table = next(b for b in qc["blocks"] if b["type"] == "table")
    status = table["columns"].index("Z' status")
    readout = table["columns"].index("readout")
    dead = next(r for r in table["rows"] if r[readout]["text"] == "dead")
    assert dead[status]["text"] == "unusable"
    assert any("< 0: unusable" in b.get("text", "") for b in qc["blocks"])
    norm = _section(ctx, "normalised")["blocks"][1]
    assert {"% of control", "NPI %"} <= set(norm["columns"])


def test_report_shows_a_failed_fit_with_its_points_and_reason(tmp_path):
    lay = pd.DataFrame({"well": [f"A{i:02d}" for i in range(1, 13)] +
                        [f"B{i:02d}" for i in range(1, 13)]})
    doses = np.tile(np.repeat([0.0, 0.1, 1, 10, 100, 1000], 2), 2)
    lay["condition"] = [f"d{d:g}" for d in doses]
    lay["construct"], lay["dose"], lay["dose_unit"] = "drug", doses, "uM"
    lay["role"] = np.where(doses == 0, "negative_control", "sample")
    n = 200  # a step: 0 up to 1 uM, then 30 %, then all dead: the 4PL cannot converge
    dead = np.round(n * np.clip(logistic4(doses, -0.2, 1.3, 2.0, 1.0), 0, 1)).astype(int)
    w = well_table(pd.DataFrame({"well": lay["well"], "n_live": n - dead, "n_dead": dead}),
                   "livedead", layout=lay)
    ctx = _report(tmp_path / "run", w)
    fig = ctx["figs"]["dose-0"]
    pts = [t for t in fig["data"] if t.get("mode") == "markers" and t["name"] == "dead"]
    assert pts and pts[0].get("visible", True) is True and len(pts[0]["y"]) == 24
    notes = " ".join(a["text"] for a in fig["layout"].get("annotations", []))
    assert "dead: no_convergence" in notes and "did not converge" in notes


def test_hcs_stats_cli_tests_npi_readout(tmp_path):
    import subprocess
    import sys

    from hcs.aggregate import write_table

    write_table(half_imaged(), tmp_path / "wells.parquet")
    r = subprocess.run([sys.executable, "-m", "hcs", "stats", str(tmp_path / "wells.parquet"),
                        "--readout", "npi_dead,poc_dead"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = pd.read_parquet(tmp_path / "stats.parquet")
    comp = s[(s.kind == "comparison") & (s.condition == "positive_control")].set_index("readout")
    assert comp.loc["npi_dead", "mean"] == pytest.approx(100.0)  # the positive control: 100 %
    assert set(comp.index) == {"npi_dead", "poc_dead"}
