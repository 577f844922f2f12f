"""ShuffleNetV2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design").

Key idea: design for measured speed, not FLOPs -- equal input/output widths, no grouped 1x1
convs, few branches, few element-wise ops. Each unit *splits* its channels in two halves:
one passes through untouched, the other goes 1x1 -> depthwise 3x3 -> 1x1; the halves are
concatenated (no addition) and then *channel-shuffled* so the next unit mixes them. A
stride-2 unit feeds the whole input to both branches (the first gets a depthwise 3x3/2 +
1x1), doubling the width.

Module names, state_dict keys (``stage2.0.branch1.0.weight``, ``conv5.1.running_var``) and
shapes equal ``torchvision.models.shufflenet_v2_x0_5`` .. ``x2_0``, so their checkpoints load
with ``strict=True``.

Shapes (x1.0, 224 input): conv1 (B, 24, 112, 112) -> max-pool (B, 24, 56, 56) -> stage2..4
(B, 116|232|464, 28|14|7) -> conv5 (B, 1024, 7, 7) -> global average -> fc (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import channel_shuffle

__all__ = ["ShuffleNetV2", "ShuffleUnit", "shufflenet_v2_x1_0"]


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or duplicate (stride 2), two branches, concat,
    channel shuffle with 2 groups. (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).

    ``branch1`` (stride 2 only): depthwise 3x3/2 + BN -> 1x1 + BN + ReLU.
    ``branch2``: 1x1 + BN + ReLU -> depthwise 3x3/s + BN -> 1x1 + BN + ReLU.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"ShuffleUnit stride must be 1 or 2, got {stride}")
        if c_out % 2 or (stride == 1 and c_in != c_out):
            raise ConfigError(
                f"ShuffleUnit: c_out ({c_out}) must be even and equal c_in ({c_in}) at stride 1"
            )
        half = c_out // 2
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(
                *_conv_bn(c_in, c_in, 3, 2, groups=c_in), *_conv_bn(c_in, half, 1), nn.ReLU(True)
            )
        else:
            self.branch1 = nn.Sequential()  # the untouched half (keeps torchvision's keys)
        self.branch2 = nn.Sequential(
            *_conv_bn(c_in if stride == 2 else half, half, 1),
            nn.ReLU(True),
            *_conv_bn(half, half, 3, stride, groups=half),
            *_conv_bn(half, half, 1),
            nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, x2 = x.chunk(2, dim=1)  # (B, C/2, H, W) each
            out = torch.cat((keep, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)  # (B, c_out, H/2, W/2)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 from its stage widths.

    Args:
        widths: conv1, stage2, stage3, stage4, conv5 channels (x1.0: 24, 116, 232, 464, 1024).
        repeats: units per stage (4, 8, 4); the first of each has stride 2.

    ``feature_info`` taps: ``conv1`` (/2), ``maxpool`` (/4), ``stage2`` (/8), ``stage3``
    (/16), ``conv5`` (/32, the trunk's last layer, as MobileNetV3's).
    """

    head_names = ("fc",)

    def __init__(
        self,
        widths: Sequence[int] = (24, 116, 232, 464, 1024),
        repeats: Sequence[int] = (4, 8, 4),
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != len(repeats) + 2:
            raise ConfigError(
                f"ShuffleNetV2: {len(widths)} widths for {len(repeats)} stages; give "
                "conv1, one per stage, and conv5"
            )
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        self.conv1 = nn.Sequential(*_conv_bn(in_chans, widths[0], 3, 2), nn.ReLU(True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.feature_info = [
            feature_entry(widths[0], 2, "conv1"),
            feature_entry(widths[0], 4, "maxpool"),
        ]
        self.stage_names = []
        c = widths[0]
        for i, (n, w) in enumerate(zip(repeats, widths[1:-1])):
            units = [ShuffleUnit(c, w, 2)] + [ShuffleUnit(w, w, 1) for _ in range(n - 1)]
            name = f"stage{i + 2}"
            self.add_module(name, nn.Sequential(*units))
            self.stage_names.append(name)
            c = w
            if i + 1 < len(repeats):
                self.feature_info.append(feature_entry(w, 2 ** (i + 3), name))
        self.num_features = widths[-1]
        self.conv5 = nn.Sequential(*_conv_bn(c, self.num_features, 1), nn.ReLU(True))
        self.feature_info.append(feature_entry(self.num_features, 2 ** (len(repeats) + 2), "conv5"))
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``conv1``, ``maxpool``, ``stage2`` .. ``stage4``, ``conv5`` in order."""
        names = ["conv1", "maxpool", *self.stage_names, "conv5"]
        return [(n, getattr(self, n)) for n in names]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all), strides 2, 4, 8, 16, 32."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        return self.forward_intermediates(x, [-1])[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> linear: (B, C, h, w) -> (B, num_classes)."""
        x = x.mean((2, 3))  # (B, num_features)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` for ``num_classes`` (0 -> identity, pooled features)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


# stage widths of the paper's Table 5 per width multiplier
_WIDTHS = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}
# The paper: SGD-style linear-decay schedule, lr 0.5 at batch 1024 (0.125 per 256), wd 4e-5.
_CFG = {"optimizer": "sgd", "lr": 0.125, "weight_decay": 4e-5}


@register_model(tv_twin="shufflenet_v2_x0_5", default_cfg=_CFG)
def shufflenet_v2_x0_5(num_classes: int = 1000, in_chans: int = 3, **kw) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x; 1.4M params."""
    return ShuffleNetV2(_WIDTHS["x0_5"], num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(tv_twin="shufflenet_v2_x1_0", default_cfg=_CFG)
def shufflenet_v2_x1_0(num_classes: int = 1000, in_chans: int = 3, **kw) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (torchvision layout); 2.3M params."""
    return ShuffleNetV2(_WIDTHS["x1_0"], num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(tv_twin="shufflenet_v2_x1_5", default_cfg=_CFG)
def shufflenet_v2_x1_5(num_classes: int = 1000, in_chans: int = 3, **kw) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x; 3.5M params."""
    return ShuffleNetV2(_WIDTHS["x1_5"], num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(tv_twin="shufflenet_v2_x2_0", default_cfg=_CFG)
def shufflenet_v2_x2_0(num_classes: int = 1000, in_chans: int = 3, **kw) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x; 7.4M params."""
    return ShuffleNetV2(_WIDTHS["x2_0"], num_classes=num_classes, in_chans=in_chans, **kw)
