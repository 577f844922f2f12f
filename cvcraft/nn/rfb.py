"""Receptive Field Block (Liu et al. 2018, "Receptive Field Block Net for Accurate and Fast
Object Detection"): multi-branch convs whose dilation grows with kernel size.

Modelled on the eccentricity of human receptive fields: branch i is a 1x1 bottleneck, a
``k_i x k_i`` conv (5x5 as two 3x3), then a 3x3 conv of dilation ``r_i``, with
(k, r) = (1, 1), (3, 3), (5, 5), so bigger kernels look wider still. The branches are
concatenated, fused by a linear 1x1 conv, and added to a 1x1 shortcut:
``y = act(scale * fuse(cat[b_1(x), b_2(x), b_3(x)]) + shortcut(x))`` (RFB-basic's form,
scale 0.1 as in the paper's code). Receptive fields of the branches: 3, 9, 15 pixels.
Shapes: (B, in_ch, H, W) -> (B, out_ch, H / stride, W / stride).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

__all__ = ["RFB", "RFB_BRANCHES"]

RFB_BRANCHES = ((1, 1), (3, 3), (5, 5))  # (kernel, dilation of the last 3x3) per branch


def _branch(in_ch: int, hidden: int, out_ch: int, k: int, r: int, stride: int) -> nn.Sequential:
    layers = [ConvBNAct(in_ch, hidden, 1)]
    for _ in range((k - 1) // 2):  # a k x k conv as (k-1)/2 stacked 3x3 (5x5 = two 3x3)
        layers.append(ConvBNAct(hidden, hidden, 3))
    layers.append(ConvBNAct(hidden, out_ch, 3, stride, d=r, act=None))
    return nn.Sequential(*layers)


class RFB(nn.Module):
    """RFB (module docstring). ``hidden`` (the bottleneck width) defaults to ``in_ch // 4``;
    each branch outputs ``out_ch // 4`` channels and the 1x1 ``fuse`` maps their concat back
    to ``out_ch``."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        scale: float = 0.1,
        hidden: int | None = None,
        act: str | None = "relu",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"RFB stride={stride} must be 1 or 2")
        if act not in ("relu", None, ""):
            raise ConfigError(f"RFB act={act!r}: use relu (the paper's) or none")
        hidden = max(1, in_ch // 4) if hidden is None else hidden
        branch_out = max(1, out_ch // 4)
        self.scale = scale
        self.branches = nn.ModuleList(
            _branch(in_ch, hidden, branch_out, k, r, stride) for k, r in RFB_BRANCHES
        )
        self.fuse = ConvBNAct(branch_out * len(RFB_BRANCHES), out_ch, 1, act=None)
        self.shortcut = ConvBNAct(in_ch, out_ch, 1, stride, act=None)
        self.act = nn.ReLU() if act == "relu" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([b(x) for b in self.branches], 1)  # (B, 3 out/4, H', W')
        return self.act(self.fuse(y) * self.scale + self.shortcut(x))
