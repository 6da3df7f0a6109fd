"""Cross-field batching, channel-selective chunk reads and timepoints in the engine.

Reference throughout: each field processed alone (``process_field``, batches within the field),
as the engine did before crops were batched across fields.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.engine import process_field, process_fields, run_plate
from hcs.engine.processor import EngineParams, get_processor
from hcs.engine.tasks import read_field
from hcs.errors import InputError, PlateDataError
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "A02", "B01"]
FIELDS = 2
ITEMS = [(w, f) for w in WELLS for f in range(FIELDS)]


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    return write_disc_plate(tmp_path_factory.mktemp("plate"), WELLS, fields=FIELDS, size=256,
                            seed=5)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "ld_bf", "livedead",
                             ["brightfield"], crop_size=32)


def _params(plate: Path, model: Path, **kw) -> EngineParams:
    return EngineParams(plate=str(plate.resolve()), assay="livedead", model=str(model.resolve()),
                        **kw)


@pytest.fixture(scope="module")
def per_field(plate, model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("per_field")
    for w, f in ITEMS:
        process_field(_params(plate[0], model), str(out), w, f)
    return out


def _table(run: Path, well: str, field: int) -> pd.DataFrame:
    return pd.read_parquet(run / "cells" / well / f"{field}.parquet")


def _assert_same(got: pd.DataFrame, ref: pd.DataFrame) -> float:
    """Equal up to float tolerance in the probabilities, labels identical; max |dp|."""
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-5, atol=1e-6)
    assert (got.label == ref.label).all()
    p = [c for c in ref if c.startswith("p_")]
    return float(np.abs(got[p].to_numpy() - ref[p].to_numpy()).max()) if len(ref) else 0.0


def test_cross_field_batches_equal_per_field_processing(plate, model, per_field, tmp_path):
    truth = plate[1]
    res = process_fields(_params(plate[0], model, batch_size=7), str(tmp_path / "g"), ITEMS)
    assert res["failed"] == [] and [(f["well"], f["field"]) for f in res["fields"]] == ITEMS
    n = len(truth)
    assert res["n_cells"] == n
    # batches span fields: only the group's last batch is partial (per field: 6 partial ones),
    # and it is padded to 7 crops
    assert res["batches"] == math.ceil(n / 7) and res["padded"] == -n % 7
    per_field_batches = sum(math.ceil(len(t) / 7) for _, t in truth.groupby(["well", "field"]))
    assert res["batches"] < per_field_batches
    # each field alone with the same batch size, and with the reference's batch of 64: equal
    # within float tolerance (kernels may round a crop differently at another batch position)
    worst = 0.0
    for w, f in ITEMS:
        alone = tmp_path / "alone"
        process_field(_params(plate[0], model, batch_size=7), str(alone), w, f)
        worst = max(worst, _assert_same(_table(tmp_path / "g", w, f), _table(alone, w, f)),
                    _assert_same(_table(tmp_path / "g", w, f), _table(per_field, w, f)))
    assert worst < 1e-5


def test_a_field_failing_in_its_group_is_reported_alone(plate, model, per_field, tmp_path):
    bad = tmp_path / "plate.ome.zarr"
    shutil.copytree(plate[0], bad)
    shard = bad / "A" / "2" / "0" / "0" / "c" / "0" / "0" / "0" / "0" / "0"
    shard.write_bytes(b"not a shard" * 20)
    out = tmp_path / "run"
    res = process_fields(_params(bad, model, batch_size=5), str(out), ITEMS)
    assert [(f["well"], f["field"]) for f in res["failed"]] == [("A02", 0)]
    assert len(res["fields"]) == len(ITEMS) - 1
    assert not (out / "cells" / "A02" / "0.parquet").exists()
    for w, f in ITEMS:
        if (w, f) != ("A02", 0):
            _assert_same(_table(out, w, f), _table(per_field, w, f))
    with pytest.raises(ValueError, match="checksum"):  # alone (the second attempt): it raises
        process_field(_params(bad, model), str(out), "A02", 0)


def _corrupt_chunk(shard: Path, index: int, n_chunks: int) -> None:
    """Overwrite the bytes of one inner chunk of a zarr v3 shard (index at the end: n x
    (offset, nbytes) uint64 + crc32c), leaving the shard index and other chunks intact."""
    data = bytearray(shard.read_bytes())
    table = data[-(16 * n_chunks + 4):-4]
    offset, nbytes = struct.unpack_from("<QQ", table, 16 * index)
    data[offset: offset + nbytes] = b"\xff" * nbytes
    shard.write_bytes(bytes(data))


def test_only_the_channels_in_use_are_read(plate, model, per_field, tmp_path):
    """Detection reads HOECHST, the brightfield model reads Brightfield; the PI plane of a
    field is made unreadable and the field is still processed exactly as before (without
    measurements: ``--measure basic``, the default, reads every channel)."""
    channels = ("Brightfield", "HOECHST 33342", "PI")
    assert get_processor(_params(plate[0], model)).read_channels(channels) == (0, 1, 2)
    params = _params(plate[0], model, measure="none")
    assert get_processor(params).read_channels(channels) == (0, 1)
    bad = tmp_path / "plate.ome.zarr"
    shutil.copytree(plate[0], bad)
    _corrupt_chunk(bad / "B" / "1" / "1" / "0" / "c" / "0" / "0" / "0" / "0" / "0", 2, 3)
    params = _params(bad, model, measure="none")
    with pytest.raises(PlateDataError, match=r"well B01 field 1: cannot read the plate chunk "
                       r".*/B/1/1/0/c/0/0/0/0/0 \(RuntimeError: .*blosc"):
        read_field(params, "B01", 1)  # all channels: the PI chunk is broken
    image, meta = read_field(params, "B01", 1, (0, 1))
    assert image.shape == (2, 1, 256, 256) and meta.image_channels == (0, 1)
    out = tmp_path / "run"
    process_field(params, str(out), "B01", 1)
    ref = _table(per_field, "B01", 1).drop(columns="plate")
    pd.testing.assert_frame_equal(_table(out, "B01", 1).drop(columns="plate"),
                                  ref[[c for c in ref if not c.startswith("Nuclei_")]])


def test_run_groups_fields_and_records_what_it_read(plate, model, per_field, tmp_path):
    out = tmp_path / "run"
    s = run_plate(plate[0], "livedead", model, out, workers=2, gpus=0, batch_size=16,
                  fields_per_task=4, progress=False)
    assert s.ok and s.fields_done == len(ITEMS) and s.cells == len(plate[1])
    assert sorted(len(t["fields"]) for t in s.tasks) == [2, 4]  # 6 fields in groups of 4
    for w, f in ITEMS:
        _assert_same(_table(out, w, f), _table(per_field, w, f))
    meta = json.loads((out / "run.json").read_text())
    assert meta["channels_read"] == ["Brightfield", "HOECHST 33342", "PI"]  # measurements
    assert meta["timepoint"] == 0 and meta["timepoints_in_plate"] == 1
    assert meta["parameters"]["fields_per_task"] == 4 and meta["parameters"]["batch_size"] == 16
    assert meta["detector"] == {"name": "threshold", "kind": "method", "path": None,
                                "sha256": None, "channels": []}
    with pytest.raises(InputError, match="fields-per-task"):
        run_plate(plate[0], "livedead", model, tmp_path / "r2", fields_per_task=0)


def test_multi_timepoint_plate_needs_a_timepoint(model, tmp_path):
    plate, truth = write_disc_plate(tmp_path / "p", ["A01"], fields=1, size=128, nuclei=4,
                                    timepoints=2, seed=2)
    with pytest.raises(InputError, match=r"2 timepoints; choose one with --timepoint"):
        run_plate(plate, "livedead", model, tmp_path / "r", progress=False)
    with pytest.raises(InputError, match=r"--timepoint 2: .* has timepoints 0..1"):
        run_plate(plate, "livedead", model, tmp_path / "r", timepoint=2, progress=False)
    for t in (0, 1):
        out = tmp_path / f"t{t}"
        process_field(_params(plate, model, timepoint=t), str(out), "A01", 0)
        cells = _table(out, "A01", 0)
        want = truth[truth.timepoint == t]
        assert len(cells) == len(want) == 4 + 2 * t
        d = np.hypot(cells.x.to_numpy()[:, None] - want.x.to_numpy()[None],
                     cells.y.to_numpy()[:, None] - want.y.to_numpy()[None])
        assert d.min(axis=1).max() < 1.0  # the nuclei of that timepoint, not of the other
