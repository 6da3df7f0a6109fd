"""Hostile inputs found by a red-team pass after issues 14 and 15 (one test per finding).

A tiny simulated plate (2 wells, 256 px) is built once per module; each test runs the CLI as a
user does and checks the refusal (exit 2, one ``error:`` line naming the file) or the result,
and that the inputs are byte for byte unchanged.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import one_line_error

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "cic-sim"


def hcs(*args: str | Path, check: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hcs ARGS`` as a user would; ``check``: the exit code expected."""
    res = subprocess.run([sys.executable, "-m", "hcs", *map(str, args)], capture_output=True,
                         text=True, cwd=REPO, timeout=600)
    if check is not None:
        assert res.returncode == check, (res.returncode, res.stdout, res.stderr)
    return res


def tree_sha(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}



@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted 2-well cic plate (one 256 px field per well)."""
    root = tmp_path_factory.mktemp("hostile")
    layout = root / "layout.csv"
    layout.write_text("well,condition,role\nA01,control,negative_control\nA02,drug,sample\n")
    hcs("simulate", root / "s", "--layout", layout, "--assay", "cic", "--fields", "1",
        "--size", "256", check=0)
    hcs("convert", root / "s" / "export", root / "p.ome.zarr", check=0)
    return root / "p.ome.zarr"


@pytest.mark.parametrize("where", ["{plate}", "{plate}/run", "{model}/run"])
def test_run_out_inside_the_plate_or_model_is_refused(plate: Path, where: str) -> None:
    # before: `hcs run P -o P` exited 0 and wrote cells/, run.json into the plate folder
    out = where.format(plate=plate, model=MODEL)
    before, model_before = tree_sha(plate), tree_sha(MODEL)
    res = hcs("run", plate, "-a", "cic", "-m", MODEL, "-o", out, "--workers", "1", "-q")
    one_line_error(res, f"--out {out}", "hcs never writes into an input")
    assert tree_sha(plate) == before and tree_sha(MODEL) == model_before
    assert not (MODEL / "run").exists()


def test_layout_sample_without_condition_is_refused(tmp_path: Path) -> None:
    # before: `hcs layout check` and `hcs aggregate` accepted it; the well silently had no
    # condition and dropped out of every comparison
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,control,negative_control\nA02,,sample\n"
                      "A03,drug,sample\nA04,,\n")
    line = one_line_error(hcs("layout", "check", layout),
                          f"{layout}:3: well A02 has role sample but no condition")
    assert "A04" not in line  # no role and no condition: an unused well, as before
    ok = tmp_path / "ok.csv"
    ok.write_text("well,condition,role\nA01,control,negative_control\nA04,,empty\n")
    res = hcs("layout", "check", ok, check=0)
    assert "empty: 1 wells" in res.stdout


def test_stats_reference_that_is_no_condition_is_refused(tmp_path: Path) -> None:
    # before: `hcs stats -r Control` (layout says 'control') exited 0 with a warning and wrote a
    # stats.parquet whose every comparison was "reference_missing"
    import pandas as pd

    wells = pd.DataFrame({
        "plate": "P", "well": ["A01", "A02", "A03", "A04"], "row": 0, "col": [0, 1, 2, 3],
        "condition": ["control", "control", "drug", "drug"], "role": ["negative_control"] * 2
        + ["sample"] * 2, "n_analysed": 50, "usable": True, "freq_x": [0.1, 0.12, 0.3, 0.33]})
    wells.to_parquet(tmp_path / "wells.parquet")
    before = tree_sha(tmp_path)
    one_line_error(hcs("stats", tmp_path / "wells.parquet", "-r", "Control"),
                   "--reference 'Control' is not a condition", "did you mean 'control'?")
    assert tree_sha(tmp_path) == before  # no stats.parquet
    hcs("stats", tmp_path / "wells.parquet", "-r", "control", check=0)
    assert (tmp_path / "stats.parquet").is_file()


def test_layout_well_beyond_the_largest_plate_names_the_line(tmp_path: Path) -> None:
    # before: "well (0, 98) does not fit a 1536-well plate", no file, no line
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition\nA01,c\nA99,d\n")
    one_line_error(hcs("layout", "check", layout), f"{layout}:3: well A99 is outside the 32 x 48")


def test_layout_in_a_windows_encoding_or_excel_names_the_fix(tmp_path: Path) -> None:
    # before: "not a text layout file (invalid continuation byte)", no line, no fix
    latin1 = tmp_path / "layout.csv"
    latin1.write_bytes("well,condition\nA01,contrôle\nA02,drug\n".encode("cp1252"))
    one_line_error(hcs("layout", "check", latin1),
                   f"{latin1}:2: byte 0xf4 is not UTF-8", "'CSV UTF-8'")
    xlsx = tmp_path / "layout.xlsx"
    import zipfile

    with zipfile.ZipFile(xlsx, "w") as z:  # an .xlsx is a zip of XML parts
        z.writestr("xl/workbook.xml", "\u00e9" * 50)
    one_line_error(hcs("layout", "check", xlsx), f"{xlsx}: an Excel workbook, not a CSV")
    # the same layout saved as UTF-8 (with Excel's BOM and CRLF) reads
    utf8 = tmp_path / "utf8.csv"
    utf8.write_bytes("\ufeffwell,condition\r\nA01,contrôle\r\nA02,drug\r\n".encode())
    assert "contrôle (sample): 1 wells" in hcs("layout", "check", utf8, check=0).stdout


def test_run_on_an_export_or_a_missing_path_says_what_to_do(plate: Path) -> None:
    export = plate.parent / "s" / "export"
    one_line_error(hcs("run", export, "-a", "cic", "-m", MODEL, "-o", plate.parent / "r1"),
                   "not an OME-NGFF plate", "converted first (hcs convert, or hcs analyze)")
    missing = plate.parent / "typo.ome.zarr"
    one_line_error(hcs("run", missing, "-a", "cic", "-m", MODEL, "-o", plate.parent / "r2"),
                   f"{missing}: no such plate")
    assert not (plate.parent / "r1").exists() and not (plate.parent / "r2").exists()


@pytest.fixture(scope="module")
def run_dir(plate: Path) -> Path:
    """A run of the tiny plate, aggregated."""
    out = plate.parent / "run"
    hcs("run", plate, "-a", "cic", "-m", MODEL, "-o", out, "--workers", "1", "-q", check=0)
    hcs("aggregate", out, check=0)
    return out


@pytest.mark.parametrize(("cmd", "target"), [
    ("aggregate", "layout"), ("aggregate", "run.json"), ("aggregate", "failures.parquet"),
    ("stats", "layout"), ("stats", "wells.parquet"), ("stats", "run.json"),
    ("report", "layout"), ("report", "wells.parquet"), ("report", "run.json")])
def test_overwrite_never_replaces_an_input_file(run_dir: Path, tmp_path: Path, cmd: str,
                                                target: str) -> None:
    # before: `hcs aggregate RUN -l L.csv -o L.csv --overwrite` replaced the layout with a
    # Parquet table; `hcs report RUN -o RUN/wells.parquet --overwrite` the wells table
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,control,negative_control\nA02,drug,sample\n")
    out = layout if target == "layout" else run_dir / target
    before = {**tree_sha(run_dir), "layout": tree_sha(tmp_path)}
    args = {"aggregate": ["-l", layout], "stats": ["-l", layout, "-r", "control"],
            "report": []}[cmd]
    res = hcs(cmd, run_dir, *args, "-o", out, "--overwrite")
    line = one_line_error(res, str(out))
    assert "is an input of this command" in line or "not a report hcs wrote" in line
    assert {**tree_sha(run_dir), "layout": tree_sha(tmp_path)} == before


def test_overwrite_replaces_only_a_file_of_the_output_kind(run_dir: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    line = one_line_error(hcs("aggregate", run_dir, "-o", notes, "--overwrite"), str(notes))
    assert "not a Parquet file" in line and notes.read_text() == "my notes\n"
    hcs("aggregate", run_dir, "-o", tmp_path / "w.parquet", check=0)
    hcs("aggregate", run_dir, "-o", tmp_path / "w.parquet", "--overwrite", check=0)
    hcs("report", run_dir, "-o", tmp_path / "r.html", check=0)
    hcs("report", run_dir, "-o", tmp_path / "r.html", "--overwrite", check=0)


def test_layout_condition_with_two_roles_is_refused(tmp_path: Path) -> None:
    # before: accepted; the condition's control and sample wells mixed silently in the tests
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,DMSO,negative_control\nA02,DMSO,sample\n"
                      "A03,drug,sample\n")
    one_line_error(hcs("layout", "check", layout),
                   f"{layout}:3: well A02 gives condition 'DMSO' the role sample, but "
                   f"{layout}:2 gives it negative_control")
