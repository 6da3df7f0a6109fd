"""Real plates in (issue 14, items 1-3): a TIFF folder with no usable metadata, given its pixel
size and channel names; pixel size and channel names read from ImageJ and OME-TIFF files; values
that contradict the metadata; runs refused up front (exit 2, one line, nothing written) or
stopped after a few identical field failures; a ``hcs simulate`` output given to convert.

The real folder is ../shared/data/plate-row-gfp (24 wells x 3 fields, GFP, 512 px uint8,
Cellomics names). Its TIFFs carry resolution tags of 26 x 20 pixels per inch, which is not a
microscope pixel size, so hcs must say "unknown" and ask for ``--pixel-size``. The engine runs use
the shipped ``mitosis-sim`` model (one ``nucleus`` input) with ``--channels nucleus=GFP``: its
calls on Transfluor GFP images mean nothing biologically; what is checked is that the plate goes
through every stage with the pixel size the user gave, and that the detections are exactly those
of the detector run by hand on the original TIFFs at that pixel size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from hcs.cli import app
from hcs.errors import InputError
from hcs.io import open_export
from hcs.io.physical import tiff_physical

GFP_PATTERN = r"_(?P<well>[A-P]\d{2})f(?P<field>\d{2})d(?P<channel>\d)\.TIF$"
OME_PATTERN = r"(?P<well>[A-H]\d{2})_s(?P<field>\d)_c(?P<channel>\d)\.ome\.tif$"
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def hcs(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m hcs ARGS`` in a subprocess (the CLI as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def cli(*args: str) -> str:
    """``hcs ARGS`` in this process (faster than a subprocess); its stdout, after exit 0."""
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def info_json(path: Path) -> dict:
    return json.loads(cli("info", str(path), "--json"))


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a refused command (exit 2, no traceback)."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def gfp_plate(tmp_path_factory) -> Path:
    """plate-row-gfp converted by the CLI with --pixel-size 0.8 --channel-names GFP."""
    from conftest import shared

    src = shared("plate-row-gfp")
    out = tmp_path_factory.mktemp("gfp") / "gfp.ome.zarr"
    res = hcs("convert", str(src), str(out), "--pattern", GFP_PATTERN, "--pixel-size", "0.8",
              "--channel-names", "GFP")
    assert res.returncode == 0, res.stderr
    assert "24 wells, 72 fields, 1 channels, 72 planes, 0 missing" in res.stdout
    return out


@pytest.fixture(scope="module")
def gfp_plate_no_pixel(tmp_path_factory) -> Path:
    from conftest import shared

    out = tmp_path_factory.mktemp("gfp0") / "nopx.ome.zarr"
    cli("convert", str(shared("plate-row-gfp")), str(out), "--pattern", GFP_PATTERN)
    return out


# --- item 1: pixel size and channel names ------------------------------------------------------


def test_real_folder_pixel_size_unknown_says_why(plate_row_gfp: Path) -> None:
    res = hcs("info", str(plate_row_gfp), "--pattern", GFP_PATTERN, "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["pixel_size_um"] is None
    why = info["sources"]["pixel_size_um"]
    # 26 x 20 pixels per inch = 976.9 x 1270 um pixels: a resolution tag, not a microscope's
    assert why.startswith("unknown: TIFF resolution 26 x 20 per inch in ")
    assert why.endswith("means 976.9 x 1270 um pixels, not a microscope's (0.01-50 um)")
    assert info["sources"]["channel_names"].startswith("file names")
    assert [c["name"] for c in info["channels"]] == ["2"]
    table = hcs("info", str(plate_row_gfp), "--pattern", GFP_PATTERN)
    assert "give it with --pixel-size UM" in table.stdout


def test_convert_with_pixel_size_and_channel_names(gfp_plate: Path) -> None:
    from hcs.io.omezarr import open_plate

    plate = open_plate(gfp_plate)
    assert plate.pixel_size_um == (0.8, 0.8) and plate.channels == ["GFP"]
    assert plate.attrs["sources"] == {"pixel_size_um": "--pixel-size",
                                      "channel_names": "--channel-names",
                                      "z_step_um": "default (one z plane)"}
    assert plate.attrs["channels"][0]["metadata"]["name_in_export"] == "2"
    # the NGFF scale carries the pixel size: level 1 has 2 x 0.8 um pixels
    x = plate.field("O01", 0, level=1).x.values
    assert x[1] - x[0] == pytest.approx(1.6)
    info = info_json(gfp_plate)
    assert info["pixel_size_um"] == [0.8, 0.8]
    assert info["sources"]["pixel_size_um"] == "--pixel-size"
    table = cli("info", str(gfp_plate))
    assert "0.8 x 0.8 um (--pixel-size)" in table and "--channel-names" in table
    # options that change an export are refused on a converted plate
    line = one_error_line(hcs("info", str(gfp_plate), "--pixel-size", "0.5"))
    assert "is a converted plate: --pixel-size applies to an export" in line


def _rewrite(src: Path, dst: Path, names: list[str], **kwargs) -> None:
    dst.mkdir()
    for name in names:
        tifffile.imwrite(dst / name, tifffile.imread(src / name), **kwargs)


def test_imagej_copy_converts_with_its_pixel_size(plate_row_gfp: Path, tmp_path: Path) -> None:
    names = [f"AS_09047_050428030001_O{c:02d}f{f:02d}d2.TIF" for c in (1, 2) for f in range(3)]
    folder = tmp_path / "imagej"
    # 0.65 um per pixel, as ImageJ stores it: pixels per unit + unit "micron", unit tag NONE
    _rewrite(plate_row_gfp, folder, names, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
             metadata={"unit": "micron"})
    out = tmp_path / "ij.ome.zarr"
    cli("convert", str(folder), str(out), "--pattern", GFP_PATTERN)
    info = info_json(out)
    assert info["pixel_size_um"] == pytest.approx([0.65, 0.65], rel=1e-3)
    first = folder / "AS_09047_050428030001_O01f00d2.TIF"
    assert info["sources"]["pixel_size_um"] == f"ImageJ resolution tags in {first.resolve()}"
    from hcs.io.omezarr import open_plate

    plane = open_plate(out).field("O02", 1).values[0, 0, 0]
    np.testing.assert_array_equal(plane, tifffile.imread(plate_row_gfp / names[4]))
    # the files' value wins over nothing, and a contradiction needs --override-metadata
    line = one_error_line(hcs("convert", str(folder), str(tmp_path / "x.ome.zarr"), "--pattern",
                              GFP_PATTERN, "--pixel-size", "0.8"))
    assert "--pixel-size 0.8 um contradicts the pixel size 0.65 um (ImageJ resolution tags" in line
    assert "--override-metadata" in line and not (tmp_path / "x.ome.zarr").exists()


def _ome_folder(folder: Path, size_um: float = 0.325, unit: str = "µm") -> dict[str, np.ndarray]:
    """A 2-well x 2-field x 2-channel OME-TIFF folder; channel 1 = DNA, 2 = PH3."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for well in ("B03", "C05"):
        for field in (1, 2):
            for c, name in ((1, "DNA"), (2, "PH3")):
                img = rng.integers(0, 4000, (24, 32), dtype=np.uint16)
                fname = f"{well}_s{field}_c{c}.ome.tif"
                tifffile.imwrite(folder / fname, img, ome=True, metadata={
                    "PhysicalSizeX": size_um, "PhysicalSizeY": size_um,
                    "PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit,
                    "Channel": {"Name": [name]}})
                written[fname] = img
    return written


