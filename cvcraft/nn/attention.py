"""Channel and spatial attention for CNNs: Squeeze-and-Excitation and CBAM.

Both re-weight a feature map by gates in (0, 1) computed from the map itself, so the
network can emphasise informative channels (SE, CBAM) and locations (CBAM). Shapes are
preserved: (B, C, H, W) -> (B, C, H, W). (Transformer self-attention lives in
``nn.transformer``.)
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.activations import get_act


def _reduced(channels: int, rd_channels: int | None, rd_ratio: float) -> int:
    rd = max(1, round(channels * rd_ratio)) if rd_channels is None else rd_channels
    if rd < 1:
        raise ConfigError(f"attention: reduced channels must be >= 1, got {rd}")
    return rd


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018): ``x · gate(fc2(act(fc1(mean_hw(x)))))``.

    Squeeze: global average -> (B, C, 1, 1). Excite: a bottleneck MLP (1x1 convs, C -> rd
    -> C) and a gate (sigmoid; MobileNetV3 uses hardsigmoid). Submodule names (``fc1``,
    ``fc2``) match torchvision's ``SqueezeExcitation``, so its weights load directly.
    ``rd_channels`` defaults to ``round(C · rd_ratio)`` (SENet: ratio 1/16).
    """

    def __init__(
        self,
        channels: int,
        rd_channels: int | None = None,
        act: str | nn.Module | None = "relu",
        gate: str | nn.Module | None = "sigmoid",
        rd_ratio: float = 1 / 16,
    ) -> None:
        super().__init__()
        rd = _reduced(channels, rd_channels, rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.act = get_act(act)
        self.fc2 = nn.Conv2d(rd, channels, 1)
        self.gate = get_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        s = self.gate(self.fc2(self.act(self.fc1(s))))  # (B, C, 1, 1) in (0, 1)
        return x * s


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel then spatial gating.

    Channel: ``M_c = σ(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP
    (``fc1``/``fc2``, C -> C/r -> C); ``x' = x · M_c``.
    Spatial: ``M_s = σ(conv_k([mean_c(x'); max_c(x')]))`` (2 -> 1 channel, k x k, k=7);
    output ``x' · M_s``. M_c is (B, C, 1, 1), M_s is (B, 1, H, W).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernel: int = 7,
        act: str | nn.Module | None = "relu",
    ) -> None:
        super().__init__()
        rd = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.act = get_act(act)
        self.fc2 = nn.Conv2d(rd, channels, 1)
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def _mlp(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(s)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg, mx = x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)  # (B, C, 1, 1)
        x = x * torch.sigmoid(self._mlp(avg) + self._mlp(mx))
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (B,2,H,W)
        return x * torch.sigmoid(self.spatial(desc))


__all__ = ["CBAM", "SqueezeExcite"]
