"""``hcs analyze A B --out DIR``: a screen of plates on one cluster, pooled statistics, resume.

Two tiny simulated ARHGAP36 plates (4 conditions x 2 wells, one 256 px field each; plate names
PA, PB and PC, other seeds) are analysed with a seeded random cic model on an in-process Dask
cluster reached through ``--scheduler``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hcs.analyze.screen import analyze_screen, expand_inputs, plate_keys
from hcs.errors import InputError
from hcs.synth.fixtures import save_random_model

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "plate_layouts" / "arhgap36_truncations.csv"


@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> dict[str, Path]:
    from hcs.synth import simulate_plate

    root = tmp_path_factory.mktemp("sims")
    out = {}
    for seed, name in enumerate(["PA", "PB", "PC"]):
        res = simulate_plate(root / name, LAYOUT, "cic", fields=1, size=256, seed=seed,
                             wells_per_condition=2, progress=False, workers=1, plate_name=name)
        out[name] = Path(res.export)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("m") / "cic_rand", "cic",
                             ["membrane", "nucleus", "brightfield"], crop_size=32)


def _screen(inputs, out: Path, model: Path, scheduler: str, **kw):
    lines: list[str] = []
    layouts = kw.pop("layouts", None)
    res = analyze_screen([str(i) for i in inputs], out, layouts=layouts, assay="cic",
                         layout=str(kw.pop("layout", LAYOUT)), model=str(model),
                         scheduler=scheduler, gallery=False, progress=False,
                         log=lines.append, **kw)
    return res, lines


def _plate_layout(tmp_path: Path, plates: list[str]) -> Path:
    """The ARHGAP36 layout with a plate column, one copy of its rows per plate name."""
    text = [ln for ln in LAYOUT.read_text().splitlines() if not ln.startswith("#")]
    head, rows = text[0], text[1:]
    out = ["plate," + head] + [f"{p},{r}" for p in plates for r in rows]
    path = tmp_path / "layout_plates.csv"
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.fixture(scope="module")
def screen(sims, model, scheduler, tmp_path_factory):
    out = tmp_path_factory.mktemp("screen") / "scr"
    res, lines = _screen([sims["PA"], sims["PB"]], out, model, scheduler)
    return res, lines


def test_replicate_plates_one_layout(screen, sims, model, scheduler):
    res, lines = screen
    out = res.folder
    assert res.ran["PA"] == res.ran["PB"] == ["convert", "run", "aggregate", "stats", "report"]
    assert res.ran["screen"] == ["wells", "stats", "report"]
    # each plate has the folder of a single-plate analysis
    for key in ("PA", "PB"):
        pdir = out / "plates" / key
        for rel in ("analyze.json", "plate.ome.zarr", "run/run.json", "run/wells.parquet",
                    "run/stats.parquet", "report.html"):
            assert (pdir / rel).exists(), rel
        run = json.loads((pdir / "run" / "run.json").read_text())
        assert (run["fields_done"], run["fields_failed"], run["status"]) == (8, 0, "complete")
    # one cluster: both runs name the same scheduler
    runs = [json.loads((out / "plates" / k / "run" / "run.json").read_text()) for k in
            ("PA", "PB")]
    assert runs[0]["cluster"]["scheduler"] == runs[1]["cluster"]["scheduler"] == scheduler
    manifest = json.loads((out / "analyze.json").read_text())
    assert set(manifest["plates"]) == {"PA", "PB"}
    assert all(s["status"] == "done" for p in manifest["plates"].values()
               for s in p["stages"].values())
    assert list(manifest["stages"]) == ["wells", "stats", "report"]
    wells = pd.read_parquet(res.wells)
    assert sorted(wells["plate"].unique()) == ["PA", "PB"]
    for key in ("PA", "PB"):
        own = pd.read_parquet(out / "plates" / key / "run" / "wells.parquet")
        mine = wells[wells["plate"] == key]
        assert len(mine) == len(own) and mine["n_detected"].sum() == own["n_detected"].sum()
    # pooled statistics: plate as a block; the reference wells add up over the plates
    stats = pd.read_parquet(res.stats)
    comp = stats[stats["kind"] == "comparison"]
    pooled = comp[comp["plate"] == "all"]
    assert set(pooled["test"]) == {"ols_plate"} and len(pooled) > 0
    for r in pooled.itertuples():
        per = comp[(comp["plate"] != "all") & (comp["readout"] == r.readout)
                   & (comp["condition"] == r.condition)]
        assert len(per) == 2
        assert r.n_ref == per["n_ref"].sum() == 4 and r.n == per["n"].sum() == 4
    # per-plate statistics equal each plate's own stats.parquet
    for key in ("PA", "PB"):
        own = pd.read_parquet(out / "plates" / key / "run" / "stats.parquet")
        own = own[own["kind"] == "comparison"].sort_values(["readout", "condition"])
        mine = comp[comp["plate"] == key].sort_values(["readout", "condition"])
        assert len(mine) == len(own) > 0
        pd.testing.assert_series_equal(mine["p"].reset_index(drop=True),
                                       own["p"].reset_index(drop=True), check_names=False)
    # per-plate normalisation: percent of control, pooled with each plate's own reference
    from hcs.stats.run import run_stats

    ctrl = wells[(wells["role"] == "negative_control") & wells["usable"]]
    assert ctrl.groupby("plate")["poc_n_detected"].mean().round(9).tolist() == [100.0, 100.0]
    norm = run_stats(wells, blocks="normalise", readouts=["poc_n_detected"], dose=False,
                     qc=False)
    pooled_poc = norm[(norm["kind"] == "comparison") & (norm["plate"] == "all")]
    assert set(pooled_poc["test"]) == {"student_plate_normalised"}
    assert (pooled_poc["n_ref"] == 4).all() and len(pooled_poc) == 3
    # replicate agreement: all 8 imaged wells are shared, with the same condition
    reps = pd.read_parquet(res.replicates)
    assert set(zip(reps["plate_a"], reps["plate_b"], strict=True)) == {("PA", "PB")}
    assert (reps["n"] == 8).all() and "freq_partial" in set(reps["readout"])
    a = wells[(wells["plate"] == "PA") & wells["usable"]].set_index("well")["n_detected"]
    b = wells[(wells["plate"] == "PB") & wells["usable"]].set_index("well")["n_detected"]
    both = a.index.intersection(b.index)
    r = reps[reps["readout"] == "n_detected"]["pearson_r"].iloc[0]
    assert r == pytest.approx(a[both].astype(float).corr(b[both].astype(float)))
    html = res.report.read_text()
    assert "Hits (pooled over plates)" in html and 'href="../plates/PA/report.html"' in html
    # a rerun skips every stage
    res2, lines2 = _screen([sims["PA"], sims["PB"]], out, model, scheduler)
    assert all(v == [] for v in res2.ran.values()), res2.ran
    assert all("current, skipped" in ln or "input is" in ln for ln in lines2
               if ": [" in ln), lines2


def test_layout_with_plate_column_and_an_edit(sims, model, scheduler, tmp_path):
    lay = _plate_layout(tmp_path, ["PA", "PB"])
    out = tmp_path / "scr"
    plates_txt = tmp_path / "plates.txt"
    plates_txt.write_text(f"# the screen\n{sims['PA']}\n\n{sims['PB']}\n")
    res, _ = _screen([f"@{plates_txt}"], out, model, scheduler, layout=lay)
    assert (out / "plates" / "PA" / "layout.csv").is_file()
    wells = pd.read_parquet(res.wells)
    assert set(wells["condition"].dropna()) == {"control", "ARHGAP36 1-194",
                                                "ARHGAP36 118-194", "ARHGAP36 195-395"}
    # PB's rows edited (one condition renamed): only PB's later stages and the screen re-run
    text = [ln.replace("ARHGAP36 195-395", "ARHGAP36 195-395 b") if ln.startswith("PB,")
            else ln for ln in lay.read_text().splitlines()]
    lay.write_text("\n".join(text) + "\n")
    res2, _ = _screen([f"@{plates_txt}"], out, model, scheduler, layout=lay)
    assert res2.ran["PA"] == []
    assert res2.ran["PB"] == ["aggregate", "stats", "report"]
    assert res2.ran["screen"] == ["wells", "stats", "report"]
    stats = pd.read_parquet(res2.stats)
    comp = stats[stats["kind"] == "comparison"]
    pooled = comp[(comp["plate"] == "all") & (comp["condition"] == "ARHGAP36 195-395 b")]
    assert len(pooled) and (pooled["n"] == 2).all()  # only PB holds it


def test_a_plate_added_runs_only_that_plate(screen, sims, model, scheduler, tmp_path):
    import shutil

    res, _ = screen
    out = tmp_path / "scr"
    shutil.copytree(res.folder, out)  # mtimes kept: every stage is current
    # PA and PB keep the layout for all, the new plate gets its own (the same file here)
    res2, _ = _screen([sims["PA"], sims["PB"], sims["PC"]], out, model, scheduler,
                      layouts=[str(LAYOUT), f"PC={LAYOUT}"])
    assert res2.ran["PA"] == res2.ran["PB"] == []
    assert res2.ran["PC"] == ["convert", "run", "aggregate", "stats", "report"]
    assert res2.ran["screen"] == ["wells", "stats", "report"]
    stats = pd.read_parquet(res2.stats)
    pooled = stats.query("kind == 'comparison' and plate == 'all'")
    assert (pooled["n_ref"] == 6).all() and (pooled["n"] == 6).all()  # 3 plates x 2 wells
    reps = pd.read_parquet(res2.replicates)
    assert len(set(zip(reps["plate_a"], reps["plate_b"], strict=True))) == 3


def test_layout_naming_a_missing_plate_is_one_error(sims, model, tmp_path):
    lay = _plate_layout(tmp_path, ["PA", "PC"])
    out = tmp_path / "scr"
    r = subprocess.run([sys.executable, "-m", "hcs", "analyze", str(sims["PA"]),
                        str(sims["PB"]), "--assay", "cic", "--layout", str(lay), "--out",
                        str(out), "--model", str(model), "-q"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2, r.stderr
    msg = r.stdout.strip() + r.stderr.strip()
    assert len(msg.splitlines()) == 1, msg
    assert "no layout for plate(s) PB" in msg and "PC (" in msg and str(lay) in msg
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "hcs", "analyze", str(sims["PA"]),
                        str(sims["PB"]), "--assay", "cic", "--layout", f"PA={LAYOUT}",
                        "--layout", f"PX={LAYOUT}", "--out", str(out), "--model", str(model),
                        "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "no layout for plate(s) PB" in r.stderr + r.stdout
    assert "PX (--layout PX=" in r.stderr + r.stdout and not out.exists()


def test_crash_in_the_second_plate_resumes_there(sims, model, scheduler, tmp_path,
                                                 monkeypatch):
    agg = importlib.import_module("hcs.engine.aggregate_run")
    real = agg.aggregate_run

    def crash_on_pb(run_dir, *a, **k):
        if "PB" in Path(run_dir).parts:
            raise KeyboardInterrupt
        return real(run_dir, *a, **k)

    out = tmp_path / "scr"
    monkeypatch.setattr(agg, "aggregate_run", crash_on_pb)
    with pytest.raises(KeyboardInterrupt):
        _screen([sims["PA"], sims["PB"]], out, model, scheduler)
    assert not (out / "run.lock").exists()
    monkeypatch.setattr(agg, "aggregate_run", real)
    res, lines = _screen([sims["PA"], sims["PB"]], out, model, scheduler)
    assert res.ran["PA"] == []
    assert res.ran["PB"] == ["aggregate", "stats", "report"]
    assert res.ran["screen"] == ["wells", "stats", "report"]
    assert any(ln.startswith("PB: ") and "aggregate: running (not finished before)" in ln
               for ln in lines)
    # a run of PB killed after 3 of its 8 fields: only PB's missing fields are redone
    cells = sorted((out / "plates" / "PB" / "run" / "cells").glob("*/*.parquet"))
    for f in cells[3:]:
        f.unlink()
    man = out / "plates" / "PB" / "analyze.json"
    data = json.loads(man.read_text())
    data["stages"]["run"]["status"] = "running"
    man.write_text(json.dumps(data))
    res2, _ = _screen([sims["PA"], sims["PB"]], out, model, scheduler)
    assert res2.ran["PA"] == [] and res2.ran["PB"][0] == "run"
    run = json.loads((out / "plates" / "PB" / "run" / "run.json").read_text())
    assert (run["fields_done"], run["fields_skipped"]) == (5, 3)


def test_inputs_and_names(tmp_path):
    assert plate_keys(["X", "X"], [tmp_path / "a" / "e", tmp_path / "b" / "e"]) == ["a-e", "b-e"]
    (tmp_path / "a").mkdir()
    lst = tmp_path / "plates.txt"
    lst.write_text("a\n")
    assert expand_inputs([f"@{lst}"]) == [tmp_path / "a"]
    lst.write_text("a\nmissing\n")
    with pytest.raises(InputError, match=r"plates.txt:2: missing: not found"):
        expand_inputs([f"@{lst}"])
    with pytest.raises(InputError, match="given twice"):
        expand_inputs([tmp_path / "a", tmp_path / "a" / ".." / "a"])


def test_converted_plates_as_inputs(screen, model, scheduler, tmp_path):
    """``.ome.zarr`` plates are analysed without conversion, with the same results."""
    res, _ = screen
    plates = [res.folder / "plates" / k / "plate.ome.zarr" for k in ("PA", "PB")]
    res2, lines = _screen(plates, tmp_path / "scr", model, scheduler, labels=False)
    assert res2.ran["PA"] == res2.ran["PB"] == ["run", "aggregate", "stats", "report"]
    assert any("PA: [1] convert: skipped" in ln for ln in lines)
    assert not (tmp_path / "scr" / "plates" / "PA" / "plate.ome.zarr").exists()
    cols = ["plate", "well", "n_detected", "n_analysed"]
    pd.testing.assert_frame_equal(pd.read_parquet(res.wells)[cols],
                                  pd.read_parquet(res2.wells)[cols])
