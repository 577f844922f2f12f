"""Residual blocks (He et al. 2016): ``relu(F(x) + shortcut(x))``.

``BasicBlock`` (two 3x3) and ``Bottleneck`` (1x1 -> 3x3 -> 1x1, stride in the 3x3 as in
torchvision's "v1.5") with torchvision's attribute names (conv1/bn1/.../downsample), so any
network built from them can load torchvision ResNet weights. ``cvcraft.models`` builds every
ResNet/ResNeXt from these two classes.
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import conv1x1


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    (B, in_ch, H, W) -> (B, width, H/stride, W/stride); ``expansion = 1``.
    """

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ConfigError("BasicBlock supports only groups=1, base_width=64; use Bottleneck")
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)  # (B, width, H', W')
        out = self.relu(self.bn1(self.conv1(x)))  # (B, width, H', W')
        out = self.bn2(self.conv2(out))
        out += shortcut  # in place: at batch 32 a fresh sum tensor costs measurable bandwidth
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, "v1.5") -> 1x1 expand, plus shortcut.

    (B, in_ch, H, W) -> (B, 4*width, H/stride, W/stride). The inner width is
    ``width * base_width/64 * groups`` (ResNeXt / Wide ResNet generalisation).
    """

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        inner = int(width * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(in_ch, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride, groups)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)  # (B, 4w, H', W')
        out = self.relu(self.bn1(self.conv1(x)))  # (B, inner, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, inner, H', W')
        out = self.bn3(self.conv3(out))  # (B, 4w, H', W')
        out += shortcut  # in place (bn3's output is not needed by autograd)
        return self.relu(out)


__all__ = ["BasicBlock", "Bottleneck", "conv3x3"]
