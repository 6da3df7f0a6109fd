"""read_plane decodes plain grey-level TIFFs with libtiff: the same pixels as tifffile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs.errors import InputError
from hcs.io.acquisition import decode_with_libtiff, read_plane

RNG = np.random.default_rng(3)


@pytest.mark.parametrize(
    ("dtype", "kwargs"),
    [
        ("uint16", {"compression": "lzw"}),
        ("uint16", {"compression": "lzw", "predictor": True}),
        (">u2", {"compression": "lzw"}),  # big-endian file
        ("uint8", {}),
        ("int16", {"compression": "zlib"}),
        ("float32", {"compression": "zlib", "predictor": True}),
        ("uint16", {"compression": "lzw", "tile": (64, 64)}),
    ],
)
def test_libtiff_decodes_the_same_pixels(tmp_path: Path, dtype: str, kwargs: dict) -> None:
    path = tmp_path / "p.tif"
    planes = [(RNG.normal(900, 300, (150, 131))).astype(dtype) for _ in range(3)]
    with tifffile.TiffWriter(path) as tw:
        for p in planes:
            tw.write(p, photometric="minisblack", **kwargs)
    with tifffile.TiffFile(path) as tf:
        for i, p in enumerate(planes):
            fast = decode_with_libtiff(path, tf.pages[i], i)
            assert fast is not None  # the libtiff path was taken
            ref = tf.pages[i].asarray()
            assert fast.dtype == ref.dtype and np.array_equal(fast, ref)
            np.testing.assert_array_equal(read_plane(path, i), p)


def test_other_pages_fall_back_to_tifffile(tmp_path: Path) -> None:
    pal = tmp_path / "palette.tif"
    idx = RNG.integers(0, 4, (40, 50), dtype=np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    tifffile.imwrite(pal, idx, photometric="palette", colormap=cmap)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, RNG.integers(0, 255, (40, 50, 3), dtype=np.uint8), photometric="rgb")
    with tifffile.TiffFile(pal) as tf:
        assert decode_with_libtiff(pal, tf.pages[0], 0) is None
    with tifffile.TiffFile(rgb) as tf:
        assert decode_with_libtiff(rgb, tf.pages[0], 0) is None
    np.testing.assert_array_equal(read_plane(pal), idx)  # palette indices, as before
    with pytest.raises(InputError, match="RGB"):
        read_plane(rgb)


def test_a_truncated_file_is_still_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, RNG.integers(0, 4000, (300, 300), dtype=np.uint16), compression="lzw")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.tif: cannot read TIFF"):
        read_plane(path)


def test_damaged_strips_give_what_tifffile_gives(tmp_path: Path) -> None:
    """A flipped byte in the LZW data: libtiff returns tifffile's pixels or steps aside."""
    rng = np.random.default_rng(0)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, rng.integers(0, 4000, (300, 300), dtype=np.uint16),
                     compression="lzw")
    data = good.read_bytes()
    with tifffile.TiffFile(good) as tf:
        start = tf.pages[0].dataoffsets[0]
    outcomes = set()
    for k in range(30):
        bad = bytearray(data)
        bad[int(rng.integers(start, len(bad)))] ^= 0xFF
        path = tmp_path / f"flip{k}.tif"
        path.write_bytes(bytes(bad))
        with tifffile.TiffFile(path) as tf:
            fast = decode_with_libtiff(path, tf.pages[0], 0)
            try:
                ref = tf.pages[0].asarray()
            except Exception:
                ref = None
        if ref is None:
            assert fast is None
            with pytest.raises(InputError, match=rf"flip{k}\.tif: cannot read TIFF"):
                read_plane(path)
            outcomes.add("error")
        elif fast is not None:
            assert np.array_equal(fast, ref)
            outcomes.add("same")
    assert outcomes == {"error", "same"}  # both cases met