def test_ome_tiff_folder_pixel_size_and_channel_names(tmp_path: Path) -> None:
    written = _ome_folder(tmp_path / "ome")
    out = tmp_path / "ome.ome.zarr"
    assert "2 wells, 4 fields, 2 channels, 8 planes" in cli(
        "convert", str(tmp_path / "ome"), str(out), "--pattern", OME_PATTERN)
    info = info_json(out)
    assert info["pixel_size_um"] == [0.325, 0.325]
    assert [c["name"] for c in info["channels"]] == ["DNA", "PH3"]
    first = (tmp_path / "ome" / "B03_s1_c1.ome.tif").resolve()
    assert info["sources"]["pixel_size_um"] == f"OME-TIFF PhysicalSizeX in {first}"
    assert info["sources"]["channel_names"] == f"OME-TIFF Channel Name in {first}"
    from hcs.io.omezarr import open_plate

    np.testing.assert_array_equal(open_plate(out).field("C05", 1).values[0, 1, 0],
                                  written["C05_s2_c2.ome.tif"])
    # nm is converted; the files are read once per channel only (first file of each)
    nm = tmp_path / "nm"
    _ome_folder(nm, size_um=650.0, unit="nm")
    assert open_export(nm, pattern=OME_PATTERN).pixel_size_um == (0.65, 0.65)


