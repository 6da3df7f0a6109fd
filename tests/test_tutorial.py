"""docs/tutorial-your-own-cells.md, run as written.

Every fenced ``bash`` block of the tutorial runs, in order, as one ``bash -euo pipefail`` script
in an empty folder (``hcs`` and ``python`` on the PATH are this checkout's). A block that is one
``hcs annotate RUN --out ANN ...`` command (the labelling page) is started as the tutorial says,
with ``--port 0 --no-browser`` added, and a simulated annotator answers through the page's own
HTTP calls (``GET /api/state``, ``POST /api/label``, with the token of the printed URL): each
served cell gets the class of the simulation's truth object it lies in
(:func:`hcs.train.own.truth_labels`), a cell in no object is skipped. The first round is
interrupted half-way (Ctrl-C) and started again, as the tutorial says one can. The ``sh``
blocks (alternatives the tutorial does not run: a CNN, your own export) are checked against
each subcommand's ``--help``.

At the end the test checks the tutorial's claims with numbers: the second-round model's
cross-validated AUC and balanced accuracy, the per-condition dying fraction of the analysis
against the simulation's truth, the 10 uM effect significant in the right direction, the
report written, the plate within the model's domain; and that the figures the tutorial quotes
(each model's cross-validated AUC and balanced accuracy, the dying fraction per condition) are
this run's.

``HCS_TUTORIAL_OUT=DIR`` runs in ``DIR`` (kept) and writes every block's output to
``DIR/outputs.md``: the outputs the tutorial shows come from there.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial-your-own-cells.md"

#: The tutorial's classes for the simulation's truth classes.
CLASS_OF_TRUTH = {"live": "healthy", "dead": "dying"}

#: Measured on 2026-12-05: cross-validated AUC 0.989, balanced accuracy 0.941 of the second
#: round (the misses: the dying cells of the one out-of-focus field, when its well is held out);
#: 2026-12-06, features with a random half of the features per split: 0.998 / 0.990. The PI
#: stain separates the classes in every in-focus field, so a model below these bounds has lost
#: something real.
MIN_CV_AUC = 0.95
MIN_CV_BALANCED_ACCURACY = 0.90
#: Per-condition mean dying fraction vs the truth's dead fraction: measured within 0.016;
#: per well within 0.04 (3 wells of 80-137 cells: 0.05 is about one binomial SD at p = 0.25).
MAX_CONDITION_ERROR = 0.04
MAX_WELL_ERROR = 0.07
#: Figures the tutorial quotes from its run (cross-validated AUC and balanced accuracy of each
#: model; the measured dying fraction per condition): this run must give them within
#: QUOTE_TOLERANCE, else the tutorial's outputs are out of date.
QUOTED_CV = {"my-cells": (1.000, 0.996), "my-cells-2": (0.998, 0.990), "with-pi": (1.000, 0.993)}
QUOTED_DYING = {"DMSO": 0.150, "compound 1 uM": 0.240, "compound 10 uM": 0.555}
QUOTE_TOLERANCE = 0.01


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of the ``bash`` and ``sh`` fenced blocks, in order.

    Examples
    --------
    >>> fenced_blocks("a\\n```bash\\nhcs run p\\n```\\n```text\\nout\\n```\\n```sh\\nhcs x\\n```")
    [('bash', 'hcs run p\\n'), ('sh', 'hcs x\\n')]
    """
    return [(m.group(1), m.group(2))
            for m in re.finditer(r"^```(bash|sh)\n(.*?)^```", text, re.S | re.M)]


