"""Generic TIFF-folder reader: the real plate row (../shared/data/plate-row-gfp) and edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs.errors import InputError
from hcs.io.acquisition import read_plane
from hcs.io.tiff_folder import DEFAULT_PATTERN, read_tiff_folder
from hcs.plate import PlateGeometry

GFP_PATTERN = r"_(?P<well>[A-P]\d{2})f(?P<field>\d{2})d(?P<channel>\d)\.TIF$"


@pytest.mark.parametrize("pattern", [GFP_PATTERN, DEFAULT_PATTERN])
def test_real_plate_row(plate_row_gfp: Path, pattern: str) -> None:
    acq = read_tiff_folder(plate_row_gfp, pattern)
    assert acq.vendor_format == "tiff-folder"
    assert acq.geometry == PlateGeometry(16, 24)  # row O (15th) needs a 384-well plate
    assert acq.well_names() == [f"O{c:02d}" for c in range(1, 25)]
    assert len(acq.planes) == 72 and acq.n_fields == 3 and acq.size_z == acq.size_t == 1
    assert all(acq.fields_of(14, c) == [0, 1, 2] for c in range(24))
    assert [c.name for c in acq.channels] == ["2"]
    assert acq.image_shape == (512, 512) and acq.dtype == np.uint8
    assert acq.attrs["ignored_files"] == 0  # LICENSE.source is not a TIFF
    assert acq.missing_planes().empty
    for rec in acq.planes.itertuples():
        name = Path(rec.path).name
        assert name == f"AS_09047_050428030001_O{rec.col + 1:02d}f{rec.field:02d}d2.TIF"
        np.testing.assert_array_equal(
            read_plane(rec.path, expect_shape=acq.image_shape), tifffile.imread(rec.path)
        )
    first = read_plane(acq.planes.path.iloc[0])
    assert first.dtype == np.uint8 and first.shape == (512, 512) and first.max() > first.min()


def test_real_plate_row_options(plate_row_gfp: Path) -> None:
    acq = read_tiff_folder(plate_row_gfp, GFP_PATTERN, plate_format=384,
                           channel_names=["GFP"], pixel_size_um=0.8)
    assert [c.name for c in acq.channels] == ["GFP"] and acq.pixel_size_um == (0.8, 0.8)
    with pytest.raises(InputError, match=r"AS_09047_050428030001_O01f00d2\.TIF: well is outside"):
        read_tiff_folder(plate_row_gfp, GFP_PATTERN, plate_format=96)
    with pytest.raises(InputError, match="2 channel name"):
        read_tiff_folder(plate_row_gfp, GFP_PATTERN, channel_names=["GFP", "DAPI"])


def _tif(folder: Path, name: str, value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, np.full((5, 7), value, np.uint16))


def test_row_col_groups_dense_axes_and_ignored_files(tmp_path: Path) -> None:
    # numeric rows, fields 1-based with a gap, channels as text, z and t
    for r, c, f, ch, z, t in [(3, 12, 1, "DAPI", 0, 5), (3, 12, 4, "DAPI", 0, 5),
                              (3, 12, 1, "GFP", 2, 5), (10, 1, 4, "GFP", 2, 7)]:
        _tif(tmp_path, f"r{r:02d}c{c:02d}f{f}-{ch}-z{z}-t{t}.tiff", value=r * 100 + f)
    _tif(tmp_path, "overview.tif")
    (tmp_path / "notes.txt").write_text("not an image")
    pattern = (r"^r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)-(?P<channel>[^-]+)"
               r"-z(?P<z>\d+)-t(?P<t>\d+)\.tiff$")
    with pytest.warns(UserWarning, match="ignored 1 TIFF"):
        acq = read_tiff_folder(tmp_path, pattern)
    assert acq.attrs["ignored_files"] == 1
    assert acq.geometry == PlateGeometry(16, 24)  # row 10 (J) does not fit 8 rows
    assert acq.well_names() == ["C12", "J01"]
    assert [c.name for c in acq.channels] == ["DAPI", "GFP"]
    got = {(r.row, r.col, r.field, r.channel, r.z, r.t) for r in acq.planes.itertuples()}
    assert got == {(2, 11, 0, 0, 0, 0), (2, 11, 1, 0, 0, 0), (2, 11, 0, 1, 1, 0),
                   (9, 0, 1, 1, 1, 1)}
    rec = acq.planes[(acq.planes.row == 9)].iloc[0]
    assert int(read_plane(rec.path)[0, 0]) == 1004
    # letter rows work too
    _tif(tmp_path / "b", "B_3_s0.tif")
    acq = read_tiff_folder(tmp_path / "b", r"^(?P<row>[A-Z])_(?P<col>\d+)_s(?P<field>\d)\.tif$")
    assert acq.well_names() == ["B03"] and acq.geometry == PlateGeometry(2, 3)


def test_default_pattern_imagexpress_names(tmp_path: Path) -> None:
    for s in (1, 2):
        for w in (1, 2):
            _tif(tmp_path, f"Plate1_B03_s{s}_w{w}.TIF")
    acq = read_tiff_folder(tmp_path, channel_names=["Hoechst", "GFP"])
    assert acq.well_names() == ["B03"] and acq.n_fields == 2
    assert [c.name for c in acq.channels] == ["Hoechst", "GFP"]
    assert acq.planes[acq.planes.channel == 1].path.map(lambda p: p.endswith("_w2.TIF")).all()


def test_bad_input(tmp_path: Path) -> None:
    _tif(tmp_path, "A01_f1.tif")
    _tif(tmp_path, "A1_f01.tif")
    with pytest.raises(InputError, match="duplicate plane for well A01 field 0"):
        read_tiff_folder(tmp_path, r"^(?P<well>[A-Z]\d+)_f(?P<field>\d+)\.tif$")
    with pytest.raises(InputError, match="needs a named group 'well'"):
        read_tiff_folder(tmp_path, r"^(?P<field>\d+)")
    with pytest.raises(InputError, match="not a valid regex"):
        read_tiff_folder(tmp_path, r"(?P<well>[A-Z")
    with pytest.raises(InputError, match="no file name matches"):
        read_tiff_folder(tmp_path, r"^(?P<well>[A-Z]\d+)\.png$")
    with pytest.raises(InputError, match=r"A01_f1\.tif: cannot read a well"):
        read_tiff_folder(tmp_path, r"^(?P<row>[A-Z])(?P<col>x?)\d+_f(?P<field>\d+)\.tif$")
