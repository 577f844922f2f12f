"""Focus (YOLOv5 v1-v5): space-to-depth then a conv, a cheap stride-2 stem.

``space_to_depth`` moves each 2x2 pixel neighbourhood into channels: (B, C, H, W) ->
(B, 4C, H/2, W/2), channel blocks in ultralytics' order ``[x[::2, ::2], x[1::2, ::2],
x[::2, 1::2], x[1::2, 1::2]]`` (offsets (dy, dx) = (0,0), (1,0), (0,1), (1,1), each a block of
C channels), so their Focus weights load directly. ``torch.pixel_unshuffle`` holds the same
values with channel ``c*4 + 2 dy + dx`` instead of ``(2 dx + dy) C + c``. YOLOv5 v6 replaced
Focus by an equivalent-capacity 6x6 stride-2 conv (``ConvBNAct(3, c, 6, 2, 2)``), which
exports better; both are stems of ``yolov5``.
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

__all__ = ["Focus", "space_to_depth"]


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2) in ultralytics' Focus channel order (module doc)."""
    if x.dim() != 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ConfigError(
            f"space_to_depth needs a (B, C, H, W) map with even H and W, got {tuple(x.shape)}"
        )
    return torch.cat(
        [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], dim=1
    )


class Focus(nn.Module):
    """``conv(space_to_depth(x))``: (B, in_ch, H, W) -> (B, out_ch, H/2, W/2); ``conv`` is a
    ``ConvBNAct(4 in_ch, out_ch, k)`` (YOLOv5: k=3, SiLU)."""

    def __init__(
        self, in_ch: int, out_ch: int, k: int = 3, act: str | None = "silu", norm: str = "batchnorm"
    ) -> None:
        super().__init__()
        self.conv = ConvBNAct(4 * in_ch, out_ch, k, act=act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(space_to_depth(x))
