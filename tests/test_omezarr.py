"""OME-Zarr HCS writer/reader: validation, exact round trips, layout, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from hcs.errors import InputError, OutputExistsError
from hcs.io.acquisition import Acquisition, Channel
from hcs.io.convert import write_plate
from hcs.io.omezarr import downsample2, open_plate, pyramid_shapes
from hcs.plate import PlateGeometry

SHAPE = (300, 260)


def make_acquisition(
    root: Path,
    wells: tuple[tuple[int, int], ...] = ((1, 2), (0, 0)),
    fields: int = 2,
    size_c: int = 2,
    size_z: int = 1,
    size_t: int = 1,
    drop: tuple[tuple[int, ...], ...] = (),
    no_url: tuple[tuple[int, ...], ...] = (),
) -> tuple[Acquisition, dict[tuple[int, ...], np.ndarray]]:
    """Write one LZW TIFF per plane with known random pixels; return the Acquisition and truth.

    Keys of the truth dict are (row, col, field, t, c, z). ``drop`` removes the file of a key
    after listing it; ``no_url`` lists the key without a file (path None).
    """
    img_dir = root / "Images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    rows, truth = [], {}
    for r, c in wells:
        for f in range(fields):
            for t in range(size_t):
                for ch in range(size_c):
                    for z in range(size_z):
                        key = (r, c, f, t, ch, z)
                        plane = rng.integers(0, 60000, size=SHAPE, dtype=np.uint16)
                        path = img_dir / f"r{r:02d}c{c:02d}f{f}p{z}ch{ch}t{t}.tiff"
                        tifffile.imwrite(path, plane, compression="lzw")
                        truth[key] = plane
                        if key in drop:
                            path.unlink()
                        rows.append(
                            dict(
                                row=r, col=c, field=f, z=z, channel=ch, t=t,
                                path=None if key in no_url else str(path), page=0,
                                stage_x_um=100.0 * f, stage_y_um=-50.0, stage_z_um=np.nan,
                                time_s=30.0 * t,
                            )
                        )
    index = img_dir / "Index.idx.xml"
    index.write_text("<EvaluationInputData>index</EvaluationInputData>")
    ffc = root / "FFC_Profile"
    ffc.mkdir(exist_ok=True)
    (ffc / "FFC_Profile_Measurement 1.xml").write_bytes(b"<ffc>\x00\x01 binary-ish \xff</ffc>")
    channels = [
        Channel("HOECHST 33342", excitation_nm=375, emission_nm=456,
                flatfield={"mean": np.float64(120.5), "coefficients": [[1.0, np.nan]]}),
        Channel("Alexa 647", excitation_nm=640, emission_nm=706),
        Channel("Brightfield", channel_type="brightfield", emission_nm=0),
    ][:size_c]
    acq = Acquisition(
        plate_name="PLATE-1",
        geometry=PlateGeometry(8, 12),
        channels=channels,
        planes=pd.DataFrame(rows),
        pixel_size_um=(0.598, 0.598),
        source=root,
        vendor_format="harmony",
        image_shape=SHAPE,
        dtype=np.dtype("uint16"),
        z_step_um=2.5,
        index_file=index,
        vendor_files=[index, ffc / "FFC_Profile_Measurement 1.xml"],
        instrument="Phenix",
        attrs={"measurement_id": "abc", "start": "2024-01-01T00:00:00"},
    )
    return acq, truth


@pytest.fixture
def plate05(tmp_path: Path) -> tuple[Path, Acquisition, dict]:
    acq, truth = make_acquisition(tmp_path / "export", size_z=2, size_t=2)
    out = write_plate(acq, tmp_path / "plate.ome.zarr", progress=False, workers=2)
    return out, acq, truth


def test_pyramid_and_downsample_helpers() -> None:
    assert pyramid_shapes((1080, 1080)) == [(1080, 1080), (540, 540), (270, 270), (135, 135)]
    assert pyramid_shapes((2048, 2048))[-1] == (256, 256)
    assert pyramid_shapes((200, 100)) == [(200, 100), (100, 50)]  # at least one lower level
    a = np.arange(12, dtype=np.uint16).reshape(3, 4)
    # 2x2 block means, the odd last row replicated: (0+1+4+5)/4 = 2.5 -> 3 (half up),
    # (2+3+6+7)/4 = 4.5 -> 5, (8+9+8+9)/4 = 8.5 -> 9, (10+11+10+11)/4 = 10.5 -> 11
    np.testing.assert_array_equal(downsample2(a), [[3, 5], [9, 11]])
    f = np.array([[1.0, 2.0], [3.0, 5.0]], dtype=np.float32)
    np.testing.assert_allclose(downsample2(f), [[2.75]])


def test_plate_validates_with_ome_zarr_models_and_opens_in_ome_zarr_py(plate05) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate as OzPlate
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.hcs import HCS

    out, acq, _ = plate05
    hcs = HCS.from_zarr(zarr.open_group(str(out), mode="r"))
    plate = hcs.ome_attributes.plate
    assert [w.path for w in plate.wells] == ["A/1", "B/3"]
    assert [r.name for r in plate.rows] == list("ABCDEFGH")
    assert [c.name for c in plate.columns] == [str(i) for i in range(1, 13)]
    assert plate.field_count == 2
    wells = list(hcs.well_groups)
    assert len(wells) == 2
    assert [im.path for im in wells[0].ome_attributes.well.images] == ["0", "1"]

    nodes = list(Reader(parse_url(str(out)))())
    assert any(isinstance(s, OzPlate) for s in nodes[0].specs)
    # ome-zarr-py finds the images: its plate node tiles every well's first field
    assert nodes[0].data[0].shape[:3] == (2, 2, 2)


def test_exact_round_trip_and_coordinates(plate05) -> None:
    out, acq, truth = plate05
    plate = open_plate(out)
    assert plate.wells == ["A01", "B03"]
    assert plate.fields("B03") == [0, 1]
    assert plate.channels == ["HOECHST 33342", "Alexa 647"]
    assert plate.pixel_size_um == (0.598, 0.598)
    assert plate.geometry == PlateGeometry(8, 12)
    da = plate.field("B03", 1)
    assert da.dims == ("t", "c", "z", "y", "x")
    assert da.shape == (2, 2, 2, *SHAPE)
    assert list(da.coords["c"].values) == ["HOECHST 33342", "Alexa 647"]
    np.testing.assert_allclose(da.coords["x"].values[:3], [0, 0.598, 1.196])
    np.testing.assert_allclose(da.coords["z"].values, [0, 2.5])
    np.testing.assert_allclose(da.coords["t"].values, [0, 30.0])
    assert da.data.chunksize == (1, 1, 1, *SHAPE)  # lazy, one dask chunk per zarr chunk
    values = da.values
    for (r, c, f, t, ch, z), plane in truth.items():
        if (r, c, f) == (1, 2, 1):
            np.testing.assert_array_equal(values[t, ch, z], plane)
    a01 = plate.field("A01", 0).values
    np.testing.assert_array_equal(a01[1, 0, 1], truth[(0, 0, 0, 1, 0, 1)])


def test_chunks_shards_pyramid_and_scale(plate05) -> None:
    out, _, truth = plate05
    image = zarr.open_group(str(out / "B" / "3" / "0"), mode="r")
    level0 = image["0"]
    assert level0.chunks == (1, 1, 1, *SHAPE)
    assert level0.shards == (2, 2, 2, *SHAPE)
    assert level0.metadata.dimension_names == ("t", "c", "z", "y", "x")
    assert [image[str(i)].shape[-2:] for i in range(2)] == [(300, 260), (150, 130)]
    assert "2" not in image  # 150 px <= 256: the pyramid stops after one lower level
    # shard per field: exactly one stored object per level
    assert len(list((out / "B" / "3" / "0" / "0" / "c").rglob("*"))) == 5  # 4 dirs + 1 shard
    ome = image.attrs["ome"]
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a.get("unit") for a in ms["axes"]] == [
        "second", None, "micrometer", "micrometer", "micrometer"
    ]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    np.testing.assert_allclose(scales[0], [30.0, 1.0, 2.5, 0.598, 0.598])
    np.testing.assert_allclose(scales[1], [30.0, 1.0, 2.5, 1.196, 1.196])
    expected = downsample2(truth[(1, 2, 0, 1, 1, 0)])
    np.testing.assert_array_equal(image["1"][1, 1, 0], expected)
    labels = [c["label"] for c in ome["omero"]["channels"]]
    assert labels == ["HOECHST 33342", "Alexa 647"]
    assert [c["color"] for c in ome["omero"]["channels"]] == ["0000FF", "FF00FF"]
    window = ome["omero"]["channels"][0]["window"]
    assert window["min"] == 0 and window["max"] == 65535
    # window = median over fields of the lowest level's 0.1 / 99.9 percentiles (2x2 means of
    # uniform 0..60000 noise): recompute it from the known pixels
    lows, highs = [], []
    for r, c in ((0, 0), (1, 2)):
        for f in range(2):
            planes = np.stack([truth[(r, c, f, t, 0, z)] for t in range(2) for z in range(2)])
            p = np.percentile(downsample2(planes), [0.1, 99.9])
            lows.append(p[0])
            highs.append(p[1])
    assert window["start"] == pytest.approx(np.median(lows))
    assert window["end"] == pytest.approx(np.median(highs))
    assert 0 < window["start"] < 10000 and 50000 < window["end"] < 60000


def test_provenance_vendor_files_and_attrs(plate05, tmp_path: Path) -> None:
    out, acq, _ = plate05
    plate = open_plate(out)
    hcs = plate.attrs
    import hashlib

    assert hcs["index_sha256"] == hashlib.sha256(acq.index_file.read_bytes()).hexdigest()
    assert hcs["vendor_format"] == "harmony" and hcs["instrument"] == "Phenix"
    assert hcs["attrs"] == {"measurement_id": "abc", "start": "2024-01-01T00:00:00"}
    assert hcs["pixel_size_um"] == [0.598, 0.598]
    assert hcs["channels"][0]["flatfield"] == {"mean": 120.5, "coefficients": [[1.0, None]]}
    assert hcs["missing_planes"] == []
    assert hcs["stats"]["planes"] == 2 * 2 * 2 * 2 * 2
    for f in acq.vendor_files:
        assert (out / "vendor" / f.name).read_bytes() == f.read_bytes()
    json.dumps(hcs)  # JSON-safe
    assert not list(tmp_path.glob("*.partial-*"))


def test_missing_planes_zero_filled_not_shifted(tmp_path: Path) -> None:
    gone, unlisted = (1, 2, 0, 0, 1, 0), (1, 2, 1, 0, 0, 0)
    acq, truth = make_acquisition(tmp_path / "exp", drop=(gone,), no_url=(unlisted,))
    out = write_plate(acq, tmp_path / "p.ome.zarr", progress=False)
    plate = open_plate(out)
    b0, b1 = plate.field("B03", 0).values, plate.field("B03", 1).values
    assert (b0[0, 1, 0] == 0).all() and (b1[0, 0, 0] == 0).all()
    np.testing.assert_array_equal(b0[0, 0, 0], truth[(1, 2, 0, 0, 0, 0)])  # neighbours intact
    np.testing.assert_array_equal(b1[0, 1, 0], truth[(1, 2, 1, 0, 1, 0)])
    missing = plate.attrs["missing_planes"]
    assert [(m["well"], m["field"], m["c"], m["reason"]) for m in missing] == [
        ("B03", 0, 1, "file not found"),
        ("B03", 1, 0, "no image in index"),
    ]
    with pytest.raises(InputError, match=r"2 missing plane.*well B03 field 0 t 0 c 1 z 0"):
        write_plate(acq, tmp_path / "strict.ome.zarr", progress=False, strict=True)
    assert not (tmp_path / "strict.ome.zarr").exists()


def test_existing_output_refused_and_overwrite(tmp_path: Path) -> None:
    acq, _ = make_acquisition(tmp_path / "exp", wells=((0, 0),), fields=1, size_c=1)
    out = tmp_path / "p.ome.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_plate(acq, out, progress=False)
    assert (out / "keep.txt").read_text() == "user data"
    # --overwrite replaces only what hcs wrote: a folder with user data is refused, untouched
    with pytest.raises(InputError, match="p.ome.zarr: not replaced: not an OME-Zarr plate"):
        write_plate(acq, out, progress=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "user data"
    (out / "keep.txt").unlink()  # an empty folder may be replaced
    write_plate(acq, out, progress=False, overwrite=True)
    write_plate(acq, out, progress=False, overwrite=True)  # and so may an hcs plate
    assert open_plate(out).wells == ["A01"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "p.ome.zarr"]


def test_truncated_tiff_names_file_and_leaves_nothing(tmp_path: Path) -> None:
    acq, _ = make_acquisition(tmp_path / "exp", wells=((0, 0), (0, 1), (2, 3)), fields=2)
    bad = Path(acq.planes.loc[5, "path"])
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=bad.name):
        write_plate(acq, tmp_path / "p.ome.zarr", progress=False, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_ngff_04_on_zarr_v2(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v04.hcs import HCS

    acq, truth = make_acquisition(tmp_path / "exp", size_z=2)
    out = write_plate(acq, tmp_path / "p4.ome.zarr", ngff="0.4", progress=False)
    root = zarr.open_group(str(out), mode="r")
    assert root.metadata.zarr_format == 2
    assert root.attrs["plate"]["version"] == "0.4"
    hcs = HCS.from_zarr(root)
    assert len(list(hcs.well_groups)) == 2
    arr = root["B/3/1/0"]
    assert arr.chunks == (1, 1, 1, *SHAPE) and arr.shards is None
    plate = open_plate(out)
    assert plate.ngff == "0.4"
    np.testing.assert_array_equal(plate.field("B03", 1).values[0, 1, 1], truth[(1, 2, 1, 0, 1, 1)])
    assert plate.field("B03", 1, level=1).shape[-2:] == (150, 130)
    assert list(Reader(parse_url(str(out)))())


def test_plate_info_on_converted_plate(plate05) -> None:
    from hcs.io.info import INFO_KEYS, plate_info

    out, _, _ = plate05
    info = plate_info(out)
    assert tuple(info) == INFO_KEYS
    assert info["plate"] == "PLATE-1"
    assert (info["rows"], info["columns"]) == (8, 12)
    assert info["wells"] == ["A01", "B03"] and info["fields"] == {"A01": 2, "B03": 2}
    assert info["channels"][0] == {
        "name": "HOECHST 33342", "type": "fluorescence", "excitation_nm": 375, "emission_nm": 456
    }
    assert info["pixel_size_um"] == [0.598, 0.598]
    assert (info["dtype"], info["size_z"], info["size_t"]) == ("uint16", 2, 2)
    assert info["missing_planes"] == []


def test_open_plate_rejects_non_plate(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not an OME-NGFF plate"):
        open_plate(tmp_path)


def test_vendor_name_collision_uses_source_subfolders(tmp_path: Path) -> None:
    acq, _ = make_acquisition(tmp_path / "exp", wells=((0, 0),), fields=1, size_c=1)
    other = tmp_path / "exp" / "Assaylayout" / "Index.idx.xml"
    other.parent.mkdir()
    other.write_text("<AssayLayout/>")
    acq.vendor_files = [acq.index_file, other]
    out = write_plate(acq, tmp_path / "p.ome.zarr", progress=False)
    vendor = out / "vendor"
    assert (vendor / "Images" / "Index.idx.xml").read_bytes() == acq.index_file.read_bytes()
    assert (vendor / "Assaylayout" / "Index.idx.xml").read_text() == "<AssayLayout/>"
    assert open_plate(out).attrs["vendor_files"] == [
        "Images/Index.idx.xml", "Assaylayout/Index.idx.xml"
    ]
