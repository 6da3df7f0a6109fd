"""One typed parameter model per stage (:mod:`hcs.params`) and the commands built from them.

- ``hcs analyze`` has every option of ``hcs convert``, ``run``, ``aggregate``, ``stats`` and
  ``report`` (read from the click commands typer builds), and one option has one name and one
  short flag in every command;
- help texts show the choices; a bad choice is refused with exit 2 and one line before any
  stage runs (nothing is written);
- a time-lapse plate goes through ``hcs analyze --timepoint``, from its export or as an
  already converted plate (recognised by its metadata, whatever its name), and a changed
  ``--timepoint`` re-runs the run stage;
- ``hcs layout check`` lists every error of a layout; ``--voc`` is the old name of
  ``--annotations``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from hcs.cli import app
from hcs.errors import InputError
from hcs.params import STAGES, AnalyzeParams, RunParams, from_options, option_name, options_of
from hcs.synth.fixtures import save_random_model, write_disc_plate

REPO = Path(__file__).resolve().parents[1]
#: Options of a stage command that say where its own output goes or how it is shown; `hcs
#: analyze` has its own folder (--out), re-runs what is stale (--force) and resumes by itself.
OWN_OUTPUT = {"--out", "-o", "--overwrite", "--resume", "--max-rows", "--help"}
#: The options issue 14 found missing from `hcs analyze`.
WERE_MISSING = {"--timepoint", "--fields-per-task", "--wells", "--blocks", "--readout",
                "--strict", "--ngff"}
WELLS = ["A01", "A02", "B01", "B02"]
NUCLEI = 4  # field 0 of the i-th well holds NUCLEI + i + 2 t nuclei at timepoint t


def _commands() -> dict[str, Any]:
    """The click commands typer builds (typer ships its own click as ``typer._click``)."""
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _options(cmd: Any) -> dict[str, TyperOption]:
    return {name: p for p in cmd.params if isinstance(p, TyperOption)
            for name in (*p.opts, *p.secondary_opts)}


def _hcs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_analyze_has_every_option_of_every_stage_command():
    cmds = _commands()
    analyze = _options(cmds["analyze"])
    assert WERE_MISSING <= set(analyze)
    for stage in ("convert", "run", "aggregate", "stats", "report"):
        missing = set(_options(cmds[stage])) - OWN_OUTPUT - set(analyze)
        assert not missing, f"hcs {stage} options missing from hcs analyze: {sorted(missing)}"
    # the models say the same: every stage field is an option of AnalyzeParams and of analyze
    flat = options_of(AnalyzeParams)
    for model in STAGES.values():
        assert set(model.model_fields) <= set(flat)
    assert {option_name(n) for n in flat} <= set(analyze)
    # one option, one set of names and one kind (flag or value) in every command
    seen: dict[str, tuple] = {}
    for name, cmd in cmds.items():
        if not hasattr(cmd, "params") or hasattr(cmd, "commands"):
            continue
        for opt in {id(p): p for p in _options(cmd).values()}.values():
            key = (tuple(sorted(opt.opts + opt.secondary_opts)), opt.is_flag)
            long = max(opt.opts, key=len)
            if name in ("convert", "run", "aggregate", "stats", "report", "analyze"):
                assert seen.setdefault(long, key) == key, f"{long} differs in hcs {name}"


def test_help_shows_the_choices():
    runner = CliRunner(env={"COLUMNS": "200"})
    stats = runner.invoke(app, ["stats", "--help"]).output
    assert "student|welch" in stats and "fdr_bh|holm|bonferroni|none" in stats
    assert "model|normalise" in stats and "none|logit" in stats
    analyze = runner.invoke(app, ["analyze", "--help"]).output
    assert "student|welch" in analyze and "auto|harmony|scanr|tiff-folder" in analyze
    assert "<str>" not in analyze.split("--test")[1].splitlines()[0]


@pytest.mark.parametrize("bad, message", [
    (["--test", "welsh"], "error: --test: input should be 'student' or 'welch' (got 'welsh')"),
    (["--correction", "bh"], "error: --correction: input should be 'fdr_bh', 'holm', "
                             "'bonferroni' or 'none' (got 'bh')"),
    (["--ngff", "0.6"], "error: --ngff: input should be '0.5' or '0.4' (got '0.6')"),
    (["--channels", "nucleus"], "error: --channels: expected ROLE=CHANNEL, got 'nucleus'"),
])
def test_a_bad_value_is_refused_before_any_stage(bad, message, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    out = tmp_path / "out"
    r = _hcs("analyze", str(export), "--assay", "livedead", "--layout",
             str(REPO / "plate_layouts" / "arhgap36_truncations.csv"), "--out", str(out), *bad)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == message
    assert not out.exists()  # nothing written: refused before convert and run


def test_stats_refuses_a_bad_test_in_one_line(tmp_path):
    r = _hcs("stats", str(tmp_path), "--test", "welsh")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --test: input should be 'student' or 'welch' (got 'welsh')"]


def test_library_options_are_the_cli_options():
    p = from_options(AnalyzeParams, assay="cic", layout="l.csv", workers=3, wells="A01, B2",
                     readout=["partial,in_turn"], channels="nucleus=DAPI")
    assert (p.convert.workers, p.run.workers) == (3, 3)
    assert p.run.wells == ("A01", "B2") and p.stats.readout == ("partial", "in_turn")
    assert p.run.channels == {"nucleus": "DAPI"}
    assert from_options(AnalyzeParams, p, test="welch").stats.test == "welch"
    with pytest.raises(InputError, match="unknown option --tset"):
        from_options(AnalyzeParams, p, tset="welch")
    # RunParams makes the workers' EngineParams
    e = RunParams(gpus="0", threads_per_worker=2, channels={"b": "x", "a": "y"}).engine_params(
        "p.ome.zarr", "livedead", "m", timepoint=1)
    assert (e.device, e.torch_threads, e.channel_map, e.timepoint) == (
        "cpu", 2, (("a", "y"), ("b", "x")), 1)


# --- a time-lapse plate through hcs analyze ---


@pytest.fixture(scope="module")
def timelapse(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A 2-timepoint plate (and its Harmony export in ``export/``) with known nuclei."""
    return write_disc_plate(tmp_path_factory.mktemp("tl"), WELLS, fields=1, size=128,
                            nuclei=NUCLEI, timepoints=2, seed=3)


