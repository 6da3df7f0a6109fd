"""Harmony reader: real Phenix (V5) and Operetta CLS exports, V7 indexes, bad input, speed."""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from hcs.errors import InputError
from hcs.io.acquisition import Channel, read_plane
from hcs.io.flatfield import flatfield_surface, parse_flatfield_profile
from hcs.io.harmony import find_index, read_harmony
from hcs.plate import PlateGeometry
from hcs.synth.exports.harmony import write_harmony_export

V7_NS = "43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7"


# ----- real data: Opera Phenix, HarmonyV5 ---------------------------------------------------
def test_phenix_v5_channels_geometry_pixels(phenix_v5: Path) -> None:
    acq = read_harmony(phenix_v5)
    assert acq.vendor_format == "harmony"
    assert acq.index_file == phenix_v5 / "Index.idx.xml"
    assert acq.source == phenix_v5
    assert acq.plate_name == "BR00121482"
    assert (acq.geometry.rows, acq.geometry.columns) == (16, 24)
    assert [c.name for c in acq.channels] == [
        "Alexa 647", "Alexa 568", "488 long", "Alexa 488", "HOECHST 33342", "Brightfield",
    ]  # fmt: skip
    assert [c.channel_type for c in acq.channels] == ["fluorescence"] * 5 + ["brightfield"]
    assert [(c.excitation_nm, c.emission_nm) for c in acq.channels] == [
        (640, 706), (561, 599), (488, 599), (488, 522), (405, 456), (740, 0),
    ]  # fmt: skip
    assert round(acq.pixel_size_um[0], 3) == round(acq.pixel_size_um[1], 3) == 0.598
    assert acq.image_shape == (1080, 1080)
    assert acq.dtype == np.uint16
    assert acq.instrument == "Phenix"
    assert acq.attrs["schema"] == "v5"
    assert acq.attrs["plate_id"] == "BR00121482"
    assert acq.attrs["plate_type"] == "384 PerkinElmer CellCarrier Ultra"
    assert acq.attrs["measurement_id"] == "5de72537-0fda-42a5-8715-2e605ccb652c"
    assert acq.attrs["measurement_start_time"] == "2021-03-29T16:51:44.6444882-04:00"
    assert acq.well_names() == ["A01"]
    assert (acq.n_fields, acq.size_z, acq.size_t, acq.size_c) == (1, 1, 1, 6)
    assert acq.z_step_um is None  # one plane; per-channel focus offsets are not a z-stack
    # Per-channel focus offsets (PositionZ, metres -> um), TimepointID 0 -> t 0.
    assert acq.planes.sort_values("channel")["stage_z_um"].round(6).tolist() == [
        -5.0, -3.0, -3.0, -4.0, -4.0, 0.0,
    ]  # fmt: skip
    assert (acq.planes["t"] == 0).all()
    md = acq.channels[0].metadata
    assert md["exposure_s"] == 0.01
    assert md["objective_magnification"] == 20 and md["objective_na"] == 1
    assert md["binning"] == (2, 2) and md["camera"] == "AndorZylaCam"
    assert md["max_intensity_hint"] == 65535
    assert acq.missing_planes().empty
    assert acq.vendor_files == [phenix_v5 / "Index.idx.xml"]


def test_phenix_v5_flatfield_profiles(phenix_v5: Path) -> None:
    acq = read_harmony(phenix_v5)
    for ch in acq.channels[:5]:
        prof = ch.flatfield
        assert prof is not None and prof["Version"] == "Acapella:2013"
        bg = prof["Background"]["Profile"]
        assert bg["Type"] == "Polynomial" and bg["Dims"] == [1080, 1080]
        assert [len(r) for r in bg["Coefficients"]] == [1, 2, 3, 4, 5]
        assert prof["Foreground"]["Profile"]["Type"] == "Polynomial"
    first = acq.channels[0].flatfield
    assert first["ChannelName"] == "Alexa 647"
    assert first["Background"]["Mean"] == pytest.approx(1039.144)
    assert first["Background"]["Profile"]["Coefficients"][2] == [-1.4054, 0.0453, -1.4199]
    bf = acq.channels[5].flatfield
    assert bf["Background"]["Character"] == "Null"  # the Harmony word, not YAML null
    assert bf["Background"]["Profile"] == {"Type": "Identity"}
    assert np.array_equal(flatfield_surface(bf, shape=(1080, 1080)), np.ones((1080, 1080)))
    with pytest.raises(InputError, match="no Dims"):
        flatfield_surface(bf)


