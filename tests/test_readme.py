"""Every ``hcs`` command in README.md is exercised by a test.

:func:`readme_commands` extracts every ``hcs ...`` command from the README's code blocks (also
``.venv/bin/hcs ...`` inside the set-up lines, continuation lines joined, comments dropped). Each
one is either

- **run here**, in README order, by :func:`test_readme_commands_run_on_small_inputs`: in a
  sandbox folder where the README's placeholders exist as small real inputs (the Harmony export
  is a small simulated Phenix export, the ScanR export a simulated ScanR one, the annotations a
  subset of the real LDC VOC data), ``--scheduler tcp://scheduler:8786`` is an in-process cluster
  and a few options are appended to make heavy commands small (``SHRINK``); or
- **mapped** (``MAPPED``) to named tests that run the same subcommand with the same options
  (checked: every listed test exists, and one of them names the subcommand, every option the
  README command uses and its ``--assay``).

A README command that is neither fails :func:`test_every_readme_command_is_covered`.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcs.cli import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))

#: Subcommands run by test_readme_commands_run_on_small_inputs.
RUN_HERE = ("convert", "info", "layout check", "simulate", "analyze", "run", "aggregate", "stats",
            "report", "train classifier", "evaluate classifier", "export profiles")

#: Subcommands covered by named tests elsewhere: (file, test function), all must exist.
MAPPED: dict[str, list[tuple[str, str]]] = {
    "train detector": [("tests/test_train_detector.py",
                        "test_cli_train_with_resume_then_evaluate_json")],
    "evaluate detector": [("tests/test_train_detector.py",
                           "test_cli_train_with_resume_then_evaluate_json")],
    "explain classifier": [("tests/test_classify_shipped.py",
                            "test_explain_cli_writes_grad_cam_overlays_of_the_shipped_model")],
    "annotate": [("tests/test_annotate.py", "test_readme_annotate_commands")],
    "evaluate run": [("tests/test_one_field.py", "test_marker_scores_the_other_half")],
    "demo": [("tests/test_demo.py", "test_demo_cli_reduced"),
             ("tests/test_demo.py", "test_demo_cli_livedead_reduced"),
             ("tests/test_demo.py", "test_demo_cli_mitosis_reduced"),
             ("tests/test_demo.py", "test_demo_full_size")],
}

#: Options appended to a README command to make it small (click: the last value wins).
SHRINK: dict[str, list[str]] = {
    "simulate": ["--wells-per-condition", "2", "--fields", "1", "--size", "256", "--workers",
                 "1", "-q"],
    "train classifier": ["--arch", "test_resnet", "--epochs", "1", "--n-boot", "20",
                         "--threads", "1", "--batch-size", "16"],
    "evaluate classifier": ["--n-boot", "20", "--device", "cpu"],
    "analyze": ["--no-gallery", "-q"],
    "run": ["-q"],
    "report": ["--no-gallery"],
}

PLACEHOLDERS = {
    "harmony": "MyPlate__2024-06-24T11_48_55-Measurement 1",
    "scanr": "scanr_experiment/",
    "layout": "my_layout.csv",
    "voc": "my_annotations/",
    "scheduler": "tcp://scheduler:8786",
    "tiffs": "my_tiffs/",
}


def readme_commands(text: str) -> list[list[str]]:
    """Every ``hcs`` command of the fenced code blocks, as token lists starting with ``hcs``.

    Examples
    --------
    >>> readme_commands("```bash\\npython3 -m venv .venv && .venv/bin/hcs demo  # go\\n"
    ...                 "hcs run p.ome.zarr \\\\\\n  --resume\\n```")
    [['hcs', 'demo'], ['hcs', 'run', 'p.ome.zarr', '--resume']]
    """
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                tokens = shlex.split(part, comments=True)
                if tokens and (tokens[0] == "hcs" or tokens[0].endswith("/bin/hcs")):
                    out.append(["hcs", *tokens[1:]])
    return out


def subcommand(cmd: list[str]) -> str:
    """``hcs train classifier --x`` -> ``train classifier``; ``hcs run p`` -> ``run``."""
    two = " ".join(cmd[1:3])
    return two if two in RUN_HERE or two in MAPPED else cmd[1]


def _options(cmd: list[str]) -> list[str]:
    return [t for t in cmd if t.startswith("--")]


def _values(cmd: list[str]) -> list[str]:
    """Option values that select behaviour (``--assay livedead``), not paths."""
    return [v for o, v in zip(cmd, cmd[1:], strict=False) if o == "--assay"]


def _test_source(file: str, name: str) -> str | None:
    path = REPO / file
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(path.read_text(), node)
    return None


def test_readme_starts_with_the_two_setup_commands():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert block[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && "
                               ".venv/bin/hcs demo")
    assert block[1] == ('python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && '
                        ".venv/bin/python -m pytest")
    assert lines.index("```bash") < 4


#: The model the README trains on your own labels (its commands: test_own_labels_covered).
OWN_MODEL = "models/my-cells"


def test_own_labels_covered():
    """`hcs train classifier --labels ...` needs a labelled annotation folder, which the README
    sandbox does not have: tests/test_train_labels.py runs it with the same options."""
    cmds = [c for c in readme_commands(README.read_text()) if "--labels" in c]
    assert cmds, "the README shows training on your own labels"
    src = (REPO / "tests" / "test_train_labels.py").read_text()
    for cmd in cmds:
        assert subcommand(cmd) == "train classifier"
        for opt in _options(cmd):
            assert f'"{opt}"' in src or f"'{opt}'" in src, f"{opt} of `{' '.join(cmd)}` untested"
    # `hcs run PLATE --model OWN_MODEL` (no --assay): test_run_features_model_without_assay
    assert "def test_run_features_model_without_assay" in src
    # `hcs analyze PLATE --model OWN_MODEL` (no --assay): the assay from the card
    assert "def test_analyze_takes_the_assay_from_the_model_card" in src
    assert [c for c in readme_commands(README.read_text())
            if c[1] == "analyze" and OWN_MODEL in c and "--assay" not in c]


def test_every_readme_command_is_covered():
    cmds = readme_commands(README.read_text())
    assert len(cmds) >= 15
    uncovered = []
    for cmd in cmds:
        sub = subcommand(cmd)
        if sub in RUN_HERE:
            continue
        if sub not in MAPPED:
            uncovered.append(" ".join(cmd))
            continue
        users = []
        for file, name in MAPPED[sub]:
            src = _test_source(file, name)
            assert src is not None, f"{file}::{name} (covering `{' '.join(cmd)}`) does not exist"
            if all(t in src for t in [sub.split()[-1], *_options(cmd), *_values(cmd)]):
                users.append(name)
        assert users, f"no test of {MAPPED[sub]} runs `{' '.join(cmd)}` with its options"
    assert not uncovered, f"README commands no test exercises: {uncovered}"
    # every hcs subcommand the README names exists in the CLI
    for cmd in cmds:
        r = CliRunner().invoke(app, [*cmd[1:3 if " " in subcommand(cmd) else 2], "--help"])
        assert r.exit_code == 0, f"`{' '.join(cmd)}`: {r.output}"


def _sandbox(root: Path) -> None:
    """The README's placeholders as small real inputs inside ``root`` (the working folder)."""
    from hcs.synth import simulate_plate

    layout = REPO / "plate_layouts" / "arhgap36_truncations.csv"
    (root / "plate_layouts").symlink_to(REPO / "plate_layouts")
    (root / "models").mkdir()
    for m in (REPO / "models").iterdir():
        (root / "models" / m.name).symlink_to(m)
    shutil.copy(layout, root / PLACEHOLDERS["layout"])
    h = simulate_plate(root / ".sim_h", layout, "cic", fields=1, size=256, wells_per_condition=2,
                       progress=False, workers=1)
    h.export.rename(root / PLACEHOLDERS["harmony"])
    _tiff_folder(root / PLACEHOLDERS["harmony"], root / PLACEHOLDERS["tiffs"].rstrip("/"))
    s = simulate_plate(root / ".sim_s", layout, "cic", fmt="scanr", fields=1, size=128,
                       wells_per_condition=1, progress=False, workers=1)
    s.export.rename(root / PLACEHOLDERS["scanr"].rstrip("/"))
    voc = SHARED / "livedead-ldc"
    if voc.is_dir():
        dest = root / PLACEHOLDERS["voc"].rstrip("/")
        dest.mkdir()
        for xml in sorted(voc.glob("*.xml"))[:40]:
            shutil.copy(xml, dest)
            for img in voc.glob(glob_escape(xml.stem) + ".*"):
                if img.suffix != ".xml":
                    shutil.copy(img, dest)


