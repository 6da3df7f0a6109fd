"""Detector architectures: a registry of torchvision detectors described by data, one factory.

Every architecture is a torchvision detector (Faster R-CNN, FCOS or RetinaNet) on a ResNet +
FPN backbone built *without* downloading anything. Differences from the torchvision defaults,
and why:

- **Any input channel count** (1, 3, 4, 6, ...): the first convolution takes ``in_chans``
  channels. Pretrained 3-channel weights are adapted by :func:`widen_first_conv` (the
  label-free cancer paper widens the first convolution to 4 and 6 channels for brightfield +
  Hoechst and brightfield + fluorescence).
- **No internal resize**: torchvision rescales every image to ``min_size``; here the image is
  fed at the resolution the caller chose (the model card's ``scale``), so a tile and the whole
  field see the same pixels and tiled inference can reproduce untiled inference.
- **Trainable BatchNorm** instead of frozen BatchNorm: the shipped models are trained from
  scratch (frozen statistics of a random initialisation would be meaningless).

Architectures (:data:`ARCHITECTURES`):

``fasterrcnn_resnet50_fpn``
    The detector of both papers: ResNet-50, FPN levels P2-P6, 256 FPN channels, 1024-d box head,
    torchvision's anchors (32-512 px).
``fasterrcnn_resnet18_fpn``
    Light CPU model: ResNet-18 stages 1-3 (strides 4, 8, 16; stage 4 holds 70 % of ResNet-18's
    weights but adds nothing for objects of 10-60 px), 128 FPN channels, 256-d box head, anchors
    16-128 px. About 5 M parameters (20 MB).
``fcos_resnet18_fpn``, ``retinanet_resnet18_fpn``
    The same light backbone with the anchor-free FCOS head or the RetinaNet head (the
    label-free cancer paper's detector ablation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcs.errors import InputError

__all__ = ["ARCHITECTURES", "ArchSpec", "build_detector", "widen_first_conv", "count_parameters"]


@dataclass(frozen=True)
class ArchSpec:
    """One detector architecture, as data."""

    head: str  # fasterrcnn | fcos | retinanet
    backbone: str  # torchvision resnet name
    returned_layers: tuple[int, ...]
    fpn_channels: int
    box_head_dim: int  # Faster R-CNN TwoMLPHead width
    anchor_sizes: tuple[int, ...]  # one per FPN level (incl. the max-pool level)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)


ARCHITECTURES: dict[str, ArchSpec] = {
    "fasterrcnn_resnet50_fpn": ArchSpec(
        "fasterrcnn", "resnet50", (1, 2, 3, 4), 256, 1024, (32, 64, 128, 256, 512)),
    "fasterrcnn_resnet18_fpn": ArchSpec(
        "fasterrcnn", "resnet18", (1, 2, 3), 128, 256, (16, 32, 64, 128)),
    "fcos_resnet18_fpn": ArchSpec(
        "fcos", "resnet18", (1, 2, 3), 128, 0, (16, 32, 64, 128), (1.0,)),
    "retinanet_resnet18_fpn": ArchSpec(
        "retinanet", "resnet18", (1, 2, 3), 128, 0, (16, 32, 64, 128)),
}


def widen_first_conv(weight: Any, in_chans: int) -> Any:
    """Adapt a pretrained first-convolution weight ``(out, 3, k, k)`` to ``in_chans`` inputs.

    The rule of timm's ``adapt_input_conv`` (and of the paper's widened first layer): one
    channel gets the sum over the RGB filters (a grey image then gives the response an RGB image
    with R = G = B would give); more channels repeat the RGB filters cyclically and scale them by
    ``3 / in_chans``, so the response to a constant image is unchanged.

    Examples
    --------
    >>> import torch
    >>> w = torch.arange(6.0).reshape(1, 3, 1, 2)
    >>> widen_first_conv(w, 1).flatten().tolist()
    [6.0, 9.0]
    >>> w6 = widen_first_conv(w, 6)
    >>> w6.shape, bool(torch.equal(w6[:, 3:], w6[:, :3])), float(w6.sum() / w.sum())
    (torch.Size([1, 6, 1, 2]), True, 1.0)
    """
    import torch

    if in_chans < 1:
        raise InputError(f"in_chans must be >= 1, got {in_chans}")
    if weight.ndim != 4:
        raise InputError(f"first-conv weight must be 4-D, got shape {tuple(weight.shape)}")
    c = weight.shape[1]
    if c == in_chans:
        return weight.clone()
    if c != 3:
        raise InputError(f"can only adapt a 3-channel first convolution, this one has {c}")
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / 3)
    return torch.cat([weight] * reps, dim=1)[:, :in_chans] * (3.0 / in_chans)


def _load_pretrained(path: str | Path) -> dict[str, Any]:
    """A torchvision / timm state dict from a local file (never downloaded)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"pretrained weight file {p} not found; hcs never downloads weights: put a "
            "torchvision/timm ResNet state dict (.pth or .safetensors) there"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(f"{p}: cannot read pretrained weights ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{p}: not a state dict")
    return state


def _resnet_body(name: str, in_chans: int, pretrained: str | Path | None) -> Any:
    from torch import nn
    from torchvision.models import resnet

    body = getattr(resnet, name)(weights=None, norm_layer=nn.BatchNorm2d)
    state = None
    if pretrained:
        state = _load_pretrained(pretrained)
        # accept a backbone state dict or a whole detector's ("backbone.body." prefix)
        pre = "backbone.body."
        if any(k.startswith(pre) for k in state):
            state = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
        if "conv1.weight" not in state:
            raise InputError(f"{pretrained}: no 'conv1.weight' tensor; not a ResNet state dict")
        state = dict(state)
        state["conv1.weight"] = widen_first_conv(state["conv1.weight"], in_chans)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if in_chans != 3:
        body.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if state is not None:
        missing, unexpected = body.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise InputError(
                f"{pretrained}: does not fit {name} (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]})"
            )
    return body


