"""Cell crops for classifiers: box + context margin, padded to square at borders, resized.

Plain functions over arrays (``H x W x C``). A crop that reaches past the image border is padded
(never shifted or dropped), so every detected cell gets a crop of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2-D image file as ``H x W x C`` (grey -> one channel, alpha dropped).

    Examples
    --------
    >>> import tempfile
    >>> from skimage.io import imsave
    >>> p = Path(tempfile.mkdtemp()) / "g (1).png"
    >>> imsave(p, np.zeros((4, 5), np.uint8), check_contrast=False)
    >>> read_image(p).shape
    (4, 5, 1)
    """
    from skimage.io import imread

    try:
        img = np.asarray(imread(str(path)))
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(f"{path}: cannot read image ({exc})") from None
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3:
        raise InputError(f"{path}: expected a 2-D grey or RGB image, got shape {img.shape}")
    return img


def percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values.astype(np.float32), q)`` (the default, linear method), the same
    float64 bits, computed from a histogram for 8- and 16-bit unsigned data.

    ``np.percentile`` partially sorts a copy of the plane: ~19 ms for the two percentiles of a
    1080 x 1080 plane here, against ~3 ms for counting its values. The order statistics a
    percentile interpolates between are read from the cumulative counts and interpolated with
    numpy's own formula (difference in float32, weights in float64), so the result is
    bit-identical (tested against ``np.percentile``); other dtypes go to ``np.percentile``.

    Parameters
    ----------
    values
        Any array (all its values are used).
    q
        Percentiles in [0, 100].

    Returns
    -------
    numpy.ndarray
        float64, one value per ``q``.

    Examples
    --------
    >>> v = np.array([[0, 10], [20, 30]], np.uint16)
    >>> percentiles(v, [0, 50, 100]).tolist()
    [0.0, 15.0, 30.0]
    """
    v = np.asarray(values)
    if v.dtype.kind != "u" or v.dtype.itemsize > 2 or v.size == 0:
        return np.asarray(np.percentile(np.asarray(v, dtype=np.float32), q))
    qs = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    if np.any((qs < 0) | (qs > 1)) or np.any(np.isnan(qs)):
        raise ValueError("percentiles must be in the range [0, 100]")
    n = v.size
    cum = np.cumsum(np.bincount(v.ravel()))
    virtual = (n - 1) * qs
    prev = np.minimum(np.floor(virtual), n - 1)
    nxt = np.minimum(prev + 1, n - 1)
    gamma = virtual - prev  # where prev == nxt (the top) the weight does not matter
    # the value at sorted position k: the first value whose cumulative count exceeds k
    a = np.searchsorted(cum, prev.astype(np.int64), side="right").astype(np.float32)
    b = np.searchsorted(cum, nxt.astype(np.int64), side="right").astype(np.float32)
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def rescale_0_255(plane: np.ndarray, low: float = 1.0, high: float = 99.8,
                  reference: np.ndarray | None = None) -> np.ndarray:
    """Map the ``low``-``high`` percentile range of ``plane`` (or of ``reference``, e.g. the
    max projection of a z-stack ``plane``) to 0-255 (clipped), as float32.

    Examples
    --------
    >>> rescale_0_255(np.array([0, 50, 100]), 0, 100).tolist()
    [0.0, 127.5, 255.0]
    """
    lo, hi = percentiles(plane if reference is None else reference, [low, high])
    plane = np.asarray(plane, dtype=np.float32)
    if hi <= lo:
        return np.zeros_like(plane)
    return np.clip((plane - lo) / (hi - lo) * 255.0, 0, 255).astype(np.float32)


def compose_channels(
    planes: Sequence[np.ndarray], rescale: Sequence[str] | str = "percentile"
) -> np.ndarray:
    """Stack 2-D planes into ``H x W x C`` float32, each plane rescaled to 0-255 if asked.

    The AIM-CICs composite is ``compose_channels([membrane, brightfield, nucleus])``: red,
    green and blue planes, each rescaled to 0-255.

    Examples
    --------
    >>> a, b = np.arange(100.).reshape(10, 10), np.ones((10, 10))
    >>> c = compose_channels([a, b], ["percentile", "none"])
    >>> c.shape, float(c[..., 0].min()), float(c[..., 0].max()), float(c[0, 0, 1])
    ((10, 10, 2), 0.0, 255.0, 1.0)
    """
    if not planes:
        raise InputError("compose_channels: no plane given")
    modes = [rescale] * len(planes) if isinstance(rescale, str) else list(rescale)
    if len(modes) != len(planes):
        raise InputError(f"compose_channels: {len(planes)} planes but {len(modes)} rescale modes")
    shapes = {np.shape(p) for p in planes}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise InputError(f"compose_channels: planes must be 2-D and equal in shape, got {shapes}")
    out = []
    for p, m in zip(planes, modes, strict=True):
        if m == "percentile":
            out.append(rescale_0_255(p, 0.0, 100.0) if np.ptp(p) == 0 else rescale_0_255(p))
        elif m == "none":
            out.append(np.asarray(p, dtype=np.float32))
        else:
            raise InputError(f"compose_channels: unknown rescale mode {m!r} (percentile | none)")
    return np.stack(out, axis=-1)


def crop_window(
    box: Sequence[float], margin: float = 0.0, square: bool = True
) -> tuple[int, int, int, int]:
    """Integer window ``(x0, y0, x1, y1)`` around ``box`` grown by ``margin`` x its longer side.

    Examples
    --------
    >>> crop_window((10, 10, 20, 30), margin=0.25)
    (0, 5, 30, 35)
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    m = margin * max(w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ww, hh = w + 2 * m, h + 2 * m
    if square:
        ww = hh = max(ww, hh)
    ww, hh = max(1, round(ww)), max(1, round(hh))
    ix0, iy0 = int(np.floor(cx - ww / 2 + 0.5)), int(np.floor(cy - hh / 2 + 0.5))
    return ix0, iy0, ix0 + ww, iy0 + hh


def crop_box(
    image: np.ndarray,
    box: Sequence[float] | None,
    size: int,
    margin: float = 0.0,
    square: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Crop ``box`` (x0, y0, x1, y1) with context from an ``H x W x C`` image, pad, resize.

    Parameters
    ----------
    image
        ``H x W x C`` (or ``H x W``) array.
    box
        Pixel box, ``x1``/``y1`` exclusive; ``None`` or NaN values: the whole image.
    size
        Output side in pixels.
    margin
        Context on every side, as a fraction of the box's longer side.
    square
        Pad the window to a square first (keeps the aspect ratio).
    pad_mode
        ``numpy.pad`` mode for the part of the window outside the image.

    Returns
    -------
    numpy.ndarray
        ``size x size x C`` float32.

    Examples
    --------
    >>> img = np.ones((10, 10, 1), np.uint8)
    >>> c = crop_box(img, (0, 0, 4, 4), size=8, margin=0.5)  # reaches past the corner
    >>> c.shape, float(c[0, 0, 0]), float(c[-1, -1, 0])
    ((8, 8, 1), 0.0, 1.0)
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    H, W = img.shape[:2]
    if box is None or np.any(np.isnan(np.asarray(box, dtype=float))):
        box = (0, 0, W, H)
    x0, y0, x1, y1 = crop_window(box, margin, square)
    if x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H:
        raise InputError(f"box {tuple(box)} lies outside the {W}x{H} image")
    sub = img[max(y0, 0) : min(y1, H), max(x0, 0) : min(x1, W)]
    pads = ((max(0, -y0), max(0, y1 - H)), (max(0, -x0), max(0, x1 - W)), (0, 0))
    if any(p for pair in pads for p in pair):
        sub = np.pad(sub, pads, mode=pad_mode)  # type: ignore[call-overload]
    return resize_linear(sub.astype(np.float32), size, anti_aliasing=sub.shape[0] > size)


def resize_linear(window: np.ndarray, size: int, anti_aliasing: bool) -> np.ndarray:
    """``skimage.transform.resize(window, (size, size), order=1, preserve_range=True,
    anti_aliasing=anti_aliasing)`` of an ``H x W x C`` float32 window, bit for bit, in about
    half its time (for finite values: a NaN or inf stays in its own channel, where
    scikit-image's 3-D zoom spills it into the others with weight 0).

    scikit-image zooms the 3-D array, so scipy interpolates over 2 x 2 x 2 neighbours for every
    output value though the channel axis is not scaled; here each channel is zoomed as a plane
    (2 x 2 neighbours). The channel axis's weights are exactly 1 and 0 there, so the sums are
    the same floats. The rest is scikit-image's own sequence: the anti-aliasing Gaussian
    (sigma ``(factor - 1) / 2`` per axis, ``mirror`` edges, as its default ``reflect`` mode)
    on the whole window, ``scipy.ndimage.zoom`` with ``grid_mode=True``, and the clip to the
    window's range. ``tests/test_crops_resize.py`` compares it with scikit-image's on random
    windows.

    Examples
    --------
    >>> w = np.arange(48, dtype=np.float32).reshape(4, 4, 3)
    >>> resize_linear(w, 2, anti_aliasing=True).shape
    (2, 2, 3)
    """
    from scipy import ndimage as ndi

    img = np.asarray(window, dtype=np.float32)
    factors = np.array([img.shape[0] / size, img.shape[1] / size, 1.0])
    filtered = img
    if anti_aliasing:
        filtered = ndi.gaussian_filter(img, np.maximum(0, (factors - 1) / 2), cval=0.0,
                                       mode="mirror")
    zoom = (1 / factors[0], 1 / factors[1])
    out = np.empty((size, size, img.shape[2]), np.float32)
    for c in range(img.shape[2]):
        out[:, :, c] = ndi.zoom(filtered[:, :, c], zoom, order=1, mode="mirror", cval=0.0,
                                grid_mode=True)
    lo, hi = np.min(img), np.max(img)
    if np.isnan(lo):  # as scikit-image: the range of the finite values
        lo, hi = np.nanmin(img), np.nanmax(img)
    np.clip(out, lo, hi, out=out)
    return out


#: ITU-R 601-2 luma weights, as PIL's RGB -> L conversion.
LUMA = (0.299, 0.587, 0.114)


def as_channels(img: np.ndarray, channels: int, where: str = "") -> np.ndarray:
    """``H x W x C`` image with ``channels`` channels.

    A grey image is replicated (grey -> RGB); an RGB image asked for one channel is converted
    to grey with the ITU-R 601 luma weights (an image with R = G = B keeps its values).

    Examples
    --------
    >>> as_channels(np.zeros((2, 2, 1)), 3).shape
    (2, 2, 3)
    >>> as_channels(np.full((1, 1, 3), 7.0), 1).ravel().round(6).tolist()
    [7.0]
    """
    c = img.shape[2]
    if c == channels:
        return img
    if c == 1:
        return np.repeat(img, channels, axis=2)
    if c == 3 and channels == 1:
        return (img.astype(np.float32) @ np.asarray(LUMA, np.float32))[:, :, None]
    raise InputError(f"{where or 'image'}: {c} channels, expected {channels} (or 1, replicated)")


def crops_from_table(
    table: pd.DataFrame,
    size: int,
    margin: float = 0.0,
    square: bool = True,
    pad_mode: str = "constant",
    channels: int | None = None,
) -> np.ndarray:
    """``uint8`` crops for every row of an annotation table (:mod:`hcs.io.annotations`).

    Each image is read once. Grey images are replicated to ``channels`` (default: the largest
    channel count among the images, so a folder mixing grey and RGB gives RGB crops); with
    ``channels=1`` RGB images are converted to grey (:func:`as_channels`); 16-bit images are
    mapped to 8 bits over the full 0-65535 range.

    Returns
    -------
    numpy.ndarray
        ``N x size x size x channels`` ``uint8``, in row order.
    """
    if len(table) == 0:
        raise InputError("no annotated box to crop")
    table = table.reset_index(drop=True)
    crops: list[np.ndarray | None] = [None] * len(table)
    for image, rows in table.groupby("image", sort=False):
        img = read_image(image)
        if img.dtype == np.uint16:
            img = img.astype(np.float32) * (255.0 / 65535.0)
        elif img.dtype != np.uint8:
            raise InputError(f"{image}: {img.dtype} pixels; crops for training need 8 or 16 bit")
        if channels == 1 and img.shape[2] == 3:
            img = as_channels(img, 1, str(image))
        pos = table.index.get_indexer(rows.index)
        for p, box in zip(pos, rows[["x0", "y0", "x1", "y1"]].to_numpy(float), strict=True):
            c = crop_box(img, box, size, margin, square, pad_mode)
            crops[p] = np.clip(np.rint(c), 0, 255).astype(np.uint8)
    target = channels or max(c.shape[2] for c in crops)  # type: ignore[union-attr]
    return np.stack([
        as_channels(c, target, str(table["image"].iloc[i]))  # type: ignore[arg-type]
        for i, c in enumerate(crops)
    ])
