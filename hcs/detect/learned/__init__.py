"""Learned cell detectors (torchvision Faster R-CNN, FCOS, RetinaNet) with model cards.

>>> from hcs.detect.learned import build_detector, save_detector, load_detector
>>> is_detector_folder("models/livedead-ldc")  # a classifier folder
False

``load_detector(folder)`` checks the weights' sha256 against ``model.yaml`` and returns a
:class:`LearnedDetector`; ``det.detect(image)`` returns :class:`hcs.detect.Detections`, tiling
fields larger than ``det.card.tile.size`` and merging the tiles with NMS
(:mod:`hcs.detect.learned.tiles`). Architectures and the widened first convolution are in
:mod:`hcs.detect.learned.arch`; the folder format in :mod:`hcs.detect.learned.card`.
"""

from hcs.detect.learned.arch import ARCHITECTURES, build_detector, widen_first_conv
from hcs.detect.learned.card import DetectorCard, TileCard, is_detector_folder
from hcs.detect.learned.infer import LearnedDetector, check_image, load_detector, save_detector

__all__ = [
    "ARCHITECTURES",
    "DetectorCard",
    "LearnedDetector",
    "TileCard",
    "build_detector",
    "check_image",
    "is_detector_folder",
    "load_detector",
    "save_detector",
    "widen_first_conv",
]