_METASERIES = """<MetaData>
<prop id="Description" type="string" value=""/>
<prop id="MetaDataVersion" type="float" value="1"/>
<PlaneInfo>
<prop id="spatial-calibration-state" type="bool" value="on"/>
<prop id="spatial-calibration-x" type="float" value="0.6485"/>
<prop id="spatial-calibration-y" type="float" value="0.6485"/>
<prop id="spatial-calibration-units" type="string" value="um"/>
<prop id="_IllumSetting_" type="string" value="{illum}"/>
</PlaneInfo>
<SetInfo>
</SetInfo>
</MetaData>"""


def test_imagexpress_folder_metaseries_metadata(tmp_path: Path) -> None:
    """ImageXpress names (well, site, wavelength + a GUID; ``_thumb`` previews beside them) and
    MetaSeries metadata in ImageDescription, as MetaXpress writes them: read with no option."""
    guids = {1: "D15D7E4E-3DBD-4C45-8B68-D9D6F1C0A5E4", 2: "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"}
    img = np.arange(16 * 20, dtype=np.uint16).reshape(16, 20)
    for well in ("B03", "B04"):
        for site in (1, 2):
            for w, illum in ((1, "DAPI"), (2, "FITC")):
                name = f"IXM_{well}_s{site}_w{w}{guids[w]}.tif"
                tifffile.imwrite(tmp_path / name, img + w, software="MetaSeries",
                                 description=_METASERIES.format(illum=illum), metadata=None)
                tifffile.imwrite(tmp_path / f"IXM_{well}_s{site}_w{w}_thumb{guids[w]}.tif",
                                 img[::4, ::4])
    with pytest.warns(UserWarning, match="ignored 8 TIFF file"):  # the thumbnails
        acq = open_export(tmp_path, fmt="tiff-folder")
    assert acq.well_names() == ["B03", "B04"] and acq.n_fields == 2
    assert [c.name for c in acq.channels] == ["DAPI", "FITC"]
    assert acq.pixel_size_um == (0.6485, 0.6485)
    first = tmp_path / f"IXM_B03_s1_w1{guids[1]}.tif"
    assert acq.sources["pixel_size_um"] == f"MetaSeries spatial-calibration in {first.resolve()}"
    assert acq.sources["channel_names"] == f"MetaSeries _IllumSetting_ in {first.resolve()}"
    with pytest.raises(InputError, match="contradicts the channel names DAPI, FITC"), \
            pytest.warns(UserWarning, match="ignored 8 TIFF file"):
        open_export(tmp_path, fmt="tiff-folder", channel_names="Hoechst,GFP")


