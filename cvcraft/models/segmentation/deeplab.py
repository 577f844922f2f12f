"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image
Segmentation") and DeepLabV3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation").

Key ideas: a ResNet whose last stages trade stride for dilation (output stride 16 or 8)
keeps a dense feature map without losing receptive field; ASPP samples it at several
dilation rates plus a global image-pool branch for multi-scale context. V3 upsamples the
ASPP logits bilinearly; V3+ adds a light decoder: ASPP features upsampled x4, concatenated
with a 48-channel projection of the stride-4 map (``layer1``), refined by 3x3 convs —
depthwise-separable ones with ``separable=True`` (the paper's Xception variant applies them
in ASPP and the decoder).

``DeepLabV3`` keeps torchvision's layout (``backbone``, ``classifier`` = ASPP + 3x3 conv +
1x1 conv, ``aux_classifier`` on ``layer3``), so torchvision's weights map one to one.
Rates default to (6, 12, 18) at output stride 16 and double at 8.

Shapes (ResNet-50, os 8): (B, 3, H, W) -> layer4 (B, 2048, H/8, W/8) -> ASPP (B, 256, H/8,
W/8) -> logits (B, K, H/8, W/8) -> bilinear (B, K, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import resnet_backbone, resnet_channels, resnet_features
from cvcraft.models.segmentation.heads import (
    FCNHead,
    aux_logits,
    inplace_relu_,
    resize,
    seg_outputs,
)
from cvcraft.nn.conv import ConvBNAct, DepthwiseSeparableConv
from cvcraft.nn.pool import ASPP


def _rates(rates: Sequence[int] | None, output_stride: int) -> tuple[int, ...]:
    # The paper's (6, 12, 18) at output stride 16; a denser map (os 8) needs double rates to
    # cover the same image area.
    return (
        tuple(rates) if rates is not None else tuple(r * 16 // output_stride for r in (6, 12, 18))
    )


def make_aspp(
    in_ch: int, out_ch: int, rates: Sequence[int], separable: bool = False, dropout: float = 0.5
) -> ASPP:
    """``nn.pool.ASPP``; ``separable=True`` swaps each dilated 3x3 branch for a depthwise-
    separable one (DeepLabV3+), cutting its weights from ``9·C·C'`` to ``9·C + C·C'``."""
    aspp = ASPP(in_ch, out_ch, rates, dropout)
    if separable:
        for i, r in enumerate(rates, start=1):  # convs = [1x1, rate branches..., image pool]
            aspp.convs[i] = DepthwiseSeparableConv(in_ch, out_ch, 3, d=r)
    return aspp


class DeepLabV3(nn.Module):
    """DeepLabV3: dilated ResNet + ASPP head (+ optional FCN auxiliary head on ``layer3``).

    Args:
        backbone: zoo ResNet name. output_stride: 8 or 16 (32 allowed, undilated).
        rates: ASPP dilation rates (default from ``output_stride``).
        aux: add the auxiliary head; training then returns ``(main, [aux])``.
        separable: depthwise-separable ASPP branches.
    """

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        backbone: str = "resnet50",
        output_stride: int = 8,
        rates: Sequence[int] | None = None,
        aspp_channels: int = 256,
        aux: bool = False,
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 520, 520)
        self.backbone = resnet_backbone(backbone, in_chans, output_stride)
        ch = resnet_channels(self.backbone)
        rates = _rates(rates, output_stride)
        self.classifier = nn.Sequential(
            make_aspp(ch[-1], aspp_channels, rates, separable),
            ConvBNAct(aspp_channels, aspp_channels, 3),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )
        self.aux_classifier = FCNHead(ch[-2], num_classes) if aux else None
        inplace_relu_(self)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = resnet_features(self.backbone, x)
        main = self.classifier(feats[-1])  # (B, K, H/os, W/os)
        aux = aux_logits(self.aux_classifier, feats[-2], self.training)
        return seg_outputs(self.training, main, aux, x.shape[-2:])


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: DeepLabV3's encoder + a decoder that fuses the stride-4 ``layer1`` map.

    Args:
        backbone, output_stride (paper 16), rates, aspp_channels, aux: as ``DeepLabV3``.
        low_level_channels: width of the ``layer1`` projection (paper 48).
        decoder_convs: number of 3x3 refinement convs (paper 2).
        separable: depthwise-separable convs in ASPP and decoder (paper's Xception setting).
    """

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        backbone: str = "resnet50",
        output_stride: int = 16,
        rates: Sequence[int] | None = None,
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        decoder_convs: int = 2,
        separable: bool = False,
        aux: bool = False,
    ) -> None:
        super().__init__()
        if decoder_convs < 1:
            raise ConfigError(f"DeepLabV3Plus decoder_convs must be >= 1, got {decoder_convs}")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 512, 512)
        self.backbone = resnet_backbone(backbone, in_chans, output_stride)
        ch = resnet_channels(self.backbone)
        self.aspp = make_aspp(ch[-1], aspp_channels, _rates(rates, output_stride), separable)
        self.low_level = ConvBNAct(ch[1], low_level_channels, 1)
        c = aspp_channels
        ins = [c + low_level_channels] + [c] * (decoder_convs - 1)
        self.decoder = nn.Sequential(
            *(DepthwiseSeparableConv(i, c, 3) if separable else ConvBNAct(i, c, 3) for i in ins)
        )
        self.head = nn.Conv2d(c, num_classes, 1)
        self.aux_classifier = FCNHead(ch[-2], num_classes) if aux else None
        inplace_relu_(self)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = resnet_features(self.backbone, x)
        low = self.low_level(feats[1])  # (B, 48, H/4, W/4)
        y = resize(self.aspp(feats[-1]), low.shape[-2:])  # (B, 256, H/4, W/4)
        y = self.head(self.decoder(torch.cat([y, low], dim=1)))  # (B, K, H/4, W/4)
        aux = aux_logits(self.aux_classifier, feats[-2], self.training)
        return seg_outputs(self.training, y, aux, x.shape[-2:])


def _v3(depth: int, num_classes: int, in_chans: int, **kw) -> DeepLabV3:
    return DeepLabV3(num_classes, in_chans, backbone=f"resnet{depth}", **kw)


def _v3plus(depth: int, num_classes: int, in_chans: int, **kw) -> DeepLabV3Plus:
    return DeepLabV3Plus(num_classes, in_chans, backbone=f"resnet{depth}", **kw)


@register_model()
def deeplabv3_resnet18(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3, dilated ResNet-18 (os 8), ASPP 256."""
    return _v3(18, num_classes, in_chans, **kw)


@register_model()
def deeplabv3_resnet50(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3, dilated ResNet-50 (os 8); torchvision ``deeplabv3_resnet50`` layout."""
    return _v3(50, num_classes, in_chans, **kw)


@register_model()
def deeplabv3_resnet101(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3, dilated ResNet-101 (os 8); torchvision ``deeplabv3_resnet101`` layout."""
    return _v3(101, num_classes, in_chans, **kw)


@register_model()
def deeplabv3plus_resnet18(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+, dilated ResNet-18 (os 16)."""
    return _v3plus(18, num_classes, in_chans, **kw)


@register_model()
def deeplabv3plus_resnet50(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+, dilated ResNet-50 (os 16)."""
    return _v3plus(50, num_classes, in_chans, **kw)


@register_model()
def deeplabv3plus_resnet101(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+, dilated ResNet-101 (os 16)."""
    return _v3plus(101, num_classes, in_chans, **kw)
