"""Cell and nucleus detection: one interface, one result type.

Every detector takes a 2-D image and returns a :class:`Detections`: boxes in level-0 pixel
coordinates, one score per box, and, where the method produces them, a label mask.

Box convention
--------------
Boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates, the pixel ``(row r, col c)``
covering ``[c, c+1) x [r, r+1)``. A box therefore has width ``x1 - x0`` and height ``y1 - y0``
(no ``+1``), and the box of a label mask region is exactly scikit-image's ``bbox`` with the axes
swapped: ``(min_col, min_row, max_col, max_row)``. Centroids are in the same frame as scikit-image
(the centre of pixel ``(r, c)`` is ``(x=c, y=r)``).

Methods
-------
``detect(image, method="threshold")`` dispatches to :func:`hcs.detect.threshold.detect_nuclei`
(the classical, nucleus-seeded detector, the default for fluorescence assays);
``detect(image, method="learned", model=FOLDER)`` runs a torchvision detector folder
(:mod:`hcs.detect.learned`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hcs.detect.detections import Detections
from hcs.errors import InputError

__all__ = ["Detections", "detect", "available_methods"]


def _threshold_detector() -> Callable[..., Detections]:
    from hcs.detect.threshold import detect_nuclei

    return detect_nuclei


def _learned_detector() -> Callable[..., Detections]:
    from hcs.detect.learned.infer import detect_with_folder

    return detect_with_folder


# method name -> loader returning the detector function (imported lazily: the learned
# detectors need torch, which the classical path must never import).
_METHODS: dict[str, Callable[[], Callable[..., Detections]]] = {
    "threshold": _threshold_detector,
    "learned": _learned_detector,
}


def available_methods() -> list[str]:
    """Names accepted by :func:`detect`."""
    return sorted(_METHODS)


def detect(image: np.ndarray, method: str = "threshold", **kwargs: Any) -> Detections:
    """Detect objects in one 2-D image with the named method.

    Parameters
    ----------
    image
        2-D array (one channel of one field, level 0).
    method
        ``"threshold"``: :func:`hcs.detect.threshold.detect_nuclei`; ``"learned"``: a
        torchvision detector folder, ``detect(image, "learned", model="models/ldc-detector")``
        (:func:`hcs.detect.learned.infer.detect_with_folder`).
    **kwargs
        Passed to the method (e.g. ``pixel_size_um``).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((64, 64), np.uint16)
    >>> img[20:30, 20:30] = 1000
    >>> len(detect(img))
    1
    """
    if method not in _METHODS:
        raise InputError(
            f"unknown detection method {method!r}; available: {', '.join(available_methods())}"
        )
    return _METHODS[method]()(image, **kwargs)
