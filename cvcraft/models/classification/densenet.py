"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks").

Key idea: inside a dense block every layer receives the concatenation of *all* earlier
feature maps and adds only ``growth_rate`` new channels, ``x_l = H_l([x_0, ..., x_{l-1}])``;
features are reused instead of re-learned, so the network is narrow and parameter-cheap.
DenseNet-BC layers are ``BN-ReLU-Conv1x1(bn_size*k) -> BN-ReLU-Conv3x3(k)``; transition
layers between blocks halve the channels (compression 0.5) and the resolution.

Module names, state_dict keys (``features.denseblock1.denselayer1.norm1.weight``, ...) and
shapes equal the *current* ``torchvision.models.densenet*`` ``state_dict()``, so it loads
with ``strict=True``. (torchvision's original 2017 checkpoint files use ``norm.1`` /
``conv.1`` style keys; torchvision renames those on download, as must anyone loading them
directly. :func:`from_torchvision_state_dict` does that rename.)

Shapes (224 input, DenseNet-121): stem (B, 64, 56, 56) -> block1 (B, 256, 56, 56)
-> trans1 (B, 128, 28, 28) -> block2 (B, 512, 28, 28) -> trans2 (B, 256, 14, 14)
-> block3 (B, 1024, 14, 14) -> trans3 (B, 512, 7, 7) -> block4 (B, 1024, 7, 7)
-> norm5, ReLU, global average (B, 1024) -> classifier (B, num_classes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.blocks import DenseBlock


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 (compress channels) -> 2x2 avg-pool; (B, c, H, W) -> (B, c', H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC.

    Args:
        growth_rate: channels each layer adds (k; 32 for ImageNet models).
        block_config: layers per dense block, e.g. (6, 12, 24, 16) for DenseNet-121.
        num_init_features: channels out of the 7x7 stem conv.
        bn_size: bottleneck width multiplier (1x1 conv outputs ``bn_size * k``).
        compression: fraction of channels transition layers keep (0.5, "-C" in BC).
        drop_rate: dropout after each dense layer.
        memory_efficient: gradient checkpointing inside dense layers (slower, far less memory).

    ``feature_info`` taps (timm's): ``features.relu0`` (/2), ``features.denseblock1..3``
    (/4, /8, /16, before their transitions) and ``features.norm5`` (/32).
    """

    head_names = ("classifier",)

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < compression <= 1.0:
            raise ConfigError(f"DenseNet compression must be in (0, 1], got {compression}")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        layers: dict[str, nn.Module] = {
            "conv0": nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False),
            "norm0": nn.BatchNorm2d(num_init_features),
            "relu0": nn.ReLU(inplace=True),
            "pool0": nn.MaxPool2d(3, stride=2, padding=1),  # (B, c0, H/4, W/4)
        }
        c = num_init_features
        self.feature_info = [feature_entry(c, 2, "features.relu0")]
        for i, n in enumerate(block_config):
            layers[f"denseblock{i + 1}"] = DenseBlock(
                n, c, growth_rate, bn_size, drop_rate=drop_rate, memory_efficient=memory_efficient
            )
            c += n * growth_rate
            if i != len(block_config) - 1:
                self.feature_info.append(feature_entry(c, 4 * 2**i, f"features.denseblock{i + 1}"))
            if i != len(block_config) - 1:
                c_out = int(c * compression)
                layers[f"transition{i + 1}"] = Transition(c, c_out)
                c = c_out
        layers["norm5"] = nn.BatchNorm2d(c)
        self.feature_info.append(feature_entry(c, 2 ** (len(block_config) + 1), "features.norm5"))
        self.features = nn.Sequential()
        for name, m in layers.items():
            self.features.add_module(name, m)
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # He fan_in, as the paper's Torch code
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``features.conv0`` .. ``features.norm5`` in order."""
        return [(f"features.{n}", m) for n, m in self.features.named_children()]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): (B, 64, H/2, W/2),
        (B, 256, H/4, W/4) .. (B, 1024, H/32, W/32) for DenseNet-121."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32), after norm5 (before its ReLU)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """ReLU -> global average -> classifier: (B, C, h, w) -> (B, num_classes)."""
        x = F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)  # (B, num_features)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``classifier``)."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``classifier`` for ``num_classes`` (0 -> identity, pooled features)."""
        self.num_classes = num_classes
        self.classifier = (
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        )


# "...denselayer3.norm.1.weight" -> "...denselayer3.norm1.weight"
_LEGACY_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def from_torchvision_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename keys of torchvision's original DenseNet checkpoint files to ours.

    Those files name dense-layer parameters ``...denselayer1.norm.1.weight``; the current
    modules (and ours) call them ``...denselayer1.norm1.weight``. Keys already in the
    current form pass through unchanged, so this is safe on any DenseNet state_dict.
    """
    return {_LEGACY_KEY.sub(r"\1\2.", k): v for k, v in sd.items()}


def _densenet(block_config: tuple[int, ...], num_classes: int, in_chans: int, **kw) -> DenseNet:
    return DenseNet(32, block_config, 64, num_classes=num_classes, in_chans=in_chans, **kw)


# The paper: SGD lr 0.1 at batch 256, weight decay 1e-4.
_CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4}


@register_model(tv_twin="densenet121", tv_converter=from_torchvision_state_dict, default_cfg=_CFG)
def densenet121(num_classes: int = 1000, in_chans: int = 3, **kw) -> DenseNet:
    """DenseNet-121 (k=32, blocks 6-12-24-16); 8.0M params."""
    return _densenet((6, 12, 24, 16), num_classes, in_chans, **kw)


@register_model(tv_twin="densenet169", tv_converter=from_torchvision_state_dict, default_cfg=_CFG)
def densenet169(num_classes: int = 1000, in_chans: int = 3, **kw) -> DenseNet:
    """DenseNet-169 (k=32, blocks 6-12-32-32); 14.1M params."""
    return _densenet((6, 12, 32, 32), num_classes, in_chans, **kw)
