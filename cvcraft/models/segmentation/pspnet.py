"""PSPNet (Zhao et al. 2017, "Pyramid Scene Parsing Network").

Key idea: the pyramid pooling module average-pools the dilated ResNet's last map into
1x1, 2x2, 3x3 and 6x6 bins, reduces each to ``C/4`` channels with a 1x1 conv, upsamples
them back and concatenates them with the map, so every pixel sees global and sub-region
context. An auxiliary FCN head on ``layer3`` (loss weight 0.4 in the paper) helps training.

Shapes (ResNet-50, os 8): (B, 3, H, W) -> layer4 (B, 2048, H/8, W/8) -> PPM
(B, 4096, H/8, W/8) -> 3x3 conv (B, 512, .) -> logits (B, K, H/8, W/8) -> bilinear (B, K, H, W).
Training with batch 1 fails in the 1x1 bin's BatchNorm (one value per channel): use batch >= 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import resnet_backbone
from cvcraft.models.segmentation.heads import (
    FCNHead,
    aux_logits,
    resize,
    seg_outputs,
)
from cvcraft.nn.conv import ConvBNAct


class PyramidPooling(nn.Module):
    """PPM: ``cat[x, up(conv1x1(avgpool_b(x))) for b in bins]``.

    (B, C, H, W) -> (B, C + len(bins)·C/len(bins), H, W) = (B, 2C, H, W) for the default.
    """

    def __init__(self, in_ch: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        if not bins or in_ch < len(bins):
            raise ConfigError(f"PyramidPooling needs bins and in_ch >= len(bins), got {bins}")
        self.bins = tuple(bins)
        branch_ch = in_ch // len(bins)
        self.stages = nn.ModuleList(ConvBNAct(in_ch, branch_ch, 1) for _ in bins)
        self.out_channels = in_ch + branch_ch * len(bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            resize(conv(F.adaptive_avg_pool2d(x, b)), size)  # (B, C/n, H, W)
            for b, conv in zip(self.bins, self.stages)
        ]
        return torch.cat([x, *pooled], dim=1)


class PSPNet(nn.Module):
    """Dilated ResNet + pyramid pooling + 3x3 conv head (+ FCN aux head on ``layer3``).

    Args:
        backbone: zoo ResNet name. output_stride: 8 (paper), 16 or 32.
        bins: pooling grid sizes. head_channels: width of the 3x3 conv after the PPM.
        aux: auxiliary head (training returns ``(main, [aux])``).
    """

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        backbone: str = "resnet50",
        output_stride: int = 8,
        bins: Sequence[int] = (1, 2, 3, 6),
        head_channels: int = 512,
        dropout: float = 0.1,
        aux: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 473, 473)
        self.backbone = resnet_backbone(backbone, in_chans, output_stride)
        ch = [f["num_chs"] for f in self.backbone.feature_info]
        self.ppm = PyramidPooling(ch[-1], bins)
        self.head = nn.Sequential(
            ConvBNAct(self.ppm.out_channels, head_channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(head_channels, num_classes, 1),
        )
        self.aux_classifier = FCNHead(ch[-2], num_classes) if aux else None

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = self.backbone.forward_intermediates(x)
        main = self.head(self.ppm(feats[-1]))  # (B, K, H/os, W/os)
        aux = aux_logits(self.aux_classifier, feats[-2], self.training)
        return seg_outputs(self.training, main, aux, x.shape[-2:])


@register_model()
def pspnet_resnet18(num_classes: int = 21, in_chans: int = 3, **kw) -> PSPNet:
    """PSPNet with a dilated ResNet-18 (os 8)."""
    return PSPNet(num_classes, in_chans, backbone="resnet18", **kw)


@register_model()
def pspnet_resnet50(num_classes: int = 21, in_chans: int = 3, **kw) -> PSPNet:
    """PSPNet with a dilated ResNet-50 (os 8), bins 1/2/3/6, aux head on layer3."""
    return PSPNet(num_classes, in_chans, backbone="resnet50", **kw)


@register_model()
def pspnet_resnet101(num_classes: int = 21, in_chans: int = 3, **kw) -> PSPNet:
    """PSPNet with a dilated ResNet-101 (os 8)."""
    return PSPNet(num_classes, in_chans, backbone="resnet101", **kw)
