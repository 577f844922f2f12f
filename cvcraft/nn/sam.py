"""Spatial attention module: CBAM's original SAM and YOLOv4's point-wise "modified SAM".

- original (Woo et al. 2018, CBAM): ``x * sigmoid(conv_k([mean_c(x); max_c(x)]))``, one
  (B, 1, H, W) gate shared by all channels.
- modified (Bochkovskiy et al. 2020, YOLOv4 sec. 3.4): drop the channel pooling and gate every
  unit, ``x * sigmoid(BN(conv_k(x)))`` with a C -> C conv (k=1 in YOLOv4), a (B, C, H, W) gate:
  point-wise attention that costs one 1x1 conv.
Shapes: (B, C, H, W) -> (B, C, H, W).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

__all__ = ["SpatialAttention"]


class SpatialAttention(nn.Module):
    """SAM (module docstring). ``modified=True`` is YOLOv4's point-wise form; ``norm`` /
    ``norm_kw`` choose its conv's norm (the original has none)."""

    def __init__(
        self,
        channels: int,
        k: int | None = None,
        modified: bool = True,
        norm: str = "batchnorm",
        norm_kw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        k = (1 if modified else 7) if k is None else k
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"SpatialAttention kernel k={k} must be a positive odd number")
        if channels < 1:
            raise ConfigError(f"SpatialAttention channels={channels} must be >= 1")
        self.modified = modified
        if modified:
            self.gate = ConvBNAct(channels, channels, k, act="sigmoid", norm=norm, norm_kw=norm_kw)
        else:
            self.gate = ConvBNAct(2, 1, k, act="sigmoid", norm=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modified:
            return x * self.gate(x)  # (B, C, H, W) gate
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)  # (B, 2, H, W)
        return x * self.gate(desc)  # (B, 1, H, W) gate, broadcast over channels
