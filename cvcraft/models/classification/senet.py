"""SE-ResNet / SE-ResNeXt (Hu et al. 2018, "Squeeze-and-Excitation Networks").

Key idea: after a residual branch's last BN, re-weight its channels by gates computed from
the branch itself -- squeeze (global average) -> excite (C -> C/16 -> C MLP, sigmoid) --
before adding the shortcut: ``relu(x + se(bn3(conv3(...))))``. It costs ~10% parameters
and almost no compute, and lets each block model channel interdependencies.

Built from the zoo's :class:`~cvcraft.models.classification.resnet.ResNet` with an SE
bottleneck; module names equal timm's ``seresnet50`` (``layer1.0.se.fc1.weight``, ...), so
its state_dict loads with ``strict=True`` and gives the same outputs.
Shapes: as ResNet-50 (224 input -> layer4 (B, 2048, 7, 7) -> (B, num_classes)).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.models.classification.resnet import ResNet
from cvcraft.models.registry import register_model
from cvcraft.nn.attention import SqueezeExcite
from cvcraft.nn.residual import Bottleneck

__all__ = ["SEBottleneck", "seresnet50", "seresnext50_32x4d"]

SE_RATIO = 1 / 16  # the paper's reduction r = 16


class SEBottleneck(Bottleneck):
    """ResNet bottleneck with squeeze-and-excitation on the residual branch, before the sum.

    (B, in_ch, H, W) -> (B, 4*width, H/stride, W/stride); SE bottleneck 4*width/16 wide.
    """

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample=None, groups=1,
                 base_width=64) -> None:  # fmt: skip
        super().__init__(in_ch, width, stride, downsample, groups, base_width)
        c = width * self.expansion
        self.se = SqueezeExcite(c, rd_channels=max(1, round(c * SE_RATIO)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)  # (B, 4w, H', W')
        out = self.relu(self.bn1(self.conv1(x)))  # (B, inner, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, inner, H', W')
        out = self.se(self.bn3(self.conv3(out)))  # (B, 4w, H', W'), channels re-weighted
        return self.relu(out + shortcut)


def _init_se(model: nn.Module) -> nn.Module:
    """Zero the SE biases (ResNet's kaiming pass leaves convs' biases untouched)."""
    for m in model.modules():
        if isinstance(m, SqueezeExcite):
            nn.init.zeros_(m.fc1.bias)
            nn.init.zeros_(m.fc2.bias)
    return model


# The paper: SGD lr 0.6 at batch 1024 (0.15 per 256), weight decay 1e-4.
_CFG = {"optimizer": "sgd", "lr": 0.15, "weight_decay": 1e-4}


@register_model(default_cfg=_CFG)
def seresnet50(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """SE-ResNet-50 (timm's layout): ResNet-50 with SE in every bottleneck; 28.1M params."""
    return _init_se(ResNet(SEBottleneck, (3, 4, 6, 3), num_classes, in_chans, **kw))


@register_model(default_cfg=_CFG)
def seresnext50_32x4d(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """SE-ResNeXt-50 32x4d (timm's layout): grouped 3x3 convs plus SE; 27.6M params."""
    model = ResNet(SEBottleneck, (3, 4, 6, 3), num_classes, in_chans, groups=32, base_width=4, **kw)
    return _init_se(model)
