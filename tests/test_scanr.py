"""ScanR reader and export writer: real scanR files (../shared/data/scanr) and round trips."""

from __future__ import annotations

import shutil
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs.errors import InputError, OutputExistsError
from hcs.io.acquisition import Channel, read_plane
from hcs.io.scanr import read_scanr
from hcs.io.scanr_descriptor import parse_experiment_descriptor
from hcs.io.scanr_meta import parse_scanr_name, parse_scanr_ome
from hcs.plate import PlateGeometry, parse_well
from hcs.synth.exports.scanr import well_center_um, write_scanr_export

CHERRY = "--W00001--P00001--Z00000--T00000--cherry.tif"
REAL_OME = "scanr-3.3.0-metadata.ome.xml"
OME_FILE = "B2--W00014--P00001--Z00000--T00000--405 nm #1.tif"
G96 = PlateGeometry.from_format(96)


# ----- the real scanR sample --------------------------------------------------------------


def test_real_image_read_by_file_name(scanr_sample: Path) -> None:
    acq = read_scanr(scanr_sample, plate_format=96)
    assert acq.vendor_format == "scanr" and acq.attrs["scanr_metadata"] == "file names"
    # the sample's OME-XML has a non-standard name and belongs to another acquisition
    assert acq.vendor_files == [] and acq.index_file is None
    assert [c.name for c in acq.channels] == ["cherry"]
    assert acq.well_names() == ["A01"] and len(acq.planes) == 1
    assert acq.image_shape == (1024, 1344) and acq.dtype == np.uint16
    rec = acq.planes.iloc[0]
    assert Path(rec.path).name == CHERRY
    plane = read_plane(rec.path, int(rec.page), expect_shape=acq.image_shape)
    ref = tifffile.imread(scanr_sample / CHERRY)
    np.testing.assert_array_equal(plane, ref)
    # raw values kept: a 12-bit camera with the top bit set by IMAQ, no 0xfff masking
    assert (int(plane.min()), int(plane.max())) == (32993, 36863)


def test_real_image_needs_plate_format(scanr_sample: Path) -> None:
    with pytest.raises(InputError, match="--plate-format"):
        read_scanr(scanr_sample)


def test_real_ome_xml_metadata(scanr_sample: Path) -> None:
    ome = parse_scanr_ome(scanr_sample / REAL_OME)
    assert ome.creator == "Olympus, scanR 3.3.0  (r4137)"
    (img,) = ome.images
    assert (img.well, img.pos, img.label) == (14, 1, "B2")
    assert img.size_yx == (2048, 2048) and img.pixel_type == "uint16"
    assert img.significant_bits == 16 and img.pixel_size_um == (0.325, 0.325)
    assert [c["name"] for c in img.channels] == ["405 nm #1"]
    assert img.channels[0]["acquisition_mode"] == "SpinningDiskConfocal"
    (pl,) = img.planes
    assert pl["file"] == OME_FILE
    assert (pl["x_um"], pl["y_um"], pl["z_um"]) == (100090.0, 61827.0, 6275.29)
    assert pl["delta_t_s"] == 4.888 and pl["exposure_s"] == 0.1
    assert G96.well_from_index(14) == parse_well("B2") == (1, 1)
    assert parse_scanr_name(OME_FILE).channel == "405 nm #1"