def _tiff_folder(harmony: Path, out: Path) -> None:
    """The Harmony export's planes as a plain TIFF folder (``MyPlate_B03_s1_w2.tif``, no
    metadata: tifffile writes resolution 1 x 1 without a unit), channels w1..w3 = E-cadherin
    (Alexa 568), Hoechst, Brightfield as the README names them."""
    import tifffile

    from hcs.io.acquisition import read_plane
    from hcs.io.harmony import read_harmony
    from hcs.plate import well_name

    acq = read_harmony(harmony)
    assert [c.name for c in acq.channels] == ["Alexa 568", "HOECHST 33342", "Brightfield"]
    out.mkdir()
    for p in acq.planes.itertuples():
        name = f"MyPlate_{well_name(p.row, p.col)}_s{p.field + 1}_w{p.channel + 1}.tif"
        tifffile.imwrite(out / name, read_plane(p.path, p.page))


def glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def test_readme_commands_run_on_small_inputs(tmp_path, monkeypatch, scheduler):
    _sandbox(tmp_path)
    monkeypatch.chdir(tmp_path)
    ran, skipped = [], []
    for cmd in readme_commands(README.read_text()):
        sub = subcommand(cmd)
        if sub not in RUN_HERE or "--labels" in cmd or OWN_MODEL in cmd:
            continue  # own labels and the model trained on them: test_own_labels_covered
        args = [a.replace("../shared/data", str(SHARED)) for a in cmd[1:]]
        args = [scheduler if a == PLACEHOLDERS["scheduler"] else a for a in args]
        if any(str(SHARED) in a for a in args) and not SHARED.is_dir() or \
                PLACEHOLDERS["voc"] in args and not Path(PLACEHOLDERS["voc"]).is_dir():
            skipped.append(" ".join(cmd))
            continue
        args += SHRINK.get(sub, [])
        if sub in ("run", "analyze") and "--scheduler" not in args:
            args += ["--scheduler", scheduler]  # an in-process cluster instead of --workers N
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, f"`{' '.join(cmd)}` failed:\n{r.output}"
        ran.append(" ".join(cmd))
    assert len(ran) >= 12, ran
    # what the README says each command leaves behind
    assert (tmp_path / "plate.ome.zarr" / "zarr.json").is_file()
    assert (tmp_path / "run" / "wells.parquet").is_file()
    assert (tmp_path / "run" / "stats.parquet").is_file()
    assert (tmp_path / "report.html").stat().st_size > 100_000
    assert (tmp_path / "my_tiff_analysis" / "report.html").is_file()  # the TIFF folder one
    assert (tmp_path / "my_screen" / "screen" / "report.html").is_file()  # the screen one
    assert len(list((tmp_path / "my_screen" / "plates").glob("*/report.html"))) == 2
    if skipped:
        pytest.skip(f"needs ../shared/data, not found: {skipped}")
