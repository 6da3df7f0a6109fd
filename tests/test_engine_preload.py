"""Start-up of a run (issue 20): the workers load the model while the cluster starts
(:mod:`hcs.engine.preload`), the cluster starts while ``plan_run`` still checks the run
(:class:`hcs.engine.cluster.PendingCluster`); once per worker, failures are one clear error,
nothing leaks, and the cell tables are those of the sequential start-up."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from hcs.engine import preload
from hcs.engine import processor as proc
from hcs.engine.processor import EngineParams
from hcs.engine.run import plan_run, run_planned, run_plate
from hcs.errors import InputError
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "A02", "B01"]


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    return write_disc_plate(tmp_path_factory.mktemp("plate"), WELLS, fields=2, size=256)[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "ld_test", "livedead",
                             ["brightfield", "hoechst"], crop_size=32)


@pytest.fixture
def fresh(monkeypatch):
    """Empty processor cache and preload table; PipelineProcessor counts its builds (0.3 s
    each, so two unsynchronised builds would overlap) and fails for a model named 'bad'."""
    builds: list[int] = []

    class Counting:
        def __init__(self, params: EngineParams) -> None:
            builds.append(threading.get_ident())
            time.sleep(0.3)
            if params.model == "bad":
                raise InputError("bad/model.safetensors: sha256 does not match model.yaml")
            self.device = "cpu"

    monkeypatch.setattr(proc, "PipelineProcessor", Counting)
    monkeypatch.setattr(proc, "_PROCESSORS", {})
    monkeypatch.setattr(preload, "_LOADS", {})
    return builds


def _children() -> set[int]:
    """This process's descendants, without multiprocessing's long-lived resource tracker and
    forkserver (the workers it forks are descendants of this process too, so they count)."""
    out = set()
    for c in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(c.cmdline())
            if "resource_tracker" not in cmd and "multiprocessing.forkserver" not in cmd:
                out.add(c.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(run_dir).as_posix(): pd.read_parquet(p)
            for p in sorted((run_dir / "cells").rglob("*.parquet"))}


def test_params_json_round_trips_to_the_cache_key():
    """The preload builds under the key the tasks look up: EngineParams -> JSON -> EngineParams
    gives the same JSON (tuples of the channel map included)."""
    p = EngineParams(plate="/p.ome.zarr", assay="livedead", model="/m",
                     channel_map=(("brightfield", "BF"), ("nucleus", "DAPI")), nucleus_channel=1)
    key = p.model_dump_json()
    assert EngineParams.model_validate_json(key).model_dump_json() == key
    assert EngineParams(**p.model_dump()).model_dump_json() == key  # what _warm_up sends


def test_preload_and_a_task_share_one_build(fresh):
    """A task asking for the processor while the preload builds it waits and gets the same
    object: one build (two would be 2 entries in ``fresh``)."""
    params = EngineParams(plate="/p.ome.zarr", assay="livedead", model="/m")
    key = params.model_dump_json()
    preload.start(key)
    preload.start(key)  # a second start of the same parameters is a no-op
    got = proc.get_processor(params)  # like the first task, while the preload runs
    assert preload.wait(key) >= 0.3
    assert proc.get_processor(params) is got
    assert len(fresh) == 1
    assert preload.preload_status() == [
        {"key": key, "running": False, "error": None, "seconds": preload.wait(key)}]
    assert preload.wait(EngineParams(plate="/other").model_dump_json()) is None  # not started


def test_preload_failure_is_raised_and_caches_nothing(fresh):
    params = EngineParams(plate="/p.ome.zarr", assay="livedead", model="bad")
    key = params.model_dump_json()
    preload.start(key)
    with pytest.raises(InputError, match="sha256 does not match"):
        preload.wait(key, timeout=30)
    assert proc._PROCESSORS == {}
    assert preload.preload_status()[0]["error"].startswith("InputError: bad/model")
    with pytest.raises(InputError, match="sha256 does not match"):  # a task tries again
        proc.get_processor(params)
    assert len(fresh) == 2


def test_run_loads_the_model_once_per_worker_and_matches_sequential(plate, model, tmp_path):
    """``run_plate`` (cluster started by plan_run, model preloaded): each of the 2 workers
    builds its processor exactly once, before the warm-up asks for it; the cell tables equal
    those of the sequential start-up (``preload=False``)."""
    import dask
    import distributed  # noqa: F401 - its config defaults exist before dask.config.set below

    log = tmp_path / "builds.txt"
    counter = (  # a worker preload run before hcs's own: logs every processor build's pid
        "import os\n"  # (Dask imports a preload file twice: keep the first original)
        "import hcs.engine.processor as P\n"
        "P._original_init = getattr(P, '_original_init', P.PipelineProcessor.__init__)\n"
        "def _counted(self, params):\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write(str(os.getpid()) + chr(10))\n"
        "    P._original_init(self, params)\n"
        "P.PipelineProcessor.__init__ = _counted\n")
    before = _children()
    with dask.config.set({"distributed.worker.preload": [counter]}):
        s = run_plate(plate, "livedead", model, tmp_path / "pre", workers=2, gpus=0,
                      progress=False, labels=False)
    assert s.ok and s.fields_done == 6
    pids = log.read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 2  # once per worker, two workers
    rec = json.loads((tmp_path / "pre" / "run.json").read_text())
    assert rec["model_preloaded"] is True and rec["cluster"]["workers"] == 2
    loads = rec["worker_model_load_seconds"]  # measured by each worker's preload thread
    assert len(loads) == 2 and all(isinstance(x, float) and x > 0 for x in loads)
    assert rec["cluster_started_in_background_seconds"] > 0
    assert 0 <= rec["cluster_start_seconds"] <= rec["cluster_started_in_background_seconds"]
    assert _children() <= before  # the cluster is gone

    planned = plan_run(plate, "livedead", model, tmp_path / "seq", workers=1, gpus=0,
                       labels=False)
    assert planned.pending is None  # start_cluster=False: nothing started while planning
    seq = run_planned([planned], progress=False, preload=False)[0]
    rec = json.loads((tmp_path / "seq" / "run.json").read_text())
    assert rec["model_preloaded"] is False and rec["worker_model_load_seconds"] == [None]
    assert seq.ok and seq.cells == s.cells > 0
    a, b = _tables(tmp_path / "pre"), _tables(tmp_path / "seq")
    assert list(a) == list(b) and len(a) == 6
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])


def test_worker_preload_failure_is_one_clear_error(plate, model, tmp_path):
    """The weights change after planning: every worker's preload fails; the run stops with one
    InputError naming the cause, writes no cell table and leaves no process behind."""
    import shutil

    work = tmp_path / "model"
    shutil.copytree(model, work)
    planned = plan_run(plate, "livedead", work, tmp_path / "run", workers=1, gpus=0,
                       labels=False)
    weights = work / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    before = _children()
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"a worker could not load the model: InputError: .*"
                                         r"sha256 .* does not match"):
        run_planned([planned], progress=False)
    assert time.perf_counter() - t0 < 300  # no hang
    assert not list((tmp_path / "run").glob("cells/**/*.parquet"))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    assert _children() <= before


def test_unbuildable_model_fails_on_the_workers_before_any_field(plate, model, tmp_path):
    """The main process checks the run from the cards alone (no torch, no weights): a card
    whose checksum and weights pass but whose architecture does not fit the weights fails as
    the workers load it, one clear error before any field, no cell table, no process left."""
    import shutil
    import subprocess
    import sys

    import yaml

    from hcs.classify.models import ModelCard, card_checksum

    work = tmp_path / "model"
    shutil.copytree(model, work)
    card = yaml.safe_load((work / "model.yaml").read_text())
    card["architecture"] = "resnet10t"  # other weights than the file holds
    card["card_sha256"] = card_checksum(ModelCard(**{**card, "card_sha256": ""}))
    (work / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    code = ("import sys; from hcs.engine.run import plan_run\n"
            f"plan_run({str(plate)!r}, 'livedead', {str(work)!r}, {str(tmp_path / 'x')!r}, "
            "workers=1, gpus=0, labels=False)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"  # planning imported no torch, loaded no weights
    before = _children()
    planned = plan_run(plate, "livedead", work, tmp_path / "run", workers=1, gpus=0,
                       labels=False, start_cluster=True)
    with pytest.raises(InputError, match=r"a worker could not load the model: .*"):
        run_planned([planned], progress=False)
    assert not list((tmp_path / "run").glob("cells/**/*.parquet"))
    assert _children() <= before


def test_pending_cluster_closed_when_plan_run_fails(plate, model, tmp_path, monkeypatch,
                                                    capfd):
    """plan_run starts the cluster once the cheap checks pass; when loading the model in this
    process then fails, the cluster is closed before the error: no worker process is left, and
    no worker logged a traceback (closed while still importing torch)."""
    from hcs.engine import cluster

    def fails(params):
        raise InputError("the learned detector cannot be loaded")

    started: list[cluster.PendingCluster] = []

    class Recorded(cluster.PendingCluster):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            started.append(self)

    monkeypatch.setattr(cluster, "PendingCluster", Recorded)
    monkeypatch.setattr(proc, "check_processor", fails)  # in this process only
    before = _children()
    with pytest.raises(InputError, match="learned detector cannot be loaded"):
        plan_run(plate, "livedead", model, tmp_path / "run", workers=1, gpus=0, labels=False,
                 start_cluster=True)
    assert len(started) == 1 and started[0]._closed
    handle = started[0]._future.result()
    assert handle.closed and handle.cluster.status.name == "closed"
    assert _children() <= before
    assert not (tmp_path / "run").exists()  # plan_run writes nothing
    assert "Traceback" not in capfd.readouterr().err


def test_cheap_errors_start_no_cluster(plate, model, tmp_path, monkeypatch):
    """A model of another assay, a --cell-channel the plate lacks, weights that do not match
    their card or a run folder that holds a run are refused before any cluster starts."""
    import shutil

    from hcs.engine import cluster

    def refuse(**kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(cluster, "PendingCluster", refuse)
    with pytest.raises(InputError, match="is not a model of assay cic"):
        plan_run(plate, "cic", model, tmp_path / "r", start_cluster=True)
    with pytest.raises(InputError, match="--cell-channel GFP: .* has no channel 'GFP'"):
        plan_run(plate, None, None, tmp_path / "r", cell_channel="GFP", start_cluster=True)
    work = tmp_path / "model"
    shutil.copytree(model, work)
    weights = work / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="sha256 .* does not match"):
        plan_run(plate, "livedead", work, tmp_path / "r", start_cluster=True, labels=False)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{}")
    from hcs.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="already holds a run"):
        plan_run(plate, "livedead", model, tmp_path / "r", start_cluster=True, labels=False)


def test_warm_modules_import_torch_only_for_a_cnn(model):
    """The forkserver imports timm (and torchvision) for a CNN model, not for a detection-only
    run."""
    from hcs.engine.cluster import warm_modules

    cnn = EngineParams(plate="/p.ome.zarr", assay="livedead", model=str(model))
    assert warm_modules(cnn.model_dump_json()) == ["hcs.engine._warm_base",
                                                   "hcs.engine._warm_torch"]
    none = EngineParams(plate="/p.ome.zarr")
    assert warm_modules(none.model_dump_json()) == ["hcs.engine._warm_base"]
    assert warm_modules(None) == ["hcs.engine._warm_base"]


WORKERS_SCRIPT = """
import json, os, sys
from multiprocessing import forkserver
from hcs.engine.cluster import start_cluster
from hcs.engine.processor import EngineParams