def commands(body: str) -> list[list[str]]:
    """The commands of a block as token lists (continuation lines joined, comments dropped)."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            out.append(tokens)
    return out


def is_labelling_page(body: str) -> bool:
    """A block that is one ``hcs annotate`` command serving the page (no export or import)."""
    cmds = commands(body)
    return (len(cmds) == 1 and cmds[0][:2] == ["hcs", "annotate"]
            and not {"--export", "--import"} & set(cmds[0]))


def test_tutorial_blocks_parse() -> None:
    """The tutorial has the commands the loop needs, each in a block of its own kind."""
    blocks = fenced_blocks(TUTORIAL.read_text())
    runs = [c for lang, b in blocks if lang == "bash" for c in commands(b)]
    subs = [" ".join(c[1:3]) if c[1] == "train" else c[1] for c in runs if c[0] == "hcs"]
    for needed in ("simulate", "convert", "run", "aggregate", "annotate", "train classifier",
                   "stats", "report", "analyze"):
        assert needed in subs, needed
    pages = [b for lang, b in blocks if lang == "bash" and is_labelling_page(b)]
    assert len(pages) == 2  # a spread round, then an uncertain one
    assert "--strategy uncertain" in pages[1]
    trains = [c for c in runs if c[:3] == ["hcs", "train", "classifier"]]
    assert all(c[c.index("--kind") + 1] == "features" for c in trains)
    analyze = [c for c in runs if c[:2] == ["hcs", "analyze"]]
    assert analyze and "--model" in analyze[0] and "--assay" not in analyze[0]


def test_sh_blocks_name_real_options() -> None:
    """Commands shown but not run (``sh`` blocks): every option is one of the subcommand's."""
    from typer.testing import CliRunner

    from hcs.cli import app

    shown = [c for lang, b in fenced_blocks(TUTORIAL.read_text()) if lang == "sh"
             for c in commands(b) if c[0] == "hcs"]
    assert shown
    for cmd in shown:
        sub = cmd[1:3] if cmd[1] in ("train", "evaluate", "explain", "layout") else cmd[1:2]
        r = CliRunner().invoke(app, [*sub, "--help"], terminal_width=200)
        assert r.exit_code == 0, (cmd, r.output)
        for opt in (t.split("=")[0] for t in cmd if t.startswith("--")):
            assert opt in r.output, f"`{' '.join(cmd)}`: {opt} is not an option of {sub}"


class Page:
    """The labelling server of one tutorial block, started as a subprocess."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*cmd, "--port", "0", "--no-browser", "--annotator",
                                      "simulated"], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = ""
        deadline = time.time() + 300
        match = None
        while time.time() < deadline and match is None:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line and self.proc.poll() is not None:
                break
            self.output += line
            match = re.search(r"http://([\d.]+):(\d+)/\?token=(\S+)", line)
        assert match, f"`{' '.join(cmd)}` printed no URL:\n{self.output}"
        self.host, self.port, self.token = match.group(1), int(match.group(2)), match.group(3)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"X-HCS-Token": self.token, "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        assert r.status == 200, (method, path, r.status, data[:200])
        return json.loads(data)

    def stop(self) -> None:
        """Ctrl-C, as the tutorial says."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.output += self.proc.stdout.read()  # type: ignore[union-attr]
        self.proc.stdout.close()  # type: ignore[union-attr]


def _truth_answers(cwd: Path, run: str) -> dict[str, str | None]:
    from hcs.train.own import truth_labels

    t = truth_labels(cwd / "sim", cwd / run)
    return {f"{w}_f{f}_c{c}": CLASS_OF_TRUTH[lab] for w, f, c, lab in
            t[["well", "field", "cell_id", "label"]].itertuples(index=False)}


def label_round(cmd: list[str], cwd: Path, env: dict[str, str], interrupt: bool) -> str:
    """Serve the page of ``cmd`` and answer every open cell with its truth class; with
    ``interrupt``, stop the server half-way and start the same command again."""
    answers = _truth_answers(cwd, cmd[2])
    log = ""
    page = Page(cmd, cwd, env)
    state = page.call("GET", "/api/state")
    assert state["classes"] == ["healthy", "dying"]
    todo = [c["cell"] for c in state["cells"]
            if c["cell"] not in state["labels"] and c["cell"] not in state["skipped"]]
    assert todo, "the round served no cell to label"
    done_before = len(state["labels"]) + len(state["skipped"])
    for i, cell in enumerate(todo):
        if interrupt and i == len(todo) // 2:
            page.stop()
            log += page.output
            page = Page(cmd, cwd, env)  # the same command: continues
            again = page.call("GET", "/api/state")
            assert len(again["labels"]) + len(again["skipped"]) == done_before + i
            assert [c["cell"] for c in again["cells"]] == [c["cell"] for c in state["cells"]]
        label = answers.get(cell)
        r = page.call("POST", "/api/label", {"cell": cell, "label": label,
                                              "skip": label is None})
        assert r["ok"]
    page.stop()
    return log + page.output