def test_contradictions_refused_unless_override(tmp_path: Path, phenix_v5: Path) -> None:
    _ome_folder(tmp_path / "ome")
    base = ["convert", str(tmp_path / "ome"), str(tmp_path / "o.ome.zarr"), "--pattern",
            OME_PATTERN]
    line = one_error_line(hcs(*base, "--channel-names", "Hoechst,pH3"))
    assert "--channel-names Hoechst,pH3 contradicts the channel names DNA, PH3 (OME-TIFF " \
        "Channel Name in" in line
    line = one_error_line(hcs(*base, "--channel-names", "A,B,C", "--override-metadata"))
    assert "3 name(s) given (A, B, C), but the export has 2 channel(s): DNA, PH3" in line
    assert not (tmp_path / "o.ome.zarr").exists()
    # names equal but for case, and a pixel size within 1 %: no contradiction, metadata kept
    acq = open_export(tmp_path / "ome", pattern=OME_PATTERN, channel_names="dna,ph3",
                      pixel_size_um=0.327)
    assert acq.pixel_size_um == (0.325, 0.325)
    assert [c.name for c in acq.channels] == ["DNA", "PH3"]
    cli(*base, "--channel-names", "Hoechst,pH3", "--pixel-size", "0.5", "--override-metadata")
    info = info_json(tmp_path / "o.ome.zarr")
    assert info["pixel_size_um"] == [0.5, 0.5]
    assert [c["name"] for c in info["channels"]] == ["Hoechst", "pH3"]
    assert info["sources"]["pixel_size_um"] == "--pixel-size"
    assert info["sources"]["channel_names"] == "--channel-names"
    # a vendor export: Harmony states 0.598 um and its channel names
    with pytest.raises(InputError, match=r"--pixel-size 0.9 um contradicts the pixel size "
                       r"0.598 um \(metadata: .*Index.idx.xml\)"):
        open_export(phenix_v5, pixel_size_um=0.9)
    acq = open_export(phenix_v5, pixel_size_um=0.9, override_metadata=True, z_step_um=2.0)
    assert acq.pixel_size_um == (0.9, 0.9) and acq.z_step_um == 2.0
    assert acq.sources["pixel_size_um"] == "--pixel-size"
    with pytest.raises(InputError, match="contradicts the channel names Alexa 647"):
        open_export(phenix_v5, channel_names="a,b,c,d,e,f")
    info = info_json(phenix_v5)
    assert info["sources"]["pixel_size_um"].startswith("metadata: ")
    assert info["sources"]["pixel_size_um"].endswith("Index.idx.xml")


def test_tiff_resolution_tags(tmp_path: Path) -> None:
    img = np.zeros((8, 8), np.uint8)
    cases = {
        # 20000 pixels per cm = 0.5 um; 50800 dpi = 0.5 um
        "cm.tif": ({"resolution": (20000, 20000), "resolutionunit": "CENTIMETER"}, (0.5, 0.5)),
        "inch.tif": ({"resolution": (50800, 50800), "resolutionunit": "INCH"}, (0.5, 0.5)),
        "dpi72.tif": ({"resolution": (72, 72), "resolutionunit": "INCH"}, None),
        "dpi96cm.tif": ({"resolution": (96 / 2.54, 96 / 2.54), "resolutionunit": "CENTIMETER"},
                        None),
        "none.tif": ({"resolution": (20000, 20000), "resolutionunit": "NONE"}, None),
        "plain.tif": ({}, None),
    }
    for name, (kwargs, want) in cases.items():
        tifffile.imwrite(tmp_path / name, img, **kwargs)
        got = tiff_physical(tmp_path / name)
        assert got.pixel_size_um == (pytest.approx(want) if want else None), name
        source = got.sources["pixel_size_um"]
        if want:
            assert source == f"TIFF resolution tags in {tmp_path / name}"
        else:
            assert source.startswith("unknown: "), (name, source)
    assert "software default" in tiff_physical(tmp_path / "dpi72.tif").sources["pixel_size_um"]
    assert "software default" in tiff_physical(tmp_path / "dpi96cm.tif").sources["pixel_size_um"]
    assert "no unit" in tiff_physical(tmp_path / "none.tif").sources["pixel_size_um"]


def test_channels_disagreeing_on_pixel_size_are_refused(tmp_path: Path) -> None:
    img = np.zeros((8, 8), np.uint16)
    for c, size in ((1, 0.5), (2, 0.6)):
        tifffile.imwrite(tmp_path / f"B03_c{c}.tif", img, imagej=True,
                         resolution=(1 / size, 1 / size), metadata={"unit": "um"})
    with pytest.raises(InputError, match=r"B03_c2.tif: pixel_size_um .* differs from"):
        open_export(tmp_path, fmt="tiff-folder")


# --- item 2: refused up front, or stopped after a few identical failures -----------------------


