"""Label images in the plate (issue 16): NGFF image-label per field, value = cell_id, readable
by ome-zarr-py and valid for ome-zarr-models, atomic per field, image data untouched."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from scipy import ndimage as ndi

from hcs.engine.labels import label_name, write_field_labels
from hcs.engine.run import run_plate
from hcs.errors import InputError
from hcs.io.omezarr import open_plate
from hcs.synth.fixtures import write_disc_plate

WELLS = ["A01", "B02"]


def _image_digest(plate: Path) -> str:
    """sha256 over every file of the plate but the label images."""
    h = hashlib.sha256()
    for p in sorted(plate.rglob("*")):
        if p.is_file() and "labels" not in p.relative_to(plate).parts:
            h.update(str(p.relative_to(plate)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _labels(plate: Path, well: str, field: int, level: int = 0) -> np.ndarray:
    pl = open_plate(plate)
    folder = plate / pl.image_group(well, field).path / "labels" / "nuclei"
    return zarr.open_array(str(folder / str(level)), mode="r")[...]


def test_label_images_list_the_cell_table(tmp_path, scheduler) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    plate, truth = write_disc_plate(tmp_path / "p", WELLS, fields=2, size=200, nuclei=5, seed=2)
    before = _image_digest(plate)
    summary = run_plate(plate, None, None, tmp_path / "run", scheduler=scheduler,
                        progress=False, measure="none")
    assert summary.ok and summary.fields_done == 4
    assert _image_digest(plate) == before  # the image data and metadata are untouched
    pl = open_plate(plate)
    for well in WELLS:
        for field in (0, 1):
            cells = pd.read_parquet(tmp_path / "run" / "cells" / well / f"{field}.parquet")
            lab = _labels(plate, well, field)
            assert lab.shape == (1, 1, 1, 200, 200) and lab.dtype == np.uint32
            ids = np.unique(lab)[1:]
            assert ids.tolist() == cells["cell_id"].tolist() and len(ids) > 0
            cy, cx = np.array(ndi.center_of_mass(np.ones(lab.shape[-2:]), lab[0, 0, 0],
                                                 ids)).T
            np.testing.assert_allclose(cx, cells["x"], atol=1e-9)
            np.testing.assert_allclose(cy, cells["y"], atol=1e-9)
            # the pyramid follows the image's levels
            low = _labels(plate, well, field, 1)
            img1 = pl.field(well, field, level=1)
            assert low.shape[-2:] == img1.shape[-2:]
            np.testing.assert_array_equal(low[0, 0, 0], lab[0, 0, 0, ::2, ::2])
            folder = plate / pl.image_group(well, field).path
            il = ImageLabel.from_zarr(zarr.open_group(str(folder / "labels" / "nuclei"),
                                                      mode="r"))
            colours = il.attributes.ome.image_label.colors
            assert [c.label_value for c in colours] == ids.tolist()
            Image.from_zarr(zarr.open_group(str(folder), mode="r"))  # image + labels valid
            nodes = list(Reader(parse_url(str(folder)))())
            assert any(isinstance(s, Label) for n in nodes for s in n.specs)


def test_no_labels_ngff_04_and_foreign_labels(tmp_path, scheduler) -> None:
    from ome_zarr_models.v04.image_label import ImageLabel

    plate, _ = write_disc_plate(tmp_path / "p", ["A01"], fields=1, size=128, nuclei=4, seed=1)
    summary = run_plate(plate, None, None, tmp_path / "run", scheduler=scheduler,
                        progress=False, labels=False)
    assert summary.ok
    assert not list(plate.rglob("labels"))
    # NGFF 0.4 (zarr v2) plate: the same label image in v2 metadata
    res = subprocess.run([sys.executable, "-m", "hcs", "convert", str(tmp_path / "p" / "export"),
                          str(tmp_path / "p04.ome.zarr"), "--ngff", "0.4"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    p04 = open_plate(tmp_path / "p04.ome.zarr")
    lab = np.zeros((128, 128), np.int32)
    lab[10:20, 30:44] = 7
    out = write_field_labels(p04, "A01", 0, lab)
    il = ImageLabel.from_zarr(zarr.open_group(str(out), mode="r"))
    assert [c.label_value for c in il.attributes.image_label.colors] == [7]
    assert zarr.open_group(str(out.parent), mode="r").attrs["labels"] == ["nuclei"]
    # written twice: replaced (it is hcs's own), no temporary left behind
    lab[50:60, 50:60] = 9
    write_field_labels(p04, "A01", 0, lab)
    assert np.unique(zarr.open_array(str(out / "0"), mode="r")[...]).tolist() == [0, 7, 9]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".nuclei")] == []
    # a label image hcs did not write is never replaced
    g = zarr.open_group(str(out), mode="r+")
    g.attrs["hcs"] = {}
    with pytest.raises(InputError, match="did not write"):
        write_field_labels(p04, "A01", 0, lab)
    assert label_name(3, 2) == "nuclei_t2"


def _hcs(*args: str) -> list[str]:
    return [sys.executable, "-m", "hcs", *args]


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_labels_and_tables(tmp_path) -> None:
    wells = ["A01", "A02", "B01", "B02"]
    ref_plate, _ = write_disc_plate(tmp_path / "a", wells, fields=3, size=256, seed=3)
    plate, _ = write_disc_plate(tmp_path / "b", wells, fields=3, size=256, seed=3)
    res = subprocess.run(_hcs("run", str(ref_plate), "--out", str(tmp_path / "ref"),
                              "--workers", "1", "-q"), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "run"
    args = ["run", str(plate), "--out", str(out), "-q"]
    proc = subprocess.Popen(_hcs(*args, "--workers", "1"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (out / "cells").exists() and list((out / "cells").rglob("*.parquet")):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "cells").rglob("*.parquet")))
    assert 1 <= n_before < 12, n_before
    res = subprocess.run(_hcs(*args, "--workers", "2", "--resume"), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{n_before} already done" in res.stdout
    for well in wells:
        for field in range(3):
            rel = Path("cells") / well / f"{field}.parquet"
            pd.testing.assert_frame_equal(pd.read_parquet(out / rel),
                                          pd.read_parquet(tmp_path / "ref" / rel))
            for level in (0, 1):
                np.testing.assert_array_equal(_labels(plate, well, field, level),
                                              _labels(ref_plate, well, field, level))
    assert not [p for p in plate.rglob(".nuclei.*")]


def test_cells_grown_from_the_nuclei_are_measured_and_labelled(tmp_path, scheduler) -> None:
    plate, truth = write_disc_plate(tmp_path / "p", ["A01"], fields=1, size=160, nuclei=5,
                                    seed=4)
    run = tmp_path / "run"
    assert run_plate(plate, None, None, run, scheduler=scheduler, progress=False,
                     cell_channel="PI").ok
    cells = pd.read_parquet(run / "cells" / "A01" / "0.parquet")
    nuc, cel = _labels(plate, "A01", 0)[0, 0, 0], None
    pl = open_plate(plate)
    folder = plate / pl.image_group("A01", 0).path / "labels"
    cel = zarr.open_array(str(folder / "cells" / "0"), mode="r")[0, 0, 0]
    assert zarr.open_group(str(folder), mode="r").attrs["ome"]["labels"] == ["nuclei", "cells"]
    assert np.unique(cel)[1:].tolist() == cells["cell_id"].tolist()
    assert ((nuc == 0) | (cel == nuc)).all()  # every nucleus lies inside its own cell
    for k, row in cells.set_index("cell_id").iterrows():
        assert row["Cells_AreaShape_Area"] == (cel == k).sum()
        cyto = (cel == k) & (nuc == 0)
        assert row["Cytoplasm_AreaShape_Area"] == (cyto.sum() if cyto.any() else np.nan) or (
            not cyto.any() and np.isnan(row["Cytoplasm_AreaShape_Area"]))
        assert row["Cells_AreaShape_Area"] >= row["Nuclei_AreaShape_Area"]
    bad = subprocess.run([sys.executable, "-m", "hcs", "run", str(plate), "--out",
                          str(tmp_path / "x"), "--cell-channel", "GFP"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "GFP" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_direct_label_writer_writes_what_zarr_writes(tmp_path, monkeypatch) -> None:
    """The direct writer (no zarr calls per field) gives the same files, byte for byte, as
    writing through zarr, for masks with many labels, none, ids above 2**32, and a label that
    only level 0 holds (its lower levels' chunks are all fill value: not written)."""
    from hcs.engine import labels as lab_mod

    plate, _ = write_disc_plate(tmp_path / "p", ["A01"], fields=1, size=300, nuclei=4, seed=5)
    pl = open_plate(plate)
    assert len(pl.image_group("A01", 0).attrs["ome"]["multiscales"][0]["datasets"]) >= 2
    rng = np.random.default_rng(7)
    many = np.zeros((300, 300), np.int32)
    for i in range(1, 120):
        y, x = rng.integers(5, 290, 2)
        many[y - 4:y + 4, x - 4:x + 4] = i
    huge = many.astype(np.int64)
    huge[huge == 3] = 2 ** 33
    corner = np.zeros((300, 300), np.uint16)
    corner[1, 1] = 4  # not on the even grid: level 1 and below are all zero
    masks = {"many": many, "empty": np.zeros((300, 300), np.int32), "huge": huge,
             "corner": corner}
    used: list[Path] = []
    real_write = lab_mod._DirectWriter.write

    def spy(self, folder, levels, attrs) -> None:
        used.append(folder)
        real_write(self, folder, levels, attrs)

    monkeypatch.setattr(lab_mod._DirectWriter, "write", spy)
    for what, mask in masks.items():
        out = write_field_labels(pl, "A01", 0, mask)
        assert len(used) == 1, what  # the direct path wrote it
        used.clear()
        direct = _files(out.parent)
        with monkeypatch.context() as m:
            m.setattr(lab_mod._DirectWriter, "get", classmethod(lambda cls, *a: None))
            out = write_field_labels(pl, "A01", 0, mask)
        assert _files(out.parent) == direct, what
        if what == "corner":
            assert not [k for k in direct if k.startswith("nuclei/1/c")]
            assert [k for k in direct if k.startswith("nuclei/0/c")]


def test_label_ids_are_numpy_unique_without_zero() -> None:
    from hcs.engine.labels import _label_ids

    rng = np.random.default_rng(3)
    for dtype, top in ((np.uint32, 50), (np.uint32, 10 ** 6), (np.uint64, 2 ** 40),
                       (np.uint32, 0)):
        mask = rng.integers(0, top + 1, size=(64, 80), dtype=np.uint64).astype(dtype)
        mask[rng.random(mask.shape) < 0.5] = 0
        expected = np.unique(mask)
        np.testing.assert_array_equal(_label_ids(mask), expected[expected != 0])
