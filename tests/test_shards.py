"""The direct shard writer (hcs.io.shards) writes the same files as zarr's own array path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from hcs.io.acquisition import Acquisition, Channel
from hcs.io.convert import write_plate
from hcs.io.plate_meta import pyramid_shapes
from hcs.io.shards import FieldPyramidWriter
from hcs.plate import PlateGeometry

VOLATILE = {"converted_at", "seconds", "mb_per_s"}


def acquisition(root: Path, dtype: str, shape: tuple[int, int], size_c: int, size_z: int,
                size_t: int, drop: tuple[tuple[int, ...], ...] = ()) -> Acquisition:
    """Two wells x 2 fields of random planes of ``dtype``; keys in ``drop`` have no file."""
    img = root / "Images"
    img.mkdir(parents=True)
    rng = np.random.default_rng(7)
    rows = []
    for r, c in ((0, 0), (2, 5)):
        for f in range(2):
            for t in range(size_t):
                for ch in range(size_c):
                    for z in range(size_z):
                        key = (r, c, f, t, ch, z)
                        if np.dtype(dtype).kind == "f":
                            plane = rng.normal(100, 30, shape).astype(dtype)
                        else:
                            info = np.iinfo(dtype)
                            plane = rng.integers(info.min, info.max, shape, endpoint=True,
                                                 dtype=dtype)
                        plane[:20, :20] = 0  # a flat corner: compressible, like real images
                        path = img / f"r{r}c{c}f{f}p{z}ch{ch}t{t}.tiff"
                        if key not in drop:
                            tifffile.imwrite(path, plane, compression="lzw")
                        rows.append(dict(
                            row=r, col=c, field=f, z=z, channel=ch, t=t, path=str(path), page=0,
                            stage_x_um=10.0 * f, stage_y_um=0.0, stage_z_um=np.nan,
                            time_s=60.0 * t,
                        ))
    (img / "Index.idx.xml").write_text("<EvaluationInputData/>")
    return Acquisition(
        plate_name="P", geometry=PlateGeometry(8, 12),
        channels=[Channel(f"ch{i}", emission_nm=500 + 50 * i) for i in range(size_c)],
        planes=pd.DataFrame(rows), pixel_size_um=(0.5, 0.5), source=root,
        vendor_format="harmony", vendor_files=[img / "Index.idx.xml"], z_step_um=2.0,
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path; the root metadata without its timings."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    meta = json.loads(files.pop("zarr.json"))
    hcs = meta["attributes"]["hcs"]
    for key in VOLATILE:
        hcs.pop(key, None)
        hcs["stats"].pop(key, None)
    files["zarr.json"] = json.dumps(meta, sort_keys=True).encode()
    return files


@pytest.mark.parametrize(
    ("dtype", "shape", "size_c", "size_z", "size_t"),
    [
        ("uint16", (300, 260), 2, 1, 1),
        ("uint8", (131, 97), 1, 3, 2),  # odd sizes, z and t: Morton order over 3 axes
        ("float32", (64, 600), 3, 2, 1),
        ("int16", (256, 256), 2, 1, 3),
    ],
)
def test_direct_shards_equal_zarr_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str, shape: tuple[int, int],
    size_c: int, size_z: int, size_t: int,
) -> None:
    acq = acquisition(tmp_path / "export", dtype, shape, size_c, size_z, size_t,
                      drop=((2, 5, 1, 0, 0, 0),))
    fast = write_plate(acq, tmp_path / "fast.ome.zarr", progress=False, workers=2)
    calls = []
    real_create = FieldPyramidWriter.create

    def no_writer(*args: object, **kwargs: object) -> None:
        calls.append(real_create(*args, **kwargs))  # the fast path was available ...
        return None  # ... but write through zarr

    monkeypatch.setattr(FieldPyramidWriter, "create", no_writer)
    slow = write_plate(acq, tmp_path / "zarr.ome.zarr", progress=False, workers=2)
    assert calls and isinstance(calls[0], FieldPyramidWriter)
    a, b = tree(fast), tree(slow)
    assert sorted(a) == sorted(b)
    # one shard per level of each of the 4 fields
    assert sum(k.endswith("c/0/0/0/0/0") for k in a) == 4 * len(pyramid_shapes(shape))
    different = [k for k in a if a[k] != b[k]]
    assert not different
    # and the pixels read back are the TIFFs' (the dropped plane as zeros)
    arr = zarr.open_array(str(fast / "C" / "6" / "1" / "0"))
    assert arr.dtype == np.dtype(dtype) and arr.shape == (size_t, size_c, size_z, *shape)
    assert not arr[0, 0, 0].any()
    np.testing.assert_array_equal(
        arr[0, 1 % size_c, 0] if size_c > 1 else arr[min(1, size_t - 1), 0, 0],
        tifffile.imread(tmp_path / "export" / "Images" / (
            "r2c5f1p0ch1t0.tiff" if size_c > 1 else f"r2c5f1p0ch0t{min(1, size_t - 1)}.tiff")),
    )


def test_writer_declines_unknown_metadata() -> None:
    from zarr.codecs import GzipCodec

    def kwargs(shape: tuple[int, ...]) -> dict:
        return {"shape": shape, "chunks": (1, 1, 1, *shape[3:]), "shards": shape,
                "dtype": "uint16", "fill_value": 0, "compressors": [GzipCodec()]}

    assert FieldPyramidWriter.create([(1, 1, 1, 8, 8)], np.dtype("uint16"), kwargs) is None
