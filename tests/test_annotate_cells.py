"""hcs.annotate.cells: the cells of a run and their crops, equal to what `hcs run` feeds its
classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.annotate.cells import CropSpec, cell_crops, read_run_cells
from hcs.engine import process_field
from hcs.engine.processor import EngineParams, get_processor
from hcs.engine.tasks import read_field
from hcs.errors import InputError
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "B02"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("annot")
    plate, _ = write_disc_plate(root / "p", WELLS, fields=2, size=128, nuclei=4)
    model = save_random_model(root / "ld", "livedead", ["brightfield", "hoechst"], crop_size=24)
    out = root / "run"
    params = EngineParams(plate=str(plate.resolve()), assay="livedead", model=str(model))
    for w in WELLS:
        for f in range(2):
            process_field(params, str(out), w, f)
    (out / "run.json").write_text(f'{{"plate": "{plate.resolve()}", "timepoint": 0}}')
    return plate, model, out


def test_read_run_cells(run):
    cells = read_run_cells(run[2])
    assert len(cells) == sum(4 + i + f for i in range(2) for f in range(2))  # 4+5+5+6
    assert {"plate", "well", "field", "cell_id", "bbox_x0", "p_live", "label"} <= set(cells)
    few = read_run_cells(run[2], columns=["label", "no_such_column"])
    assert list(few.columns) == ["plate", "well", "row", "col", "field", "cell_id", "label"]
    probs = read_run_cells(run[2], columns=["p_*", "bbox_x0"])
    assert list(probs.columns)[6:] == ["p_live", "p_dead", "bbox_x0"]
    with pytest.raises(InputError, match="no cells/"):
        read_run_cells(run[0])


def test_crops_equal_engine_crops(run):
    """Crops of cells picked across fields, in a shuffled order, equal the engine's own crops
    of those cells (prepare -> crops of PipelineProcessor)."""
    plate, model, out = run
    cells = read_run_cells(out)
    keys = cells.sample(frac=1.0, random_state=3)[["plate", "well", "field", "cell_id"]]
    got = cell_crops(out, keys, model)
    assert got.shape == (len(keys), 24, 24, 2)
    proc = get_processor(EngineParams(plate=str(plate.resolve()), assay="livedead",
                                      model=str(model)))
    for i, (w, f, cid) in enumerate(keys[["well", "field", "cell_id"]].itertuples(index=False)):
        image, meta = read_field(proc.params, w, int(f))
        prep = proc.prepare(image, meta)
        j = int(np.flatnonzero(prep.frame["cell_id"].to_numpy() == cid)[0])
        np.testing.assert_array_equal(got[i], proc.crops(prep, j, j + 1)[0])
    # the spec of an assay with chosen roles: the same pixels as the model's (same roles/crop)
    spec = CropSpec.from_assay("livedead", roles=["brightfield", "hoechst"], size=24)
    assert spec == CropSpec.from_card(model)
    np.testing.assert_array_equal(cell_crops(out, keys.head(3), spec), got[:3])


def test_channels_override_and_bad_key(run):
    plate, model, out = run
    keys = read_run_cells(out).head(2)
    spec = CropSpec.from_assay("livedead", roles=["brightfield"], size=16)
    bf = cell_crops(out, keys, spec)
    pi = cell_crops(out, keys, spec, {"brightfield": "PI"})
    assert not np.array_equal(bf, pi)
    as_pi = cell_crops(out, keys, CropSpec(("PI",), ("none",), 16, 0.25))
    np.testing.assert_array_equal(pi, as_pi)
    bad = pd.DataFrame({"well": ["A01"], "field": [0], "cell_id": [999]})
    with pytest.raises(InputError, match="no cell 999"):
        cell_crops(out, bad, spec)
