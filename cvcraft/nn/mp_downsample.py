"""YOLOv7's MP downsampling: a max-pool branch and a strided-conv branch, concatenated.

Why: a 2x2 max-pool keeps the strongest local responses, a 3x3 stride-2 conv learns its own
summary; giving the next stage both halves costs less than one wide strided conv.

    out = cat[cv3(cv2(x)), cv1(maxpool_2x2(x))]     (strided branch first, as YOLOv7)

cv1, cv2 are 1x1 to ``c`` channels, cv3 is 3x3 stride 2.
(B, in_ch, H, W) -> (B, 2c, H/2, W/2) (``c = out_ch // 2``); H, W must be even.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

__all__ = ["MPDownsample"]


class MPDownsample(nn.Module):
    """Max-pool + strided-conv downsampling block (formula in the module docstring)."""

    def __init__(self, in_ch: int, out_ch: int, act: str = "silu") -> None:
        super().__init__()
        if out_ch % 2:
            raise ConfigError(f"MPDownsample out_ch must be even (two halves), got {out_ch}")
        c = out_ch // 2
        self.cv1 = ConvBNAct(in_ch, c, 1, act=act)
        self.cv2 = ConvBNAct(in_ch, c, 1, act=act)
        self.cv3 = ConvBNAct(c, c, 3, 2, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ConfigError(f"MPDownsample needs even H, W, got {tuple(x.shape[-2:])}")
        pooled = self.cv1(F.max_pool2d(x, 2, 2))  # (B, c, H/2, W/2)
        return torch.cat([self.cv3(self.cv2(x)), pooled], 1)  # (B, 2c, H/2, W/2)
