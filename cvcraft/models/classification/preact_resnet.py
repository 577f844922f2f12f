"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Key idea: move BN and ReLU *before* each conv (``x + conv(relu(bn(conv(relu(bn(x))))))``)
and leave nothing after the addition, so the shortcut is a pure identity from any block to
any later one: ``x_L = x_l + sum_{i=l}^{L-1} F(x_i)``. The gradient then reaches every
layer undamped through the shortcuts; a final BN + ReLU normalises the trunk's output. A
projection shortcut (1x1 conv, no BN) reads the *pre-activated* input, as the paper's.

Module names equal timm's ``resnetv2_18/34`` except that a stage holds its blocks directly
(``stages.0.1.conv2`` for timm's ``stages.0.blocks.1.conv2``) and the classifier is a
linear layer (timm: a 1x1 conv); ``from_timm_state_dict`` maps between them.

Shapes (imagenet stem, 224 input): stem conv 7x7/2 + max-pool (B, 64, 56, 56) -> stages
(B, 64|128|256|512, 56|28|14|7) -> BN + ReLU -> global average -> fc (B, num_classes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.models.weights import rename_keys
from cvcraft.nn.init import init_weights
from cvcraft.nn.residual import conv3x3

__all__ = ["PreActBasicBlock", "PreActResNet", "from_timm_state_dict", "preact_resnet18"]


class PreActBasicBlock(nn.Module):
    """``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``; the projection (when the shape
    changes) reads ``relu(bn1(x))``. (B, in_ch, H, W) -> (B, width, H/stride, W/stride)."""

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, width, stride)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.act = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Conv2d(in_ch, width, 1, stride, bias=False)
            if stride != 1 or in_ch != width
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.norm1(x))  # (B, in_ch, H, W); not in place: x is the shortcut
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)  # (B, width, H', W')
        out = self.conv2(self.act(self.norm2(out)))
        return out + shortcut  # nothing after the sum: the identity path stays clean


class PreActResNet(nn.Module):
    """Pre-activation ResNet with BasicBlocks.

    Args:
        layers: blocks per stage ((2, 2, 2, 2) = 18 layers, (3, 4, 6, 3) = 34).
        widths: channels per stage (64, 128, 256, 512).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pool).

    ``feature_info`` taps (timm's): ``stem.conv``, then ``stages.0`` .. ``stages.K-1``
    (raw sums, before the final BN + ReLU).
    """

    head_names = ("fc",)

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ConfigError(f"PreActResNet stem must be 'imagenet' or 'cifar', got {stem!r}")
        if len(layers) != len(widths):
            raise ConfigError(f"PreActResNet: layers {tuple(layers)} and widths {tuple(widths)}")
        self.num_classes = num_classes
        big = stem == "imagenet"
        self.default_input_size = (in_chans, 224, 224) if big else (in_chans, 32, 32)
        conv = (
            nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False)
            if big
            else conv3x3(in_chans, widths[0])
        )
        pool = nn.MaxPool2d(3, 2, 1) if big else nn.Identity()
        self.stem = nn.Sequential(OrderedDict(conv=conv, pool=pool))
        red = 2 if big else 1
        self.feature_info = [feature_entry(widths[0], red, "stem.conv")]
        red *= 2 if big else 1
        c, stages = widths[0], []
        for i, (n, w) in enumerate(zip(layers, widths)):
            s = 1 if i == 0 else 2
            red *= s
            stages.append(
                nn.Sequential(*(PreActBasicBlock(c if j == 0 else w, w, s if j == 0 else 1)
                                for j in range(n)))
            )  # fmt: skip
            c = w
            self.feature_info.append(feature_entry(w, red, f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        self.norm = nn.BatchNorm2d(c)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self, "kaiming", nonlinearity="relu")

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``stem.conv``, ``stem.pool``, ``stages.0`` .. ``stages.K-1`` in order."""
        return [("stem.conv", self.stem.conv), ("stem.pool", self.stem.pool)] + [
            (f"stages.{i}", s) for i, s in enumerate(self.stages)
        ]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all), strides 2, 4, 8, 16, 32."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> relu(bn(last stage)) (B, num_features, H/32, W/32)."""
        return torch.relu(self.norm(self.stages(self.stem(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> dropout -> fc: (B, C, h, w) -> (B, num_classes)."""
        x = self.drop(x.mean((2, 3)))  # (B, num_features)
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


_TIMM_RULES = [
    (r"^stages\.(\d+)\.blocks\.", r"stages.\1."),
    (r"\.downsample\.conv\.", ".downsample."),
    (r"^head\.fc\.", "fc."),
]


def from_timm_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``resnetv2_18/34`` keys -> ours (stage ``blocks`` level dropped, 1x1-conv
    classifier flattened to a linear layer's (K, C) weight)."""
    out = rename_keys(sd, _TIMM_RULES)
    if "fc.weight" in out and out["fc.weight"].dim() == 4:
        out["fc.weight"] = out["fc.weight"].flatten(1)
    return out


# The paper's CIFAR recipe: SGD lr 0.1 at batch 128, weight decay 1e-4.
_CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4}
_CIFAR_CFG = {**_CFG, "mean": "dataset", "std": "dataset"}


@register_model(aliases=("resnetv2_18",), default_cfg=_CFG)
def preact_resnet18(num_classes: int = 1000, in_chans: int = 3, **kw) -> PreActResNet:
    """Pre-activation ResNet-18 (timm's ``resnetv2_18``); 11.7M params."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_chans, **kw)


@register_model(aliases=("resnetv2_34",), default_cfg=_CFG)
def preact_resnet34(num_classes: int = 1000, in_chans: int = 3, **kw) -> PreActResNet:
    """Pre-activation ResNet-34 (timm's ``resnetv2_34``); 21.8M params."""
    return PreActResNet((3, 4, 6, 3), num_classes, in_chans, **kw)


@register_model(default_cfg=_CIFAR_CFG)
def preact_resnet18_cifar(num_classes: int = 10, in_chans: int = 3, **kw) -> PreActResNet:
    """Pre-activation ResNet-18 with the CIFAR stem (3x3/1 conv, no pool) for 32x32 input."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_chans, stem="cifar", **kw)