def test_phenix_v5_real_pixels(phenix_v5: Path) -> None:
    acq = read_harmony(phenix_v5)
    hoechst = acq.planes[acq.planes["channel"] == 4].iloc[0]
    img = read_plane(hoechst["path"], expect_shape=acq.image_shape)
    assert img.dtype == np.uint16 and img.shape == (1080, 1080)
    # Nuclei on a dark background: bright tail well above the median.
    assert np.percentile(img, 99.5) > 2 * np.median(img) > 0


def test_flatfield_surface_matches_term_by_term_reference(phenix_v5: Path) -> None:
    prof = read_harmony(phenix_v5).channels[0].flatfield
    surf = flatfield_surface(prof)
    p = prof["Background"]["Profile"]
    (oy, ox), (sy, sx) = p["Origin"], p["Scale"]
    for r, c in [(0, 0), (0, 1079), (1079, 0), (539, 540), (100, 900), (1079, 1079)]:
        x, y = (c - ox) * sx, (r - oy) * sy
        ref = sum(
            coef * x ** (n - k) * y**k
            for n, row in enumerate(p["Coefficients"])
            for k, coef in enumerate(row)
        )
        assert surf[r, c] == pytest.approx(ref, rel=1e-12)
    # Centre value ~ c00 (1.236); vignetting: corners darker than the centre.
    assert surf[539:541, 539:541].mean() == pytest.approx(1.236, abs=1e-3)
    assert surf[0, 0] < 0.8 * surf[539, 539]
    fg = flatfield_surface(prof, "Foreground")
    assert fg[539:541, 539:541].mean() == pytest.approx(1.1947, abs=1e-3)


def test_flatfield_surface_convention_x_is_columns() -> None:
    # c[1] = [x-coefficient, y-coefficient]: a pure y term varies down the rows only.
    prof = {"Background": {"Profile": {"Type": "Polynomial", "Coefficients": [[1.0], [0.0, 0.4]],
            "Dims": [5, 7], "Origin": [2, 3], "Scale": [0.2, 1 / 7]}}}  # fmt: skip
    s = flatfield_surface(prof)
    assert s.shape == (5, 7)
    assert np.allclose(s[:, 0], [0.84, 0.92, 1.0, 1.08, 1.16]) and np.ptp(s, axis=1).max() == 0
    prof["Background"]["Profile"]["Coefficients"] = [[0.0], [0.0, 0.0], [0.0, 1.0, 0.0]]  # xy
    s = flatfield_surface(prof, shape=(5, 7))
    assert s[0, 0] == pytest.approx((-0.4) * (-3 / 7)) and s[2, :].max() == 0
    with pytest.raises(InputError, match="Foreground"):
        flatfield_surface(prof, "Foreground")


def test_parse_flatfield_v7_variants() -> None:
    v7 = (
        "{Background: {Character: NonFlat, Mean: 443.79058, NoiseConst: 1.9380331, NonFlatness: "
        "{Corrected: 0.10724404, Original: 0.51061863, Random: INF}, Profile: {Coefficients: "
        "[[1.2132], [0.0658, -0.0855]], Dims: [2160, 2160], Origin: [1079.5, 1079.5], Scale: "
        "[0.00046296296, 0.00046296296], Type: Polynomial}, Quality: 1.0}, Channel: 1, "
        "ChannelName: Alexa 488, Version: Acapella:2013}"
    )
    p = parse_flatfield_profile(v7)
    assert p["Background"]["NonFlatness"]["Random"] == math.inf
    assert p["ChannelName"] == "Alexa 488" and p["Channel"] == 1
    with pytest.raises(InputError, match="FlatfieldProfile"):
        parse_flatfield_profile("{Background: [unclosed", where="x.xml")


