"""Issue 15, items 2, 5, 6, 7 and 12: run / aggregate / stats / report / analyze never delete
what hcs did not write, never read damage as zeros, and say so when planes are missing.

One small simulated plate (12 wells, one 540 px field each) is analysed once per module, with
the nucleus (Hoechst) TIFF of well A05 and the Alexa 568 TIFF of A09 deleted from the export
(planes missing at convert). A
second run reads a copy of that plate with the shard of A03 deleted and the shard of A04
truncated. Each test starts from the issue's reproduction, runs the CLI as a user does, and
checks the refusal (exit 2, one line naming the file) or the result, and that the inputs are
byte for byte unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_checks import one_line_error

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "plate_layouts" / "arhgap36_truncations.csv"
# A05 loses its nucleus (Hoechst) plane: no cells; A09 its Alexa 568 plane: cells, but wrong
MISSING_TIFFS = ("r01c05f01p01-ch2sk1fk1fl1.tiff", "r01c09f01p01-ch1sk1fk1fl1.tiff")


def hcs(*args: str | Path, check: int | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m hcs ARGS`` as a user would; ``check``: the exit code expected."""
    res = subprocess.run([sys.executable, "-m", "hcs", *map(str, args)], capture_output=True,
                         text=True, cwd=REPO, timeout=600)
    if check is not None:
        assert res.returncode == check, (res.returncode, res.stdout, res.stderr)
    return res