def _transform(mean: Sequence[float], std: Sequence[float]) -> Any:
    """torchvision's GeneralizedRCNNTransform without the resize (normalise + batch only)."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class NoResizeTransform(GeneralizedRCNNTransform):
        def resize(self, image, target=None):  # type: ignore[override]  # noqa: ANN001, ANN202
            return image, target

    return NoResizeTransform(1, 1, list(mean), list(std), size_divisible=32)


def build_detector(
    architecture: str = "fasterrcnn_resnet18_fpn",
    in_chans: int = 1,
    num_classes: int = 1,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    anchor_sizes: Sequence[int] | None = None,
    pretrained: str | Path | None = None,
    detections_per_image: int = 300,
) -> Any:
    """Build a torchvision detector from :data:`ARCHITECTURES` (eval mode, CPU, no download).

    Parameters
    ----------
    architecture
        A key of :data:`ARCHITECTURES`.
    in_chans
        Input channels (the first convolution is widened/narrowed to fit).
    num_classes
        Object classes, background excluded (1 = class-agnostic "cell").
    mean, std
        Per-channel normalisation of the 0-1 scaled input (default 0.5 / 0.25).
    anchor_sizes
        Anchor side per FPN level, overriding the architecture's default.
    pretrained
        Local ResNet state dict for the backbone (ImageNet weights); 3-channel first conv
        weights are adapted with :func:`widen_first_conv`.
    detections_per_image
        Cap per image (per tile when tiling).

    Examples
    --------
    >>> import torch
    >>> m = build_detector("fasterrcnn_resnet18_fpn", in_chans=4)
    >>> m.backbone.body.conv1.weight.shape
    torch.Size([64, 4, 7, 7])
    >>> out = m([torch.rand(4, 64, 64)])
    >>> sorted(out[0])
    ['boxes', 'labels', 'scores']
    """
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if architecture not in ARCHITECTURES:
        raise InputError(
            f"unknown detector architecture {architecture!r}; available: "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    spec = ARCHITECTURES[architecture]
    if not isinstance(in_chans, int) or in_chans < 1:
        raise InputError(f"in_chans must be a positive integer, got {in_chans!r}")
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    mean = list(mean) if mean is not None else [0.5] * in_chans
    std = list(std) if std is not None else [0.25] * in_chans
    if len(mean) != in_chans or len(std) != in_chans:
        raise InputError(f"mean/std need {in_chans} values (one per input channel)")
    sizes = tuple(anchor_sizes) if anchor_sizes else spec.anchor_sizes
    n_levels = len(spec.returned_layers) + 1
    if len(sizes) != n_levels:
        raise InputError(f"{architecture}: {n_levels} anchor sizes needed (one per FPN level), "
                         f"got {len(sizes)}")

    body = _resnet_body(spec.backbone, in_chans, pretrained)
    stage_channels = {1: 64, 2: 128, 3: 256, 4: 512}
    if spec.backbone not in ("resnet18", "resnet34"):
        stage_channels = {k: v * 4 for k, v in stage_channels.items()}
    return_layers = {f"layer{k}": str(i) for i, k in enumerate(spec.returned_layers)}
    backbone = BackboneWithFPN(
        body, return_layers, [stage_channels[k] for k in spec.returned_layers],
        spec.fpn_channels, extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(tuple((s,) for s in sizes), (spec.aspect_ratios,) * n_levels)
    common = dict(min_size=1, max_size=1, image_mean=mean, image_std=std,
                  detections_per_img=detections_per_image)
    if spec.head == "fasterrcnn":
        from torchvision.ops import MultiScaleRoIAlign

        pool = MultiScaleRoIAlign([str(i) for i in range(n_levels - 1)], 7, 2)
        model = FasterRCNN(
            backbone, num_classes=None, rpn_anchor_generator=anchors,
            box_roi_pool=pool,
            box_head=TwoMLPHead(spec.fpn_channels * 49, spec.box_head_dim),
            box_predictor=_predictor(spec.box_head_dim, num_classes + 1),
            min_size=1, max_size=1, image_mean=mean, image_std=std,
            box_detections_per_img=detections_per_image, box_score_thresh=0.01,
            # fewer training proposals / sampled RoIs than torchvision's 2000 / 512: cells are
            # a few to a few hundred per image, and RoIAlign's backward dominates CPU training
            rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
            box_batch_size_per_image=128,
            rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=500,
        )
    elif spec.head == "fcos":
        from torchvision.models.detection.fcos import FCOSHead

        # two tower convolutions instead of four: the towers run at stride 4 and dominate
        model = FCOS(backbone, num_classes + 1, anchor_generator=anchors, score_thresh=0.01,
                     head=FCOSHead(spec.fpn_channels, 1, num_classes + 1, num_convs=2),
                     **common)
    else:
        model = RetinaNet(backbone, num_classes + 1, anchor_generator=anchors,
                          score_thresh=0.01, **common)
    model.transform = _transform(mean, std)
    model.eval()
    return model


def _predictor(dim: int, n: int) -> Any:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    return FastRCNNPredictor(dim, n)


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters()))
