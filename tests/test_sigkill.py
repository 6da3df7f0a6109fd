"""Issue 15, "How it is shown": a SIGKILL at a random point of any command that writes, then the
same command again, leaves the previous state or the complete new one, never a mix.

For each of ``convert, run, aggregate, stats, report, analyze``: the command runs once cleanly
(the reference), then, for a few seeded random delays spread over its runtime, it is started as a
subprocess (its own process group, so Dask workers die with it), SIGKILLed, its output checked
(absent or equal to the previous state, or equal to the reference: each cell table of a run
complete or absent), run again (with ``--resume`` / ``--overwrite`` as the CLI requires) and
compared with the reference on the content that is deterministic (plate arrays, cell tables,
``wells.parquet``, ``stats.parquet``; a report is complete HTML). No ``.partial-*``, temporary or
lock file may be left behind after the second command.

``stats`` runs in the default test run; the other commands are ``slow``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

LAYOUT = Path(__file__).resolve().parents[1] / "plate_layouts" / "livedead_dose_series.csv"
SEED = 15
#: where in the clean runtime the kills land (seeded jitter of +- 0.05 is added)
FRACTIONS = (0.4, 0.7, 0.85, 0.95)


def _hcs(*args: str) -> list[str]:
    return [sys.executable, "-m", "hcs", *[str(a) for a in args]]


def _run(args: list[str]) -> float:
    """Run a command to completion; its wall time."""
    t0 = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{args}: {res.stderr[-2000:]}"
    return time.perf_counter() - t0


def _kill_after(args: list[str], delay: float) -> bool:
    """Start ``args``, SIGKILL its process group after ``delay`` s; True if it was killed."""
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _delays(runtime: float, n: int, salt: int) -> list[float]:
    rng = np.random.default_rng([SEED, salt])
    picks = FRACTIONS if n >= len(FRACTIONS) else FRACTIONS[-n:]
    return [max(0.05, runtime * (f + rng.uniform(-0.05, 0.05))) for f in picks]


def _leftovers(*folders: Path) -> list[str]:
    """Temporary, partial and lock files under ``folders`` (and their direct parents)."""
    bad = []
    for folder in folders:
        for root in {folder, folder.parent}:
            if not root.exists():
                continue
            items = root.rglob("*") if root == folder else root.iterdir()
            for p in items:
                n = p.name
                if (".partial-" in n or n.endswith(".tmp") or n == "run.lock"
                        or (n.startswith(".") and ".tmp" in n)):
                    bad.append(str(p))
    return sorted(bad)


def _frame_digest(path: Path) -> str | None:
    if not path.exists():
        return None
    df = pd.read_parquet(path)
    h = pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
    return hashlib.sha256(h + ",".join(map(str, df.columns)).encode()).hexdigest()


def plate_state(path: Path) -> Any:
    """Wells, fields, channels and a digest of every field's pixels; None when absent."""
    if not path.exists():
        return None
    from hcs.io.omezarr import open_plate

    pl = open_plate(path)
    out: dict[str, Any] = {"channels": list(pl.channels)}
    for w in pl.wells:
        for f in pl.fields(w):
            out[f"{w}/{f}"] = hashlib.sha256(np.asarray(pl.field(w, f)).tobytes()).hexdigest()
    return out


def cells_state(run: Path) -> dict[str, str | None]:
    return {str(p.relative_to(run)): _frame_digest(p)
            for p in sorted((run / "cells").rglob("*.parquet"))} if run.exists() else {}


def report_state(path: Path) -> Any:
    """A report is not byte-deterministic (it records when it was made): complete or absent."""
    if not path.exists():
        return None
    return "complete" if path.read_bytes().rstrip().endswith(b"</html>") else "truncated"


def _check(name: str, first: list[str], again: Callable[[], list[str]],
           state: Callable[[], Any], reset: Callable[[], None], n: int, salt: int,
           partial_ok: Callable[[Any, Any], bool] | None = None,
           outputs: tuple[Path, ...] = ()) -> list[float]:
    """The property for one command; returns the delays at which a kill landed."""
    reset()
    previous = state()
    runtime = _run(first)
    clean = state()
    assert clean is not None and clean != previous, f"{name}: the clean run changed nothing"
    killed_at = []
    for delay in _delays(runtime, n, salt):
        reset()
        for _ in range(8):  # runtimes vary on a busy machine: try earlier until a kill lands
            if _kill_after(first, delay):
                break
            reset()
            delay *= 0.7
        else:
            continue
        killed_at.append(round(delay, 2))
        after = state()
        ok = after in (previous, clean) or (partial_ok is not None and partial_ok(after, clean))
        assert ok, f"{name} killed after {delay:.2f} s left a mix: {after!r}"
        _run(again())
        assert state() == clean, f"{name}: killed after {delay:.2f} s, then re-run: differs"
        assert not _leftovers(*outputs), f"{name}: left behind {_leftovers(*outputs)}"
    assert killed_at, f"{name}: no kill landed before the command ended"
    return killed_at


# --- fixtures: a small simulated plate, converted; a run of it -------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sigkill")
    _run(_hcs("simulate", tmp / "s", "--layout", LAYOUT, "--assay", "livedead", "--fields", 1,
              "--size", 256, "--wells-per-condition", 1, "--seed", 3, "-q"))
    return tmp


