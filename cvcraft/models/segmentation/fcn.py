"""Fully Convolutional Networks (Long, Shelhamer & Darrell 2015, "Fully Convolutional
Networks for Semantic Segmentation").

Key idea: a classification net becomes dense by "convolutionalising" its fully connected
layers (VGG-16's fc6 = 7x7 conv, fc7 = 1x1 conv), so it maps any input to a coarse score
map (stride 32). Learned transposed convs, initialised to bilinear interpolation, upsample
the scores; skip layers add 1x1-conv scores from pool4 (FCN-16s) and pool3 (FCN-8s) before
the final upsampling, restoring detail:

    FCN-32s: up32(score(fc7))
    FCN-16s: up16(up2(score(fc7)) + score(pool4))
    FCN-8s:  up8(up2(up2(score(fc7)) + score(pool4)) + score(pool3))

Departures: "same" padding instead of the paper's 100-pixel pad and crop offsets (the input
is zero-padded to a multiple of 32 and the logits cropped back, so any size works); the
scoring layers start at zero as in the paper, the upsamplers at bilinear and stay learnable.
``load_vgg(vgg)`` copies a zoo VGG-16 (features, and fc6/fc7 reshaped into convs).

``fcn_resnet50``/``fcn_resnet101`` are the modern form torchvision ships: a dilated ResNet
(output stride 8) with an ``FCNHead`` and bilinear upsampling, torchvision's layout.

Shapes (VGG-16, H, W multiples of 32): pool3 (B, 256, H/8), pool4 (B, 512, H/16), fc7
(B, 4096, H/32) -> logits (B, K, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.vgg import VGG
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import (
    resnet_backbone,
    vgg_features,
)
from cvcraft.models.segmentation.heads import FCNHead, aux_logits, fcn_head_tv_rules, seg_outputs
from cvcraft.models.weights import rename_keys
from cvcraft.nn.conv import transposed_conv

STRIDES = (32, 16, 8)


def bilinear_kernel(channels: int, k: int) -> Tensor:
    """(C, C, k, k) transposed-conv weight that upsamples each channel bilinearly by ``ceil(k/2)``.

    Per axis ``w(i) = 1 - |i - c| / f`` with ``f = ceil(k/2)`` and centre ``c = f - 1`` (odd
    k) or ``f - 0.5`` (even k); channels do not mix (zero off the diagonal).
    """
    f = (k + 1) // 2
    c = f - 1 if k % 2 else f - 0.5
    w1 = 1 - (torch.arange(k, dtype=torch.float32) - c).abs() / f  # (k,)
    weight = torch.zeros(channels, channels, k, k)
    weight[range(channels), range(channels)] = w1[:, None] * w1[None, :]
    return weight


def bilinear_upsampler(channels: int, scale: int) -> nn.ConvTranspose2d:
    """Learnable ``scale``-times transposed conv (k = 2·scale, no bias) starting as bilinear."""
    up = transposed_conv(channels, channels, scale, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, up.kernel_size[0]))
    return up


class FCN(nn.Module):
    """FCN-32s/16s/8s on a VGG feature stack.

    Args:
        stride: 32, 16 or 8 (which skips are fused).
        cfg: VGG layer table ("D" = VGG-16, the paper's net) with five "M" pools.
        fc_width: channels of the convolutionalised fc6/fc7 (4096).
        dropout: dropout after fc6 and fc7 (0.5).
    """

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        stride: int = 8,
        cfg: str | list[int | str] = "D",
        fc_width: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if stride not in STRIDES:
            raise ConfigError(f"FCN stride must be one of {STRIDES}, got {stride}")
        self.num_classes, self.stride = num_classes, stride
        self.default_input_size = (in_chans, 512, 512)
        self.features = vgg_features(cfg, in_chans)
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ConfigError(f"FCN needs a VGG cfg with 5 pools ('M'), got {len(pools)}")
        self.cuts = (pools[2] + 1, pools[3] + 1)  # end of pool3, pool4
        c3, c4, c5 = (self._width_before(p) for p in pools[2:])
        self.fc6 = nn.Conv2d(c5, fc_width, 7, padding=3)
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.drop = nn.Dropout2d(dropout)
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
            self.up2 = bilinear_upsampler(num_classes, 2)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
            self.up2_pool4 = bilinear_upsampler(num_classes, 2)
        self.up_final = bilinear_upsampler(num_classes, stride)
        for name in ("score_fr", "score_pool4", "score_pool3"):  # zero init, as in the paper
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)

    def _width_before(self, end: int) -> int:
        return [m.out_channels for m in self.features[:end] if isinstance(m, nn.Conv2d)][-1]

    @torch.no_grad()
    def load_vgg(self, vgg: VGG) -> None:
        """Copy a VGG's conv features and convolutionalise its fc6/fc7 into ``fc6``/``fc7``."""
        self.features.load_state_dict(vgg.features.state_dict())
        fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
        if (
            fc6.out_features != self.fc6.out_channels
            or fc6.in_features != self.fc6.weight[0].numel()
        ):
            raise ConfigError(
                f"load_vgg: VGG fc6 {tuple(fc6.weight.shape)} does not fit FCN fc6 "
                f"{tuple(self.fc6.weight.shape)}; build the FCN with the VGG's cfg"
            )
        self.fc6.weight.copy_(fc6.weight.view_as(self.fc6.weight))  # (4096, 512·7·7) -> 7x7 conv
        self.fc6.bias.copy_(fc6.bias)
        self.fc7.weight.copy_(fc7.weight.view_as(self.fc7.weight))
        self.fc7.bias.copy_(fc7.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, [0, -w % 32, 0, -h % 32])  # every pool then halves exactly
        pool3 = self.features[: self.cuts[0]](x)  # (B, c3, H/8, W/8)
        pool4 = self.features[self.cuts[0] : self.cuts[1]](pool3)  # (B, c4, H/16, W/16)
        pool5 = self.features[self.cuts[1] :](pool4)  # (B, c5, H/32, W/32)
        fc7 = self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pool5))))))
        score = self.score_fr(fc7)  # (B, K, H/32, W/32)
        if self.stride <= 16:
            score = self.up2(score) + self.score_pool4(pool4)  # (B, K, H/16, W/16)
        if self.stride == 8:
            score = self.up2_pool4(score) + self.score_pool3(pool3)  # (B, K, H/8, W/8)
        return self.up_final(score)[..., :h, :w]  # (B, K, H, W)


