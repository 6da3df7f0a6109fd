"""Crops of a cell from the x, y and z max-intensity projections of a z-stack.

The Allen Cell mitotic annotation (``papers/004``) classifies each cell from three 2-D views of
its 3-D image: the maximum-intensity projections along z (the usual top view), y and x. Here a
cell's crop window is the same in all views: the window :func:`hcs.classify.crops.crop_window`
puts around its box, through every plane of the stack. The z view is that window of the field's
z max projection, cut exactly as :func:`hcs.classify.crops.crop_box` cuts a 2-D field. In the
side views the image rows are z: the ``y`` view is the window projected along y (``Z x W``),
the ``x`` view projected along x (``Z x H``). The rows are first resampled so that a row is as
tall as a pixel is wide (``z_scale = z step / pixel size``), so a round cell looks round in
every view; the view is then padded (with zeros, centred) to a square of the window's side, or
taller when the stack is, and resized to the crop size like the z view.

Intensities are those of the composed stack (every plane rescaled to 0-255 with its field's
projection percentiles, :func:`compose_stack`), so the z view of a stack is the very crop the
2-D path cuts from the projected field: a maximum commutes with a monotone rescale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hcs.errors import InputError

__all__ = ["MIN_PLANES", "VIEWS", "compose_stack", "view_crop", "view_crops", "z_scale"]

VIEWS = ("z", "y", "x")
#: fewest z planes for which side views are made (a thinner stack has only its z view)
MIN_PLANES = 3


def z_scale(z_step_um: float | None, pixel_size_um: float | None) -> float:
    """Rows per z plane in a side view: ``z step / pixel size`` (1 when either is unknown).

    Examples
    --------
    >>> z_scale(1.0, 0.5), z_scale(None, 0.5)
    (2.0, 1.0)
    """
    if not z_step_um or not pixel_size_um or z_step_um <= 0 or pixel_size_um <= 0:
        return 1.0
    return float(z_step_um) / float(pixel_size_um)


def compose_stack(stack: np.ndarray, indices: Sequence[int], modes: Sequence[str]) -> np.ndarray:
    """``(Z, H, W, C)`` float32 model input of a z-stack ``(c, z, y, x)``.

    Each chosen channel is rescaled to 0-255 by the 1-99.8 percentiles of its z max projection
    (``percentile``; 8-bit data with ``none`` are used as they are), the same mapping
    :func:`hcs.engine.processor.compose_field` applies to the projection, applied to every plane.

    Examples
    --------
    >>> s = np.zeros((1, 3, 8, 8), np.uint16); s[0, 1, 2:4, 2:4] = 1000
    >>> c = compose_stack(s, [0], ["percentile"])
    >>> c.shape, float(c.max()), float(c[0].max())
    ((3, 8, 8, 1), 255.0, 0.0)
    """
    from hcs.classify.crops import rescale_0_255

    out = []
    for i, m in zip(indices, modes, strict=True):
        planes = np.asarray(stack[i])
        if m == "none" and planes.dtype == np.uint8:
            out.append(planes.astype(np.float32))
        else:
            out.append(rescale_0_255(planes, reference=planes.max(axis=0)))
    return np.stack(out, axis=-1)


def _side(stack: np.ndarray, window: tuple[int, int, int, int], view: str, pad_mode: str
          ) -> np.ndarray:
    """``(Z, L, C)`` projection of the window along y (``view="y"``) or x, padded to the window."""
    x0, y0, x1, y1 = window
    _, H, W, _ = stack.shape
    sub = stack[:, max(y0, 0): min(y1, H), max(x0, 0): min(x1, W)]
    if view == "y":
        side, lo, hi, n = sub.max(axis=1), x0, x1, W
    else:
        side, lo, hi, n = sub.max(axis=2), y0, y1, H
    pads = ((0, 0), (max(0, -lo), max(0, hi - n)), (0, 0))
    if any(p for pair in pads for p in pair):
        side = np.pad(side, pads, mode=pad_mode)  # type: ignore[call-overload]
    return side


def view_crop(
    stack: np.ndarray,
    box: Sequence[float],
    size: int,
    view: str,
    margin: float = 0.0,
    square: bool = True,
    pad_mode: str = "constant",
    zscale: float = 1.0,
    projection: np.ndarray | None = None,
) -> np.ndarray:
    """``size x size x C`` float32 crop of one cell in one view of a ``(Z, H, W, C)`` stack.

    Parameters
    ----------
    stack
        The composed stack (:func:`compose_stack`).
    box
        The cell's pixel box ``(x0, y0, x1, y1)`` in the field.
    size, margin, square, pad_mode
        As :func:`hcs.classify.crops.crop_box` (``pad_mode`` pads the window past the field).
    view
        ``z``, ``y`` or ``x`` (see the module text).
    zscale
        Side-view rows per z plane (:func:`z_scale`).
    projection
        The stack's z max projection, if already computed (the z view is cut from it).

    Examples
    --------
    A 5-plane stack holding a bright bar 2 planes thick: flat from the side, square from above.

    >>> s = np.zeros((5, 20, 20, 1), np.float32); s[2:4, 5:15, 5:15] = 255
    >>> box = (5, 5, 15, 15)
    >>> top, side = view_crop(s, box, 10, "z"), view_crop(s, box, 10, "y", zscale=2.0)
    >>> int((top[..., 0] > 127).sum()), int((side[..., 0] > 127).sum(axis=0).max())
    (100, 4)
    """
    from hcs.classify.crops import crop_box, crop_window

    if stack.ndim != 4:
        raise InputError(f"view crops need a (z, y, x, c) stack, got shape {stack.shape}")
    if view == "z":
        proj = stack.max(axis=0) if projection is None else projection
        return crop_box(proj, box, size, margin, square, pad_mode)
    if view not in VIEWS:
        raise InputError(f"unknown view {view!r} (z, y or x)")
    from skimage.transform import resize

    _, H, W, _ = stack.shape
    window = crop_window(box, margin, square)
    x0, y0, x1, y1 = window
    if x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H:
        raise InputError(f"box {tuple(box)} lies outside the {W}x{H} image")
    side = _side(stack, window, view, pad_mode)
    rows = max(1, round(side.shape[0] * zscale))
    if rows != side.shape[0]:
        side = resize(side, (rows, side.shape[1], side.shape[2]), order=1, preserve_range=True,
                      anti_aliasing=False).astype(np.float32)
    n = max(side.shape[0], side.shape[1]) if square else side.shape[1]
    top = max(0, (n - side.shape[0]) // 2)
    left = (n - side.shape[1]) // 2
    canvas = np.zeros((max(n, side.shape[0]), n, side.shape[2]), np.float32)
    canvas[top: top + side.shape[0], left: left + side.shape[1]] = side
    out = resize(canvas, (size, size), order=1, preserve_range=True,
                 anti_aliasing=canvas.shape[0] > size)
    return out.astype(np.float32)


def view_crops(
    stack: np.ndarray,
    boxes: np.ndarray,
    size: int,
    views: Sequence[str],
    margin: float = 0.0,
    square: bool = True,
    pad_mode: str = "constant",
    zscale: float = 1.0,
    projection: np.ndarray | None = None,
) -> np.ndarray:
    """``N x V x size x size x C`` crops of every box in every view (:func:`view_crop`)."""
    if projection is None and "z" in views:
        projection = stack.max(axis=0)
    out = np.zeros((len(boxes), len(views), size, size, stack.shape[-1]), np.float32)
    for i, box in enumerate(boxes):
        for j, v in enumerate(views):
            out[i, j] = view_crop(stack, box, size, v, margin, square, pad_mode, zscale,
                                  projection)
    return out