@pytest.fixture(scope="module")
def plate(sim) -> Path:
    from hcs.io import open_export
    from hcs.io.convert import write_plate

    out = sim / "plate.ome.zarr"
    write_plate(open_export(sim / "s" / "export"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def run_dir(sim, plate) -> Path:
    """A run folder whose cells are the simulation's truth (tests/simrun.py): no cluster."""
    sys.path.insert(0, str(Path(__file__).parent))
    from simrun import simulated_run

    return simulated_run(sim / "s", plate, sim / "simrun")


def _copy_run(run_dir: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("wells.parquet", "stats.parquet"))
    return to


# --- the property, per command -------------------------------------------------------------


def test_sigkill_stats_previous_or_complete(tmp_path):
    """``hcs stats --overwrite`` over a previous table (Welch): after a kill the table is the
    previous or the new one (Student), and the re-run gives exactly the clean table. (Fast: a
    wells table of seeded counts on the livedead dose-series layout, no plate.)"""
    from hcs.aggregate import well_table, write_table
    from hcs.layouts import read_layout
    from hcs.stats.run import stats_for_run

    layout = read_layout(LAYOUT)
    rng = np.random.default_rng(SEED)
    n = rng.integers(50, 200, len(layout))
    dead = rng.binomial(n, rng.uniform(0.05, 0.8, len(layout)))
    counts = pd.DataFrame({"plate": "P", "well": layout["well"], "n_live": n - dead,
                           "n_dead": dead})
    run = tmp_path / "run"
    write_table(well_table(counts, "livedead", layout=layout), run / "wells.parquet")
    target = run / "stats.parquet"

    def reset() -> None:
        stats_for_run(run, overwrite=True, test="welch")  # the previous state

    cmd = _hcs("stats", run, "--overwrite", "--test", "student")
    _check("stats", cmd, lambda: cmd, lambda: _frame_digest(target), reset, n=1, salt=1,
           outputs=(run,))


@pytest.mark.slow
def test_sigkill_aggregate_and_report(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    wells = run / "wells.parquet"
    from hcs.engine.aggregate_run import aggregate_run

    def reset_wells() -> None:
        aggregate_run(run, overwrite=True)  # previous state: no layout joined

    cmd = _hcs("aggregate", run, "--layout", LAYOUT, "--overwrite")
    _check("aggregate", cmd, lambda: cmd, lambda: _frame_digest(wells), reset_wells, n=3,
           salt=2, outputs=(run,))
    assert "condition" in pd.read_parquet(wells)

    from hcs.stats.run import stats_for_run

    stats_for_run(run, overwrite=True)
    report = tmp_path / "report.html"

    def reset_report() -> None:
        report.unlink(missing_ok=True)

    cmd = _hcs("report", run, "--out", report, "--overwrite")
    _check("report", cmd, lambda: cmd, lambda: report_state(report), reset_report, n=3, salt=3,
           outputs=(run, report.parent))


@pytest.mark.slow
def test_sigkill_convert(sim, tmp_path):
    out = tmp_path / "plate.ome.zarr"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    cmd = _hcs("convert", sim / "s" / "export", out)
    _check("convert", cmd, lambda: cmd + (["--overwrite"] if out.exists() else []),
           lambda: plate_state(out), reset, n=4, salt=4, outputs=(out,))


@pytest.mark.slow
def test_sigkill_run_resume(plate, tmp_path):
    from hcs.synth.fixtures import save_random_model

    model = save_random_model(tmp_path / "m", "livedead", ["brightfield"])
    out = tmp_path / "run"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def partial(after: dict, clean: dict) -> bool:  # a run is resumable: each table whole
        return all(clean.get(k) == v for k, v in after.items())

    cmd = _hcs("run", plate, "--assay", "livedead", "--model", model, "--out", out,
               "--workers", 1, "--gpus", 0, "-q", "--fields-per-task", 1)
    _check("run", cmd, lambda: cmd + ["--resume"], lambda: cells_state(out), reset, n=3,
           salt=5, partial_ok=partial, outputs=(out,))


@pytest.mark.slow
def test_sigkill_analyze(sim, tmp_path):
    from hcs.synth.fixtures import save_random_model

    model = save_random_model(tmp_path / "m", "livedead", ["brightfield"])
    out = tmp_path / "a"

    def state() -> Any:
        if not out.exists():
            return None
        return (plate_state(out / "plate.ome.zarr"), cells_state(out / "run"),
                _frame_digest(out / "run" / "wells.parquet"),
                _frame_digest(out / "run" / "stats.parquet"), report_state(out / "report.html"))

    def partial(after: Any, clean: Any) -> bool:
        """Stages are written in order, each complete or absent (cells: table by table)."""
        plate, cells, wells, stats, report = after
        if plate not in (None, clean[0]):
            return False
        if any(clean[1].get(k) != v for k, v in cells.items()):
            return False
        return wells in (None, clean[2]) and stats in (None, clean[3]) and report in (
            None, clean[4])

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    cmd = _hcs("analyze", sim / "s" / "export", "--assay", "livedead", "--layout", LAYOUT,
               "--out", out, "--model", model, "--workers", 1, "--gpus", 0, "-q",
               "--no-gallery")
    _check("analyze", cmd, lambda: cmd, state, reset, n=3, salt=6, partial_ok=partial,
           outputs=(out,))


def test_sigkill_mid_write_leaves_no_temp_after_next_write(tmp_path):
    """A writer SIGKILLed inside :func:`hcs.atomic.atomic_write` (deterministically: while its
    temporary file is half written) leaves the previous file intact, and the next write of the
    same file removes the dead writer's temporary file."""
    from hcs.atomic import atomic_write_text

    target = tmp_path / "stats.parquet"
    target.write_text("previous")
    code = ("import sys, time; from hcs.atomic import atomic_write\n"
            "def slow(t):\n"
            "    t.write_text('half'); print('writing', flush=True); time.sleep(60)\n"
            f"atomic_write({str(target)!r}, slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and f"-{proc.pid}." in stale[0]
    assert target.read_text() == "previous"  # the previous state, not a mix
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and not _leftovers(tmp_path)