# ----- real data: Operetta CLS, index in Images/ --------------------------------------------
def test_operetta_cls_fields_positions_and_paths(operetta_cls: Path) -> None:
    index = operetta_cls / "Images" / "Index.idx.xml"
    assert index.read_bytes()[:3] == b"\xef\xbb\xbf"  # real file starts with a UTF-8 BOM
    for given in (operetta_cls, operetta_cls / "Images", index):
        acq = read_harmony(given)
        assert acq.index_file == index and acq.source == operetta_cls / "Images"
    assert acq.instrument == "Sonata" and acq.attrs["plate_type"] == "384 Greiner µClear"
    assert acq.plate_name == "Test_Sample_BALL"
    assert acq.well_names() == ["C03"] and acq.fields_of(2, 2) == [0, 1]
    assert [c.name for c in acq.channels] == ["Fluorescein (FITC)"]
    assert (acq.channels[0].excitation_nm, acq.channels[0].emission_nm) == (475, 525)
    assert round(acq.pixel_size_um[1], 3) == 1.196
    assert acq.image_shape == (1080, 1080) and acq.dtype == np.uint16
    pos = acq.planes.sort_values("field")[["stage_x_um", "stage_y_um", "stage_z_um"]]
    assert pos.round(6).values.tolist() == [[-645.814, -645.814, 20.0], [645.814, -645.814, 20.0]]
    assert [p.name for p in acq.planes.sort_values("field")["path"].map(Path)] == [
        "r03c03f01p01-ch1sk1fk1fl1.tiff", "r03c03f02p01-ch1sk1fk1fl1.tiff",
    ]  # fmt: skip
    assert acq.vendor_files == [index, operetta_cls / "Assaylayout" / "Unnamed.xml"]
    prof = acq.channels[0].flatfield
    assert prof["Background"]["Profile"]["Coefficients"][0] == [1.1282]
    assert prof["Foreground"]["Profile"]["Coefficients"][0] == [1.0698]


# ----- synthetic exports (written by the fixture writer, then edited) ------------------------
def _small_export(tmp: Path, schema: str = "v5", **kw) -> Path:
    rng = np.random.default_rng(7)
    planes = [
        ((0, 0, f, 0, c, 0), rng.integers(0, 4000, (8, 10), dtype=np.uint16))
        for f in range(2)
        for c in range(2)
    ]
    chans = [Channel("DAPI", "fluorescence", 405, 456), Channel("BF", "brightfield", 740, 0)]
    return write_harmony_export(
        tmp / "exp", planes, channels=chans, geometry=PlateGeometry.from_format(96),
        pixel_size_um=0.5, schema=schema, compression=None, **kw,
    )  # fmt: skip


def _edit(index: Path, old: str, new: str, count: int = 1) -> None:
    text = index.read_text(encoding="utf-8")
    assert old in text, old
    index.write_text(text.replace(old, new, count), encoding="utf-8")


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    lines = index.read_text().splitlines()
    n = next(i for i, s in enumerate(lines) if "<FieldID>2</FieldID>" in s)
    lines[n] = lines[n].replace("</FieldID>", "</FieldId>")
    index.write_text("\n".join(lines))
    with pytest.raises(InputError) as err:
        read_harmony(index)
    assert str(index) in str(err.value) and f"line {n + 1}," in str(err.value)