def tree_sha(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path (symlinks by target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + str(p.readlink())
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out



@pytest.fixture(scope="module")
def scheduler():
    """A tcp Dask cluster in this process (threads) that the CLI subprocesses connect to: no
    worker start-up or torch import per command."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's simulated plate (`hcs simulate ... --wells-per-condition 3`), with the
    Hoechst TIFF of A05 and the Alexa 568 TIFF of A09 deleted from its export."""
    root = tmp_path_factory.mktemp("sim")
    hcs("simulate", root / "s", "--layout", LAYOUT, "--assay", "cic", "--fields", "1",
        "--size", "540", "--wells-per-condition", "3", check=0)
    for name in MISSING_TIFFS:
        (root / "s" / "export" / "Images" / name).unlink()
    return root / "s"


@pytest.fixture(scope="module")
def analysis(sim: Path, tmp_path_factory: pytest.TempPathFactory,
             scheduler: str) -> tuple[Path, subprocess.CompletedProcess, dict[str, str]]:
    """``hcs analyze`` of the export: (analysis folder, the process, export checksums before)."""
    before = tree_sha(sim / "export")
    out = tmp_path_factory.mktemp("analysis") / "a"
    res = hcs("analyze", sim / "export", "--assay", "cic", "--layout", LAYOUT, "--out", out,
              "--scheduler", scheduler, "--no-gallery", check=0)
    return out, res, before


@pytest.fixture(scope="module")
def damaged(analysis: tuple, tmp_path_factory: pytest.TempPathFactory,
            scheduler: str) -> tuple[Path, Path, subprocess.CompletedProcess, dict[str, str]]:
    """A copy of the plate with A03's shard deleted and A04's truncated, run on A03..A06:
    (plate, run folder, the ``hcs run`` process, plate checksums before the run)."""
    root = tmp_path_factory.mktemp("damaged")
    plate = root / "plate.ome.zarr"
    shutil.copytree(analysis[0] / "plate.ome.zarr", plate)
    (plate / "A/3/0/0/c/0/0/0/0/0").unlink()
    shard = plate / "A/4/0/0/c/0/0/0/0/0"
    shard.write_bytes(shard.read_bytes()[:1000])
    before = tree_sha(plate)
    run = root / "run"
    res = hcs("run", plate, "--assay", "cic", "--model", REPO / "models" / "cic-sim", "--out", run,
              "--wells", "A03,A04,A05,A06", "--scheduler", scheduler, "-q")
    return plate, run, res, before


# --- item 2: analyze deletes only what it wrote -------------------------------------------------


def test_analyze_refuses_a_run_folder_holding_a_file_it_did_not_write(sim: Path,
                                                                     tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "run").mkdir(parents=True)
    (d / "run" / "notes.txt").write_text("notes\n")
    before = tree_sha(sim / "export")
    res = hcs("analyze", sim / "export", "--assay", "cic", "--layout", LAYOUT, "--out", d)
    one_line_error(res, str(d / "run" / "notes.txt"))
    assert (d / "run" / "notes.txt").read_text() == "notes\n"
    assert tree_sha(d) == {"run/notes.txt": hashlib.sha256(b"notes\n").hexdigest()}
    assert tree_sha(sim / "export") == before  # refused before any work


def test_analyze_never_writes_into_the_export(sim: Path, tmp_path: Path) -> None:
    export = tmp_path / "e"
    shutil.copytree(sim / "export", export)
    before = tree_sha(export)
    for out in (export, export / "Images", export / "analysis"):
        res = hcs("analyze", export, "--assay", "cic", "--layout", LAYOUT, "--out", out)
        one_line_error(res, f"--out {out} is inside the export")
    assert tree_sha(export) == before
    afile = tmp_path / "notes.txt"
    afile.write_text("notes")
    res = hcs("analyze", export, "--assay", "cic", "--layout", LAYOUT, "--out", afile)
    one_line_error(res, f"--out {afile}: exists and is not a folder")
    assert afile.read_text() == "notes"


def test_analyze_refuses_foreign_plate_and_report(sim: Path, tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "plate.ome.zarr").mkdir(parents=True)
    (d / "plate.ome.zarr" / "mine.txt").write_text("x")
    res = hcs("analyze", sim / "export", "--assay", "cic", "--layout", LAYOUT, "--out", d)
    one_line_error(res, str(d / "plate.ome.zarr"), "not a plate hcs wrote")
    shutil.rmtree(d / "plate.ome.zarr")
    (d / "report.html").write_text("<html>my own notes</html>")
    res = hcs("analyze", sim / "export", "--assay", "cic", "--layout", LAYOUT, "--out", d)
    one_line_error(res, str(d / "report.html"), "not a report hcs wrote")
    assert tree_sha(d) == {"report.html": hashlib.sha256(b"<html>my own notes</html>")
                           .hexdigest()}


def test_a_previous_run_is_removed_file_by_file_only_when_every_file_is_ours(
        analysis: tuple, tmp_path: Path) -> None:
    from hcs.engine.run_files import remove_run
    from hcs.errors import InputError

    run = tmp_path / "run"
    shutil.copytree(analysis[0] / "run", run)
    (run / "cells" / "A01" / "notes.parquet").write_text("mine")
    before = tree_sha(run)
    with pytest.raises(InputError, match=r"cells/A01/notes\.parquet: not a file hcs wrote"):
        remove_run(run)
    assert tree_sha(run) == before
    (run / "cells" / "A01" / "notes.parquet").unlink()
    (run / "extra").mkdir()
    with pytest.raises(InputError, match="extra: not a folder hcs wrote"):
        remove_run(run)
    (run / "extra").rmdir()
    # the temporary file a writer killed mid-write leaves (hcs.atomic's own name for it, host
    # and pid included) is hcs's: a later run without --resume removes it with the rest
    import tempfile

    from hcs.atomic import _temp_prefix

    target = run / "cells" / "A01" / "7.parquet"
    fd, left = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    n = len(before)
    assert remove_run(run) == n and not run.exists(), left
    # a folder with hcs's file names but no run.json of hcs is not provably ours
    fake = tmp_path / "fake"
    (fake / "cells" / "A01").mkdir(parents=True)
    (fake / "cells" / "A01" / "0.parquet").write_text("x")
    with pytest.raises(InputError, match="no run.json written by hcs"):
        remove_run(fake)
    assert (fake / "cells" / "A01" / "0.parquet").exists()


# --- item 5 (and 12): a damaged plate is a failed field, named ---------------------------------


def test_a_missing_or_truncated_chunk_is_a_failed_field_naming_the_file(damaged: tuple) -> None:
    plate, run, res, before = damaged
    assert res.returncode == 1, (res.stdout, res.stderr)
    gone, cut = plate / "A/3/0/0/c/0/0/0/0/0", plate / "A/4/0/0/c/0/0/0/0/0"
    out = res.stdout
    assert "2 failed of 4" in out
    assert f"failed: well A03 field 0: PlateDataError: well A03 field 0: chunk file {gone} " \
           "(t 0, c 0, z 0) is missing from the plate" in out
    assert f"failed: well A04 field 0: PlateDataError: well A04 field 0: cannot read the plate " \
           f"chunk {cut} (ValueError" in out
    # no worker traceback: the errors come back as records
    assert "Traceback" not in res.stderr and "Compute Failed" not in res.stderr
    fails = pd.read_parquet(run / "failures.parquet").sort_values("well")
    assert fails["well"].tolist() == ["A03", "A04"] and fails["attempts"].tolist() == [2, 2]
    assert str(gone) in fails["error"].iloc[0] and str(cut) in fails["error"].iloc[1]
    assert not (run / "cells" / "A03").exists() and not (run / "cells" / "A04").exists()
    assert (run / "cells" / "A06" / "0.parquet").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert tree_sha(plate) == before  # the plate is only read


def test_a_plate_stores_every_chunk_zero_planes_included(analysis: tuple) -> None:
    from hcs.io.omezarr import open_plate

    pl = open_plate(analysis[0] / "plate.ome.zarr")
    assert pl.missing_planes("A05", 0)[0]["c"] == 1  # the deleted Hoechst TIFF, written as zeros
    for well in pl.wells:
        files = pl.chunk_files(well, 0, [(0, c, 0) for c in range(3)])
        assert all(f.is_file() for paths in files.values() for f in paths), well


# --- item 6: missing planes are flagged downstream -----------------------------------------------


def test_missing_planes_are_named_flagged_and_left_out_of_the_statistics(
        sim: Path, analysis: tuple, tmp_path: Path) -> None:
    out, res, before = analysis
    assert tree_sha(sim / "export") == before  # the export is only read
    warning = ("2 fields have planes missing in the plate (recorded at convert, read as zeros; "
               "flagged in the cell tables and wells.parquet, excluded from statistics): "
               "A05 field 0 (HOECHST 33342); A09 field 0 (Alexa 568)")
    assert warning in res.stderr  # the run stage's summary and the final analyze line
    assert res.stderr.count(warning) == 2
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["fields_missing_planes"] == [
        {"well": "A05", "field": 0, "planes": 1, "channels": ["HOECHST 33342"]},
        {"well": "A09", "field": 0, "planes": 1, "channels": ["Alexa 568"]}]
    # cell tables: the column on every table, 1 for A05 (no nuclei: no rows) and A09, else 0
    a05 = pd.read_parquet(out / "run" / "cells" / "A05" / "0.parquet")
    assert len(a05) == 0 and a05["field_missing_planes"].dtype == "int64"
    a09 = pd.read_parquet(out / "run" / "cells" / "A09" / "0.parquet")
    assert len(a09) > 0 and (a09["field_missing_planes"] == 1).all()
    a01 = pd.read_parquet(out / "run" / "cells" / "A01" / "0.parquet")
    assert len(a01) > 0 and (a01["field_missing_planes"] == 0).all()
    wells = pd.read_parquet(out / "run" / "wells.parquet").set_index("well")
    for well in ("A05", "A09"):
        assert wells.loc[well, "n_fields_missing_planes"] == 1
        assert bool(wells.loc[well, "qc_missing_planes"]) and not wells.loc[well, "usable"]
        assert "qc_missing_planes" in wells.loc[well, "flags"]
    assert wells.loc["A09", "flags"] == "qc_missing_planes" and wells.loc["A09", "n_detected"] > 0
    assert (wells.drop(index=["A05", "A09"])["n_fields_missing_planes"] == 0).all()
    # statistics: control wells A05 (also no cells) and A09 left out by default; A09 is used
    # with --include-missing-planes
    stats = pd.read_parquet(out / "run" / "stats.parquet")
    comp = stats[(stats["kind"] == "comparison") & (stats["readout"] == "freq_all_cic")]
    imaged = wells[~wells["missing"]]
    n_ctrl = int((imaged["condition"] == "control").sum())
    assert int(comp["n_ref"].iloc[0]) == n_ctrl - 2
    res2 = hcs("stats", out / "run", "--out", tmp_path / "s.parquet", "--include-missing-planes",
               check=0)
    assert "wells with planes missing at convert, included (--include-missing-planes): " \
           "SIMPLATE/A05, SIMPLATE/A09" in res2.stderr
    comp2 = pd.read_parquet(tmp_path / "s.parquet")
    comp2 = comp2[(comp2["kind"] == "comparison") & (comp2["readout"] == "freq_all_cic")]
    assert int(comp2["n_ref"].iloc[0]) == n_ctrl - 1
    page = (out / "report.html").read_text()
    assert "2 field(s) with planes missing in the plate" in page and "HOECHST 33342" in page


# --- item 7: one plate, its real name --------------------------------------------------------


def test_wells_without_cells_or_with_failed_fields_stay_on_the_real_plate(
        analysis: tuple, damaged: tuple, tmp_path: Path) -> None:
    from hcs.report import load_run
    from hcs.report.builder import build_context

    out = analysis[0]
    wells = pd.read_parquet(out / "run" / "wells.parquet")
    assert set(wells["plate"]) == {"SIMPLATE"} and len(wells) == 96
    assert wells.set_index("well").loc["A05", "n_detected"] == 0  # no nuclei without Hoechst
    summary = next(s for s in build_context(load_run(out / "run"), gallery=False)["sections"]
                   if s["id"] == "summary")  # the findings come first
    facts = dict(summary["blocks"][0]["items"])
    assert facts["plates"] == "SIMPLATE"
    imaged = int((~wells["missing"]).sum())  # the layout has 96 wells; not all were imaged
    assert facts["wells imaged"] == f"{imaged} of the 96 wells of the plate"
    # a run whose A03 and A04 failed entirely, aggregated with the layout
    run = damaged[1]
    hcs("aggregate", run, "--layout", LAYOUT, check=0)
    w = pd.read_parquet(run / "wells.parquet").set_index("well")
    assert set(w["plate"]) == {"SIMPLATE"}
    for well in ("A03", "A04"):
        assert w.loc[well, "n_fields_failed"] == 1 and w.loc[well, "n_detected"] == 0
        assert bool(w.loc[well, "qc_fields_failed"]) and not w.loc[well, "usable"]
    assert not w.loc["A06", "qc_fields_failed"] and w.loc["A06", "n_detected"] > 0
    # a run.json of an older hcs, without plate_name: the name comes from the plate
    old = tmp_path / "old"
    shutil.copytree(run, old)
    meta = json.loads((old / "run.json").read_text())
    del meta["plate_name"]
    (old / "run.json").write_text(json.dumps(meta))
    hcs("aggregate", old, "--overwrite", check=0)
    assert set(pd.read_parquet(old / "wells.parquet")["plate"]) == {"SIMPLATE"}


# --- item 12: unreadable lock, report without wells ----------------------------------------------


def test_a_garbage_run_lock_is_refused_naming_it_and_left_alone(sim: Path,
                                                                 tmp_path: Path) -> None:
    """The lock of `hcs run` and of `hcs analyze` (one class, :class:`RunLock`); shown with
    `hcs analyze`, which takes it before loading the model."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "run.lock").write_bytes(b"\x00garbage{")
    before = tree_sha(sim / "export")
    res = hcs("analyze", sim / "export", "--assay", "cic", "--layout", LAYOUT, "--out", d)
    line = one_line_error(res, str(d / "run.lock"), "unreadable run lock")
    assert f"delete {d / 'run.lock'}" in line
    assert tree_sha(d) == {"run.lock": hashlib.sha256(b"\x00garbage{").hexdigest()}
    assert tree_sha(sim / "export") == before


def test_a_stale_lock_of_a_dead_hcs_process_is_taken_over(tmp_path: Path) -> None:
    import socket

    from hcs.engine.lock import RunLock

    owner = {"host": socket.gethostname(), "pid": 2**22 + 12345, "started": 0.0,
             "user": "someone", "locked_at": "2026-01-01T00:00:00Z"}  # no such process
    (tmp_path / "run.lock").write_text(json.dumps(owner))
    with RunLock(tmp_path) as lock:
        assert lock.took_over["pid"] == owner["pid"]
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] != owner["pid"]
    assert not (tmp_path / "run.lock").exists()


def test_report_without_wells_says_to_aggregate_first(analysis: tuple, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(analysis[0] / "run", run)
    (run / "wells.parquet").unlink()
    (run / "stats.parquet").unlink()
    before = tree_sha(run)
    res = hcs("report", run, "--out", tmp_path / "r.html")
    one_line_error(res, "no wells.parquet", f"hcs aggregate {run}")
    assert not (tmp_path / "r.html").exists() and tree_sha(run) == before


def test_a_truncated_cell_table_is_one_line_naming_it(analysis: tuple, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(analysis[0] / "run", run)
    table = run / "cells" / "A02" / "0.parquet"
    table.write_bytes(table.read_bytes()[:300])
    before = tree_sha(run)
    res = hcs("aggregate", run, "--overwrite")
    one_line_error(res, str(table), "cannot read the cell table")
    assert tree_sha(run) == before  # wells.parquet not replaced