def test_run_without_pixel_size_refused_up_front(gfp_plate_no_pixel: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    t0 = time.perf_counter()
    line = one_error_line(hcs("run", str(gfp_plate_no_pixel), "--assay", "mitosis", "--model",
                              "mitosis-sim", "--out", str(out), "--channels", "nucleus=2"))
    assert time.perf_counter() - t0 < 30  # no cluster, no torch import
    assert f"{gfp_plate_no_pixel} has no pixel size (TIFF resolution 26 x 20 per inch" in line
    assert line.endswith("convert it again with --pixel-size UM")
    assert not out.exists()


def test_unknown_channel_and_model_mismatch_refused(gfp_plate: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["run", str(gfp_plate), "--out", str(out)]
    line = one_error_line(hcs(*base, "--assay", "mitosis", "--model", "mitosis-sim",
                              "--channels", "nucleus=DAPI"))
    assert line == (f"error: --channels nucleus=DAPI: {gfp_plate} has no channel 'DAPI' "
                    "(its channels: GFP)")
    line = one_error_line(hcs(*base, "--assay", "cic", "--model", "cic-sim"))
    assert line.startswith("error: model cic-sim needs 3 input channel(s) (membrane, "
                           f"brightfield, nucleus); {gfp_plate} has 1 (GFP) and none plays "
                           "'membrane': map one with --channels membrane=NAME")
    line = one_error_line(hcs(*base, "--assay", "mitosis", "--model", "mitosis-sim",
                              "--channels", "nucleus=GFP", "--nucleus-channel", "DNA"))
    assert "--nucleus-channel DNA:" in line and "(its channels: GFP)" in line
    assert not out.exists()


def test_analyze_refuses_export_without_pixel_size(plate_row_gfp: Path, tmp_path: Path) -> None:
    out = tmp_path / "an"
    layout = _layout(tmp_path)
    line = one_error_line(hcs("analyze", str(plate_row_gfp), "--pattern", GFP_PATTERN,
                              "--assay", "mitosis", "--layout", str(layout), "--out", str(out),
                              "--channels", "nucleus=2"))
    assert "has no pixel size (TIFF resolution 26 x 20 per inch" in line
    assert line.endswith("give it with --pixel-size UM")
    assert not out.exists()
    line = one_error_line(hcs("analyze", str(plate_row_gfp), "--pattern", GFP_PATTERN,
                              "--pixel-size", "0.8", "--assay", "mitosis", "--layout",
                              str(layout), "--out", str(out), "--channels", "nucleus=DAPI"))
    assert "--channels nucleus=DAPI:" in line and "(its channels: 2)" in line
    assert not out.exists()


def test_identical_failures_stop_the_run(gfp_plate: Path, scheduler: str, tmp_path: Path
                                         ) -> None:
    """Every level-0 shard replaced by the same bytes: each field fails with the same checksum
    error; the run stops after 3 with one message instead of failing 72 times."""
    plate = tmp_path / "bad.ome.zarr"
    shutil.copytree(gfp_plate, plate)
    junk = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    shards = sorted(plate.glob("O/*/*/0/c/0/0/0/0/0"))
    assert len(shards) == 72
    for s in shards:
        s.write_bytes(junk)
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", str(plate), "--assay", "mitosis", "--model", "mitosis-sim",
                            "--out", str(out), "--channels", "nucleus=GFP", "--scheduler",
                            scheduler, "--fields-per-task", "1", "-q"])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "stopped: 3 fields failed with the same error" in errors[0]
    assert "checksum" in errors[0]
    failures = pd.read_parquet(out / "failures.parquet")
    # one error, each naming its field and shard (hcs.errors.PlateDataError)
    from hcs.engine.schedule import FailureStreak

    same = {FailureStreak.normalise(w, e) for w, e in zip(failures["well"], failures["error"],
                                                           strict=True)}
    assert 3 <= len(failures) < 72 and len(same) == 1
    for w, f, e in zip(failures["well"], failures["field"], failures["error"], strict=True):
        assert str(plate / w[0] / str(int(w[1:])) / str(f) / "0" / "c/0/0/0/0/0") in e
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "stopped" and record["stopped"] in errors[0]


# --- end to end on the real folder ------------------------------------------------------------


