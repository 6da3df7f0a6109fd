"""``hcs_smallcnn``: a small plain CNN for a few hundred labelled cells, registered with timm.

Four blocks (3x3 convolution, batch norm, ReLU, 2x2 max pool) of 16, 32, 64 and 64 channels, a
global average pool, dropout and a linear head: about 60 k parameters, trained from scratch in
seconds on a CPU, where a ResNet takes tens of minutes for no better figure on 50-300 labels
(docs/classification.md, "Training on your own labelled cells").

It follows timm's conventions, so :func:`hcs.classify.models.create_classifier`, the model
folder, ``hcs run`` and ``hcs explain`` treat it as any timm model: ``timm.create_model(
"hcs_smallcnn", num_classes=, in_chans=, drop_rate=)``, ``forward_features`` (the last feature
map, ``N x 64 x H/16 x W/16``, for Grad-CAM), ``forward_head(x, pre_logits=)``,
``get_classifier`` / ``reset_classifier`` and ``pretrained_cfg["classifier"] == "fc"`` (the head
``--from`` replaces when the classes differ). Importing this module registers the model;
:mod:`hcs.classify.models` does so before any model is created or loaded (on Dask workers too).

Examples
--------
>>> import timm
>>> import hcs.classify.smallcnn  # noqa: F401
>>> m = timm.create_model("hcs_smallcnn", num_classes=2, in_chans=1)
>>> m.num_classes, m.pretrained_cfg["classifier"], m.num_features
(2, 'fc', 64)
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from hcs.errors import InputError

__all__ = ["SmallCNN", "hcs_smallcnn"]


class SmallCNN(nn.Module):
    """Plain convolution blocks, global average pool, dropout, linear head.

    Parameters
    ----------
    num_classes
        Outputs of the head (0: no head, ``forward`` returns the pooled features).
    in_chans
        Input channels.
    widths
        Output channels of each block (each halves the spatial size).
    drop_rate
        Dropout before the head.
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 1,
                 widths: tuple[int, ...] = (16, 32, 64, 64), drop_rate: float = 0.25,
                 **kwargs: Any) -> None:
        super().__init__()
        kwargs.pop("global_pool", None)  # timm's option; the pool is always the average
        if kwargs:
            raise TypeError(f"hcs_smallcnn: unexpected argument(s) {sorted(kwargs)}")
        layers: list[nn.Module] = []
        prev = in_chans
        for w in widths:
            layers += [nn.Conv2d(prev, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = w
        self.features = nn.Sequential(*layers)
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.num_features = self.head_hidden_size = prev
        self.drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(prev, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        """The head (timm's convention)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head of ``num_classes`` outputs (timm's convention)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (``N x C x h x w``)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and (unless ``pre_logits``) the linear head."""
        x = self.drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs({
    "hcs_smallcnn.untrained": {"num_classes": 2, "input_size": (1, 64, 64), "pool_size": (4, 4),
                               "mean": (0.0,), "std": (1.0,), "first_conv": "features.0",
                               "classifier": "fc", "license": "same as hcs"},
})


@register_model
def hcs_smallcnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """``hcs_smallcnn``: 4 blocks of 16-32-64-64 channels (:class:`SmallCNN`); no pretrained
    weights exist (start from a model folder with ``--from`` instead)."""
    if pretrained and not kwargs.get("pretrained_cfg_overlay", {}).get("file"):
        raise InputError("hcs_smallcnn has no pretrained weights; train it from scratch or "
                         "start from a model folder (--from)")
    return build_model_with_cfg(SmallCNN, "hcs_smallcnn", pretrained, **kwargs)