@pytest.mark.slow
def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    keep = os.environ.get("HCS_TUTORIAL_OUT")
    cwd = Path(keep).resolve() if keep else tmp_path
    cwd.mkdir(parents=True, exist_ok=True)
    assert not any(cwd.iterdir()), f"{cwd} is not empty"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, cmd in (("hcs", f'"{sys.executable}" -m hcs'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {cmd} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    outputs = []
    for lang, body in fenced_blocks(TUTORIAL.read_text()):
        if lang != "bash":
            continue
        t0 = time.time()
        if is_labelling_page(body):
            out = label_round(commands(body)[0], cwd, env,
                              interrupt=not (cwd / "ann" / "labels.csv").exists())
        else:
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=900)
            out = r.stdout + r.stderr
            assert r.returncode == 0, f"block failed:\n{body}\n{out}"
        outputs.append(f"```bash\n{body}```\n({time.time() - t0:.1f} s)\n```text\n{out}```\n")
    if keep:
        (cwd / "outputs.md").write_text("\n".join(outputs))

    # the labels: two rounds, 200 spread + 50 uncertain cells, few skipped
    labels = pd.read_csv(cwd / "ann" / "labels.csv")
    assert 240 <= len(labels) <= 250 and set(labels["label"]) == {"healthy", "dying"}
    assert not labels.duplicated(["well", "field", "cell_id"]).any()
    # the second model's cross-validated figures (grouped by well)
    card = yaml.safe_load((cwd / "models" / "my-cells-2" / "model.yaml").read_text())
    cv = card["metrics"]["cross_validated"]
    assert card["kind"] == "features" and card["classes"] == ["healthy", "dying"]
    assert cv["grouped_by"] == "well" and cv["n"] == len(labels)
    assert cv["auc"] > MIN_CV_AUC and cv["balanced_accuracy"] > MIN_CV_BALANCED_ACCURACY
    # the analysis against the simulation's truth
    truth = pd.read_parquet(cwd / "sim" / "truth" / "wells.parquet")
    for wells_file in ("run2/wells.parquet", "analysis/run/wells.parquet"):
        est = pd.read_parquet(cwd / wells_file)
        both = truth[["well", "condition", "freq_dead"]].merge(est[["well", "freq_dying"]],
                                                               on="well")
        assert len(both) == len(truth) == 9
        assert (both["freq_dead"] - both["freq_dying"]).abs().max() < MAX_WELL_ERROR
        per = both.groupby("condition")[["freq_dead", "freq_dying"]].mean()
        assert (per["freq_dead"] - per["freq_dying"]).abs().max() < MAX_CONDITION_ERROR
        assert per["freq_dying"].is_monotonic_increasing  # DMSO < 1 uM < 10 uM (sorted names)
    stats = pd.read_parquet(cwd / "analysis" / "run" / "stats.parquet")
    hi = stats[(stats["readout"] == "freq_dying") & (stats["condition"] == "compound 10 uM")]
    assert len(hi) == 1 and hi["diff"].iloc[0] > 0.3 and hi["p_adj"].iloc[0] < 0.01
    true_diff = (truth.loc[truth["condition"] == "compound 10 uM", "freq_dead"].mean()
                 - truth.loc[truth["condition"] == "DMSO", "freq_dead"].mean())
    assert abs(hi["diff"].iloc[0] - true_diff) < MAX_CONDITION_ERROR
    html = (cwd / "analysis" / "report.html").read_text()
    assert "freq_dying" in html and (cwd / "report.html").stat().st_size > 100_000
    # the figures the tutorial shows are this run's
    text = TUTORIAL.read_text()
    for name, (auc, bacc) in QUOTED_CV.items():
        assert f"100%  {auc:.3f}  {bacc:.3f}" in text, name
        got = yaml.safe_load((cwd / "models" / name / "model.yaml").read_text())
        cvq = got["metrics"]["cross_validated"]
        assert abs(cvq["auc"] - auc) < QUOTE_TOLERANCE, (name, cvq["auc"])
        assert abs(cvq["balanced_accuracy"] - bacc) < QUOTE_TOLERANCE, (name, cvq)
    for cond, value in QUOTED_DYING.items():
        assert f"{value:.3f}" in text
        assert abs(per.loc[cond, "freq_dying"] - value) < QUOTE_TOLERANCE, cond
    dom = json.loads((cwd / "analysis" / "run" / "domain.json").read_text())
    assert dom["status"] == "in_domain" and dom["fields"] == 9
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"tutorial commands: {child.ru_utime + child.ru_stime:.0f} s CPU")
