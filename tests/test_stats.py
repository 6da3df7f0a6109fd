"""Condition comparisons against scipy.stats, statsmodels and hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from hcs.errors import InputError
from hcs.stats import STATS_COLUMNS, adjust_pvalues, run_stats, two_sample_summary


def make_wells(groups: dict[str, list[float]], plate: str = "p1", readout: str = "freq_x",
               role_of: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for cond, vals in groups.items():
        for v in vals:
            i = len(rows)
            rows.append({"plate": plate, "well": f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}",
                         "row": i // 12, "col": i % 12, "condition": cond,
                         "role": (role_of or {}).get(cond, "sample"), "n_analysed": 100,
                         readout: v, "usable": True})
    return pd.DataFrame(rows)


REF = [0.10, 0.14, 0.12, 0.15, 0.11]
A = [0.20, 0.26, 0.18, 0.30]
B = [0.12, 0.09, 0.16, 0.13, 0.10, 0.14]


def comparisons(stats: pd.DataFrame) -> pd.DataFrame:
    return stats[stats["kind"] == "comparison"].set_index(["readout", "condition"])


@pytest.mark.parametrize("test,equal_var", [("student", True), ("welch", False)])
def test_t_tests_match_scipy(test, equal_var):
    wells = make_wells({"ctrl": REF, "A": A, "B": B})
    s = comparisons(run_stats(wells, "ctrl", test=test, correction="none"))
    for cond, vals in (("A", A), ("B", B)):
        row = s.loc[("freq_x", cond)]
        ref = sps.ttest_ind(vals, REF, equal_var=equal_var)
        ci = ref.confidence_interval(0.95)
        assert row["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-10)
        assert row["df"] == pytest.approx(ref.df, rel=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
        assert row["diff"] == pytest.approx(np.mean(vals) - np.mean(REF))
        assert row["test"] == test and row["status"] == "ok"
        assert (row["n"], row["n_ref"]) == (len(vals), len(REF))


def test_student_df_and_welch_df_by_hand():
    x, y = np.array(A), np.array(REF)
    n1, n2, v1, v2 = len(x), len(y), x.var(ddof=1), y.var(ddof=1)
    welch_df = (v1 / n1 + v2 / n2) ** 2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    r = two_sample_summary(n1, x.mean(), v1, n2, y.mean(), v2, "welch")
    assert float(r["df"]) == pytest.approx(welch_df)
    r = two_sample_summary(n1, x.mean(), v1, n2, y.mean(), v2, "student")
    assert float(r["df"]) == n1 + n2 - 2


def test_hedges_g_by_hand():
    wells = make_wells({"ctrl": REF, "A": A})
    row = comparisons(run_stats(wells, "ctrl")).loc[("freq_x", "A")]
    x, y = np.array(A), np.array(REF)
    n1, n2 = len(x), len(y)
    sp = np.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2))
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    assert row["hedges_g"] == pytest.approx(j * (x.mean() - y.mean()) / sp, rel=1e-12)
    # Welch changes the test, not the effect size
    roww = comparisons(run_stats(wells, "ctrl", test="welch")).loc[("freq_x", "A")]
    assert roww["hedges_g"] == pytest.approx(row["hedges_g"])


@pytest.mark.parametrize("method", ["fdr_bh", "holm", "bonferroni"])
def test_corrections_match_statsmodels_over_the_run(method):
    rng = np.random.default_rng(7)
    groups = {"ctrl": list(rng.normal(0.3, 0.05, 6))}
    for k, shift in enumerate([0.0, 0.02, 0.05, 0.1, 0.0, 0.03]):
        groups[f"c{k}"] = list(rng.normal(0.3 + shift, 0.05, 5))
    wells = make_wells(groups)
    wells["freq_y"] = rng.normal(0.5, 0.1, len(wells))
    s = run_stats(wells, "ctrl", correction=method)
    comp = s[s.kind == "comparison"]
    assert len(comp) == 12  # the family: 2 readouts x 6 conditions
    expected = multipletests(comp["p"].to_numpy(float), method=method)[1]
    np.testing.assert_allclose(comp["p_adj"].to_numpy(float), expected, rtol=1e-12)
    assert (comp["correction"] == method).all()


def test_bh_step_up_by_hand():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    m = len(p)
    by_hand = np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(adjust_pvalues(p, "fdr_bh"), np.minimum(by_hand, 1))
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)


def test_stars_follow_adjusted_p():
    wells = make_wells({"ctrl": REF, "A": A, "B": B})
    s = comparisons(run_stats(wells, "ctrl"))
    a = s.loc[("freq_x", "A")]
    assert 0.001 < a["p_adj"] < 0.01 and a["p"] < 0.01 and a["stars"] == "**"
    b = s.loc[("freq_x", "B")]
    assert b["p_adj"] > 0.05 and b["stars"] == "ns"


def test_degenerate_rows_have_a_status_and_stay_out_of_the_family():
    wells = make_wells({"ctrl": REF, "A": A, "one": [0.5], "flat": [0.2, 0.2, 0.2],
                        "dead": [np.nan, np.nan]})
    dead = wells["condition"] == "dead"
    wells.loc[dead, ["n_analysed", "usable"]] = [0, False]
    flat_ref = make_wells({"ctrl": [0.1, 0.1, 0.1], "flat": [0.3, 0.3, 0.3]}, plate="p1")
    s = comparisons(run_stats(wells, "ctrl", qc=False))
    assert s.loc[("freq_x", "one"), "status"] == "one_well"
    assert s.loc[("freq_x", "dead"), "status"] == "no_cells"
    assert s.loc[("freq_x", "dead"), "n_excluded"] == 2
    assert s.loc[("freq_x", "flat"), "status"] == "ok"  # one group varies: still a test
    for cond in ("one", "dead"):
        assert np.isnan(s.loc[("freq_x", cond), "p"]) and np.isnan(s.loc[("freq_x", cond), "p_adj"])
        assert s.loc[("freq_x", cond), "message"]
    tested = s[s["status"] == "ok"]
    np.testing.assert_allclose(tested["p_adj"], multipletests(tested["p"], method="fdr_bh")[1])
    z = comparisons(run_stats(flat_ref, "ctrl", qc=False)).loc[("freq_x", "flat")]
    assert z["status"] == "zero_variance" and np.isnan(z["p"]) and z["diff"] == pytest.approx(0.2)
    # a reference that is no condition at all is a typo: one error, not a table of "missing"
    with pytest.raises(InputError, match=r"--reference 'CTRL' is not a condition.*'ctrl'\?"):
        run_stats(wells, "CTRL", qc=False)


def test_reference_without_cells():
    wells = make_wells({"ctrl": REF, "A": A})
    wells.loc[wells.condition == "ctrl", "usable"] = False
    s = comparisons(run_stats(wells, "ctrl", qc=False))
    assert s.loc[("freq_x", "A"), "status"] == "reference_no_cells"


def test_logit_transform_uses_empirical_logit_of_counts():
    wells = make_wells({"ctrl": REF, "A": A})
    wells["n_analysed"] = 200
    wells["n_x"] = np.round(wells["freq_x"] * 200)
    s = comparisons(run_stats(wells, "ctrl", transform="logit"))
    k = wells["n_x"].to_numpy()
    lg = np.log((k + 0.5) / (200 - k + 0.5))
    ref = sps.ttest_ind(lg[wells.condition == "A"], lg[wells.condition == "ctrl"])
    row = s.loc[("freq_x", "A")]
    assert row["statistic"] == pytest.approx(ref.statistic) and row["transform"] == "logit"
    with pytest.raises(InputError, match="n_x"):
        run_stats(wells.drop(columns="n_x"), "ctrl", transform="logit")


def test_default_reference_is_the_negative_control():
    wells = make_wells({"ctrl": REF, "A": A}, role_of={"ctrl": "negative_control"})
    s = run_stats(wells)
    assert (s.loc[s.kind == "comparison", "reference"] == "ctrl").all()
    with pytest.raises(InputError, match="--reference"):
        run_stats(make_wells({"ctrl": REF, "A": A}))


def two_plates(shift: float = 0.3) -> pd.DataFrame:
    p1 = make_wells({"ctrl": REF, "A": A}, plate="p1")
    p2 = make_wells({"ctrl": [v + shift for v in REF[:4]], "A": [v + shift for v in B[:4]]},
                    plate="p2")
    return pd.concat([p1, p2], ignore_index=True)


def test_plates_as_blocks_model_matches_statsmodels_ols():
    import statsmodels.formula.api as smf

    wells = two_plates()
    s = run_stats(wells, "ctrl", blocks="model")
    row = s[(s.kind == "comparison") & (s.plate == "all")].iloc[0]
    df = wells.assign(g=(wells.condition == "A").astype(int))
    fit = smf.ols("freq_x ~ g + C(plate)", data=df).fit()
    assert row["diff"] == pytest.approx(fit.params["g"], rel=1e-10)
    assert row["statistic"] == pytest.approx(fit.tvalues["g"], rel=1e-10)
    assert row["p"] == pytest.approx(fit.pvalues["g"], rel=1e-10)
    assert row["df"] == fit.df_resid == len(wells) - 3
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(fit.conf_int().loc["g"]))
    assert row["test"] == "ols_plate"
    per_plate = s[(s.kind == "comparison") & (s.plate == "p1")].iloc[0]
    assert per_plate["p"] == pytest.approx(sps.ttest_ind(A, REF).pvalue)
    # a plate effect of 0.3 would swamp an unblocked test; the block model removes it
    naive = sps.ttest_ind(wells.freq_x[wells.condition == "A"],
                          wells.freq_x[wells.condition == "ctrl"])
    assert row["p"] < naive.pvalue


def test_plates_as_blocks_normalised_to_plate_reference():
    wells = two_plates()
    s = run_stats(wells, "ctrl", blocks="normalise", test="welch")
    row = s[(s.kind == "comparison") & (s.plate == "all")].iloc[0]
    ref_mean = wells[wells.condition == "ctrl"].groupby("plate")["freq_x"].mean()
    norm = wells["freq_x"] - wells["plate"].map(ref_mean)
    exp = sps.ttest_ind(norm[wells.condition == "A"], norm[wells.condition == "ctrl"],
                        equal_var=False)
    assert row["statistic"] == pytest.approx(exp.statistic)
    assert row["p"] == pytest.approx(exp.pvalue)
    assert row["test"] == "welch_plate_normalised"


def test_families_are_per_plate_value():
    s = run_stats(two_plates(), "ctrl")
    comp = s[s.kind == "comparison"]
    for _, grp in comp.groupby("plate"):
        ok = grp[grp.p.notna()]
        np.testing.assert_allclose(ok.p_adj, multipletests(ok.p, method="fdr_bh")[1])


def test_output_columns_and_parquet_round_trip(tmp_path):
    s = run_stats(make_wells({"ctrl": REF, "A": A}), "ctrl")
    assert list(s.columns[: len(STATS_COLUMNS)]) == STATS_COLUMNS
    s.to_parquet(tmp_path / "stats.parquet")
    back = pd.read_parquet(tmp_path / "stats.parquet")
    pd.testing.assert_frame_equal(back, s, check_dtype=False)


def test_cli_stats_writes_table_and_prints(tmp_path):
    from typer.testing import CliRunner

    from hcs.cli import app

    wells = make_wells({"ctrl": REF, "A": A, "B": B}, role_of={"ctrl": "negative_control"})
    run = tmp_path / "run"
    run.mkdir()
    wells.to_parquet(run / "wells.parquet")
    res = CliRunner().invoke(app, ["stats", str(run), "--test", "welch"])
    assert res.exit_code == 0, res.output
    s = pd.read_parquet(run / "stats.parquet")
    star_a = s.loc[(s.kind == "comparison") & (s.condition == "A"), "stars"].iloc[0]
    assert star_a in ("*", "**") and f" {star_a} " in res.output
    assert "freq_x" in res.output and "welch" in res.output
    assert set(s.loc[s.kind == "comparison", "test"]) == {"welch"}
    res = CliRunner().invoke(app, ["stats", str(run)])
    assert res.exit_code == 2 and "exists" in res.output
    res = CliRunner().invoke(app, ["stats", str(run / "wells.parquet"), "--reference", "ctrl",
                                   "--out", str(tmp_path / "s2.parquet"), "--correction", "holm"])
    assert res.exit_code == 0, res.output
    bad = wells.drop(columns=["condition"])
    bad.to_parquet(tmp_path / "nolayout.parquet")
    res = CliRunner().invoke(app, ["stats", str(tmp_path / "nolayout.parquet"), "--out",
                                   str(tmp_path / "s3.parquet")])
    assert res.exit_code == 2 and "--layout" in res.output


def test_cli_stats_joins_a_layout(tmp_path):
    from typer.testing import CliRunner

    from hcs.cli import app

    wells = make_wells({"ctrl": REF, "A": A}).drop(columns=["condition", "role"])
    wells.to_parquet(tmp_path / "wells.parquet")
    lay = tmp_path / "layout.csv"
    lines = ["well,condition,role"] + [
        f"{w},{'ctrl' if i < len(REF) else 'A'},{'negative_control' if i < len(REF) else ''}"
        for i, w in enumerate(wells.well)]
    lay.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(app, ["stats", str(tmp_path / "wells.parquet"), "--layout", str(lay)])
    assert res.exit_code == 0, res.output
    s = pd.read_parquet(tmp_path / "stats.parquet")
    row = s[(s.kind == "comparison")].iloc[0]
    assert row["p"] == pytest.approx(sps.ttest_ind(A, REF).pvalue)


def test_end_to_end_cic_counts_layout_stats(tmp_path):
    from pathlib import Path

    from hcs.aggregate import well_table
    from hcs.layouts import read_layout
    from hcs.plate import PlateGeometry

    layout = read_layout(Path(__file__).resolve().parents[1] / "plate_layouts" /
                         "example_tidy.csv", PlateGeometry.from_format(96))
    rng = np.random.default_rng(11)
    sample = layout[layout.role != "empty"]
    counts = pd.DataFrame({"plate": "screen1", "well": [*sample.well, "H12"]})  # H12: no layout
    for c in ("partial", "one_in_one", "two_in_one", "in_turn", "complicated", "f_category"):
        counts[f"n_{c}"] = rng.poisson(8, len(counts))
    counts["n_non_cic"] = rng.poisson(150, len(counts))
    wells = well_table(counts, "cic", layout=layout)
    assert len(wells) == len(layout) + 1  # empty wells kept (flagged missing), H12 flagged
    assert wells.set_index("well").loc["H12", "flags"] == "not_in_layout"
    s = run_stats(wells)  # reference = the negative control: "control vector"
    comp = s[s.kind == "comparison"]
    assert set(comp.readout) >= {"freq_all_cic", "freq_completed_cic", "freq_partial"}
    assert "freq_f_category" not in set(comp.readout)
    assert (comp.reference == "control vector").all() and len(comp) == 8 * 3
    row = comp[(comp.readout == "freq_completed_cic") & (comp.condition == "ARHGAP36 1-194")]
    w = wells.set_index("condition")["freq_completed_cic"]
    ref = sps.ttest_ind(w["ARHGAP36 1-194"], w["control vector"])
    assert row["p"].iloc[0] == pytest.approx(ref.pvalue)
