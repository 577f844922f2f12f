"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

Key idea: the inverted residual block expands a thin input ``t``-fold with a 1x1 conv,
filters it with a cheap depthwise 3x3 conv, and projects back with a *linear* 1x1 conv (no
ReLU: a ReLU on the narrow bottleneck destroys information); the shortcut joins the thin
ends. ReLU6 keeps activations bounded for low-precision inference.

Module names, state_dict keys (``features.1.conv.0.0.weight``, ``classifier.1.weight``) and
shapes equal ``torchvision.models.mobilenet_v2``, so its checkpoints load with ``strict=True``.

Shapes (224 input): stem (B, 32, 112, 112) -> 17 inverted residuals (B, 320, 7, 7)
-> 1x1 conv (B, 1280, 7, 7) -> global average (B, 1280) -> classifier (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model


def round_channels(ch: float, divisor: int = 8) -> int:
    """Round a (width-multiplied) channel count to the nearest multiple of ``divisor``.

    Hardware likes multiples of 8; never go below ``divisor`` nor lose more than 10% of
    ``ch`` (then round up instead), the rule of the MobileNet/EfficientNet reference code.
    """
    out = max(divisor, int(ch + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * ch else out


class ConvNormAct(nn.Sequential):
    """conv (no bias, "same" padding) -> BatchNorm -> activation, as an indexed Sequential.

    The indices (``0`` conv, ``1`` norm, ``2`` act) are torchvision's key layout for its
    mobile networks. ``act=None`` leaves the output linear (the block is then conv + BN only).
    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU6,
        eps: float = 1e-5,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=eps),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> linear project 1x1 (+ shortcut).

    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride); the shortcut is used when
    ``stride == 1 and c_in == c_out``. With ``expand_ratio == 1`` the expansion is skipped.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = round(c_in * expand_ratio)
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(c_in, hidden, 1))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, c_out, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expansion t, output channels c, repeats n, first stride s): the paper's Table 2.
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier.

    Args:
        width_mult: scales every channel count (rounded to multiples of ``round_nearest``);
            the last 1280-wide conv is only ever widened, never thinned.
        drop_rate: dropout before the classifier (0.2).

    ``feature_info`` taps (timm's): the last block at each stride, ``features.1`` (/2),
    ``.3`` (/4), ``.6`` (/8), ``.13`` (/16), ``.17`` (/32, before the 1280-wide 1x1 conv).
    """

    head_names = ("classifier",)

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ConfigError(f"MobileNetV2 width_mult must be > 0, got {width_mult}")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        c = round_channels(32 * width_mult, round_nearest)
        self.num_features = round_channels(1280 * max(1.0, width_mult), round_nearest)
        layers: list[nn.Module] = [ConvNormAct(in_chans, c, 3, stride=2)]  # (B, c, H/2, W/2)
        red, self.feature_info = 2, []
        for j, (t, c_out, n, s) in enumerate(_SETTINGS):
            c_out = round_channels(c_out * width_mult, round_nearest)
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
            red *= s
            last_at_stride = j + 1 == len(_SETTINGS) or _SETTINGS[j + 1][3] == 2
            if last_at_stride:
                self.feature_info.append(feature_entry(c, red, f"features.{len(layers) - 1}"))
        layers.append(ConvNormAct(c, self.num_features, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), self._linear(num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)
        return fc

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``features.0`` .. ``features.18`` in order."""
        return [(f"features.{i}", m) for i, m in enumerate(self.features)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): (B, 16, H/2, W/2) ..
        (B, 320, H/32, W/32) at width 1.0."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> dropout -> linear: (B, C, h, w) -> (B, num_classes)."""
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, num_features)
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


@register_model(
    aliases=("mobilenetv2_100",),
    tv_twin="mobilenet_v2",
    default_cfg={"optimizer": "sgd", "lr": 0.045, "weight_decay": 4e-5},  # torchvision recipe
)
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3, **kw) -> MobileNetV2:
    """MobileNetV2 1.0 (torchvision layout); 3.5M params; option ``width_mult``."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, **kw)
