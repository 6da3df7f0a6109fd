"""The whole-plate engine: end to end on a tiny plate with known nuclei, against a LocalCluster
started by the test (``--scheduler``), a serial in-process loop as reference, failures, the lock
and streaming aggregation."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.engine import aggregate_run, process_field, run_plate
from hcs.engine.lock import RunLock
from hcs.engine.model import plate_channel_for
from hcs.engine.processor import EngineParams, compose_field, field_crops
from hcs.errors import InputError, OutputExistsError
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "A02", "B01"]
FIELDS = 2


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    return write_disc_plate(tmp_path_factory.mktemp("plate"), WELLS, fields=FIELDS, size=256)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "ld_test", "livedead",
                             ["brightfield", "hoechst"], crop_size=32)


@pytest.fixture(scope="module")
def scheduler():
    """A 2-worker LocalCluster started by the test; runs reach it with ``--scheduler``."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def serial(plate, model, tmp_path_factory) -> Path:
    """Reference: the same fields processed by a plain in-process loop (one 'worker')."""
    out = tmp_path_factory.mktemp("serial")
    params = EngineParams(plate=str(plate[0].resolve()), assay="livedead",
                          model=str(model.resolve()))
    for w in WELLS:
        for f in range(FIELDS):
            process_field(params, str(out), w, f)
    return out


def _tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(run_dir).as_posix(): pd.read_parquet(p)
            for p in sorted((run_dir / "cells").rglob("*.parquet"))}


def test_serial_cells_match_truth(plate, serial):
    """Every simulated nucleus is found once, at its position, with the contract columns."""
    truth = plate[1]
    for (w, f), t in truth.groupby(["well", "field"]):
        cells = pd.read_parquet(serial / "cells" / w / f"{f}.parquet")
        assert len(cells) == len(t), (w, f)
        d = np.hypot(cells.x.to_numpy()[:, None] - t.x.to_numpy()[None],
                     cells.y.to_numpy()[:, None] - t.y.to_numpy()[None])
        assert d.min(axis=1).max() < 1.0  # each cell within a pixel of a true centre
        assert sorted(d.argmin(axis=1)) == list(range(len(t)))
        r = t.radius.to_numpy()[d.argmin(axis=1)]  # the threshold adds about a pixel of rim
        assert ((cells.area > np.pi * r**2) & (cells.area < np.pi * (r + 2) ** 2)).all()
    cells = pd.read_parquet(serial / "cells" / "A02" / "1.parquet")
    for col in ["plate", "well", "row", "col", "field", "cell_id", "x", "y", "bbox_x0",
                "bbox_y0", "bbox_x1", "bbox_y1", "area", "det_score", "assay", "model",
                "p_live", "p_dead", "label", "confidence", "qc_border"]:
        assert col in cells, col
    assert (cells.well == "A02").all() and (cells.field == 1).all() and (cells.row == 0).all()
    assert cells.cell_id.is_monotonic_increasing
    np.testing.assert_allclose(cells.p_live + cells.p_dead, 1.0, rtol=1e-5)
    assert (cells.label == np.where(cells.p_live >= cells.p_dead, "live", "dead")).all()


