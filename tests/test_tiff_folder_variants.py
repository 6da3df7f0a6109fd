"""TIFF folders as real plates come: other bit depths, stacks, RGB, hidden files, OME-TIFF names.

Each case builds a tiny folder with tifffile, runs ``python -m hcs convert`` as a user would and
checks either the refusal (exit 2, one line naming the file) or every pixel of the plate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs.io.omezarr import open_plate
from hcs.io.tiff_folder import read_tiff_folder

SHAPE = (12, 16)


def _convert(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs", "convert", str(src), str(out), "--format", "tiff-folder",
         "--pixel-size", "0.5", *extra],
        capture_output=True, text=True, timeout=120,
    )


def _error_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


@pytest.mark.parametrize("pages", [3, 5])
def test_multi_page_tiff_is_refused_not_read_as_its_first_page(tmp_path: Path, pages: int) -> None:
    # before: a 5-plane z stack in one file converted with exit 0 as its first plane only
    src = tmp_path / "src"
    src.mkdir()
    stack = np.arange(pages * SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(pages, *SHAPE)
    tifffile.imwrite(src / "B03_s1_w1.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "B03_s1_w1.tif: holds" in line and f"{pages} pages" in line
    assert not (tmp_path / "p.ome.zarr").exists()


def test_stack_after_single_planes_is_refused_at_convert(tmp_path: Path) -> None:
    # the reader checks the first file of each channel; a later stack is caught as it is read
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "B03_s1_w1.tif", np.ones(SHAPE, np.uint16))
    tifffile.imwrite(src / "B04_s1_w1.tif", np.ones((4, *SHAPE), np.uint16),
                     photometric="minisblack")
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "B04_s1_w1.tif: holds 4 pages" in line
    assert not (tmp_path / "p.ome.zarr").exists()
    assert not list(tmp_path.glob("p.ome.zarr.partial-*"))


def test_rgb_tiff_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "B03_s1_w1.tif", np.zeros((*SHAPE, 3), np.uint8), photometric="rgb")
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "B03_s1_w1.tif: an RGB(A) image" in line and "3 samples per pixel" in line


def test_hidden_files_and_macos_resource_forks_are_skipped(tmp_path: Path) -> None:
    # before: '._B03_s1_w1.tif' (AppleDouble, written by macOS on USB disks) failed the convert
    src = tmp_path / "src"
    src.mkdir()
    img = np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE)
    tifffile.imwrite(src / "B03_s1_w1.tif", img)
    (src / "._B03_s1_w1.tif").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (src / "Thumbs.db").write_bytes(b"x")
    p = _convert(src, tmp_path / "p.ome.zarr")
    assert p.returncode == 0, p.stderr
    plate = open_plate(tmp_path / "p.ome.zarr")
    np.testing.assert_array_equal(np.asarray(plate.field("B03", 0))[0, 0, 0], img)


def test_ome_tif_names_match_the_default_pattern(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for c in (1, 2):
        tifffile.imwrite(src / f"B03_s1_w{c}.ome.tif", np.full(SHAPE, c, np.uint16),
                         metadata={"axes": "YX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
    acq = read_tiff_folder(src)
    assert acq.well_names() == ["B03"] and acq.size_c == 2
    assert acq.pixel_size_um == pytest.approx((0.65, 0.65))


def test_bool_tiff_converts_as_uint8_zero_one(tmp_path: Path) -> None:
    # before: a 1-bit TIFF crashed convert with a numpy TypeError traceback
    src = tmp_path / "src"
    src.mkdir()
    mask = np.zeros(SHAPE, bool)
    mask[3:7, 2:9] = True
    tifffile.imwrite(src / "B03_s1_w1.tif", mask)
    p = _convert(src, tmp_path / "p.ome.zarr")
    assert p.returncode == 0, p.stderr
    plate = open_plate(tmp_path / "p.ome.zarr")
    assert plate.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(plate.field("B03", 0))[0, 0, 0], mask.astype(np.uint8))


def test_no_match_names_an_example_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for ch in ("DAPI", "GFP"):
        tifffile.imwrite(src / f"B03_s1_{ch}.tif", np.zeros(SHAPE, np.uint16))
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "no file name matches the default pattern" in line
    assert "'B03_s1_DAPI.tif'" in line and "--pattern" in line
    # with a pattern naming the channels by text it converts, channels in sorted order
    p = _convert(src, tmp_path / "p.ome.zarr", "--pattern",
                 r"(?P<well>[A-P]\d{2})_s(?P<field>\d)_(?P<channel>[A-Za-z]+)\.tif$")
    assert p.returncode == 0, p.stderr
    assert open_plate(tmp_path / "p.ome.zarr").channels == ["DAPI", "GFP"]


@pytest.mark.parametrize(
    ("dtype", "high"), [(np.uint8, 255), (np.uint16, 4095), (np.uint32, 100_000), (np.int16, 100)]
)
def test_bit_depths_keep_every_pixel(tmp_path: Path, dtype: type, high: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    imgs = {}
    for c in (1, 2, 3, 4):
        imgs[c] = rng.integers(-high if dtype == np.int16 else 0, high, SHAPE).astype(dtype)
        tifffile.imwrite(src / f"A01_s1_w{c}.TIF", imgs[c])
    p = _convert(src, tmp_path / "p.ome.zarr")
    assert p.returncode == 0, p.stderr
    data = np.asarray(open_plate(tmp_path / "p.ome.zarr").field("A01", 0))
    assert data.dtype == dtype and data.shape == (1, 4, 1, *SHAPE)
    for c in (1, 2, 3, 4):
        np.testing.assert_array_equal(data[0, c - 1, 0], imgs[c])


def test_tiffs_in_a_subfolder_are_named(tmp_path: Path) -> None:
    # ImageXpress puts the images in TimePoint_1/ (and ZStep_N/); the reader is not recursive.
    # before: "no file name matches the pattern '<60-character regex>'" and nothing else
    src = tmp_path / "Plate1"
    (src / "TimePoint_1").mkdir(parents=True)
    tifffile.imwrite(src / "TimePoint_1" / "Plate1_B03_s1_w1.tif", np.ones(SHAPE, np.uint16))
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "the folder holds no TIFF, but TimePoint_1/ does" in line
    assert _convert(src / "TimePoint_1", tmp_path / "p.ome.zarr").returncode == 0
    # and without --format, the auto-detection says how to read a plain TIFF folder
    res = subprocess.run([sys.executable, "-m", "hcs", "convert", str(src / "TimePoint_1"),
                          str(tmp_path / "q.ome.zarr")], capture_output=True, text=True)
    assert "cannot tell the export format" in _error_line(res)
    assert "--format tiff-folder" in res.stderr


def test_well_beyond_the_largest_plate_names_the_file(tmp_path: Path) -> None:
    # before: "well (0, 98) does not fit a 1536-well plate" (0-based, no file)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("A01_s1_w1.tif", "A99_s1_w1.tif"):
        tifffile.imwrite(src / name, np.ones(SHAPE, np.uint16))
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "A99_s1_w1.tif: well A99 (row 1, column 99) does not fit a 1536-well plate" in line


@pytest.mark.parametrize("value", ["598", "1e9", "0.005"])
def test_implausible_pixel_size_is_refused(tmp_path: Path, value: str) -> None:
    # before: --pixel-size 598 (0.598 with a lost decimal point, or nm) converted with exit 0,
    # and every area downstream was off by 1e6
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "B03_s1_w1.tif", np.ones(SHAPE, np.uint16))
    p = subprocess.run([sys.executable, "-m", "hcs", "convert", str(src),
                        str(tmp_path / "p.ome.zarr"), "--format", "tiff-folder",
                        "--pixel-size", value], capture_output=True, text=True)
    assert "not a microscope pixel size in um (0.01-50" in _error_line(p)
    assert not (tmp_path / "p.ome.zarr").exists()


def test_harmony_images_without_index_get_a_pattern_that_reads_them(tmp_path: Path) -> None:
    # Harmony TIFFs copied without Index.xml: the error suggests the pattern, which then reads
    # every plane in place (row/col numbers, planes p as z, sk as t)
    src = tmp_path / "Images"
    src.mkdir()
    planes = {}
    for r, c, f, p, ch in [(2, 3, 1, 1, 1), (2, 3, 1, 1, 2), (2, 3, 2, 1, 1), (2, 3, 2, 1, 2),
                           (4, 11, 1, 1, 1), (4, 11, 1, 1, 2), (4, 11, 2, 1, 1), (4, 11, 2, 1, 2)]:
        img = np.full(SHAPE, r * 1000 + c * 10 + f + ch * 100, np.uint16)
        name = f"r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch{ch}sk1fk1fl1.tiff"
        tifffile.imwrite(src / name, img)
        planes[(r, c, f, ch)] = img
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    pattern = line.split("give --pattern such as '")[1].split("' (Harmony")[0]
    p = _convert(src, tmp_path / "p.ome.zarr", "--pattern", pattern)
    assert p.returncode == 0, p.stderr
    plate = open_plate(tmp_path / "p.ome.zarr")
    assert sorted(plate.wells) == ["B03", "D11"]
    for (r, c, f, ch), img in planes.items():
        well = f"{chr(64 + r)}{c:02d}"
        np.testing.assert_array_equal(np.asarray(plate.field(well, f - 1))[0, ch - 1, 0], img)


def test_channels_of_different_bit_depths_share_a_type_that_holds_both(tmp_path: Path) -> None:
    # before: an 8-bit brightfield w1 next to a 16-bit w2 was refused ("convert with --dtype")
    src = tmp_path / "src"
    src.mkdir()
    bf = np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint8).reshape(SHAPE)
    fl = (np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16) * 200).reshape(SHAPE)
    tifffile.imwrite(src / "B03_s1_w1.tif", bf)
    tifffile.imwrite(src / "B03_s1_w2.tif", fl)
    p = _convert(src, tmp_path / "p.ome.zarr")
    assert p.returncode == 0, p.stderr
    data = np.asarray(open_plate(tmp_path / "p.ome.zarr").field("B03", 0))
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data[0, 0, 0], bf)
    np.testing.assert_array_equal(data[0, 1, 0], fl)


def test_files_with_and_without_an_axis_are_refused(tmp_path: Path) -> None:
    # before: 'B03_s1.tif' next to 'B03_s1_w2.tif' converted as two channels, 'channel' and
    # '2', with a plane of each well silently "missing"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("B03_s1.tif", "B03_s1_w2.tif", "B04_s1_w2.tif"):
        tifffile.imwrite(src / name, np.ones(SHAPE, np.uint16))
    line = _error_line(_convert(src, tmp_path / "p.ome.zarr"))
    assert "finds a channel in 'B03_s1_w2.tif' but none in 'B03_s1.tif'" in line


def test_missing_tiff_is_named_as_such(tmp_path: Path) -> None:
    # a TIFF folder has no index: a plane without a file says so (was "not listed in index")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("B03_s1_w1.tif", "B03_s1_w2.tif", "B04_s1_w1.tif"):
        tifffile.imwrite(src / name, np.ones(SHAPE, np.uint16))
    assert _convert(src, tmp_path / "p.ome.zarr").returncode == 0
    missing = open_plate(tmp_path / "p.ome.zarr").missing_planes()
    assert [(m["well"], m["c"], m["reason"]) for m in missing] == [
        ("B04", 1, "no file matching the pattern")]