class FCNResNet(nn.Module):
    """Dilated ResNet + ``FCNHead`` (+ aux ``FCNHead`` on ``layer3``), bilinear upsampling.

    torchvision's ``fcn_resnet50`` layout (``backbone``, ``classifier``, ``aux_classifier``).
    (B, 3, H, W) -> layer4 (B, 2048, H/8, W/8) -> (B, K, H/8, W/8) -> (B, K, H, W).
    """

    # the class-count-dependent layers: re-initialised when weights come from another num_classes
    head_names = ("classifier.2", "aux_classifier.2")

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        backbone: str = "resnet50",
        output_stride: int = 8,
        aux: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 520, 520)
        self.backbone = resnet_backbone(backbone, in_chans, output_stride)
        ch = [f["num_chs"] for f in self.backbone.feature_info]
        self.classifier = FCNHead(ch[-1], num_classes)
        self.aux_classifier = FCNHead(ch[-2], num_classes) if aux else None

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = self.backbone.forward_intermediates(x)
        aux = aux_logits(self.aux_classifier, feats[-2], self.training)
        return seg_outputs(self.training, self.classifier(feats[-1]), aux, x.shape[-2:])


def from_torchvision_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ``fcn_resnet50/101`` state_dict to ours: the backbone keys are
    equal; both FCN heads regroup conv + BN (``fcn_head_tv_rules``)."""
    return rename_keys(sd, fcn_head_tv_rules("classifier") + fcn_head_tv_rules("aux_classifier"))


# torchvision's segmentation reference: SGD lr 0.02 at batch 32, weight decay 1e-4.
_CFG = {"optimizer": "sgd", "lr": 0.02, "weight_decay": 1e-4}


@register_model()
def fcn32s(num_classes: int = 21, in_chans: int = 3, **kw) -> FCN:
    """FCN-32s on VGG-16: one 32x upsampling of the fc7 scores."""
    return FCN(num_classes, in_chans, stride=32, **kw)


@register_model()
def fcn16s(num_classes: int = 21, in_chans: int = 3, **kw) -> FCN:
    """FCN-16s on VGG-16: fc7 scores x2 + pool4 scores, then 16x."""
    return FCN(num_classes, in_chans, stride=16, **kw)


@register_model()
def fcn8s(num_classes: int = 21, in_chans: int = 3, **kw) -> FCN:
    """FCN-8s on VGG-16: fuses pool4 and pool3 scores, then 8x."""
    return FCN(num_classes, in_chans, stride=8, **kw)


@register_model(
    tv_twin="fcn_resnet50",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def fcn_resnet50(num_classes: int = 21, in_chans: int = 3, **kw) -> FCNResNet:
    """FCN head on a dilated ResNet-50 (os 8); torchvision ``fcn_resnet50`` layout."""
    return FCNResNet(num_classes, in_chans, backbone="resnet50", **kw)


@register_model(
    tv_twin="fcn_resnet101",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def fcn_resnet101(num_classes: int = 21, in_chans: int = 3, **kw) -> FCNResNet:
    """FCN head on a dilated ResNet-101 (os 8); torchvision ``fcn_resnet101`` layout."""
    return FCNResNet(num_classes, in_chans, backbone="resnet101", **kw)
