"""SPPCSPC: spatial pyramid pooling inside a cross-stage-partial block (YOLOv7's neck entry).

Why: SPP widens the receptive field with parallel stride-1 max-pools (5, 9, 13); the CSP split
runs that costly path on one half of the channels and a single 1x1 conv on the other, then
fuses both, so gradients get a short path and the pooling costs half.

    x1 = cv4(cv3(cv1(x)));  y1 = cv6(cv5(cat[x1, pool_5(x1), pool_9(x1), pool_13(x1)]))
    y2 = cv2(x);            out = cv7(cat[y1, y2])

Hidden width ``c = int(2 * out_ch * e)``. (B, in_ch, H, W) -> (B, out_ch, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

__all__ = ["SPPCSPC"]


class SPPCSPC(nn.Module):
    """YOLOv7's SPP-CSP block (formula in the module docstring); every conv is conv-BN-act."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        e: float = 0.5,
        kernels: Sequence[int] = (5, 9, 13),
        act: str = "silu",
    ) -> None:
        super().__init__()
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ConfigError(f"SPPCSPC kernels must be odd and positive, got {tuple(kernels)}")
        c = int(2 * out_ch * e)
        self.kernels = tuple(kernels)
        self.cv1 = ConvBNAct(in_ch, c, 1, act=act)
        self.cv2 = ConvBNAct(in_ch, c, 1, act=act)
        self.cv3 = ConvBNAct(c, c, 3, act=act)
        self.cv4 = ConvBNAct(c, c, 1, act=act)
        self.cv5 = ConvBNAct(c * (len(self.kernels) + 1), c, 1, act=act)
        self.cv6 = ConvBNAct(c, c, 3, act=act)
        self.cv7 = ConvBNAct(2 * c, out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))  # (B, c, H, W)
        pooled = [F.max_pool2d(x1, k, stride=1, padding=k // 2) for k in self.kernels]
        y1 = self.cv6(self.cv5(torch.cat([x1, *pooled], 1)))  # (B, c, H, W)
        return self.cv7(torch.cat([y1, self.cv2(x)], 1))  # (B, 2c, H, W) -> (B, out_ch, H, W)
