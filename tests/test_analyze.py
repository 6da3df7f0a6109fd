"""``hcs analyze``: the chained stages, what "current" means, and resuming after a crash.

A tiny simulated ARHGAP36 plate (4 conditions x 2 wells, one 256 px field each) is analysed with a
seeded random cic model (its calls are meaningless but deterministic, so outputs compare exactly
between runs) on an in-process Dask cluster reached through ``--scheduler``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hcs.analyze import analyze
from hcs.analyze.manifest import Pipeline, file_sha256, tree_fingerprint
from hcs.cli import app
from hcs.errors import InputError
from hcs.synth.fixtures import save_random_model

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "plate_layouts" / "arhgap36_truncations.csv"


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    from hcs.synth import simulate_plate

    out = tmp_path_factory.mktemp("sim") / "sim"
    simulate_plate(out, LAYOUT, "cic", fields=1, size=256, wells_per_condition=2,
                   progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("m") / "cic_rand", "cic",
                             ["membrane", "nucleus", "brightfield"], crop_size=32)


@pytest.fixture(scope="module")
def base(sim, model, scheduler, tmp_path_factory) -> Path:
    """One finished analysis; tests work on copies (mtimes kept, so every stage is current)."""
    out = tmp_path_factory.mktemp("base") / "an"
    _analyze(sim, out, model, scheduler)
    return out


def _copy(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "an"
    shutil.copytree(base, out)
    return out


def _analyze(sim: Path, out: Path, model: Path, scheduler: str, **kw):
    lines: list[str] = []
    res = analyze(sim / "export", out, assay="cic", layout=str(kw.pop("layout", LAYOUT)),
                  model=str(model), scheduler=scheduler, gallery=kw.pop("gallery", False),
                  progress=False, log=lines.append, **kw)
    return res, lines


def _cells(run_dir: Path) -> pd.DataFrame:
    files = sorted((run_dir / "cells").glob("*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_fingerprints(tmp_path):
    assert tree_fingerprint(tmp_path / "none") is None
    (tmp_path / "a").mkdir()
    assert tree_fingerprint(tmp_path / "a") is None  # empty
    (tmp_path / "a" / "x.tif").write_bytes(b"12")
    f1 = tree_fingerprint(tmp_path / "a")
    (tmp_path / "a" / ".x.tif.123.tmp").write_bytes(b"half")  # a temp file does not count
    assert tree_fingerprint(tmp_path / "a") == f1
    (tmp_path / "a" / "x.tif").write_bytes(b"123")
    assert tree_fingerprint(tmp_path / "a") != f1
    assert file_sha256(tmp_path / "a" / "x.tif") == \
        "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3"


def test_pipeline_step_records_and_skips(tmp_path):
    out = tmp_path / "o.txt"
    calls = []

    def act():
        calls.append(1)
        out.write_text(f"v{len(calls)}")

    def fp():
        return file_sha256(out)

    p = Pipeline(tmp_path, log=lambda _: None)
    assert p.step("s", {"in": "1"}, {"k": 1}, fp, act).ran
    assert not Pipeline(tmp_path, log=lambda _: None).step("s", {"in": "1"}, {"k": 1}, fp, act).ran
    p = Pipeline(tmp_path, log=lambda _: None)
    o = p.step("s", {"in": "1"}, {"k": 2}, fp, act)
    assert o.ran and o.reason == "parameters changed (k)"
    o = Pipeline(tmp_path, log=lambda _: None).step("s", {"in": "2"}, {"k": 2}, fp, act)
    assert o.ran and o.reason == "inputs changed (in)"
    out.write_text("edited by hand")
    o = Pipeline(tmp_path, log=lambda _: None).step("s", {"in": "2"}, {"k": 2}, fp, act)
    assert o.ran and o.reason == "output changed since it was written"
    out.unlink()
    o = Pipeline(tmp_path, log=lambda _: None).step("s", {"in": "2"}, {"k": 2}, fp, act)
    assert o.ran and o.reason == "output missing"
    assert len(calls) == 5
    rec = json.loads((tmp_path / "analyze.json").read_text())["stages"]["s"]
    assert rec["status"] == "done" and rec["output"] == fp() and rec["params"] == {"k": 2}


def test_crashed_step_is_rerun(tmp_path):
    def boom():
        (tmp_path / "o").write_text("partial")  # an output that exists but was never recorded
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        Pipeline(tmp_path, log=lambda _: None).step("s", {}, {}, lambda: "x", boom)
    assert json.loads((tmp_path / "analyze.json").read_text())["stages"]["s"]["status"] == \
        "running"
    o = Pipeline(tmp_path, log=lambda _: None).step("s", {}, {}, lambda: "x", lambda: None)
    assert o.ran and o.reason == "not finished before"


def test_analyze_end_to_end_then_skips_everything(sim, model, scheduler, base, tmp_path):
    out = _copy(base, tmp_path)
    manifest = json.loads((out / "analyze.json").read_text())["stages"]
    assert list(manifest) == ["convert", "run", "aggregate", "stats", "report"]
    assert all(r["status"] == "done" for r in manifest.values())
    res, lines = _analyze(sim, out, model, scheduler, gallery=True)
    assert res.ran == ["report"]
    # every stage's output is the one the underlying command writes
    truth = pd.read_parquet(sim / "truth" / "wells.parquet")
    wells = pd.read_parquet(res.wells)
    imaged = wells[wells["well"].isin(truth["well"])]
    assert len(imaged) == 8 and set(wells["condition"].dropna()) == set(truth["condition"])
    cells = _cells(res.run_dir)
    assert imaged["n_detected"].sum() == len(cells) > 0
    stats = pd.read_parquet(res.stats)
    comp = stats[stats["kind"] == "comparison"]
    assert set(comp["reference"]) == {"control"} and len(comp) == 3 * 8
    html = res.report.read_text()
    assert "ARHGAP36 118-194" in html and "Cell gallery" in html
    mtimes = {p: p.stat().st_mtime_ns for p in (res.wells, res.stats, res.report)}
    res2, lines2 = _analyze(sim, out, model, scheduler, gallery=True)
    assert res2.ran == [] and all("current, skipped" in line for line in lines2)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_changed_parameter_reruns_that_stage_and_later(sim, model, scheduler, base, tmp_path):
    out = _copy(base, tmp_path)
    res, lines = _analyze(sim, out, model, scheduler, reference="ARHGAP36 1-194")
    assert res.ran == ["stats", "report"]
    assert any("stats: running (parameters changed (reference))" in line for line in lines)
    comp = pd.read_parquet(res.stats).query("kind == 'comparison'")
    assert set(comp["reference"]) == {"ARHGAP36 1-194"}
    # a layout with other content: aggregate onwards (the run is reused)
    layout = tmp_path / "layout.csv"
    layout.write_text(LAYOUT.read_text().replace("ARHGAP36 195-395", "ARHGAP36 C-term"))
    res, _ = _analyze(sim, out, model, scheduler, layout=layout, reference="ARHGAP36 1-194")
    assert res.ran == ["aggregate", "stats", "report"]
    assert "ARHGAP36 C-term" in set(pd.read_parquet(res.wells)["condition"])
    # another model: the run starts afresh (not resumed), then everything after it
    other = save_random_model(tmp_path / "other", "cic", ["membrane", "nucleus", "brightfield"],
                              crop_size=32, seed=1)
    res, lines = _analyze(sim, out, other, scheduler, layout=layout,
                          reference="ARHGAP36 1-194")
    assert res.ran == ["run", "aggregate", "stats", "report"]
    run = json.loads((res.run_dir / "run.json").read_text())
    assert run["fields_done"] == 8 and run["fields_skipped"] == 0
    assert run["model_path"] == str(other.resolve())
    # documentation added to the model card (metrics) does not change the cells: nothing re-runs
    import yaml

    card = yaml.safe_load((other / "model.yaml").read_text())
    card["metrics"] = {"engine_route": {"all_cic_r": 0.97}}
    (other / "model.yaml").write_text(yaml.safe_dump(card))
    res, _ = _analyze(sim, out, other, scheduler, layout=layout, reference="ARHGAP36 1-194")
    assert res.ran == []
    # a changed decision rule or crop does
    from hcs.analyze.pipeline import resolve_model

    before = resolve_model("cic", other)[1]
    from hcs.classify.seal import seal_card
    from hcs.errors import InputError

    card["crop"]["margin"] = 0.5
    (other / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(InputError, match="card_sha256"):  # unsealed: refused, names the card
        resolve_model("cic", other)
    seal_card(other)  # a deliberate edit: a new fingerprint, so the run re-runs
    assert resolve_model("cic", other)[1] != before


def test_deleted_output_and_crash_resume(sim, model, scheduler, base, tmp_path):
    out = _copy(base, tmp_path)
    res, _ = _analyze(sim, out, model, scheduler)
    assert res.ran == []
    before = _cells(res.run_dir).sort_values(["well", "field", "cell_id"], ignore_index=True)
    # a deleted output re-runs its stage; identical bytes do not invalidate later stages
    res.stats.unlink()
    res2, _ = _analyze(sim, out, model, scheduler)
    assert res2.ran == ["stats"]
    # a run killed after 3 of 8 fields: atomic cell tables, manifest entry left "running"
    files = sorted((res.run_dir / "cells").glob("*/*.parquet"))
    for f in files[3:]:
        f.unlink()
    manifest = json.loads((out / "analyze.json").read_text())
    manifest["stages"]["run"]["status"] = "running"
    (out / "analyze.json").write_text(json.dumps(manifest))
    res3, lines = _analyze(sim, out, model, scheduler)
    # the re-made wells.parquet is byte-identical, so the statistics stay current; the report
    # is re-made because run.json (provenance) changed
    assert res3.ran == ["run", "aggregate", "report"]
    run = json.loads((res.run_dir / "run.json").read_text())
    assert (run["fields_done"], run["fields_skipped"]) == (5, 3)  # only the missing fields
    after = _cells(res.run_dir).sort_values(["well", "field", "cell_id"], ignore_index=True)
    pd.testing.assert_frame_equal(before, after)
    # the plate deleted: convert again; a new plate is a new run, from scratch
    shutil.rmtree(res.plate)
    res4, _ = _analyze(sim, out, model, scheduler)
    assert res4.ran == ["convert", "run", "aggregate", "stats", "report"]
    run = json.loads((res.run_dir / "run.json").read_text())
    assert (run["fields_done"], run["fields_skipped"]) == (8, 0)


def test_crash_in_a_later_stage_resumes_there(sim, model, scheduler, tmp_path, monkeypatch):
    import importlib

    agg = importlib.import_module("hcs.engine.aggregate_run")
    out = tmp_path / "an"
    real = agg.aggregate_run

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(agg, "aggregate_run", crash)
    with pytest.raises(KeyboardInterrupt):
        _analyze(sim, out, model, scheduler)
    assert not (out / "run.lock").exists()  # the lock is released
    monkeypatch.setattr(agg, "aggregate_run", real)
    res, lines = _analyze(sim, out, model, scheduler)
    assert res.ran == ["aggregate", "stats", "report"]
    assert any("aggregate: running (not finished before)" in line for line in lines)


def test_failed_fields_are_retried_next_time(sim, model, scheduler, base, tmp_path):
    out = _copy(base, tmp_path)
    res, _ = _analyze(sim, out, model, scheduler)
    (res.run_dir / "cells" / "A02" / "0.parquet").unlink()
    # field A02/0 unreadable (its array metadata is garbage): the run records it as failed
    meta = res.plate / "A" / "2" / "0" / "0" / "zarr.json"
    good = meta.read_bytes()
    meta.write_text("{not json")
    res2, _ = _analyze(sim, out, model, scheduler)
    assert res2.failed_fields == 1 and res2.ran == ["run", "aggregate", "stats", "report"]
    manifest = json.loads((out / "analyze.json").read_text())["stages"]
    assert manifest["run"]["status"] == "incomplete: 1 fields failed"
    assert pd.read_parquet(res.run_dir / "failures.parquet")["well"].tolist() == ["A02"]
    meta.write_bytes(good)
    res3, _ = _analyze(sim, out, model, scheduler)
    assert res3.failed_fields == 0 and res3.ran == ["run", "aggregate", "stats", "report"]
    run = json.loads((res.run_dir / "run.json").read_text())
    assert (run["fields_done"], run["fields_skipped"]) == (1, 7)
    assert len(pd.read_parquet(res.run_dir / "failures.parquet")) == 0


def test_bad_input_is_one_clear_error(sim, model, tmp_path):
    with pytest.raises(InputError, match="not a condition of"):
        analyze(sim / "export", tmp_path / "x", assay="cic", layout=str(LAYOUT),
                model=str(model), reference="DMSO")
    with pytest.raises(InputError, match="export not found"):
        analyze(tmp_path / "nope", tmp_path / "x", assay="cic", layout=str(LAYOUT),
                model=str(model), log=lambda _: 0)
    with pytest.raises(InputError, match="is a model of assay 'cic', not 'livedead'"):
        analyze(sim / "export", tmp_path / "x", assay="livedead", layout=str(LAYOUT),
                model=str(model))
    with pytest.raises(InputError, match="layout not found"):
        analyze(sim / "export", tmp_path / "x", assay="cic", layout=str(tmp_path / "l.csv"),
                model=str(model))
    with pytest.raises(InputError, match="--test: input should be 'student' or 'welch'"):
        analyze(sim / "export", tmp_path / "x", assay="cic", layout=str(LAYOUT),
                model=str(model), test="welsh")
    assert not (tmp_path / "x" / "plate.ome.zarr").exists()
    # a layout well outside the plate: refused after converting, before the run starts
    p24 = tmp_path / "p24.csv"
    p24.write_text("well,condition,role\nA01,DMSO,negative_control\nP24,x,sample\n")
    with pytest.raises(InputError, match=rf"{p24}:3: well P24 is outside the 8 x 12 plate"):
        analyze(sim / "export", tmp_path / "y", assay="cic", layout=str(p24), model=str(model),
                log=lambda _: 0)
    assert not (tmp_path / "y" / "run").exists()


def test_cli_analyze(sim, model, scheduler, tmp_path):
    out = tmp_path / "cli"
    args = ["analyze", str(sim / "export"), "--assay", "cic", "--layout", str(LAYOUT),
            "--out", str(out), "--model", str(model), "--scheduler", scheduler,
            "--reference", "control", "--no-gallery", "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"report: {out / 'report.html'}" in r.output
    assert "stages run: convert, run, aggregate, stats, report" in r.output
    r = CliRunner().invoke(app, args)
    assert "stages run: none (everything was current)" in r.output
    r = CliRunner().invoke(app, [*args[:-2], "--correction", "holm", "--no-gallery"])
    assert r.exit_code == 0 and "stages run: stats, report" in r.output
    assert "[4] stats: running (parameters changed (correction))" in r.output
    r = CliRunner().invoke(app, ["analyze", str(sim / "export"), "--assay", "cic", "--layout",
                                 str(LAYOUT), "--out", str(out), "--model", str(tmp_path)])
    assert r.exit_code == 2 and "not a model folder" in r.output