def info():
    import os, sys
    import psutil
    return {"parent": " ".join(psutil.Process(os.getppid()).cmdline()),
            "warm": [m for m in ("hcs.engine._warm_base", "hcs.engine._warm_torch", "timm")
                     if m in sys.modules],
            "mark": os.environ.get("HCS_TEST_MARK"), "omp": os.environ.get("OMP_NUM_THREADS")}

if __name__ == "__main__":
    os.environ["HCS_TEST_MARK"] = "set-before-the-cluster"
    p = EngineParams(plate=sys.argv[1], assay="livedead", model=sys.argv[2])
    h = start_cluster(workers=2, gpus=0, preload_params=p.model_dump_json())
    out = h.client.run(info)
    h.close()
    print(json.dumps({"workers": list(out.values()),
                      "forkserver": forkserver._forkserver._forkserver_pid}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the forkserver start is used on Linux only")
def test_workers_are_forked_with_the_imports_and_this_environment(plate, model, tmp_path):
    """On Linux the embedded cluster's workers are forked from a forkserver that imported
    the field path and torch/timm (for a CNN) once; they see this process's environment as
    set when the cluster started, Dask's OMP_NUM_THREADS=1, and the forkserver is stopped
    and waited for when this process exits (its CPU time counts as its parent's)."""
    import subprocess

    script = tmp_path / "workers.py"
    script.write_text(WORKERS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    r = subprocess.run([sys.executable, str(script), str(plate), str(model)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["workers"]) == 2
    for w in out["workers"]:
        assert "multiprocessing.forkserver" in w["parent"]
        assert w["warm"] == ["hcs.engine._warm_base", "hcs.engine._warm_torch", "timm"]
        assert w["mark"] == "set-before-the-cluster" and w["omp"] == "1"
    pid = out["forkserver"]
    assert isinstance(pid, int) and not psutil.pid_exists(pid)
