"""`hcs convert` and `hcs info` end to end on real Harmony exports (../shared/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from hcs.cli import app
from hcs.io.info import INFO_KEYS
from hcs.io.omezarr import open_plate

pytest.importorskip("hcs.io.harmony", reason="Harmony reader (hcs.io.harmony) not available")

runner = CliRunner()

PHENIX_CHANNELS = [
    "Alexa 647", "Alexa 568", "488 long", "Alexa 488", "HOECHST 33342", "Brightfield"
]


def convert(*args: str) -> object:
    return runner.invoke(app, ["convert", *args])


def test_convert_phenix_v5_exact_round_trip(phenix_v5: Path, tmp_path: Path) -> None:
    from ome_zarr_models.v05.hcs import HCS

    out = tmp_path / "phenix.ome.zarr"
    res = convert(str(phenix_v5), str(out))
    assert res.exit_code == 0, res.output
    assert "1 wells, 1 fields, 6 channels, 6 planes, 0 missing" in res.output
    HCS.from_zarr(zarr.open_group(str(out), mode="r"))
    plate = open_plate(out)
    assert (plate.geometry.rows, plate.geometry.columns) == (16, 24)
    assert plate.wells == ["A01"]
    assert plate.channels == PHENIX_CHANNELS
    assert plate.pixel_size_um[0] == pytest.approx(0.598, abs=5e-4)
    field = plate.field("A01", 0)
    assert field.shape == (1, 6, 1, 1080, 1080)
    values = field.values
    for ch in range(6):
        expected = tifffile.imread(phenix_v5 / f"r01c01f01p01-ch{ch + 1}sk1fk1fl1.tiff")
        np.testing.assert_array_equal(values[0, ch, 0], expected)
    assert [zarr.open_array(str(out / "A" / "1" / "0" / str(i)), mode="r").shape[-1]
            for i in range(4)] == [1080, 540, 270, 135]
    vendor = out / "vendor" / "Index.idx.xml"
    assert vendor.read_bytes() == (phenix_v5 / "Index.idx.xml").read_bytes()
    hcs = plate.attrs
    assert hcs["vendor_format"] == "harmony" and hcs["instrument"] == "Phenix"
    flat = [c["flatfield"] for c in hcs["channels"]]
    assert sum(f is not None for f in flat) >= 5  # the index carries FlatfieldProfile blocks


def test_convert_operetta_cls_two_fields_and_ngff04(operetta_cls: Path, tmp_path: Path) -> None:
    from ome_zarr_models.v04.hcs import HCS as HCS04

    out = tmp_path / "operetta.ome.zarr"
    res = convert(str(operetta_cls), str(out), "--workers", "1")
    assert res.exit_code == 0, res.output
    plate = open_plate(out)
    assert plate.wells == ["C03"] and plate.fields("C03") == [0, 1]
    assert plate.channels == ["Fluorescein (FITC)"]
    assert plate.pixel_size_um[0] == pytest.approx(1.196, abs=5e-4)
    for f in (0, 1):
        tiff = operetta_cls / "Images" / f"r03c03f0{f + 1}p01-ch1sk1fk1fl1.tiff"
        expected = tifffile.imread(tiff)
        np.testing.assert_array_equal(plate.field("C03", f).values[0, 0, 0], expected)
    layout = operetta_cls / "Assaylayout" / "Unnamed.xml"
    assert (out / "vendor" / "Unnamed.xml").read_bytes() == layout.read_bytes()

    out4 = tmp_path / "operetta4.ome.zarr"
    res = convert(str(operetta_cls), str(out4), "--ngff", "0.4")
    assert res.exit_code == 0, res.output
    HCS04.from_zarr(zarr.open_group(str(out4), mode="r"))
    p4 = open_plate(out4)
    np.testing.assert_array_equal(
        p4.field("C03", 1).values, plate.field("C03", 1).values
    )


def test_existing_output_refused(phenix_v5: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.ome.zarr"
    out.mkdir()
    res = convert(str(phenix_v5), str(out))
    assert res.exit_code == 2
    assert "exists; pass --overwrite" in res.output
    assert list(out.iterdir()) == []
    res = convert(str(phenix_v5), str(out), "--overwrite")
    assert res.exit_code == 0, res.output
    assert open_plate(out).wells == ["A01"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_tiff_fails_cleanly(phenix_v5: Path, tmp_path: Path) -> None:
    export = _copy(phenix_v5, tmp_path / "export")
    bad = export / "r01c01f01p01-ch3sk1fk1fl1.tiff"
    bad.write_bytes(bad.read_bytes()[:5000])
    res = convert(str(export), str(tmp_path / "p.ome.zarr"))
    assert res.exit_code == 2
    assert "r01c01f01p01-ch3sk1fk1fl1.tiff" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_missing_plane_recorded_and_strict(phenix_v5: Path, tmp_path: Path) -> None:
    export = _copy(phenix_v5, tmp_path / "export")
    (export / "r01c01f01p01-ch2sk1fk1fl1.tiff").unlink()
    res = convert(str(export), str(tmp_path / "strict.ome.zarr"), "--strict")
    assert res.exit_code == 2 and "missing plane" in res.output
    assert "r01c01f01p01-ch2sk1fk1fl1.tiff" in res.output
    assert not (tmp_path / "strict.ome.zarr").exists()

    out = tmp_path / "p.ome.zarr"
    res = convert(str(export), str(out))
    assert res.exit_code == 0, res.output
    assert "1 missing" in res.output
    plate = open_plate(out)
    values = plate.field("A01", 0).values
    assert not values[0, 1].any()
    np.testing.assert_array_equal(
        values[0, 2, 0], tifffile.imread(export / "r01c01f01p01-ch3sk1fk1fl1.tiff")
    )
    (miss,) = plate.attrs["missing_planes"]
    got = (miss["well"], miss["field"], miss["c"], miss["reason"])
    assert got == ("A01", 0, 1, "file not found")


def test_info_json_on_plate_and_export(phenix_v5: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.ome.zarr"
    assert convert(str(phenix_v5), str(out)).exit_code == 0
    on_plate = json.loads(runner.invoke(app, ["info", str(out), "--json"]).output)
    on_export = json.loads(runner.invoke(app, ["info", str(phenix_v5), "--json"]).output)
    assert tuple(on_plate) == INFO_KEYS == tuple(on_export)
    assert on_plate == on_export  # the plate reports what the export holds
    assert on_plate["plate"] == "BR00121482"
    assert [c["name"] for c in on_plate["channels"]] == PHENIX_CHANNELS
    assert on_plate["channels"][5]["type"] == "brightfield"
    assert (on_plate["rows"], on_plate["columns"], on_plate["fields"]) == (16, 24, {"A01": 1})
    table = runner.invoke(app, ["info", str(out)])
    assert table.exit_code == 0 and "HOECHST 33342" in table.output and "16 x 24" in table.output


def test_unknown_export_format_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "a.tif").write_bytes(b"")
    res = convert(str(tmp_path), str(tmp_path / "p.ome.zarr"))
    assert res.exit_code == 2
    assert "Harmony index" in res.output and "--pattern" in res.output


def test_detect_format_on_real_exports(phenix_v5: Path, operetta_cls: Path, scanr_sample: Path):
    from hcs.io import detect_format

    assert detect_format(phenix_v5) == "harmony"
    assert detect_format(operetta_cls) == "harmony"  # index under Images/
    assert detect_format(operetta_cls / "Images" / "Index.idx.xml") == "harmony"
    assert detect_format(scanr_sample) == "scanr"


def test_convert_tiff_folder_plate_row(plate_row_gfp: Path, tmp_path: Path) -> None:
    pytest.importorskip("hcs.io.tiff_folder", reason="TIFF-folder reader not available")
    out = tmp_path / "row.ome.zarr"
    res = convert(str(plate_row_gfp), str(out), "--format", "tiff-folder", "--plate-format", "384")
    assert res.exit_code == 0, res.output
    plate = open_plate(out)
    assert len(plate.wells) == 24 and plate.wells[0] == "O01" and plate.fields("O24") == [0, 1, 2]
    tiff = plate_row_gfp / "AS_09047_050428030001_O07f02d2.TIF"
    np.testing.assert_array_equal(plate.field("O07", 2).values[0, 0, 0], tifffile.imread(tiff))
    assert plate.dtype == np.uint8


def test_convert_scanr_sample(scanr_sample: Path, tmp_path: Path) -> None:
    pytest.importorskip("hcs.io.scanr", reason="ScanR reader not available")
    out = tmp_path / "scanr.ome.zarr"
    res = convert(str(scanr_sample), str(out), "--plate-format", "96")
    assert res.exit_code == 0, res.output
    plate = open_plate(out)
    tiff = scanr_sample / "--W00001--P00001--Z00000--T00000--cherry.tif"
    np.testing.assert_array_equal(plate.field("A01", 0).values[0, 0, 0], tifffile.imread(tiff))
    assert plate.channels == ["cherry"]
    on_plate = json.loads(runner.invoke(app, ["info", str(out), "--json"]).output)
    raw = runner.invoke(app, ["info", str(scanr_sample), "--json", "--plate-format", "96"])
    assert on_plate == json.loads(raw.output)
    assert on_plate["pixel_size_um"] is None  # this export does not state it
