"""``hcs.classify.crops.resize_linear`` against scikit-image's ``resize``, the reference it
replaces in every crop (``hcs run``, training, the labelling page): bit-identical floats."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

from hcs.classify.crops import crop_box, resize_linear


def reference(window: np.ndarray, size: int, anti_aliasing: bool) -> np.ndarray:
    return resize(window, (size, size), order=1, preserve_range=True,
                  anti_aliasing=anti_aliasing).astype(np.float32)


def test_bit_identical_on_random_windows() -> None:
    rng = np.random.default_rng(7)
    for _ in range(600):
        h = int(rng.integers(2, 260))
        w = h if rng.random() < 0.7 else int(rng.integers(2, 260))  # square=False windows
        c = int(rng.choice([1, 2, 3, 4]))
        window = (rng.random((h, w, c)) * rng.choice([1.0, 255.0, 65535.0])).astype(np.float32)
        if rng.random() < 0.3:  # padded part of a window at the image border
            window[: h // 3] = 0
        size = int(rng.choice([16, 32, 48, 64, 96, 224]))
        aa = bool(rng.random() < 0.5) if h <= size else True
        got, want = resize_linear(window, size, aa), reference(window, size, aa)
        assert got.dtype == want.dtype == np.float32
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (h, w, c, size, aa)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_nan_stays_in_its_channel(value: float) -> None:
    """A NaN or inf in one channel: scikit-image's 3-D zoom gives it weight 0 in the other
    channels, and 0 x NaN spills it there; here each channel is its own plane, so the others
    stay as scikit-image resizes them alone."""
    window = np.random.default_rng(1).random((40, 40, 2)).astype(np.float32)
    window[3, 5, 0] = value
    got = resize_linear(window, 16, True)
    assert np.isfinite(got[:, :, 1]).all()
    for c in range(2):
        want = resize(window[:, :, c], (16, 16), order=1, preserve_range=True,
                      anti_aliasing=True).astype(np.float32)
        lo, hi = np.nanmin(window), np.nanmax(window)  # the clip is over the whole window
        np.testing.assert_array_equal(got[:, :, c], np.clip(want, lo, hi))


def test_crop_box_unchanged() -> None:
    """``crop_box`` through the reference, on an image with boxes at its borders."""
    rng = np.random.default_rng(3)
    img = (rng.random((300, 280, 3)) * 255).astype(np.float32)
    for box in [(0, 0, 20, 25), (260, 280, 280, 300), (100, 120, 130, 140), (5, 150, 9, 190)]:
        for size, margin in [(48, 0.25), (64, 2.0), (224, 0.0)]:
            got = crop_box(img, box, size, margin)
            x0, y0, x1, y1 = _window(box, margin)
            sub = img[max(y0, 0):min(y1, 300), max(x0, 0):min(x1, 280)]
            sub = np.pad(sub, ((max(0, -y0), max(0, y1 - 300)), (max(0, -x0), max(0, x1 - 280)),
                               (0, 0)))
            want = reference(sub, size, sub.shape[0] > size)
            assert np.array_equal(got, want), (box, size, margin)


def _window(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int, int]:
    from hcs.classify.crops import crop_window

    return crop_window(box, margin, True)
