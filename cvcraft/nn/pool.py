"""Pooling: global and adaptive pooling, spatial pyramid pooling (SPP, SPPF, SimSPPF) and
atrous spatial pyramid pooling (ASPP).

- ``SpatialPyramidPool`` (He et al. 2015, SPP-net): max-pool the map into fixed 1x1, 2x2,
  4x4... grids and concatenate, giving a fixed-length vector from any input size.
- ``SPP`` (the YOLOv3-SPP/YOLOv4 neck form of the same idea): stride-1 max-pools with
  kernels 5, 9, 13 concatenated with the input, between two 1x1 convs; keeps H, W.
- ``SPPF`` (YOLOv5): the same output with three *sequential* 5x5 pools, since
  ``maxpool5∘maxpool5 = maxpool9`` and ``maxpool5³ = maxpool13`` at stride 1 — cheaper.
- ``ASPP`` (Chen et al. 2017, DeepLabV3): parallel 1x1, dilated 3x3 (rates 6/12/18) and
  image-pooling branches, concatenated and projected; multi-scale context at one resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

POOL_MODES = ("avg", "max", "avgmax", "catavgmax")


def _pool(x: torch.Tensor, output_size: int | tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "avg":
        return F.adaptive_avg_pool2d(x, output_size)
    if mode == "max":
        return F.adaptive_max_pool2d(x, output_size)
    avg, mx = F.adaptive_avg_pool2d(x, output_size), F.adaptive_max_pool2d(x, output_size)
    return 0.5 * (avg + mx) if mode == "avgmax" else torch.cat([avg, mx], dim=1)


class AdaptivePool2d(nn.Module):
    """Pool (B, C, H, W) to a fixed (B, C', h, w) whatever H, W: bin i spans
    ``[floor(i·H/h), ceil((i+1)·H/h))``. ``mode``: avg, max, avgmax (their mean) or
    catavgmax (both concatenated, C' = 2C). ``flatten`` gives (B, C'·h·w)."""

    def __init__(
        self, output_size: int | tuple[int, int] = 1, mode: str = "avg", flatten: bool = False
    ) -> None:
        super().__init__()
        if mode not in POOL_MODES:
            raise ConfigError(f"pool mode must be one of {POOL_MODES}, got {mode!r}")
        self.output_size, self.mode, self.flatten = output_size, mode, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _pool(x, self.output_size, self.mode)
        return y.flatten(1) if self.flatten else y


class GlobalPool2d(AdaptivePool2d):
    """Global pooling over H, W: (B, C, H, W) -> (B, C) (``flatten=True``) or (B, C, 1, 1).

    The classifier head of every modern CNN (Lin et al. 2014, Network in Network).
    """

    def __init__(self, mode: str = "avg", flatten: bool = True) -> None:
        super().__init__(1, mode, flatten)


class SpatialPyramidPool(nn.Module):
    """SPP-net layer: max-pool into each ``levels`` grid (n x n bins), flatten, concatenate.

    (B, C, H, W) -> (B, C·Σn²) for any H, W >= max(levels); (1, 2, 4) gives 21·C features.
    """

    def __init__(self, levels: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.levels = tuple(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in self.levels], dim=1)


class SPP(nn.Module):
    """YOLO's SPP block: ``cv2(cat[y, maxpool_k1(y), maxpool_k2(y), ...])``, ``y = cv1(x)``.

    Pools are stride 1 with padding k//2 so all branches keep H, W. cv1 halves the
    channels first (``hidden = in_ch // 2``) to keep the concat cheap.

    (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernels: Sequence[int] = (5, 9, 13),
        act: str | None = "silu",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        hidden = in_ch // 2
        self.kernels = tuple(kernels)
        self.cv1 = ConvBNAct(in_ch, hidden, 1, act=act, norm=norm)
        self.cv2 = ConvBNAct(hidden * (len(self.kernels) + 1), out_ch, 1, act=act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)  # (B, hidden, H, W)
        pooled = [F.max_pool2d(y, k, stride=1, padding=k // 2) for k in self.kernels]
        return self.cv2(torch.cat([y, *pooled], dim=1))  # (B, hidden·(n+1), H, W) -> out


class SPPF(nn.Module):
    """SPP-Fast (YOLOv5): ``k``-pool applied 3 times in sequence; with k=5 it equals
    ``SPP(kernels=(5, 9, 13))`` (same ``cv1``/``cv2`` names and shapes) at lower cost.

    (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int = 5,
        act: str | None = "silu",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        hidden = in_ch // 2
        self.cv1 = ConvBNAct(in_ch, hidden, 1, act=act, norm=norm)
        self.cv2 = ConvBNAct(hidden * 4, out_ch, 1, act=act, norm=norm)
        self.pool = nn.MaxPool2d(k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.cv1(x)
        y1 = self.pool(y0)  # receptive field k
        y2 = self.pool(y1)  # 2k - 1
        y3 = self.pool(y2)  # 3k - 2
        return self.cv2(torch.cat([y0, y1, y2, y3], dim=1))


class SimSPPF(SPPF):
    """SPPF with ReLU instead of SiLU (YOLOv6's "simplified" SPPF, faster on deploy targets)."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 5, norm: str | None = "batchnorm"):
        super().__init__(in_ch, out_ch, k, act="relu", norm=norm)


class _ImagePool(nn.Sequential):
    """ASPP's image-level branch: global average -> 1x1 ConvBNAct -> broadcast back to H, W."""

    def __init__(self, in_ch: int, out_ch: int, act: str | None, norm: str | None) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), ConvBNAct(in_ch, out_ch, 1, act=act, norm=norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (B, out, 1, 1)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (DeepLabV3).

    Branches on the same input: 1x1 conv; one 3x3 conv per dilation ``rate``; global
    average pool -> 1x1 conv -> upsample. Their concat (``(2 + len(rates))·out_ch``
    channels) is projected by a 1x1 conv and dropout. Rates (6, 12, 18) suit output
    stride 16; double them at output stride 8. Module layout (``convs`` list with the
    pooling branch last, then ``project``) follows torchvision's ASPP in order, so its
    weights map one to one.

    (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.5,
        act: str | None = "relu",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvBNAct(in_ch, out_ch, 1, act=act, norm=norm)]
        branches += [ConvBNAct(in_ch, out_ch, 3, d=r, act=act, norm=norm) for r in rates]
        branches.append(_ImagePool(in_ch, out_ch, act, norm))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            ConvBNAct(len(branches) * out_ch, out_ch, 1, act=act, norm=norm), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))
