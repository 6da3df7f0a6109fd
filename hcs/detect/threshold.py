"""Classical (no training) nucleus and cell detection with scikit-image.

:func:`detect_nuclei`: Gaussian smoothing, subtraction of a smooth background surface
(vignetting), an automatic (global or local) threshold held above the noise floor, hole filling,
a distance-transform watershed seeded by h-maxima to split touching nuclei, and size limits (in
micrometres when the pixel size is known). See docs/detection.md for the measured accuracy.

:func:`hcs.detect.cells.detect_cells` grows the cell extent from these nuclei over a cytoplasm
or membrane channel by a seeded watershed restricted to the thresholded cell foreground.

Scores: ``det_score = c / (c + min_contrast)`` with ``c`` the object's contrast-to-noise ratio
(mean smoothed intensity minus background, over the noise sigma): an object just at the detection
floor scores about 0.5, a bright one approaches 1.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology, segmentation

from hcs.detect._util import (
    as_float_image,
    fill_holes,
    foreground,
    px,
    valid_pixel_size,
)
from hcs.detect.background import background_surface, noise_sigma
from hcs.detect.detections import Detections
from hcs.errors import InputError
from hcs.timing import stage

__all__ = ["detect_nuclei", "noise_sigma", "background_surface"]

def _h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """Regional maxima of the h-maximum transform (Soille 2003, 6.3.4) as a boolean mask.

    Unlike :func:`skimage.morphology.h_maxima`, whose ``residue >= h`` test returns two
    separate pixels for two peaks of equal height joined by a shallow saddle, the regional
    maxima of the reconstruction are plateaus that join such peaks into one seed.
    """
    image = image.astype(np.float64, copy=False)
    rec = morphology.reconstruction(image - h, image, method="dilation")
    return morphology.local_maxima(rec, connectivity=2, allow_borders=True).astype(bool)


def _split_touching(
    mask: np.ndarray, prominence_px: float, smooth_px: float, min_area: float = 0.0
) -> np.ndarray:
    """Label ``mask``, splitting touching round objects by a distance-transform watershed.

    Seeds are the h-maxima (height ``prominence_px``) of the lightly smoothed Euclidean distance
    transform: two discs are split when the neck between them is narrower than their radius by
    more than ``prominence_px``. Every connected component keeps at least one seed. Components
    smaller than ``min_area`` are dropped first, and those smaller than twice it are not split
    (one of the halves would be dropped); this also keeps a speckled mask fast.
    """
    components, n = ndi.label(mask)
    areas = np.bincount(components.ravel(), minlength=n + 1)
    if min_area > 0:
        small = areas < min_area
        small[0] = True
        mask = ~small[components]
        components = np.where(mask, components, 0)
    boxes = ndi.find_objects(components)
    dist = _distance(mask, components, boxes)
    if smooth_px > 0:
        dist = ndi.gaussian_filter(dist, smooth_px) * mask
    # h-maxima (a grey reconstruction) is costly, so it runs per component box and only where
    # the distance map has more than one local maximum; otherwise the component is one seed.
    markers = np.zeros(mask.shape, np.int32)
    next_id = 1
    for k, sl in enumerate(boxes):
        if sl is None:
            continue
        comp = components[sl] == k + 1
        if areas[k + 1] < 2 * min_area:
            markers[sl][comp] = next_id
            next_id += 1
            continue
        d = np.where(comp, dist[sl], 0)
        peaks = comp & (d == ndi.maximum_filter(d, size=3))
        if np.count_nonzero(peaks) == 1:  # one peak pixel: what ndi.label would return
            lab, m = peaks.astype(np.int32), 1
        else:
            lab, m = ndi.label(peaks, structure=np.ones((3, 3)))
        if m > 1:
            if d.max() > prominence_px:
                lab, m = ndi.label(_h_maxima(d, prominence_px) & comp, structure=np.ones((3, 3)))
            else:
                m = 0  # too thin for two maxima of height h
        if m == 0:
            lab, m = comp.astype(np.int32), 1  # never drop an object for want of a seed
        view = markers[sl]
        view[lab > 0] = lab[lab > 0] + (next_id - 1)
        next_id += m
    return segmentation.watershed(-dist, markers, mask=mask)


_fill_holes = fill_holes  # the parameter of detect_nuclei shadows the name


def _distance(mask: np.ndarray, components: np.ndarray, boxes: list,
              margin: int = 6) -> np.ndarray:
    """``distance_transform_edt(mask).astype(np.float32)``, the same numbers bit for bit,
    computed on a window around each component's box instead of the whole field.

    A pixel's distance from the window's own background is exact when it is no larger than its
    distance to the window's edge (a nearer background pixel outside the window is then
    impossible; the field's own edges do not count). Every component's pixels are checked; one
    that fails in a window grown by ``margin`` and then ``4 * margin`` pixels takes its values
    from the whole-field transform, as before.
    """
    shape = mask.shape
    out = np.zeros(shape, np.float32)
    whole: np.ndarray | None = None
    for k, sl in enumerate(boxes):
        if sl is None:
            continue
        comp = components[sl] == k + 1
        values = None
        for extra in (margin, 4 * margin):
            outer = [(max(s.start - extra, 0), min(s.stop + extra, n))
                     for s, n in zip(sl, shape, strict=True)]
            window = mask[outer[0][0]:outer[0][1], outer[1][0]:outer[1][1]]
            if window.all():
                continue
            edt = ndi.distance_transform_edt(window)
            # distance from each box pixel to the nearest pixel outside the window
            gaps = []
            for s, (oa, ob), n in zip(sl, outer, shape, strict=True):
                pos = np.arange(s.start, s.stop)
                before = pos - oa + 1 if oa > 0 else np.full(pos.size, np.inf)
                after = ob - pos if ob < n else np.full(pos.size, np.inf)
                gaps.append(np.minimum(before, after))
            reach = np.minimum(gaps[0][:, None], gaps[1][None, :])[comp]
            inside = edt[tuple(slice(s.start - oa, s.stop - oa)
                               for s, (oa, _) in zip(sl, outer, strict=True))][comp]
            if (inside <= reach).all():
                values = inside
                break
        if values is None:
            if whole is None:
                whole = ndi.distance_transform_edt(mask)
            values = whole[sl][comp]
        out[sl][comp] = values
    return out


def detect_nuclei(
    image: np.ndarray,
    pixel_size_um: float | None = None,
    *,
    smooth_sigma_um: float = 0.6,
    threshold: str | float = "li",
    min_contrast: float = 3.0,
    min_diameter_um: float = 4.0,
    max_diameter_um: float = 35.0,
    min_area_px: float | None = None,
    max_area_px: float | None = None,
    split_touching: bool = True,
    split_prominence_um: float = 0.4,
    local_block_um: float = 80.0,
    background_block_um: float | None = 60.0,
    fill_holes: bool = True,
    exclude_border: bool = False,
) -> Detections:
    """Find nuclei in a fluorescence nuclear-stain image (Hoechst, DAPI).

    Parameters
    ----------
    image
        2-D intensity image (any integer or float type), nuclei bright on a dark background.
    pixel_size_um
        Pixel size in micrometres. When given, every ``*_um`` parameter is converted with it;
        when ``None`` (or NaN: unknown in the metadata) the pixel defaults apply (smoothing 1 px,
        background block 100 px, split prominence 0.7 px, local block 51 px, minimum area 16 px,
        no maximum area).
    smooth_sigma_um
        Gaussian smoothing sigma before thresholding.
    threshold
        ``"otsu"`` (default), ``"li"``, ``"triangle"``, ``"local"`` (Gaussian-weighted local mean
        over ``local_block_um``, for uneven illumination) or a number (an absolute intensity).
        Automatic thresholds are raised to at least ``background + min_contrast * sigma``, with
        sigma the larger of the white noise (:func:`noise_sigma`, after smoothing) and the
        spread of the sigma-clipped background.
    min_contrast
        Floor of the automatic threshold, in background sigmas (see ``threshold``).
    min_diameter_um, max_diameter_um
        Objects with an area outside the discs of these diameters are dropped (only when the
        pixel size is known; see ``min_area_px`` / ``max_area_px`` otherwise).
    min_area_px, max_area_px
        Explicit area limits in pixels; they override the micrometre limits.
    split_touching
        Split touching nuclei with a distance-transform watershed (h-maxima seeds).
    split_prominence_um
        How much deeper than the neck between them two nucleus centres must be to be split.
    local_block_um
        Block size of the ``"local"`` threshold.
    background_block_um
        Before thresholding, subtract a smooth background (:func:`background_surface`, the 10th
        percentile of blocks of this size; 100 px without a pixel size), so vignetting and uneven
        illumination do not pass the threshold. ``None`` disables it.
    fill_holes
        Fill holes in the foreground (dim nucleoli) before splitting.
    exclude_border
        Drop objects touching the image border.

    Returns
    -------
    Detections
        Boxes, scores and the label mask (ids ``1..N``). A blank, constant (all-zero, fully
        saturated) or noise-only field gives zero detections.

    Raises
    ------
    hcs.errors.InputError
        Not a 2-D numeric image, NaN/infinite pixels, or invalid parameters.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:80, :120]
    >>> img = 100.0 * (((yy - 40) ** 2 + (xx - 45) ** 2 < 12 ** 2)
    ...                | ((yy - 40) ** 2 + (xx - 66) ** 2 < 12 ** 2))
    >>> det = detect_nuclei(img)
    >>> len(det)
    2
    >>> det.to_frame()["x"].round(1).tolist()  # each half loses its share of the overlap
    [44.5, 66.5]
    """
    img = as_float_image(image, "nuclei image")
    pixel_size_um = valid_pixel_size(pixel_size_um)
    if min_contrast < 0:
        raise InputError(f"min_contrast must be >= 0, got {min_contrast}")
    if float(img.max()) == float(img.min()):
        return Detections.empty(img.shape)

    with stage("background/threshold"):  # hcs.timing (off by default)
        sigma_px = px(smooth_sigma_um, pixel_size_um, 1.0)
        smoothed = ndi.gaussian_filter(img, sigma_px) if sigma_px > 0 else img
        if background_block_um is not None:
            smoothed = smoothed - background_surface(
                smoothed, round(px(background_block_um, pixel_size_um, 100)))
        # the counts as read when integer: the same sigma as of the float copy, computed faster
        noise = noise_sigma(image if isinstance(image, np.ndarray) and image.dtype.kind in "iub"
                            else img)
        # smoothing divides white noise by 2*sqrt(pi)*sigma; the floor is on the smoothed image
        noise_smoothed = noise / max(1.0, 2.0 * math.sqrt(math.pi) * sigma_px)
        mask, background = foreground(
            smoothed, noise_smoothed, threshold, min_contrast,
            round(px(local_block_um, pixel_size_um, 51)), raw_noise=noise,
        )
        if fill_holes:
            mask = _fill_holes(mask)
    if not mask.any():
        return Detections.empty(img.shape)

    if min_area_px is None:
        min_area_px = (math.pi * (min_diameter_um / pixel_size_um / 2) ** 2
                       if pixel_size_um is not None else 16.0)
    if max_area_px is None and pixel_size_um is not None:
        max_area_px = math.pi * (max_diameter_um / pixel_size_um / 2) ** 2
    with stage("seeds/watershed"):
        if split_touching:
            labels = _split_touching(mask, px(split_prominence_um, pixel_size_um, 0.7),
                                     smooth_px=0.5, min_area=min_area_px)
        else:
            labels, _ = ndi.label(mask)
        labels = _filter_labels(labels, min_area_px, max_area_px, exclude_border)
        return _to_detections(labels, smoothed, background, noise_smoothed, min_contrast)


def _filter_labels(
    labels: np.ndarray, min_area: float | None, max_area: float | None, exclude_border: bool
) -> np.ndarray:
    """Drop objects outside the area limits (and on the border); relabel ``1..N`` in raster
    order."""
    areas = np.bincount(labels.ravel())
    keep = areas > 0
    keep[0] = False
    if min_area is not None:
        keep &= areas >= min_area
    if max_area is not None:
        keep &= areas <= max_area
    if exclude_border:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[edge] = False
    # relabel in raster order of first pixel so ids do not depend on watershed seed order: an
    # object's first pixel is on the first row of its box
    ids = np.flatnonzero(keep)
    first = np.zeros(ids.size, np.int64)
    if ids.size:
        boxes = ndi.find_objects(labels)
        width = labels.shape[1]
        for j, i in enumerate(ids):
            rows, cols = boxes[i - 1]
            row = labels[rows.start, cols]
            first[j] = rows.start * width + cols.start + int(np.argmax(row == i))
    lut = np.zeros(areas.size, np.int32)
    lut[ids[np.argsort(first, kind="stable")]] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def _to_detections(
    labels: np.ndarray, smoothed: np.ndarray, background: float, noise: float, min_contrast: float
) -> Detections:
    n = int(labels.max())
    if n == 0:
        return Detections.empty(labels.shape)
    # ndi.mean's numbers (per-label float64 sums in raster order), over the foreground only
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    lab = flat[nz]
    sums = np.bincount(lab, weights=smoothed.ravel()[nz], minlength=n + 1)[1:]
    mean = sums / np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    cnr = np.maximum(mean - background, 0.0) / max(noise, 1e-12)
    scores = cnr / (cnr + max(min_contrast, 1e-6))
    return Detections.from_labels(labels, scores)