@pytest.fixture(scope="module")
def ld_model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("m") / "ld", "livedead", ["brightfield"],
                             crop_size=32)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("layout") / "layout.csv"
    p.write_text("well,condition,role\nA01,ctrl,negative_control\nA02,ctrl,negative_control\n"
                 "B01,drug,sample\nB02,drug,sample\n")
    return p


def _analyze(src: Path, out: Path, layout: Path, model: Path, scheduler: str, *extra: str):
    return CliRunner().invoke(app, [
        "analyze", str(src), "--assay", "livedead", "--layout", str(layout), "--out", str(out),
        "--model", str(model), "--scheduler", scheduler, "--no-gallery", *extra])


def _counts(out: Path) -> list[int]:
    wells = pd.read_parquet(out / "run" / "wells.parquet").set_index("well")
    return [int(wells.loc[w, "n_detected"]) for w in WELLS]


def test_timelapse_export_through_analyze(timelapse, ld_model, layout, scheduler, tmp_path):
    plate, truth = timelapse
    out = tmp_path / "an"
    r = _analyze(plate.parent / "export", out, layout, ld_model, scheduler, "-q")
    assert r.exit_code == 2 and "2 timepoints; choose one with --timepoint" in r.output
    r = _analyze(plate.parent / "export", out, layout, ld_model, scheduler, "--timepoint", "1",
                 "--fields-per-task", "2", "--wells", "A01,A02,B01,B02", "--ngff", "0.4",
                 "--readout", "dead", "--blocks", "normalise", "-q")
    assert r.exit_code == 0, r.output
    assert "stages run: convert, run, aggregate, stats, report" in r.output
    want = truth[truth.timepoint == 1].groupby("well").size()
    assert _counts(out) == [int(want[w]) for w in WELLS] == [6, 7, 8, 9]
    assert (out / "plate.ome.zarr" / ".zattrs").is_file()  # --ngff 0.4 reached convert
    stats = pd.read_parquet(out / "run" / "stats.parquet")
    assert set(stats.loc[stats["kind"] == "comparison", "readout"]) == {"freq_dead"}