def test_run_on_scheduler_equals_serial_and_aggregates(plate, model, scheduler, serial,
                                                       tmp_path):
    out = tmp_path / "run"
    s = run_plate(plate[0], "livedead", model, out, scheduler=scheduler, progress=False)
    assert s.ok and s.fields_done == len(WELLS) * FIELDS and s.fields_skipped == 0
    assert s.cells == len(plate[1])
    assert len({t["pid"] for t in s.tasks}) == 2  # both workers took fields
    ref, got = _tables(serial), _tables(out)
    assert list(got) == list(ref)
    for k in ref:
        pd.testing.assert_frame_equal(got[k], ref[k])  # exact: 2 workers == 1 process
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["cluster"]["kind"] == "external"
    assert meta["cluster"]["workers"] == 2 and len(meta["model_sha256"]) == 64
    assert meta["fields_done"] == 6 and meta["end"] >= meta["start"]
    assert len(pd.read_parquet(out / "failures.parquet")) == 0

    wells, path = aggregate_run(out)
    assert path == out / "wells.parquet" and list(wells.well) == WELLS
    allc = pd.concat(ref.values())
    for w in WELLS:
        row = wells.set_index("well").loc[w]
        c = allc[allc.well == w]
        assert row.n_detected == len(c) and row.n_live == (c.label == "live").sum()
        assert row.freq_dead == pytest.approx((c.label == "dead").mean())
        assert row.n_fields == FIELDS
    with pytest.raises(OutputExistsError):
        aggregate_run(out)

    # a second run into the same folder must be asked to resume; resume finds nothing to do
    with pytest.raises(OutputExistsError, match="--resume"):
        run_plate(plate[0], "livedead", model, out, scheduler=scheduler, progress=False)
    s2 = run_plate(plate[0], "livedead", model, out, resume=True, progress=False)
    assert s2.fields_done == 0 and s2.fields_skipped == 6


def test_resume_redoes_only_missing_fields(plate, model, scheduler, serial, tmp_path):
    out = tmp_path / "run"
    run_plate(plate[0], "livedead", model, out, scheduler=scheduler, progress=False,
              wells=["A01", "B01"])
    assert sorted(_tables(out)) == ["cells/A01/0.parquet", "cells/A01/1.parquet",
                                    "cells/B01/0.parquet", "cells/B01/1.parquet"]
    os.unlink(out / "cells" / "B01" / "1.parquet")
    before = os.stat(out / "cells" / "A01" / "0.parquet").st_mtime_ns
    s = run_plate(plate[0], "livedead", model, out, scheduler=scheduler, progress=False,
                  resume=True)
    assert (s.fields_done, s.fields_skipped) == (3, 3)  # B01/1 and both A02 fields
    assert os.stat(out / "cells" / "A01" / "0.parquet").st_mtime_ns == before
    ref, got = _tables(serial), _tables(out)
    assert list(got) == list(ref)
    for k in ref:
        pd.testing.assert_frame_equal(got[k], ref[k])


def test_failing_field_recorded_others_finish(plate, model, scheduler, tmp_path):
    from typer.testing import CliRunner

    from hcs.cli import app

    bad = tmp_path / "plate.ome.zarr"
    shutil.copytree(plate[0], bad)
    shard = bad / "A" / "2" / "1" / "0" / "c" / "0" / "0" / "0" / "0" / "0"
    assert shard.is_file()
    shard.write_bytes(b"this is not a zarr shard" * 10)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(bad), "--assay", "livedead", "--model",
                                   str(model), "--out", str(out), "--scheduler", scheduler])
    assert res.exit_code == 1, res.output
    assert "5 fields processed" in res.output and "1 failed" in res.output
    assert "well A02 field 1" in res.output
    fails = pd.read_parquet(out / "failures.parquet")
    assert fails[["well", "field", "attempts"]].values.tolist() == [["A02", 1, 2]]
    assert fails.error.iloc[0]
    assert len(_tables(out)) == 5 and not (out / "cells" / "A02" / "1.parquet").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not (out / "run.lock").exists()
    wells, _ = aggregate_run(out)
    assert wells.set_index("well").loc["A02", ["n_fields", "n_fields_failed"]].tolist() == [1, 1]

    # a well whose every field failed has no cells/ folder; it is kept, flagged, not dropped
    shutil.rmtree(out / "cells" / "A02")
    both = pd.concat([fails, fails.assign(field=0)], ignore_index=True)
    both.to_parquet(out / "failures.parquet", index=False)
    wells, _ = aggregate_run(out, overwrite=True)
    a02 = wells.set_index("well").loc["A02"]
    assert (a02.n_detected, a02.n_fields, a02.n_fields_failed) == (0, 0, 2)
    assert "no_cells" in a02["flags"] and not a02["usable"]


