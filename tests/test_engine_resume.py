"""Kill-and-resume: ``hcs run`` SIGKILLed mid-plate (with its workers), then ``--resume`` on a
different number of workers, gives exactly the tables of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hcs.engine import process_field
from hcs.engine.processor import EngineParams
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "A02", "B01", "B02"]
FIELDS = 3


def _hcs(*args: str) -> list[str]:
    return [sys.executable, "-m", "hcs", *args]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    plate, truth = write_disc_plate(tmp_path / "p", WELLS, fields=FIELDS, size=256, seed=3)
    model = save_random_model(tmp_path / "m", "livedead", ["brightfield"])
    ref = tmp_path / "ref"
    params = EngineParams(plate=str(plate.resolve()), assay="livedead",
                          model=str(model.resolve()))
    for w in WELLS:
        for f in range(FIELDS):
            process_field(params, str(ref), w, f)

    out = tmp_path / "run"
    args = ["run", str(plate), "--assay", "livedead", "--model", str(model), "--out", str(out),
            "--gpus", "0", "-q"]
    proc = subprocess.Popen(_hcs(*args, "--workers", "1"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    done: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        done = list((out / "cells").rglob("*.parquet")) if (out / "cells").exists() else []
        if done:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes, mid-plate
    proc.wait()
    n_before = len(list((out / "cells").rglob("*.parquet")))
    assert 1 <= n_before < len(WELLS) * FIELDS, n_before
    assert (out / "run.lock").exists()  # left behind by the killed run: stale
    assert json.loads((out / "run.json").read_text())["status"] == "running"

    res = subprocess.run(_hcs(*args, "--workers", "2", "--resume"), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    done_now = len(WELLS) * FIELDS - n_before
    assert f"{done_now} fields processed, {n_before} already done, 0 failed" in res.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["cluster"]["workers"] == 2
    assert not (out / "run.lock").exists()
    assert not list((out / "cells").rglob("*.tmp"))

    ref_files = sorted(p.relative_to(ref) for p in (ref / "cells").rglob("*.parquet"))
    got_files = sorted(p.relative_to(out) for p in (out / "cells").rglob("*.parquet"))
    assert got_files == ref_files
    for rel in ref_files:
        pd.testing.assert_frame_equal(pd.read_parquet(out / rel), pd.read_parquet(ref / rel))
    assert sum(len(pd.read_parquet(out / r)) for r in got_files) == len(truth)

    res = subprocess.run(_hcs("aggregate", str(out)), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{len(WELLS)} wells, {len(truth)} cells" in res.stdout
