"""MobileNetV3 (Howard et al. 2019, "Searching for MobileNetV3").

Key idea: MobileNetV2's inverted residual, with the block sequence found by architecture
search, squeeze-and-excitation in some blocks (gated by the cheap hard sigmoid), and the
hard swish ``h-swish(x) = x * relu6(x + 3) / 6`` -- a piecewise-linear swish -- in the deep
half where its cost is amortised. The head pools *before* its last 1x1 expansion (done as a
linear layer on the pooled vector), which saves most of the head's compute.

Module names, state_dict keys (``features.4.block.2.fc1.weight``, ``classifier.3.weight``)
and shapes equal ``torchvision.models.mobilenet_v3_small`` / ``mobilenet_v3_large``, so their
checkpoints load with ``strict=True``. BatchNorm uses eps 1e-3, momentum 0.01 (the paper's).

Shapes (large, 224 input): stem (B, 16, 112, 112) -> 15 bottlenecks (B, 160, 7, 7) -> 1x1 conv
(B, 960, 7, 7) -> global average (B, 960) -> linear + h-swish (B, 1280) -> (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.mobilenetv2 import ConvNormAct, round_channels
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.attention import SqueezeExcite

__all__ = ["MobileNetV3", "MobileNetV3Block", "mobilenet_v3_large", "mobilenet_v3_small"]

# (kernel, expanded, out, SE, activation, stride) per bottleneck: the paper's Tables 1 and 2.
# "RE" = ReLU, "HS" = hard swish.
_LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]
_SMALL = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]
_ACTS = {"RE": nn.ReLU, "HS": nn.Hardswish}
_BN_EPS = 1e-3


class MobileNetV3Block(nn.Module):
    """Expand 1x1 -> depthwise kxk -> [SE, hard-sigmoid gate] -> linear project 1x1 (+ x).

    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride). The expansion is skipped when
    ``hidden == c_in``; the SE bottleneck is ``round_channels(hidden / 4)`` wide.
    """

    def __init__(
        self, c_in: int, kernel: int, hidden: int, c_out: int, se: bool, act: str, stride: int
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"MobileNetV3Block stride must be 1 or 2, got {stride}")
        if act not in _ACTS:
            raise ConfigError(f"MobileNetV3Block act must be one of {sorted(_ACTS)}, got {act!r}")
        a = _ACTS[act]
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(ConvNormAct(c_in, hidden, 1, act=a, eps=_BN_EPS))
        dw = ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=a, eps=_BN_EPS)
        layers.append(dw)
        if se:
            rd = round_channels(hidden // 4)
            layers.append(SqueezeExcite(hidden, rd_channels=rd, act="relu", gate="hardsigmoid"))
        layers.append(ConvNormAct(hidden, c_out, 1, act=None, eps=_BN_EPS))
        self.block = nn.Sequential(*layers)
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """MobileNetV3 from a bottleneck table (``"large"`` or ``"small"``) and a width multiplier.

    Args:
        arch: "large" (15 bottlenecks, 1280-wide head) or "small" (11, 1024-wide head).
        width_mult: scales every channel count (rounded to multiples of 8), the head too.
        drop_rate: dropout between the two head layers (0.2).
        reduced_tail: halve the last stage's channels (and the head's), torchvision's option
            for detection trunks (SSDLite).

    ``num_features`` is the width of ``forward_features`` (960 large / 576 small);
    ``num_classes=0`` keeps the head's hidden layer, so the model returns (B, 1280 | 1024).
    ``feature_info`` taps (timm's): the last layer at each stride; the /32 tap is the
    1x1 conv after the bottlenecks (large: ``features.1, .3, .6, .12, .16``; small:
    ``features.0, .1, .3, .8, .12``).
    """

    head_names = ("avgpool", "classifier")

    def __init__(
        self,
        arch: str = "large",
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        drop_rate: float = 0.2,
        reduced_tail: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ("large", "small"):
            raise ConfigError(f"MobileNetV3 arch must be 'large' or 'small', got {arch!r}")
        if width_mult <= 0:
            raise ConfigError(f"MobileNetV3 width_mult must be > 0, got {width_mult}")
        table = _LARGE if arch == "large" else _SMALL
        if reduced_tail:  # the last three bottlenecks: outputs (and the later expansions) / 2
            tail = [(k, e if i == 0 else e // 2, c_out // 2, se, a, s)
                    for i, (k, e, c_out, se, a, s) in enumerate(table[-3:])]  # fmt: skip
            table = table[:-3] + tail
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        c = round_channels(16 * width_mult)
        layers: list[nn.Module] = [ConvNormAct(in_chans, c, 3, 2, act=nn.Hardswish, eps=_BN_EPS)]
        strides, chans = [2], [c]  # per layer of ``features``
        for k, e, c_out, se, act, s in table:
            e, c_out = round_channels(e * width_mult), round_channels(c_out * width_mult)
            layers.append(MobileNetV3Block(c, k, e, c_out, se, act, s))
            strides.append(s)
            chans.append(c_out)
            c = c_out
        self.num_features = 6 * c  # (B, 960, H/32, W/32) for large
        layers.append(ConvNormAct(c, self.num_features, 1, act=nn.Hardswish, eps=_BN_EPS))
        strides.append(1)
        chans.append(self.num_features)
        self.features = nn.Sequential(*layers)
        self.feature_info, red = [], 1
        for i, s in enumerate(strides):
            red *= s
            if i + 1 == len(strides) or strides[i + 1] == 2:  # last layer at this stride
                self.feature_info.append(feature_entry(chans[i], red, f"features.{i}"))
        head = (1280 if arch == "large" else 1024) // (2 if reduced_tail else 1)
        self.head_hidden = round_channels(head * width_mult)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(self.num_features, self.head_hidden),
            nn.Hardswish(inplace=True),
            nn.Dropout(drop_rate, inplace=True),
            self._linear(num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.momentum = 0.01  # TF's decay 0.99
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.head_hidden, num_classes)
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)
        return fc

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``features.0`` (stem) .. the last 1x1 conv, in order."""
        return [(f"features.{i}", m) for i, m in enumerate(self.features)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all), strides 2, 4, 8, 16, 32."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> linear + h-swish -> dropout -> linear: (B, C, h, w) -> (B, K)."""
        x = self.avgpool(x).flatten(1)  # (B, num_features)
        x = self.classifier[:3](x)  # (B, head_hidden)
        return x if pre_logits else self.classifier[3](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``classifier[3]``)."""
        return self.classifier[3]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer for ``num_classes`` (0 -> identity, head_hidden out)."""
        self.num_classes = num_classes
        self.classifier[3] = self._linear(num_classes)


# torchvision's recipe: RMSProp lr 0.064 at batch 1024 (0.016 per 256), weight decay 1e-5.
_CFG = {"optimizer": "rmsprop", "lr": 0.016, "weight_decay": 1e-5}


@register_model(aliases=("mobilenetv3_large_100",), tv_twin="mobilenet_v3_large", default_cfg=_CFG)
def mobilenet_v3_large(num_classes: int = 1000, in_chans: int = 3, **kw) -> MobileNetV3:
    """MobileNetV3-Large 1.0 (torchvision layout); 5.5M params; option ``width_mult``."""
    return MobileNetV3("large", num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(aliases=("mobilenetv3_small_100",), tv_twin="mobilenet_v3_small", default_cfg=_CFG)
def mobilenet_v3_small(num_classes: int = 1000, in_chans: int = 3, **kw) -> MobileNetV3:
    """MobileNetV3-Small 1.0 (torchvision layout); 2.5M params; option ``width_mult``."""
    return MobileNetV3("small", num_classes=num_classes, in_chans=in_chans, **kw)
