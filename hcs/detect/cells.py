"""Whole-cell regions grown from nucleus seeds (classical, scikit-image)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, segmentation

from hcs.detect._util import as_float_image, fill_holes, foreground, px, valid_pixel_size
from hcs.detect.background import noise_sigma
from hcs.detect.detections import Detections
from hcs.detect.threshold import detect_nuclei
from hcs.errors import InputError
from hcs.timing import stage

__all__ = ["detect_cells"]


def detect_cells(
    nuclei_image: np.ndarray,
    cell_image: np.ndarray,
    pixel_size_um: float | None = None,
    *,
    stain: str = "cytoplasm",
    nuclei: Detections | None = None,
    threshold: str | float = "otsu",
    min_contrast: float = 3.0,
    smooth_sigma_um: float = 1.0,
    max_distance_um: float | None = None,
    compactness: float = 0.005,
    **nuclei_kwargs: object,
) -> Detections:
    """Grow whole-cell regions from nucleus seeds over a cytoplasm or membrane channel.

    Parameters
    ----------
    nuclei_image
        Nuclear-stain image (used for the seeds unless ``nuclei`` is given).
    cell_image
        Same-shape image of a cytoplasm stain (cells bright inside) or membrane stain (cell
        borders bright).
    pixel_size_um
        Pixel size in micrometres (see :func:`detect_nuclei`).
    stain
        ``"cytoplasm"``: watershed on the Sobel gradient of the smoothed cell image, so borders
        fall on intensity edges. ``"membrane"``: watershed on the smoothed intensity, so borders
        fall on bright membrane ridges.
    nuclei
        Precomputed nuclei (with a label mask); otherwise :func:`detect_nuclei` is run on
        ``nuclei_image`` with ``pixel_size_um`` and ``nuclei_kwargs``.
    threshold, min_contrast
        Foreground threshold of the cell image (as in :func:`detect_nuclei`); the nuclei are
        always part of the foreground.
    smooth_sigma_um
        Gaussian smoothing of the cell image.
    compactness
        Compact-watershed weight (:func:`skimage.segmentation.watershed`): the cost of each
        pixel of distance from the nucleus, against a landscape scaled to [0, 1]. It splits
        evenly-stained touching cells midway between their nuclei (with 0, the split through a
        flat region follows the noise).
    max_distance_um
        Optional cap on how far a cell may extend from its nucleus (in pixels when the pixel size
        is unknown).

    Returns
    -------
    Detections
        One cell per nucleus: cell id ``k`` grows from nucleus id ``k`` and carries its score.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:60, :100]
    >>> r2 = np.minimum((yy - 30) ** 2 + (xx - 30) ** 2, (yy - 30) ** 2 + (xx - 70) ** 2)
    >>> nuc, cyto = 100.0 * (r2 < 36), 50.0 * (r2 < 225)
    >>> cells = detect_cells(nuc, cyto)
    >>> cells.to_frame()["area"].tolist() == [float((cells.labels == k).sum()) for k in (1, 2)]
    True
    >>> bool(cells.to_frame()["area"].min() > 600)
    True
    """
    cell = as_float_image(cell_image, "cell image")
    pixel_size_um = valid_pixel_size(pixel_size_um)
    if nuclei is None:
        nuclei = detect_nuclei(nuclei_image, pixel_size_um, **nuclei_kwargs)  # type: ignore[arg-type]
    elif nuclei.labels is None:
        raise InputError("detect_cells needs nuclei with a label mask")
    if nuclei.labels.shape != cell.shape:
        raise InputError(f"nuclei image {nuclei.labels.shape} and cell image {cell.shape} "
                         f"differ in shape")
    if stain not in ("cytoplasm", "membrane"):
        raise InputError(f"stain must be 'cytoplasm' or 'membrane', got {stain!r}")
    seeds = nuclei.labels
    if len(nuclei) == 0:
        return Detections.empty(cell.shape)

    with stage("background/threshold"):  # hcs.timing (off by default)
        sigma_px = px(smooth_sigma_um, pixel_size_um, 1.0)
        smoothed = ndi.gaussian_filter(cell, sigma_px) if sigma_px > 0 else cell
        if float(cell.max()) == float(cell.min()):
            fg = np.zeros(cell.shape, bool)
        else:
            integer = isinstance(cell_image, np.ndarray) and cell_image.dtype.kind in "iub"
            raw = cell_image if integer else cell  # integer counts: a faster, same sigma
            noise = noise_sigma(raw) / max(1.0, 2.0 * math.sqrt(math.pi) * sigma_px)
            fg, _ = foreground(smoothed, noise, threshold, min_contrast, 51)
            if stain == "membrane":
                # membranes outline cells; the interiors are the holes the outlines enclose
                fg = fill_holes(fg)
        fg |= seeds > 0
        if max_distance_um is not None:
            reach = px(max_distance_um, pixel_size_um, max_distance_um)
            fg &= ndi.distance_transform_edt(seeds == 0) <= reach
        # the landscape is normalised to about [0, 1] so that `compactness` (a cost per pixel of
        # distance from the nucleus) means the same for every camera and stain
        lo, hi = np.percentile(smoothed, [1.0, 99.9])
        norm = (smoothed - lo) / (hi - lo) if hi > lo else np.zeros_like(smoothed)
        landscape = filters.sobel(norm) if stain == "cytoplasm" else norm
    with stage("seeds/watershed"):
        cells = segmentation.watershed(landscape, seeds, mask=fg, compactness=compactness)
    scores = dict(zip(nuclei.ids.tolist(), nuclei.scores.tolist(), strict=True))
    return Detections.from_labels(cells.astype(np.int32), scores)