def test_missing_file_is_listed_not_dropped(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    (index.parent / "r01c01f02p01-ch2sk1fk1fl1.tiff").unlink()
    acq = read_harmony(index.parent.parent)
    assert len(acq.planes) == 4
    miss = acq.missing_planes()
    assert len(miss) == 1
    assert miss.iloc[0][["field", "channel", "reason"]].tolist() == [1, 1, "file not found"]
    assert miss.iloc[0]["path"] == str(index.parent / "r01c01f02p01-ch2sk1fk1fl1.tiff")


def test_empty_url_is_missing_never_invented(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    _edit(index, "<URL>r01c01f01p01-ch2sk1fk1fl1.tiff</URL>", "<URL></URL>")
    acq = read_harmony(index)
    miss = acq.missing_planes()
    assert len(acq.planes) == 4 and len(miss) == 1
    assert miss.iloc[0]["reason"] == "no image in index" and miss.iloc[0]["path"] is None
    assert acq.image_shape == (8, 10)  # probed from a file that exists


@pytest.mark.parametrize("url", ["../outside.tiff", "sub/../../outside.tiff"])
def test_url_escaping_export_is_refused(tmp_path: Path, url: str) -> None:
    index = _small_export(tmp_path)
    first = index.parent / "r01c01f01p01-ch1sk1fk1fl1.tiff"
    shutil.copy(first, index.parent.parent / "outside.tiff")
    _edit(index, "<URL>r01c01f01p01-ch1sk1fk1fl1.tiff</URL>", f"<URL>{url}</URL>")
    with pytest.raises(InputError, match=r"leaves the export folder") as err:
        read_harmony(index)
    assert "0101K1F1P1R1" in str(err.value) and str(index) in str(err.value)
    acq = read_harmony(index, allow_outside=True)
    assert (index.parent.parent / "outside.tiff").resolve() in {Path(p) for p in acq.planes.path}
    assert acq.missing_planes().empty


def test_remote_url_is_refused(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    _edit(index, "<URL>r01c01f01p01-ch1sk1fk1fl1.tiff</URL>", "<URL>http://x.org/a.tiff</URL>")
    for allow in (False, True):
        with pytest.raises(InputError, match="remote URL"):
            read_harmony(index, allow_outside=allow)


def test_duplicate_plane_keys(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    text = index.read_text()
    block = re.search(r'    <Image Version="1">.*?</Image>\n', text, re.S).group(0)
    index.write_text(text.replace(block, block + block.replace("f01p01-ch1", "f01p01-chX"), 1))
    with pytest.raises(InputError, match=r"duplicate plane for well A01 field 0") as err:
        read_harmony(index)
    assert "r01c01f01p01-ch1sk1fk1fl1.tiff" in str(err.value)


def test_unreadable_flatfield_warns_and_keeps_text(tmp_path: Path) -> None:
    index = _small_export(tmp_path, flatfield={0: "{Background: [unclosed"})
    with pytest.warns(UserWarning, match=r"FlatfieldProfile of ChannelID 1"):
        acq = read_harmony(index)
    assert acq.channels[0].flatfield is None
    assert acq.channels[0].metadata["flatfield_raw"] == "{Background: [unclosed"
    assert len(acq.planes) == 4


def test_missing_and_non_numeric_ids(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    _edit(index, "<FieldID>2</FieldID>", "<FieldID>two</FieldID>")
    with pytest.raises(InputError, match=r"Image '0101K1F2P1R1' .*FieldID is not a number"):
        read_harmony(index)
    index = _small_export(tmp_path / "b")
    _edit(index, "      <Row>1</Row>\n", "")  # in the first Image, not Wells/Well
    with pytest.raises(InputError, match=r"Row is missing"):
        read_harmony(index)


def test_not_an_index_and_no_index(tmp_path: Path) -> None:
    (tmp_path / "Index.xml").write_text("<AssayLayout><PlateRows>8</PlateRows></AssayLayout>")
    with pytest.raises(InputError, match="not a Harmony index"):
        read_harmony(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Harmony index found"):
        read_harmony(tmp_path / "empty")


def test_index_name_preference_case_insensitive(tmp_path: Path) -> None:
    for name in ("index.REF.xml", "Index.idx.xml", "INDEX.XML", "Index.flex.xml"):
        (tmp_path / name).write_text("x")
    assert find_index(tmp_path).name == "INDEX.XML"
    (tmp_path / "INDEX.XML").unlink()
    assert find_index(tmp_path).name == "Index.idx.xml"
    (tmp_path / "Index.idx.xml").unlink()
    assert find_index(tmp_path).name == "index.REF.xml"


def test_index_above_image_subfolders(tmp_path: Path) -> None:
    index = _small_export(tmp_path)
    root = index.parent.parent
    top = root / "Index.idx.xml"
    index.rename(top)
    # URLs with a sub-folder, and bare names whose files sit one folder down.
    _edit(top, "<URL>r01c01f01p01", "<URL>Images/r01c01f01p01", count=2)
    acq = read_harmony(root)
    assert acq.index_file == top and acq.source == root
    assert acq.missing_planes().empty
    assert all(Path(p).parent == root / "Images" for p in acq.planes.path)


def test_bom_and_v7_maps_image_wins(tmp_path: Path) -> None:
    index = _small_export(tmp_path, schema="v7")
    text = index.read_text()
    # Channel metadata in a later Map block, after a flatfield-only Map; the Image overrides.
    skew = '<Map><Entry ChannelID="2"><SkewcropParameters>H4sI</SkewcropParameters></Entry></Map>'
    text = text.replace("  <Maps>\n", f"  <Maps>\n    {skew}\n", 1)
    text = text.replace("<ChannelID>1</ChannelID>", "<ChannelID>1</ChannelID><ExposureTime "
                        'Unit="s">0.25</ExposureTime>')  # fmt: skip
    index.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    acq = read_harmony(index)
    assert acq.attrs["schema"] == "v7" and acq.attrs["index_version"] == "2"
    assert acq.attrs["namespace"] == V7_NS
    assert [c.name for c in acq.channels] == ["DAPI", "BF"]
    assert acq.channels[0].metadata["exposure_s"] == 0.25
    assert acq.channels[1].metadata["exposure_s"] == 0.01
    assert (acq.planes["t"] == 0).all()  # TimepointID 1 (V7) -> t 0


@pytest.mark.parametrize(
    ("namespace", "schema"),
    [("http://www.perkinelmer.com/PEHH/HarmonyV6", "v6"), (None, "unknown")],
)
def test_namespace_agnostic(tmp_path: Path, namespace: str | None, schema: str) -> None:
    index = _small_export(tmp_path, schema="v7")
    new = f' xmlns="{namespace}"' if namespace else ""
    _edit(index, f' xmlns="{V7_NS}"', new)
    acq = read_harmony(index)
    assert acq.attrs["schema"] == schema and acq.attrs["namespace"] == (namespace or "")
    assert [c.name for c in acq.channels] == ["DAPI", "BF"] and len(acq.planes) == 4
    assert acq.pixel_size_um == (0.5, 0.5)


def test_sequence_and_flim_folding(tmp_path: Path) -> None:
    index = _small_export(tmp_path, schema="v7")
    # Same channel acquired in a second sequence: copy every channel-1 Image as SequenceID 2.
    text = index.read_text()
    blocks = re.findall(r'    <Image Version="1">.*?</Image>\n', text, re.S)
    extra = "".join(
        b.replace("<SequenceID>1</SequenceID>", "<SequenceID>2</SequenceID>")
        .replace("<MeasurementTimeOffset Unit=\"s\">0</", "<MeasurementTimeOffset Unit=\"s\">9</")
        for b in blocks
        if "<ChannelID>1</ChannelID>" in b
    )
    index.write_text(text.replace("  </Images>", extra + "  </Images>"))
    acq = read_harmony(index)
    assert acq.attrs["sequence_folded_into_t"] and acq.size_t == 2
    assert acq.planes.groupby("t")["time_s"].max().tolist() == [0.0, 9.0]
    assert len(acq.planes) == 6 and len(acq.missing_planes()) == 2  # channel 2 only in seq 1
    # Two FLIM gates of channel 2 -> two dense channels.
    index.write_text(text.replace("  </Images>", "".join(
        b.replace("<FlimID>1</FlimID>", "<FlimID>2</FlimID>") for b in blocks
        if "<ChannelID>2</ChannelID>" in b) + "  </Images>"))  # fmt: skip
    acq = read_harmony(index)
    assert acq.attrs["flim_folded_into_channel"] and acq.size_c == 3
    assert [c.name for c in acq.channels] == ["DAPI (flim 1)", "BF (flim 1)", "BF (flim 2)"]


# ----- speed -----------------------------------------------------------------------------
def _v7_index_text(n_wells: int, fields: int, planes: int, channels: int) -> str:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<EvaluationInputData xmlns:xsd="http://www.w3.org/'
        '2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="2" '
        f'xmlns="{V7_NS}">\n<User>u</User><InstrumentType>Phenix</InstrumentType><Plates><Plate>'
        "<PlateID>BIG</PlateID><Name>BIG</Name><PlateRows>16</PlateRows><PlateColumns>24"
        "</PlateColumns></Plate></Plates>\n<Maps><Map>"
    ]
    for c in range(1, channels + 1):
        out.append(
            f'<Entry ChannelID="{c}"><ChannelName>ch {c}</ChannelName><ChannelType>Fluorescence'
            '</ChannelType><ImageResolutionX Unit="m">2.96688132474701E-07</ImageResolutionX>'
            '<ImageResolutionY Unit="m">2.96688132474701E-07</ImageResolutionY><ImageSizeX>2160'
            "</ImageSizeX><ImageSizeY>2160</ImageSizeY></Entry>"
        )
    out.append("</Map></Maps>\n<Images>\n")
    for w in range(n_wells):
        r, cc = w // 24 + 1, w % 24 + 1
        for f in range(1, fields + 1):
            for p in range(1, planes + 1):
                for c in range(1, channels + 1):
                    out.append(
                        f'<Image Version="1"><id>{r:02d}{cc:02d}K1F{f}P{p}R{c}</id>'
                        f"<State>Ok</State><URL>r{r:02d}c{cc:02d}f{f:02d}p{p:02d}-ch{c}sk1fk1fl1.tiff</URL><Row>{r}"
                        f"</Row><Col>{cc}</Col><FieldID>{f}</FieldID><PlaneID>{p}</PlaneID>"
                        "<TimepointID>1</TimepointID><SequenceID>1</SequenceID><GroupID>1</GroupID>"
                        f'<ChannelID>{c}</ChannelID><FlimID>1</FlimID><PositionX Unit="m">0.0001'
                        '</PositionX><PositionY Unit="m">-0.0002</PositionY><PositionZ Unit="m">'
                        f'{p}E-06</PositionZ><AbsPositionZ Unit="m">0.13465</AbsPositionZ>'
                        '<MeasurementTimeOffset Unit="s">0</MeasurementTimeOffset><AbsTime>'
                        "2024-06-24T11:48:55.515-04:00</AbsTime></Image>\n"
                    )
    out.append("</Images></EvaluationInputData>\n")
    return "".join(out)


def test_100k_image_v7_index_parses_fast(tmp_path: Path) -> None:
    (tmp_path / "Index.xml").write_text(_v7_index_text(100, 25, 10, 4), encoding="utf-8")
    t0 = time.process_time()  # CPU time: robust to other processes on a shared machine
    acq = read_harmony(tmp_path)
    elapsed = time.process_time() - t0
    assert len(acq.planes) == 100_000
    assert (acq.n_fields, acq.size_z, acq.size_c, acq.size_t) == (25, 10, 4, 1)
    assert acq.z_step_um == 1.0 and len(acq.wells()) == 100
    assert acq.planes["stage_y_um"].iloc[0] == pytest.approx(200.0)
    assert round(acq.pixel_size_um[0], 4) == 0.2967
    assert elapsed < 10.0, f"100k-image index took {elapsed:.1f} s CPU"