def test_lock_refuses_a_second_run(plate, model, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        owner = json.loads((out / "run.lock").read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            run_plate(plate[0], "livedead", model, out, progress=False)
    assert not (out / "run.lock").exists()


def test_stale_lock_is_taken_over(tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 12345,
                                "started": 0, "user": "x", "locked_at": "then"}))
    with RunLock(tmp_path) as held:
        assert held.took_over["locked_at"] == "then"
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_bad_inputs_are_one_clear_error(plate, model, tmp_path):
    with pytest.raises(InputError, match="is not a model of assay cic"):
        run_plate(plate[0], "cic", model, tmp_path / "r", progress=False)
    with pytest.raises(InputError, match="well H12 is not in"):
        run_plate(plate[0], "livedead", model, tmp_path / "r", wells=["H12"], progress=False)
    with pytest.raises(InputError, match="not a model folder"):
        run_plate(plate[0], "livedead", tmp_path, tmp_path / "r", progress=False)
    with pytest.raises(InputError, match="detector 'yolo'"):
        run_plate(plate[0], "livedead", model, tmp_path / "r", detector="yolo", progress=False)


def test_crops_and_channel_roles():
    img = np.zeros((50, 50, 2), np.float32)
    img[20:30, 10:20, 0] = 255.0
    img[..., 1] = np.arange(50)[None, :]
    crops = field_crops(img, np.array([[10.0, 20.0, 20.0, 30.0]]), size=10)
    assert crops.shape == (1, 10, 10, 2)
    assert np.allclose(crops[0, ..., 0], 255.0)  # the box exactly
    assert np.allclose(crops[0, 0, :, 1], np.arange(10, 20))  # x ramp: columns 10..19
    edge = field_crops(img, np.array([[0.0, 0.0, 4.0, 4.0]]), size=8, margin=0.5)
    assert edge[0, 0, 0, 1] == 0.0  # outside the image -> 0

    planes = np.stack([np.arange(1000, dtype=np.uint16).reshape(20, 50)] * 2)
    comp = compose_field(planes, [1], ["none"])  # 16-bit: always rescaled to 0-255
    assert comp.shape == (20, 50, 1) and comp.min() == 0 and comp.max() == 255
    lo, hi = np.percentile(np.arange(1000), [1, 99.8])  # 9.99, 997.002
    assert comp[10, 0, 0] == pytest.approx((500 - lo) / (hi - lo) * 255, rel=1e-5)
    chans = ["Brightfield", "HOECHST 33342", "PI"]
    assert [plate_channel_for(r, chans) for r in ("brightfield", "hoechst", "dead")] == [0, 1, 2]
    assert plate_channel_for("brightfield", chans, {"brightfield": "PI"}) == 2
    with pytest.raises(InputError, match="needs a 'membrane' channel"):
        plate_channel_for("membrane", chans)


def test_count_gpus_without_torch_agrees_with_torch(monkeypatch):
    """Where no CUDA device node exists, count_gpus answers 0 without importing torch, which
    is what torch says there; with a device node it asks torch."""
    import torch

    from hcs.engine import cluster

    by_torch = int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    if cluster.no_cuda_device_nodes():
        assert by_torch == 0
    assert cluster.count_gpus() == by_torch
    monkeypatch.setattr(cluster, "no_cuda_device_nodes", lambda dev=None: False)
    assert cluster.count_gpus() == by_torch  # torch asked: the same answer


def test_gpu_requests_fail_clearly_without_gpus(scheduler):
    from hcs.engine.cluster import count_gpus, resolve_gpus, start_cluster

    assert resolve_gpus("0") == 0 and resolve_gpus("auto") == count_gpus()
    if count_gpus() == 0:
        with pytest.raises(InputError, match="only 0 CUDA device"):
            resolve_gpus(2)
    with pytest.raises(InputError, match="no worker of .* offers a GPU resource"):
        start_cluster(scheduler=scheduler, gpus="1")
    handle = start_cluster(scheduler=scheduler, gpus="auto")  # CPU workers: no GPU resource
    try:
        assert handle.resources is None and handle.cluster is None
        assert handle.description["workers"] == 2 and handle.description["resources"] == {}
    finally:
        handle.close()