def test_converted_plate_through_analyze(timelapse, ld_model, layout, scheduler, tmp_path):
    plate, truth = timelapse
    mine = tmp_path / "my plate"  # no .ome.zarr suffix: recognised by its plate metadata
    shutil.copytree(plate, mine)
    out = tmp_path / "an"
    r = _analyze(mine, out, layout, ld_model, scheduler, "--timepoint", "0")
    assert r.exit_code == 0, r.output
    assert "[1] convert: skipped" in r.output
    assert "stages run: run, aggregate, stats, report" in r.output
    assert not (out / "plate.ome.zarr").exists()
    want = truth[truth.timepoint == 0].groupby("well").size()
    assert _counts(out) == [int(want[w]) for w in WELLS] == [4, 5, 6, 7]
    r = _analyze(mine, out, layout, ld_model, scheduler, "--timepoint", "1")
    assert "[2] run: running (parameters changed (timepoint))" in r.output
    assert _counts(out) == [6, 7, 8, 9]
    r = _analyze(mine, out, layout, ld_model, scheduler, "--timepoint", "1")
    assert "stages run: none (everything was current)" in r.output
    r = _analyze(mine, out, layout, ld_model, scheduler, "--timepoint", "1", "--pixel-size", "1")
    assert r.exit_code == 2 and "is already an OME-Zarr plate: --pixel-size" in r.output


# --- layout check, aliases ---


def test_layout_check_lists_every_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("well,condition,dose,dose_unit,role\n"
                   "A01,ctrl,,,negative_control\n"
                   "Z99,x,,,sample\n"
                   "A01,dup,,,sample\n"
                   "B02,d,abc,uM,sample\n"
                   "B03,d,1,,sample\n"
                   "B04,d,,,weird\n"
                   "B05,d\n")
    r = _hcs("layout", "check", str(bad), "--plate-format", "96")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"error: {bad}: 6 errors in the layout:"
    assert [ln.strip() for ln in lines[1:]] == [
        f"{bad}:3: well Z99 is outside the 8 x 12 plate",
        f"{bad}:4: well A01 is listed twice (first at {bad}:2)",
        f"{bad}:5: dose 'abc' of well B02 is not a number",
        f"{bad}:6: well B03 has a dose (1) but no dose_unit",
        f"{bad}:7: unknown role 'weird' for well B04; use one of sample, negative_control, "
        "positive_control, empty",
        f"{bad}:8: 2 fields, but the header (line 1) has 5",
    ]
    # one error stays one line
    bad.write_text("well,condition\nA01,x\nA01,y\n")
    r = _hcs("layout", "check", str(bad))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {bad}:3: well A01 is listed twice (first at {bad}:2)"]


def test_annotations_is_one_name_and_voc_an_alias(tmp_path):
    cmds = _commands()
    for group, sub in (("train", "classifier"), ("evaluate", "classifier"),
                       ("explain", "classifier"), ("train", "detector"),
                       ("evaluate", "detector")):
        opts = _options(cmds[group].commands[sub])  # type: ignore[attr-defined]
        assert not opts["--annotations"].hidden
        if sub == "classifier":
            assert opts["--voc"].hidden
    runner = CliRunner(env={"COLUMNS": "200"})
    helptext = runner.invoke(app, ["evaluate", "classifier", "--help"]).output
    assert "--annotations" in helptext and "--voc" not in helptext
    missing = str(tmp_path / "nothing")
    by_name = [runner.invoke(app, ["evaluate", "classifier", "--model", missing, opt, missing])
               for opt in ("--annotations", "--voc")]
    assert by_name[0].exit_code == by_name[1].exit_code == 2
    assert by_name[0].output == by_name[1].output
    r = runner.invoke(app, ["evaluate", "classifier", "--model", missing, "--annotations", "a",
                            "--voc", "b"])
    assert r.exit_code == 2 and "--annotations and --voc (its old name) name different" in \
        r.output
