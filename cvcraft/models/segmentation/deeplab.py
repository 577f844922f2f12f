"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image
Segmentation") and DeepLabV3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation").

Key ideas: a ResNet whose last stages trade stride for dilation (output stride 16 or 8)
keeps a dense feature map without losing receptive field; ASPP samples it at several
dilation rates plus a global image-pool branch for multi-scale context. V3 upsamples the
ASPP logits bilinearly; V3+ adds a light decoder: ASPP features upsampled x4, concatenated
with a 48-channel projection of the stride-4 map (``layer1``), refined by 3x3 convs —
depthwise-separable ones with ``separable=True`` (the paper's Xception variant applies them
in ASPP and the decoder). The paper's separable conv has BN + ReLU after the depthwise *and*
the pointwise half; ``separable_bn=False`` gives the lighter form (depthwise straight into
pointwise, one BN + ReLU after) that segmentation_models_pytorch (smp) uses. With
``SMP_DEEPLABV3PLUS`` our V3+ is smp's ``DeepLabV3Plus`` layer for layer.

ASPP's dilated convs are ``AtrousConv2d``: on maps smaller than the rates (a 256-px image at
os 8 gives 32x32 against rates 12/24/36) they skip the taps that read only zero padding.

``DeepLabV3`` keeps torchvision's layout (``backbone``, ``classifier`` = ASPP + 3x3 conv +
1x1 conv, ``aux_classifier`` on ``layer3``), so torchvision's weights map one to one.
Rates default to (6, 12, 18) at output stride 16 and double at 8.