def test_run_end_to_end_on_real_plate(gfp_plate: Path, plate_row_gfp: Path, scheduler: str,
                                      tmp_path: Path) -> None:
    from hcs.detect import detect

    out = tmp_path / "run"
    r = runner.invoke(app, ["run", str(gfp_plate), "--assay", "mitosis", "--model",
                            "mitosis-sim", "--out", str(out), "--channels", "nucleus=GFP",
                            "--wells", "O01,O13", "--scheduler", scheduler, "-q"])
    assert r.exit_code == 0, r.output
    assert "6 fields processed, 0 already done, 0 failed of 6" in r.output
    for well in ("O01", "O13"):
        for field in range(3):
            cells = pd.read_parquet(out / "cells" / well / f"{field}.parquet")
            raw = tifffile.imread(plate_row_gfp / f"AS_09047_050428030001_{well}f{field:02d}d2.TIF")
            ref = detect(raw, method="threshold", pixel_size_um=0.8)
            assert len(cells) == len(ref) > 0
            np.testing.assert_allclose(cells[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]],
                                       ref.boxes, atol=1e-6)
    # the pixel size the user gave is the one detection used: at 2 um, the same pixels hold
    # objects 6.25x larger in area, so the size filters keep other objects
    raw = tifffile.imread(plate_row_gfp / "AS_09047_050428030001_O01f00d2.TIF")
    assert len(detect(raw, method="threshold", pixel_size_um=2.0)) != len(
        pd.read_parquet(out / "cells" / "O01" / "0.parquet"))


def _layout(tmp_path: Path) -> Path:
    rows = ["well,condition,role"]
    rows += [f"O{c:02d},control,negative_control" for c in range(1, 13)]
    rows += [f"O{c:02d},other,sample" for c in range(13, 25)]
    path = tmp_path / "layout.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_analyze_end_to_end_on_real_folder(plate_row_gfp: Path, scheduler: str,
                                           tmp_path: Path) -> None:
    out = tmp_path / "an"
    r = runner.invoke(app, ["analyze", str(plate_row_gfp), "--pattern", GFP_PATTERN,
                            "--pixel-size", "0.8", "--channel-names", "GFP", "--assay",
                            "mitosis", "--model", "mitosis-sim", "--channels", "nucleus=GFP",
                            "--layout", str(_layout(tmp_path)), "--out", str(out),
                            "--scheduler", scheduler, "--no-gallery", "-q"])
    assert r.exit_code == 0, r.output
    assert "stages run: convert, run, aggregate, stats, report" in r.output
    wells = pd.read_parquet(out / "run" / "wells.parquet")
    assert sorted(wells["well"]) == [f"O{c:02d}" for c in range(1, 25)]
    cells = pd.concat(pd.read_parquet(f) for f in sorted((out / "run" / "cells").glob("*/*")))
    # a pair (two chromatin masses of one anaphase cell) counts once
    assert int(wells["n_detected"].sum()) == int((cells["pair_of"] < 0).sum()) > 0
    stats = pd.read_parquet(out / "run" / "stats.parquet")
    assert set(stats["condition"]) >= {"other"}
    assert (out / "report.html").stat().st_size > 10_000
    plate = info_json(out / "plate.ome.zarr")
    assert plate["pixel_size_um"] == [0.8, 0.8] and plate["sources"]["pixel_size_um"] == \
        "--pixel-size"


# --- item 3: a hcs simulate output given to convert -------------------------------------------


def test_convert_simulate_output_uses_its_export(tmp_path: Path) -> None:
    from hcs.synth import simulate_plate

    sim = tmp_path / "sim"
    simulate_plate(sim, REPO / "plate_layouts" / "arhgap36_truncations.csv", "cic", fields=1,
                   size=64, wells_per_condition=1, progress=False, workers=1)
    out = tmp_path / "p.ome.zarr"
    res = hcs("convert", str(sim), str(out))
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == (f"{sim} is a `hcs simulate` output: reading its "
                                          f"export {sim / 'export'}")
    assert "4 wells, 4 fields, 3 channels" in res.stdout
    info = json.loads(hcs("info", str(sim), "--json").stdout)
    assert info["pixel_size_um"] == [0.598, 0.598] and len(info["wells"]) == 4
