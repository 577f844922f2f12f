"""U-Net++ (Zhou et al. 2018, "UNet++: A Nested U-Net Architecture for Medical Image
Segmentation").

Key idea: replace U-Net's long skips by dense nested ones. Node ``X[i][j]`` (level i, column
j) sees every earlier node of its level and the upsampled node below:

    X[i][0] = H(pool(X[i-1][0]))                      (the encoder)
    X[i][j] = H(cat[X[i][0], ..., X[i][j-1], up(X[i+1][j-1])]),  j >= 1

so the semantic gap between encoder and decoder maps narrows step by step. With deep
supervision a 1x1 head sits on every top node ``X[0][1..L]``; then the network can be
*pruned* at inference: ``prune_level=l`` computes only the nodes with ``i + j <= l`` and
answers with ``X[0][l]``'s head — a smaller, faster U-Net taken from the trained one.
``ensemble=True`` averages the heads instead (the paper's "accurate mode").

``H`` is U-Net's two conv-BN-ReLU; ``up`` is the paper's 2x2 transposed conv to the
target level's width (``bilinear=True``: interpolation, the lower node keeps its width).
Node widths equal their level's encoder width (paper: 32, 64, 128, 256, 512). ``encoder="resnet34"``
uses a zoo ResNet's five maps (strides 2..32) as ``X[i][0]`` and resizes the logits to the
input. Training with deep supervision returns ``(X[0][L] logits, [X[0][1..L-1] logits])``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import resnet_backbone, resnet_channels, resnet_features
from cvcraft.models.segmentation.heads import (
    check_min_size,
    inplace_relu_,
    resize,
    seg_outputs,
)
from cvcraft.models.segmentation.unet import DoubleConv, match_size
from cvcraft.nn.conv import transposed_conv


class UNetPlusPlus(nn.Module):
    """U-Net++ with nested dense skips, optional deep supervision and pruned inference.

    Args:
        base: width of level 0 (paper 32); level i has ``base·2^i``. depth: levels below 0.
        deep_supervision: a head on every top node; training returns their logits as aux.
        prune_level: at inference use only the sub-network of that depth (1..depth);
            needs ``deep_supervision``. Can be changed on the built model.
        ensemble: at inference average all heads (deep supervision only).
        bilinear: interpolate instead of the transposed-conv upsampling.
        encoder: ``None`` (paper) or a zoo ResNet name.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 3,
        base: int = 32,
        depth: int = 4,
        deep_supervision: bool = False,
        prune_level: int | None = None,
        ensemble: bool = False,
        bilinear: bool = False,
        norm: str | None = "batchnorm",
        encoder: str | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 256, 256)
        if encoder is None:
            if depth < 1 or base < 2:
                raise ConfigError(
                    f"UNetPlusPlus needs depth >= 1 and base >= 2, got {depth}, {base}"
                )
            widths = [base * 2**i for i in range(depth + 1)]
            self.backbone = None
            self.enc = nn.ModuleList(
                DoubleConv(a, b, norm) for a, b in zip([in_chans, *widths], widths)
            )
        else:
            self.backbone = resnet_backbone(encoder, in_chans)
            widths = resnet_channels(self.backbone)
            depth = len(widths) - 1
        self.depth, self.deep_supervision, self.ensemble = depth, deep_supervision, ensemble
        if (prune_level is not None or ensemble) and not deep_supervision:
            raise ConfigError("UNetPlusPlus prune_level / ensemble need deep_supervision=True")
        self.prune_level = prune_level
        self._check_prune()
        keys = [(i, j) for j in range(1, depth + 1) for i in range(depth - j + 1)]
        self.up_mode = "bilinear" if bilinear else "transposed"
        up_ch = widths[1:] if bilinear else widths[:-1]  # channels of up(X[i+1][j-1]) at level i
        self.ups = nn.ModuleDict(
            {}
            if bilinear
            else {f"x{i}_{j}": transposed_conv(widths[i + 1], widths[i], 2, k=2) for i, j in keys}
        )
        self.nodes = nn.ModuleDict(
            {f"x{i}_{j}": DoubleConv(widths[i] * j + up_ch[i], widths[i], norm) for i, j in keys}
        )
        self.heads = nn.ModuleList(
            nn.Conv2d(widths[0], num_classes, 1) for _ in range(depth if deep_supervision else 1)
        )
        inplace_relu_(self)

    def _check_prune(self) -> None:
        if self.prune_level is not None and not 1 <= self.prune_level <= self.depth:
            raise ConfigError(
                f"UNetPlusPlus prune_level must be in 1..{self.depth}, got {self.prune_level}"
            )

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        self._check_prune()
        level = self.depth if self.training or self.prune_level is None else self.prune_level
        if self.backbone is not None:
            enc = resnet_features(self.backbone, x, stages=level)  # strides 2, 4, ..
        else:
            check_min_size(x, 2**level, "unet_pp")
            enc = [self.enc[0](x)]  # (B, base, H, W)
            for down in self.enc[1 : level + 1]:
                enc.append(down(F.max_pool2d(enc[-1], 2)))  # (B, base·2^i, H/2^i, W/2^i)
        grid = [[e] for e in enc]  # grid[i][j] = X[i][j]
        for j in range(1, level + 1):
            for i in range(level - j + 1):
                key, below = f"x{i}_{j}", grid[i + 1][j - 1]
                if key in self.ups:
                    below = self.ups[key](below)  # (B, w_i, 2h, 2w)
                below = match_size(below, grid[i][0].shape[-2:], self.up_mode)
                grid[i].append(self.nodes[key](torch.cat([*grid[i], below], dim=1)))
        if not self.deep_supervision:
            return seg_outputs(self.training, self.heads[0](grid[0][level]), [], x.shape[-2:])
        outs = [head(node) for head, node in zip(self.heads, grid[0][1:])]  # X[0][1..level]
        if not self.training and self.ensemble:
            return resize(torch.stack(outs).mean(0), x.shape[-2:])
        return seg_outputs(self.training, outs[-1], outs[:-1], x.shape[-2:])


@register_model("unet_pp")
def unet_pp(num_classes: int = 2, in_chans: int = 3, **kw) -> UNetPlusPlus:
    """U-Net++ (paper widths 32..512); ``deep_supervision``, ``prune_level``, ``encoder`` kwargs."""
    return UNetPlusPlus(num_classes, in_chans, **kw)


@register_model("unetplusplus")
def unetplusplus(num_classes: int = 2, in_chans: int = 3, **kw) -> UNetPlusPlus:
    """Alias of ``unet_pp``."""
    return UNetPlusPlus(num_classes, in_chans, **kw)


@register_model()
def unet_pp_resnet34(num_classes: int = 2, in_chans: int = 3, **kw) -> UNetPlusPlus:
    """U-Net++ on a ResNet-34 encoder (nodes as wide as their level's encoder map)."""
    return UNetPlusPlus(num_classes, in_chans, encoder="resnet34", **kw)