Shapes (ResNet-50, os 8): (B, 3, H, W) -> layer4 (B, 2048, H/8, W/8) -> ASPP (B, 256, H/8,
W/8) -> logits (B, K, H/8, W/8) -> bilinear (B, K, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import resnet_backbone
from cvcraft.models.segmentation.heads import (
    FCNHead,
    aux_logits,
    fcn_head_tv_rules,
    is_exporting,
    resize,
    seg_outputs,
)
from cvcraft.models.weights import rename_keys
from cvcraft.nn.conv import ConvBNAct, DepthwiseSeparableConv
from cvcraft.nn.pool import ASPP


def _rates(rates: Sequence[int] | None, output_stride: int) -> tuple[int, ...]:
    # The paper's (6, 12, 18) at output stride 16; a denser map (os 8) needs double rates to
    # cover the same image area.
    return (
        tuple(rates) if rates is not None else tuple(r * 16 // output_stride for r in (6, 12, 18))
    )


# Our DeepLabV3Plus kwargs that build smp 0.6's DeepLabV3Plus defaults (os 16, separable
# ASPP with rates 12/24/36, one separable conv after ASPP and one in the decoder, no BN
# inside separable convs, align_corners=True upsampling): same modules in the same order.
SMP_DEEPLABV3PLUS: dict = dict(
    separable=True,
    separable_bn=False,
    aspp_conv=True,
    decoder_convs=1,
    rates=(12, 24, 36),
    align_corners=True,
)


class AtrousConv2d(nn.Conv2d):
    """A "same"-padded dilated conv that skips the taps reading only zero padding.

    At output stride 8/16 ASPP's rates (12/24/36) reach past small maps (a 256-px image
    gives 32x32 or 16x16): a tap offset by ``r`` rows is valid on ``H - r`` rows only, none
    when ``r >= H``; oneDNN still multiplies the padding. Summing the per-tap 1x1 convs over
    their valid crops gives the same output (to rounding) for a fraction of the work: a
    rate-36 3x3 conv on 32x32 is then a 1x1 conv (~8x less). Used when the valid taps are
    <= ``MAX_FRACTION`` of the dense work (below it the per-tap convs lose to one fused
    conv), and for depthwise convs only when just the centre tap is left (a per-channel
    scale); never while tracing/exporting. Same parameters and keys as ``nn.Conv2d``.
    """

    MAX_FRACTION = 0.6

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (dh, dw), (h, w) = self.kernel_size, self.dilation, x.shape[-2:]
        same = self.padding == (dh * (kh // 2), dw * (kw // 2)) and kh % 2 == kw % 2 == 1
        if not same or self.stride != (1, 1) or self.padding_mode != "zeros" or is_exporting():
            return super().forward(x)
        rows = [max(0, h - abs(t - kh // 2) * dh) for t in range(kh)]  # valid rows per tap row
        cols = [max(0, w - abs(t - kw // 2) * dw) for t in range(kw)]
        centre_only = sum(rows) == h and sum(cols) == w
        depthwise = self.groups == self.in_channels == self.out_channels
        if depthwise and centre_only:  # a 1x1 depthwise conv: per-channel scale
            y = x * self.weight[:, 0, kh // 2, kw // 2].view(1, -1, 1, 1)
            return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)
        if depthwise or sum(rows) * sum(cols) > self.MAX_FRACTION * kh * kw * h * w:
            return super().forward(x)
        return self._valid_taps(x, kh, kw, dh, dw)

    def _valid_taps(self, x: Tensor, kh: int, kw: int, dh: int, dw: int) -> Tensor:
        h, w = x.shape[-2:]
        cy, cx = kh // 2, kw // 2
        centre = self.weight[:, :, cy : cy + 1, cx : cx + 1]
        out = F.conv2d(x, centre, self.bias, groups=self.groups)  # (B, O, H, W)
        for ty in range(kh):
            oy = (ty - cy) * dh  # this tap reads input row y + oy for output row y
            y0, y1 = max(0, -oy), min(h, h - oy)
            for tx in range(kw):
                ox = (tx - cx) * dw
                x0, x1 = max(0, -ox), min(w, w - ox)
                if (ty, tx) == (cy, cx) or y0 >= y1 or x0 >= x1:
                    continue
                tap = self.weight[:, :, ty : ty + 1, tx : tx + 1]
                crop = x[:, :, y0 + oy : y1 + oy, x0 + ox : x1 + ox]
                out[:, :, y0:y1, x0:x1] += F.conv2d(crop, tap, groups=self.groups)
        return out


def atrous(conv: nn.Conv2d) -> AtrousConv2d:
    """``conv`` as an ``AtrousConv2d`` sharing its parameters (no new init, no RNG draws)."""
    new = AtrousConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        device="meta",
    )
    new.weight, new.bias = conv.weight, conv.bias
    return new


class SeparableConvBNAct(nn.Module):
    """Depthwise k x k conv -> pointwise 1x1 conv -> BN -> ReLU: a separable conv with no
    norm/activation between its two halves (smp's ``SeparableConv2d`` + BN + ReLU).

    The factorised conv stays one linear map, so it costs one BN + ReLU instead of the
    paper's two (the depthwise half's runs over the full-width input). Names: ``dw`` (the
    depthwise ``Conv2d``), ``pw`` (a ``ConvBNAct``). (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, d: int = 1) -> None:
        super().__init__()
        pad = d * (k - 1) // 2
        self.dw = AtrousConv2d(in_ch, in_ch, k, padding=pad, dilation=d, groups=in_ch, bias=False)
        self.pw = ConvBNAct(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


def separable_conv(in_ch: int, out_ch: int, k: int = 3, d: int = 1, bn: bool = True) -> nn.Module:
    """A 3x3-style separable conv-BN-ReLU: the paper's (BN + ReLU after both halves,
    ``bn=True``) or the lighter ``SeparableConvBNAct`` (``bn=False``)."""
    if not bn:
        return SeparableConvBNAct(in_ch, out_ch, k, d=d)  # its depthwise conv is atrous
    conv = DepthwiseSeparableConv(in_ch, out_ch, k, d=d)
    conv.dw.conv = atrous(conv.dw.conv)
    return conv


def make_aspp(
    in_ch: int,
    out_ch: int,
    rates: Sequence[int],
    separable: bool = False,
    dropout: float = 0.5,
    separable_bn: bool = True,
) -> ASPP:
    """``nn.pool.ASPP`` with ``AtrousConv2d`` rate branches; ``separable=True`` swaps each
    for a depthwise-separable one (DeepLabV3+), cutting its weights from ``9·C·C'`` to
    ``9·C + C·C'``; ``separable_bn`` as in ``separable_conv``."""
    aspp = ASPP(in_ch, out_ch, rates, dropout)
    for i, r in enumerate(rates, start=1):  # convs = [1x1, rate branches..., image pool]
        if separable:
            aspp.convs[i] = separable_conv(in_ch, out_ch, 3, d=r, bn=separable_bn)
        else:  # a ConvBNAct: skip the taps of its rate-r conv that read only padding
            aspp.convs[i].conv = atrous(aspp.convs[i].conv)
    return aspp


class DeepLabV3(nn.Module):
    """DeepLabV3: dilated ResNet + ASPP head (+ optional FCN auxiliary head on ``layer3``).

    Args:
        backbone: zoo ResNet name. output_stride: 8 or 16 (32 allowed, undilated).
        rates: ASPP dilation rates (default from ``output_stride``).
        aux: add the auxiliary head; training then returns ``(main, [aux])``.
        separable: depthwise-separable ASPP branches.
    """

    # the class-count-dependent layers: re-initialised when weights come from another num_classes
    head_names = ("classifier.2", "aux_classifier.2")

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
        ch = [f["num_chs"] for f in self.backbone.feature_info]
        rates = _rates(rates, output_stride)
        self.classifier = nn.Sequential(
            make_aspp(ch[-1], aspp_channels, rates, separable),
            ConvBNAct(aspp_channels, aspp_channels, 3),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )
        self.aux_classifier = FCNHead(ch[-2], num_classes) if aux else None

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = self.backbone.forward_intermediates(x)
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
        separable_bn: BN + ReLU between depthwise and pointwise (paper; ``False``: smp's
            lighter separable conv, see ``SeparableConvBNAct``).
        aspp_conv: one more 3x3 conv-BN-ReLU (separable if ``separable``) on the ASPP
            output before upsampling, as smp's DeepLabV3Plus has.
        align_corners: of the two bilinear upsamplings (x4 of the ASPP map, x4 of the
            logits); the DeepLab TF code and smp use ``True``.
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
        separable_bn: bool = True,
        aspp_conv: bool = False,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if decoder_convs < 1:
            raise ConfigError(f"DeepLabV3Plus decoder_convs must be >= 1, got {decoder_convs}")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 512, 512)
        self.backbone = resnet_backbone(backbone, in_chans, output_stride)
        ch = [f["num_chs"] for f in self.backbone.feature_info]
        c = aspp_channels
        self.align_corners = align_corners

        def conv3x3(i: int) -> nn.Module:
            return separable_conv(i, c, 3, bn=separable_bn) if separable else ConvBNAct(i, c, 3)

        aspp = make_aspp(
            ch[-1], c, _rates(rates, output_stride), separable, separable_bn=separable_bn
        )
        # Registered as ``aspp`` alone without the extra conv (the original layout, whose
        # checkpoints keep loading) and as ``aspp = [ASPP, conv]`` with it (smp's order).
        self.aspp = nn.Sequential(aspp, conv3x3(c)) if aspp_conv else aspp
        self.low_level = ConvBNAct(ch[1], low_level_channels, 1)
        ins = [c + low_level_channels] + [c] * (decoder_convs - 1)
        self.decoder = nn.Sequential(*(conv3x3(i) for i in ins))
        self.head = nn.Conv2d(c, num_classes, 1)
        self.aux_classifier = FCNHead(ch[-2], num_classes) if aux else None

    def _up(self, x: Tensor, size: Sequence[int]) -> Tensor:
        if not self.align_corners:
            return resize(x, size)
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = self.backbone.forward_intermediates(x)
        low = self.low_level(feats[1])  # (B, 48, H/4, W/4)
        y = self._up(self.aspp(feats[-1]), low.shape[-2:])  # (B, 256, H/4, W/4)
        y = self.head(self.decoder(torch.cat([y, low], dim=1)))  # (B, K, H/4, W/4)
        y = self._up(y, x.shape[-2:])  # (B, K, H, W); seg_outputs' resize is then a no-op
        aux = aux_logits(self.aux_classifier, feats[-2], self.training)
        return seg_outputs(self.training, y, aux, x.shape[-2:])


def _v3(depth: int, num_classes: int, in_chans: int, **kw) -> DeepLabV3:
    return DeepLabV3(num_classes, in_chans, backbone=f"resnet{depth}", **kw)


def _v3plus(depth: int, num_classes: int, in_chans: int, **kw) -> DeepLabV3Plus:
    return DeepLabV3Plus(num_classes, in_chans, backbone=f"resnet{depth}", **kw)


# torchvision's DeepLabHead is flat: (ASPP 0, conv 1, BN 2, ReLU 3, conv 4); ours regroups conv
# + BN into ConvBNAct (classifier.1) and the ASPP branches likewise.
_TV_RULES = [
    (r"^(classifier\.0\.convs\.[0-3])\.0\.", r"\1.conv."),
    (r"^(classifier\.0\.convs\.[0-3])\.1\.", r"\1.bn."),
    (r"^classifier\.0\.convs\.4\.1\.", "classifier.0.convs.4.1.conv."),
    (r"^classifier\.0\.convs\.4\.2\.", "classifier.0.convs.4.1.bn."),
    (r"^classifier\.0\.project\.0\.", "classifier.0.project.0.conv."),
    (r"^classifier\.0\.project\.1\.", "classifier.0.project.0.bn."),
    (r"^classifier\.1\.", "classifier.1.conv."),
    (r"^classifier\.2\.", "classifier.1.bn."),
    (r"^classifier\.4\.", "classifier.2."),
]


def from_torchvision_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ``deeplabv3_resnet50/101`` state_dict to ours: backbone keys are
    equal; the ASPP head and the auxiliary FCN head regroup conv + BN."""
    return rename_keys(sd, _TV_RULES + fcn_head_tv_rules("aux_classifier"))


# torchvision's segmentation reference: SGD lr 0.02 at batch 32, weight decay 1e-4.
_CFG = {"optimizer": "sgd", "lr": 0.02, "weight_decay": 1e-4}


@register_model(default_cfg=_CFG)
def deeplabv3_resnet18(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3, dilated ResNet-18 (os 8), ASPP 256."""
    return _v3(18, num_classes, in_chans, **kw)


@register_model(
    tv_twin="deeplabv3_resnet50",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def deeplabv3_resnet50(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3, dilated ResNet-50 (os 8); torchvision ``deeplabv3_resnet50`` layout."""
    return _v3(50, num_classes, in_chans, **kw)


@register_model(
    tv_twin="deeplabv3_resnet101",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def deeplabv3_resnet101(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3, dilated ResNet-101 (os 8); torchvision ``deeplabv3_resnet101`` layout."""
    return _v3(101, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def deeplabv3plus_resnet18(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+, dilated ResNet-18 (os 16)."""
    return _v3plus(18, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def deeplabv3plus_resnet50(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+, dilated ResNet-50 (os 16)."""
    return _v3plus(50, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def deeplabv3plus_resnet101(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+, dilated ResNet-101 (os 16)."""
    return _v3plus(101, num_classes, in_chans, **kw)