def _export_with_real_ome(scanr_sample: Path, tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    shutil.copy(scanr_sample / REAL_OME, exp / "data" / "metadata.ome.xml")
    return exp


def test_real_ome_xml_in_export_layout(scanr_sample: Path, tmp_path: Path) -> None:
    exp = _export_with_real_ome(scanr_sample, tmp_path)
    with pytest.raises(InputError, match="none of the 1 image files it lists exists"):
        read_scanr(exp, plate_format=96)
    img = (np.arange(2048 * 2048, dtype=np.uint32) % 65536).astype(np.uint16).reshape(2048, 2048)
    tifffile.imwrite(exp / "data" / OME_FILE, img, compression="zlib")
    acq = read_scanr(exp / "data", plate_format=96)
    assert acq.attrs["scanr_metadata"] == "ome" and acq.source == exp
    assert acq.well_names() == ["B02"] and acq.attrs["well_labels"] == {"B02": "B2"}
    assert [c.name for c in acq.channels] == ["405 nm #1"]
    assert acq.channels[0].metadata["acquisition_mode"] == "SpinningDiskConfocal"
    assert acq.pixel_size_um == (0.325, 0.325) and acq.image_shape == (2048, 2048)
    rec = acq.planes.iloc[0]
    assert (rec.stage_x_um, rec.stage_y_um, rec.stage_z_um) == (100090.0, -61827.0, 6275.29)
    assert rec.time_s == 4.888
    assert acq.instrument == "Olympus, scanR 3.3.0  (r4137)"
    assert [p.name for p in acq.vendor_files] == ["metadata.ome.xml"]
    np.testing.assert_array_equal(read_plane(rec.path), img)
    # W14 is A14 on a 384-well plate: contradicts the label "B2"
    with pytest.raises(InputError, match=r"labelled B2.*fit 96"):
        read_scanr(exp, plate_format=384)
    with pytest.raises(InputError, match=r"--plate-format.*labels fit 96 wells"):
        read_scanr(exp)


def test_ome_xml_with_unreferenced_files_is_an_error(scanr_sample: Path, tmp_path: Path) -> None:
    exp = _export_with_real_ome(scanr_sample, tmp_path)
    shutil.copy(scanr_sample / CHERRY, exp / "data" / CHERRY)
    with pytest.raises(InputError, match=r"1 scanR image file.*not referenced.*cherry"):
        read_scanr(exp, plate_format=96)


# ----- writer round trips -----------------------------------------------------------------

CHANNELS = [Channel("405 nm #1", emission_nm=450.0), Channel("nucleus-dapi")]
WELLS = [(1, 1), (2, 5)]  # B2 (W14), C6 (W30)
OFFSETS = [(-120.5, -40.0), (130.25, 60.0)]


def _planes(shape: tuple[int, int] = (16, 24), seed: int = 0) -> dict[tuple[int, ...], np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        (r, c, f, z, ch, t): rng.integers(0, 65536, shape, dtype=np.uint16)
        for r, c in WELLS for f in range(2) for z in range(2) for ch in range(2) for t in range(2)
    }


def _write(out: Path, planes: dict, metadata: str, **kw) -> Path:
    return write_scanr_export(
        out, iter(planes.items()), channels=CHANNELS, geometry=G96, pixel_size_um=0.65,
        field_positions_um=OFFSETS, z_step_um=1.5, time_step_s=30.0, metadata=metadata, **kw
    )


@pytest.mark.parametrize("metadata", ["ome", "descriptor"])
def test_writer_round_trip(tmp_path: Path, metadata: str) -> None:
    planes = _planes()
    meta = _write(tmp_path / "exp", planes, metadata)
    expected_meta = "data/metadata.ome.xml" if metadata == "ome" else "experiment_descriptor.xml"
    assert meta == tmp_path / "exp" / expected_meta
    name = "B2--W00014--P00002--Z00001--T00001--405 nm #1.tif"
    assert (tmp_path / "exp" / "data" / name).is_file()
    acq = read_scanr(tmp_path / "exp", plate_format=96 if metadata == "ome" else None)
    assert acq.attrs["scanr_metadata"] == metadata
    assert [c.name for c in acq.channels] == ["405 nm #1", "nucleus-dapi"]
    assert acq.geometry == G96 and acq.well_names() == ["B02", "C06"]
    assert acq.pixel_size_um == (0.65, 0.65) and acq.z_step_um == 1.5
    assert acq.image_shape == (16, 24) and acq.dtype == np.uint16
    if metadata == "descriptor":
        assert acq.plate_name == "SIMPLATE"
        assert sorted(p.name for p in acq.vendor_files) == [
            "AcquisitionLog.dat", "experiment_descriptor.xml"
        ]
    else:
        assert acq.channels[0].emission_nm == 450.0
    keys = {tuple(int(v) for v in k) for k in acq.planes[
        ["row", "col", "field", "z", "channel", "t"]].itertuples(index=False)}
    assert keys == set(planes)
    assert acq.missing_planes().empty
    for rec in acq.planes.itertuples():
        key = (rec.row, rec.col, rec.field, rec.z, rec.channel, rec.t)
        np.testing.assert_array_equal(read_plane(rec.path, rec.page), planes[key])
        cx, cy = well_center_um(G96, rec.row, rec.col)
        assert rec.stage_x_um == pytest.approx(cx + OFFSETS[rec.field][0], abs=1e-6)
        assert rec.stage_y_um == pytest.approx(cy + OFFSETS[rec.field][1], abs=1e-6)
        assert rec.stage_z_um == pytest.approx(1.5 * rec.z)
        assert rec.time_s == pytest.approx(30.0 * rec.t)
    # B2 centre on a 96-well plate: 14.38 mm + 9 mm, 11.24 mm + 9 mm
    assert well_center_um(G96, 1, 1) == (23380.0, 20240.0)


@pytest.mark.parametrize("metadata", ["ome", "descriptor"])
def test_writer_output_is_deterministic(tmp_path: Path, metadata: str) -> None:
    _write(tmp_path / "a", _planes(), metadata)
    _write(tmp_path / "b", _planes(), metadata)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert files_a == files_b and len(files_a) == 32 + 1 + (1 if metadata == "ome" else 2)
    for rel in files_a:
        if (tmp_path / "a" / rel).is_file():
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_writer_no_prefix_and_descriptor_without_log(tmp_path: Path) -> None:
    planes = _planes()
    _write(tmp_path / "exp", planes, "descriptor", prefix="")
    names = sorted(p.name for p in (tmp_path / "exp" / "data").iterdir())
    assert names[0] == "--W00014--P00001--Z00000--T00000--405 nm #1.tif"
    (tmp_path / "exp" / "AcquisitionLog.dat").unlink()
    desc = parse_experiment_descriptor(tmp_path / "exp" / "experiment_descriptor.xml")
    # Autofocus and the idle slot are dropped
    assert [c["name"] for c in desc.channels] == ["405 nm #1", "nucleus-dapi"]
    assert (desc.rows, desc.columns, desc.n_slices, desc.n_timepoints) == (8, 12, 2, 2)
    assert desc.subpositions == [(-120.5, 40.0), (130.25, -60.0)]  # Cartesian, as written
    assert desc.wells == [(14, None), (30, None)] and desc.time_step_s == 30.0
    acq = read_scanr(tmp_path / "exp" / "data")
    rec = acq.planes[(acq.planes.field == 1) & (acq.planes.z == 1) & (acq.planes.t == 1)].iloc[0]
    # without the log: positions are the per-field offsets, z and t from step x index
    assert (rec.stage_x_um, rec.stage_y_um) == (130.25, 60.0)
    assert (rec.stage_z_um, rec.time_s) == (1.5, 30.0)


def test_descriptor_is_latin1_and_contradiction_with_plate_format(tmp_path: Path) -> None:
    chans = [Channel("GFP µ-test #2")]
    write_scanr_export(tmp_path / "exp", [((0, 0, 0, 0, 0, 0), np.ones((4, 4), np.uint8))],
                       channels=chans, geometry=PlateGeometry.from_format(384),
                       pixel_size_um=1.0, metadata="descriptor")
    raw = (tmp_path / "exp" / "experiment_descriptor.xml").read_bytes()
    assert b"GFP \xb5-test #2" in raw and b"encoding" not in raw
    acq = read_scanr(tmp_path / "exp")
    assert [c.name for c in acq.channels] == ["GFP µ-test #2"]
    assert acq.geometry == PlateGeometry(16, 24) and acq.dtype == np.uint8
    with pytest.raises(InputError, match="descriptor says 16 x 24"):
        read_scanr(tmp_path / "exp", plate_format=96)


def test_writer_refuses_existing_output_and_cleans_up_on_failure(tmp_path: Path) -> None:
    planes = _planes()
    _write(tmp_path / "exp", planes, "ome")
    with pytest.raises(OutputExistsError):
        _write(tmp_path / "exp", planes, "ome")
    _write(tmp_path / "exp", planes, "descriptor", overwrite=True)
    assert not (tmp_path / "exp" / "data" / "metadata.ome.xml").exists()
    assert (tmp_path / "exp" / "experiment_descriptor.xml").is_file()

    def failing():
        yield (0, 0, 0, 0, 0, 0), np.zeros((4, 4), np.uint16)
        yield (0, 0, 0, 0, 0, 0), np.zeros((4, 4), np.uint16)  # duplicate key

    with pytest.raises(InputError, match="duplicate plane key"):
        write_scanr_export(tmp_path / "new", failing(), channels=CHANNELS, geometry=G96,
                           pixel_size_um=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    with pytest.raises(InputError, match="outside the 8 x 12 plate"):
        write_scanr_export(tmp_path / "new", [((8, 0, 0, 0, 0, 0), np.zeros((4, 4)))],
                           channels=CHANNELS, geometry=G96, pixel_size_um=1.0)


def test_writer_memory_does_not_hold_planes(tmp_path: Path) -> None:
    n, shape = 160, (256, 256)  # 160 x 128 KiB = 20 MiB of pixels in all

    def gen():
        rng = np.random.default_rng(1)
        for i in range(n):
            yield (i // 72, (i // 3) % 24, i % 3, 0, 0, 0), rng.integers(
                0, 4096, shape, dtype=np.uint16)

    tracemalloc.start()
    write_scanr_export(tmp_path / "big", gen(), channels=CHANNELS[:1],
                       geometry=PlateGeometry.from_format(384), pixel_size_um=1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert len(list((tmp_path / "big" / "data").iterdir())) == n + 1


def test_missing_referenced_file_becomes_missing_plane(tmp_path: Path) -> None:
    planes = _planes()
    _write(tmp_path / "exp", planes, "ome")
    gone = tmp_path / "exp" / "data" / "C6--W00030--P00002--Z00000--T00001--nucleus-dapi.tif"
    gone.unlink()
    with pytest.warns(UserWarning, match="1 of 32 referenced image files are missing"):
        acq = read_scanr(tmp_path / "exp", plate_format=96)
    assert len(acq.planes) == 32 and acq.attrs["missing_files"] == 1
    miss = acq.missing_planes()
    assert len(miss) == 1 and miss.iloc[0]["reason"] == "file not found"
    assert tuple(miss.iloc[0][["row", "col", "field", "z", "channel", "t"]]) == (2, 5, 1, 0, 1, 1)


# ----- file names only: bad input and edge cases -------------------------------------------


def _tif(folder: Path, name: str, arr: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, np.zeros((6, 8), np.uint16) if arr is None else arr)
    return folder / name


def test_names_only_channels_match_exactly_and_int16_is_reinterpreted(tmp_path: Path) -> None:
    d = tmp_path / "data"
    vals = np.array([[-1, 5], [-32768, 32767]], np.int16)
    for ch in ("GFP", "GFP2", "405 nm #1"):
        _tif(d, f"siRNA-12--W00026--P00001--Z00000--T00000--{ch}.tif", vals)
    _tif(d, "overview.tif")
    with pytest.warns(UserWarning, match="ignored 1 TIFF"):
        acq = read_scanr(tmp_path, plate_format=384)
    assert acq.attrs["ignored_files"] == 1 and "well_labels" not in acq.attrs
    assert [c.name for c in acq.channels] == ["405 nm #1", "GFP", "GFP2"]
    assert acq.well_names() == ["B02"]  # W26 on 384 wells
    assert acq.attrs["tiff_dtype"] == "int16" and acq.dtype == np.uint16
    by_name = {Path(p).name.split("--")[-1]: c for p, c in zip(
        acq.planes.path, acq.planes.channel, strict=True)}
    assert by_name == {"405 nm #1.tif": 0, "GFP.tif": 1, "GFP2.tif": 2}
    raw = read_plane(acq.planes.path.iloc[0])
    assert raw.view(acq.dtype).tolist() == [[65535, 5], [32768, 32767]]


def test_well_number_outside_plate_names_the_file(tmp_path: Path) -> None:
    _tif(tmp_path, "--W00001--P00001--Z00000--T00000--dapi.tif")
    bad = _tif(tmp_path, "--W00097--P00001--Z00000--T00000--dapi.tif")
    with pytest.raises(InputError, match=rf"{bad.name}.*well number 97 does not fit"):
        read_scanr(tmp_path, plate_format=96)
    assert read_scanr(tmp_path, plate_format=384).well_names() == ["A01", "E01"]


def test_missing_plate_format_duplicates_and_label_contradiction(tmp_path: Path) -> None:
    _tif(tmp_path / "a", "--W00001--P00001--Z00000--T00000--dapi.tif")
    with pytest.raises(InputError, match="does not state the plate format; pass --plate-format"):
        read_scanr(tmp_path / "a")
    _tif(tmp_path / "a", "--W00001--P00001--Z00000--T00000--dapi.tiff")
    with pytest.raises(InputError, match="duplicate plane for well A01 field 0"):
        read_scanr(tmp_path / "a", plate_format=96)
    _tif(tmp_path / "b", "B2--W00014--P00001--Z00000--T00000--dapi.tif")
    assert read_scanr(tmp_path / "b", plate_format=96).well_names() == ["B02"]
    with pytest.raises(InputError, match="labelled B2"):
        read_scanr(tmp_path / "b", plate_format=384)


def test_truncated_tiff_error_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _tif(tmp_path, "--W00001--P00001--Z00000--T00000--dapi.tif",
         rng.integers(0, 65535, (64, 64), dtype=np.uint16))
    bad = _tif(tmp_path, "--W00002--P00001--Z00000--T00000--dapi.tif",
               rng.integers(0, 65535, (64, 64), dtype=np.uint16))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    acq = read_scanr(tmp_path, plate_format=96)
    rec = acq.planes[acq.planes.col == 1].iloc[0]
    with pytest.raises(InputError, match=rf"{bad.name}: cannot read TIFF"):
        read_plane(rec.path, int(rec.page), expect_shape=acq.image_shape)


def test_descriptor_channel_not_listed_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "exp", _planes(), "descriptor")
    _tif(tmp_path / "exp" / "data", "B2--W00014--P00001--Z00000--T00000--GFP.tif",
         np.zeros((16, 24), np.uint16))
    with pytest.raises(InputError, match="channel 'GFP' is not among the channels"):
        read_scanr(tmp_path / "exp")


def test_no_scanr_images(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _tif(tmp_path, "plain.tif")
        with pytest.raises(InputError, match="no scanR image"):
            read_scanr(tmp_path, plate_format=96)


def test_descriptor_parser_on_a_hand_written_file(tmp_path: Path) -> None:
    """A descriptor not produced by our writer: BOM-less latin-1, other container names,
    ``timeloop count`` (T = count + 1), idle and Autofocus channels, CRLF AcquisitionLog."""
    xml = (
        "<?xml version='1.0' standalone='yes' ?>\n<LVData xmlns=\"http://www.ni.com/LVData\">"
        "<Version>8.2</Version><Cluster><Name>experiment</Name>"
        "<Cluster><Name>format typedef</Name><I32><Name>Rows</Name><Val>16</Val></I32>"
        "<I32><Name>Columns</Name><Val>24</Val></I32></Cluster>"
        "<String><Name>plate name</Name><Val>Plate \xe9t\xe9 1</Val></String>"
        "<Array><Name>illumination</Name><Dimsize>3</Dimsize>"
        "<Cluster><Name>ch</Name><String><Name>name</Name><Val>Autofocus</Val></String>"
        "<U8><Name>idle</Name><Val>0</Val></U8></Cluster>"
        "<Cluster><Name>ch</Name><String><Name>name</Name><Val>DAPI  </Val></String>"
        "<U8><Name>idle</Name><Val>0</Val></U8>"
        "<DBL><Name>exposure time</Name><Val>250</Val></DBL></Cluster>"
        "<Cluster><Name>ch</Name><String><Name>name</Name><Val>Cy5</Val></String>"
        "<U8><Name>idle</Name><Val>1</Val></U8></Cluster></Array>"
        "<I32><Name>timeloop count</Name><Val>2</Val></I32>"
        "<I32><Name>timeloop delay [ms]</Name><Val>1500</Val></I32>"
        "<DBL><Name>conversion factor um/pixel</Name><Val>0.1613</Val></DBL>"
        "<Array><Name>well selection table + cDNA</Name><Dimsize>4</Dimsize>"
        "<String><Name></Name><Val>26</Val></String><String><Name></Name><Val>B2</Val></String>"
        "</Array></Cluster></LVData>"
    )
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    (exp / "experiment_descriptor.xml").write_bytes(xml.encode("latin-1"))
    d = parse_experiment_descriptor(exp / "experiment_descriptor.xml")
    assert d.plate_name == "Plate été 1" and (d.rows, d.columns) == (16, 24)
    assert d.channels == [{"name": "DAPI", "exposure_ms": 250.0}]
    assert d.n_timepoints == 3 and d.time_step_s == 1.5 and d.pixel_size_um == 0.1613
    assert d.wells == [(26, "B2")] and d.subpositions == []
    for t in range(3):
        _tif(exp / "data", f"B2--W00026--P00001--Z00000--T{t:05d}--DAPI.tif")
    (exp / "AcquisitionLog.dat").write_bytes(
        b"scanR acquisition log\r\nW=26\tP=1\tT=2\tZ=0\tX=1000.5\tY=2000.25\tZ=15.0\tT=3.1\r\n"
    )
    acq = read_scanr(exp)
    assert acq.plate_name == "Plate été 1" and acq.well_names() == ["B02"]
    assert acq.size_t == 3 and acq.pixel_size_um == (0.1613, 0.1613)
    assert acq.channels[0].metadata == {"exposure_s": 0.25}
    last = acq.planes[acq.planes.t == 2].iloc[0]
    assert (last.stage_x_um, last.stage_y_um, last.stage_z_um, last.time_s) == (
        1000.5, -2000.25, 15.0, 3.1)
    first = acq.planes[acq.planes.t == 1].iloc[0]  # not in the log: time from the delay
    assert first.time_s == 1.5 and np.isnan(first.stage_x_um)
