"""EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

Key idea: a small network found by architecture search (B0), built from MBConv blocks —
MobileNetV2's inverted residual plus squeeze-and-excitation and SiLU — then scaled up by
growing depth, width and resolution *together* by fixed ratios (compound scaling). Each
residual block is dropped at random during training (stochastic depth, Huang et al.
2016) with a rate rising linearly from 0 at the first block to 0.2 at the last.

Module names, state_dict keys (``features.1.0.block.1.fc1.weight``, ...) and shapes equal
``torchvision.models.efficientnet_b0`` .. ``efficientnet_b7``, so their checkpoints load
with ``strict=True``. B1..B7 scale B0 by (width, depth, resolution) multipliers; the paper's
phi-grid (alpha=1.2 depth, beta=1.1 width, gamma=1.15 resolution) was rounded by its
authors into the table ``EFFICIENTNET_SCALING`` below (torchvision and timm use the same).

Shapes (224 input): stem (B, 32, 112, 112) -> 7 MBConv stages (B, 320, 7, 7)
-> 1x1 conv (B, 1280, 7, 7) -> global average (B, 1280) -> classifier (B, num_classes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.mobilenetv2 import ConvNormAct, round_channels
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.attention import SqueezeExcite
from cvcraft.nn.drop import DropPath


class MBConv(nn.Module):
    """Expand 1x1 -> depthwise kxk -> SE -> project 1x1 (linear), with stochastic-depth shortcut.

    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride). The SE bottleneck is a quarter of the
    *input* width; the shortcut (and so stochastic depth) exists when stride 1 and c_in == c_out.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, expand_ratio: int, drop_path: float
    ) -> None:
        super().__init__()
        hidden = round_channels(c_in * expand_ratio)
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(ConvNormAct(c_in, hidden, 1, act=nn.SiLU))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcite(hidden, rd_channels=max(1, c_in // 4), act="silu"),
            ConvNormAct(hidden, c_out, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = DropPath(drop_path)
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.use_res_connect else out


# (expand, kernel, first stride, c_in, c_out, repeats) per stage: the paper's Table 1 (B0).
_B0_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]


class EfficientNet(nn.Module):
    """EfficientNet from a B0-style stage table and compound-scaling multipliers.

    Args:
        width_mult, depth_mult: channel and repeat multipliers (B0: 1.0, 1.0).
        drop_rate: dropout before the classifier (B0: 0.2).
        drop_path_rate: stochastic-depth rate of the last block; block i of N gets
            ``drop_path_rate * i / N``.
        stages: (expand, kernel, stride, c_in, c_out, repeats) rows before scaling;
            a stage's repeats become ``ceil(repeats * depth_mult)``, its channels
            ``round_channels(c * width_mult)``.
        bn_eps, bn_momentum: BatchNorm settings (B5..B7 were trained with 1e-3 and 0.01,
            TF's 0.99 decay; the smaller models with PyTorch's defaults).

    ``feature_info`` taps (timm's): the last stage at each stride, ``features.1`` (/2),
    ``.2`` (/4), ``.3`` (/8), ``.5`` (/16), ``.7`` (/32, before the 1x1 head conv).
    """

    head_names = ("avgpool", "classifier")

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        stages: Sequence[tuple[int, int, int, int, int, int]] = tuple(_B0_STAGES),
        default_size: int = 224,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise ConfigError(
                f"EfficientNet width_mult={width_mult} and depth_mult={depth_mult} must be > 0"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(
                f"EfficientNet drop_path_rate must be in [0, 1), got {drop_path_rate}"
            )
        self.num_classes = num_classes
        self.default_input_size = (in_chans, default_size, default_size)
        repeats = [math.ceil(r * depth_mult) for *_, r in stages]
        total, done = sum(repeats), 0
        c_stem = round_channels(stages[0][3] * width_mult)
        layers: list[nn.Module] = [
            ConvNormAct(in_chans, c_stem, 3, 2, act=nn.SiLU)
        ]  # (B, c_stem, H/2, W/2)
        red, self.feature_info = 2, []
        for j, ((t, k, s, c_in, c_out, _), n) in enumerate(zip(stages, repeats)):
            c_in, c_out = round_channels(c_in * width_mult), round_channels(c_out * width_mult)
            blocks = []
            for i in range(n):
                rate = drop_path_rate * done / total  # linear in the block's global index
                blocks.append(
                    MBConv(c_in if i == 0 else c_out, c_out, k, s if i == 0 else 1, t, rate)
                )
                done += 1
            layers.append(nn.Sequential(*blocks))
            red *= s
            if j + 1 == len(stages) or stages[j + 1][2] == 2:  # last stage at this stride
                self.feature_info.append(feature_entry(c_out, red, f"features.{len(layers) - 1}"))
        c_last = round_channels(stages[-1][4] * width_mult)
        self.num_features = 4 * c_last
        layers.append(ConvNormAct(c_last, self.num_features, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate, inplace=True), self._linear(num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.eps, m.momentum = bn_eps, bn_momentum

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        bound = 1.0 / math.sqrt(num_classes)  # uniform on +-1/sqrt(fan_out), the reference init
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)
        return fc

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``features.0`` (stem) .. ``features.8`` (head conv) in order."""
        return [(f"features.{i}", m) for i, m in enumerate(self.features)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): (B, 16, H/2, W/2) ..
        (B, 320, H/32, W/32) for B0."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> dropout -> linear: (B, C, h, w) -> (B, num_classes)."""
        x = self.avgpool(x).flatten(1)  # (B, num_features)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``classifier[1]``)."""
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer for ``num_classes`` (0 -> identity, pooled features)."""
        self.num_classes = num_classes
        self.classifier[1] = self._linear(num_classes)


# name -> (width_mult, depth_mult, resolution, dropout): the paper's B0..B7 (Table 1 and
# its released code), with torchvision's dropout rates.
EFFICIENTNET_SCALING = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
# the paper: RMSProp 0.256 at batch 4096, scaled to 256; weight decay 1e-5
_CFG = {"optimizer": "rmsprop", "lr": 0.016, "weight_decay": 1e-5}


def _efficientnet(name: str, num_classes: int, in_chans: int, **kw) -> EfficientNet:
    width, depth, size, drop = EFFICIENTNET_SCALING[name]
    big = {"bn_eps": 1e-3, "bn_momentum": 0.01} if width >= 1.6 else {}  # B5..B7
    cfg = {"width_mult": width, "depth_mult": depth, "default_size": size, "drop_rate": drop}
    return EfficientNet(num_classes=num_classes, in_chans=in_chans, **{**cfg, **big, **kw})


@register_model(tv_twin="efficientnet_b0", default_cfg=_CFG)
def efficientnet_b0(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B0 (torchvision layout, SE + SiLU, stochastic depth 0.2); 5.3M params."""
    return _efficientnet("efficientnet_b0", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b1", default_cfg=_CFG)
def efficientnet_b1(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B1: depth x1.1, 240 px; 7.8M params."""
    return _efficientnet("efficientnet_b1", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b2", default_cfg=_CFG)
def efficientnet_b2(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B2: width x1.1, depth x1.2, 260 px; 9.1M params."""
    return _efficientnet("efficientnet_b2", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b3", default_cfg=_CFG)
def efficientnet_b3(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B3: width x1.2, depth x1.4, 300 px; 12.2M params."""
    return _efficientnet("efficientnet_b3", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b4", default_cfg=_CFG)
def efficientnet_b4(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B4: width x1.4, depth x1.8, 380 px; 19.3M params."""
    return _efficientnet("efficientnet_b4", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b5", default_cfg=_CFG)
def efficientnet_b5(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B5: width x1.6, depth x2.2, 456 px, BN eps 1e-3; 30.4M params."""
    return _efficientnet("efficientnet_b5", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b6", default_cfg=_CFG)
def efficientnet_b6(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B6: width x1.8, depth x2.6, 528 px, BN eps 1e-3; 43.0M params."""
    return _efficientnet("efficientnet_b6", num_classes, in_chans, **kw)


@register_model(tv_twin="efficientnet_b7", default_cfg=_CFG)
def efficientnet_b7(num_classes: int = 1000, in_chans: int = 3, **kw) -> EfficientNet:
    """EfficientNet-B7: width x2.0, depth x3.1, 600 px, BN eps 1e-3; 66.3M params."""
    return _efficientnet("efficientnet_b7", num_classes, in_chans, **kw)
