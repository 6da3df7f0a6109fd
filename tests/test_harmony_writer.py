"""Harmony export writer: round trips through read_harmony, determinism, streaming, errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs.errors import InputError, OutputExistsError
from hcs.io.acquisition import KEY_COLUMNS, Channel, read_plane
from hcs.io.flatfield import parse_flatfield_profile
from hcs.io.harmony import read_harmony
from hcs.plate import PlateGeometry
from hcs.synth.exports.harmony import default_field_positions, write_harmony_export

GEOM = PlateGeometry.from_format(96)
WELLS = [(1, 2), (6, 11)]  # B03, G12
FIELD_POS = [(-120.5, 80.25), (130.0, -75.5)]  # um, image orientation
FLAT = (
    "{Background: {Character: NonFlat, Mean: 373.69866, NoiseConst: 1.3, NonFlatness: {Corrected: "
    "0.026984985, Original: 0.47285813, Random: INF}, Profile: {Coefficients: [[1.1282], [-0.0165, "
    "0.0298], [-0.8004, -0.0792, -0.2953]], Dims: [24, 32], Origin: [11.5, 15.5], Scale: "
    "[0.041666667, 0.03125], Type: Polynomial}, Quality: 1.0}, Channel: 1, ChannelName: "
    '"Hoechst, 33342", Version: Acapella:2013}'
)


def _channels() -> list[Channel]:
    return [
        Channel(
            "Hoechst 33342 & more", "fluorescence", 405, 456,
            metadata={"exposure_s": 0.02, "objective_magnification": 40.0, "objective_na": 1.1,
                      "binning": (2, 2), "camera": "AndorZylaCam",
                      "acquisition_type": "NipkowConfocal"},
        ),
        Channel("Digital Phase Contrast", "phase", 740, 0, metadata={"exposure_s": 0.1}),
    ]  # fmt: skip


def _planes(seed: int = 0) -> dict[tuple[int, ...], np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = [
        (r, c, f, z, ch, t)
        for (r, c), f, z, ch, t in itertools.product(WELLS, range(2), range(2), range(2), range(2))
    ]
    return {k: rng.integers(0, 65535, (24, 32), dtype=np.uint16) for k in keys}


@pytest.mark.parametrize("schema", ["v5", "v7"])
def test_round_trip(tmp_path: Path, schema: str) -> None:
    arrays = _planes()
    chans = _channels()
    index = write_harmony_export(
        tmp_path / "exp", iter(arrays.items()), channels=chans, geometry=GEOM,
        pixel_size_um=(0.65, 0.6), plate_name="RT & <plate>", schema=schema, instrument="Sonata",
        field_positions_um=FIELD_POS, z_step_um=2.5, time_step_s=600.0, flatfield={0: FLAT},
    )  # fmt: skip
    name = {"v5": "Index.idx.xml", "v7": "Index.xml"}[schema]
    assert index == tmp_path / "exp" / "Images" / name
    text = index.read_text()
    if schema == "v5":
        assert 'Version="1" xmlns="http://www.perkinelmer.com/PEHH/HarmonyV5"' in text
        assert "<TimepointID>0</TimepointID>" in text and "<SequenceID>" not in text
    else:
        assert 'Version="2" xmlns="43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7"' in text
        assert "<TimepointID>0</TimepointID>" not in text and "<SequenceID>1</SequenceID>" in text
        assert text.count("<ChannelName>") == 2  # once per channel, in Maps
    # Stage Y points up in the file: field 0 at y=+80.25 um (below centre) -> PositionY < 0.
    assert '<PositionY Unit="m">-8.025e-05</PositionY>' in text
    assert (tmp_path / "exp" / "Images" / "r02c03f01p01-ch1sk1fk1fl1.tiff").is_file()

    acq = read_harmony(tmp_path / "exp")
    assert acq.attrs["schema"] == schema and acq.instrument == "Sonata"
    assert acq.plate_name == "RT & <plate>" and acq.geometry == GEOM
    keys = {tuple(int(v) for v in k) for k in acq.planes[KEY_COLUMNS].itertuples(index=False)}
    assert keys == set(arrays)
    assert len(acq.planes) == len(arrays) == 32
    assert acq.pixel_size_um == pytest.approx((0.65, 0.6), rel=1e-12)
    assert acq.image_shape == (24, 32) and acq.dtype == np.uint16
    assert acq.z_step_um == 2.5
    for row in acq.planes.itertuples(index=False):
        k = (row.row, row.col, row.field, row.z, row.channel, row.t)
        assert (row.stage_x_um, row.stage_y_um) == pytest.approx(FIELD_POS[row.field])
        assert row.stage_z_um == pytest.approx(2.5 * row.z)
        assert row.time_s == 600.0 * row.t
        assert np.array_equal(read_plane(row.path, expect_shape=(24, 32)), arrays[k])
    assert acq.missing_planes().empty
    for got, want in zip(acq.channels, chans, strict=True):
        assert (got.name, got.channel_type, got.excitation_nm, got.emission_nm, got.color) == (
            want.name, want.channel_type, want.excitation_nm, want.emission_nm, want.color,
        )  # fmt: skip
        for key, value in want.metadata.items():
            assert got.metadata[key] == value, key
    assert acq.channels[1].metadata["illumination_type"] == "Transmitted"
    assert acq.channels[0].flatfield == parse_flatfield_profile(FLAT)
    assert acq.channels[0].flatfield["ChannelName"] == "Hoechst, 33342"
    assert acq.channels[1].flatfield is None


def test_default_field_grid_and_lzw(tmp_path: Path) -> None:
    img = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)
    planes = (((0, 0, f, 0, 0, 0), img + f) for f in range(4))
    write_harmony_export(tmp_path / "e", planes, channels=[Channel("GFP", emission_nm=510)],
                         geometry=GEOM, pixel_size_um=0.5)  # fmt: skip
    acq = read_harmony(tmp_path / "e")
    xy = acq.planes.sort_values("field")[["stage_x_um", "stage_y_um"]].round(9).values.tolist()
    # 2 x 2 grid, one image (16 x 12 um) apart, numbered from the top left, centred on the well.
    assert xy == [[-8.0, -6.0], [8.0, -6.0], [-8.0, 6.0], [8.0, 6.0]]
    assert default_field_positions(4, (24, 32), (0.5, 0.5)) == [tuple(p) for p in xy]
    with tifffile.TiffFile(acq.planes.path.iloc[0]) as tf:
        assert tf.pages[0].compression == tifffile.COMPRESSION.LZW
    assert np.array_equal(read_plane(acq.planes.sort_values("field").path.iloc[3]), img + 3)


def test_deterministic_bytes(tmp_path: Path) -> None:
    def write(out: Path) -> dict[str, bytes]:
        write_harmony_export(out, iter(_planes(3).items()), channels=_channels(), geometry=GEOM,
                             pixel_size_um=0.65, schema="v7", flatfield={0: FLAT})  # fmt: skip
        return {p.name: p.read_bytes() for p in sorted((out / "Images").iterdir())}

    a, b = write(tmp_path / "a"), write(tmp_path / "b")
    assert len(a) == 33 and a == b


def test_planes_are_consumed_and_written_lazily(tmp_path: Path) -> None:
    out = tmp_path / "lazy"
    seen_on_disk = []

    def gen():
        img = np.ones((4, 4), np.uint16)
        for f in range(3):
            # Before yielding plane f, the TIFFs of planes < f are already on disk.
            written = [p.name for p in tmp_path.glob("lazy.partial-*/Images/*.tiff")]
            seen_on_disk.append(len(written))
            yield (0, 0, f, 0, 0, 0), img

    write_harmony_export(out, gen(), channels=[Channel("A")], geometry=GEOM, pixel_size_um=1,
                         compression=None)  # fmt: skip
    assert seen_on_disk == [0, 1, 2]
    assert sorted(p.name for p in (out / "Images").iterdir())[0] == "Index.idx.xml"


def test_existing_output_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    out.mkdir()  # an empty folder is fine
    args = dict(channels=[Channel("A")], geometry=GEOM, pixel_size_um=1.0)
    one = [((0, 0, 0, 0, 0, 0), np.zeros((4, 4), np.uint16))]
    write_harmony_export(out, one, **args)
    with pytest.raises(OutputExistsError, match="exists"):
        write_harmony_export(out, one, **args)
    two = [((0, 1, 0, 0, 0, 0), np.full((4, 4), 7, np.uint16))]
    write_harmony_export(out, two, overwrite=True, **args)
    assert read_harmony(out).well_names() == ["A02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no temp folder left


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    def gen():
        yield (0, 0, 0, 0, 0, 0), np.zeros((4, 4), np.uint16)
        raise RuntimeError("simulator crashed")

    with pytest.raises(RuntimeError):
        write_harmony_export(tmp_path / "x", gen(), channels=[Channel("A")], geometry=GEOM,
                             pixel_size_um=1.0)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("planes", "match"),
    [
        ([((0, 0, 0, 0, 0, 0), np.zeros((4, 4))), ((0, 0, 0, 0, 0, 0), np.zeros((4, 4)))],
         "given twice"),
        ([((0, 0, 0, 0, 3, 0), np.zeros((4, 4)))], "channel 3 but only 1"),
        ([((8, 0, 0, 0, 0, 0), np.zeros((4, 4)))], "outside the 8 x 12 plate"),
        ([((0, 0, 0, 0, 0, 0), np.zeros((4, 4))), ((0, 0, 1, 0, 0, 0), np.zeros((5, 4)))],
         "earlier planes are"),
        ([((0, 0, 0, 0, 0, 0), np.zeros((2, 4, 4)))], "2-D"),
        ([], "no planes"),
    ],
)  # fmt: skip
def test_bad_planes(tmp_path: Path, planes, match: str) -> None:
    with pytest.raises(InputError, match=match):
        write_harmony_export(tmp_path / "bad", planes, channels=[Channel("A")], geometry=GEOM,
                             pixel_size_um=1.0)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path: Path) -> None:
    one = [((0, 0, 0, 0, 0, 0), np.zeros((4, 4), np.uint16))]
    kw = dict(channels=[Channel("A")], geometry=GEOM, pixel_size_um=1.0)
    with pytest.raises(InputError, match="schema"):
        write_harmony_export(tmp_path / "a", one, schema="v6", **kw)
    with pytest.raises(InputError, match="flatfield given for channel 2"):
        write_harmony_export(tmp_path / "a", one, flatfield={2: FLAT}, **kw)
    with pytest.raises(InputError, match="1 field positions given for 2 fields"):
        write_harmony_export(
            tmp_path / "a", one + [((0, 0, 1, 0, 0, 0), one[0][1])],
            field_positions_um=[(0.0, 0.0)], **kw,
        )  # fmt: skip
