"""Feature Pyramid Network top-down path (Lin et al. 2017, "Feature Pyramid Networks for
Object Detection").

Key idea: a deep map knows *what* is there but not precisely *where*; FPN adds it, upsampled,
to each shallower map after a 1x1 "lateral" conv, then smooths every sum with a 3x3 conv, so
every level gets strong semantics at its own resolution:
``P_i = out_i(lat_i(C_i) + up(P'_{i+1}))``, with ``P'`` the pre-smoothing sums.

Layers, init (Kaiming uniform a=1, zero bias) and the optional P6 (P5 max-pooled with kernel
1 stride 2, torchvision's ``LastLevelMaxPool``) are torchvision's ``FeaturePyramidNetwork``,
so its weights map one to one (``faster_rcnn.from_torchvision_state_dict``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError

__all__ = ["FPN"]


class FPN(nn.Module):
    """FPN over maps of ``in_channels`` (shallow to deep), all to ``out_ch`` channels.

    ``extra_pool`` appends P6 = P5 subsampled by 2 (for RPN anchors larger than P5's).
    [(B, c_i, H_i, W_i)] -> [(B, out_ch, H_i, W_i)] (+ (B, out_ch, ceil(H_5/2), ceil(W_5/2))).
    """

    def __init__(self, in_channels: Sequence[int], out_ch: int = 256, extra_pool: bool = True):
        super().__init__()
        if not in_channels or out_ch < 1:
            raise ConfigError(f"FPN needs >= 1 input level and out_ch >= 1, got "
                              f"in_channels={tuple(in_channels)}, out_ch={out_ch}")  # fmt: skip
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_ch, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_ch, out_ch, 3, padding=1) for _ in in_channels)
        self.extra_pool = extra_pool
        self.out_channels = out_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.lateral):
            raise ConfigError(f"FPN built for {len(self.lateral)} levels got {len(feats)} maps")
        top = self.lateral[-1](feats[-1])  # (B, out_ch, H_L, W_L)
        outs = [self.output[-1](top)]
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            top = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](top))
        if self.extra_pool:
            outs.append(F.max_pool2d(outs[-1], 1, 2, 0))
        return outs
