"""RepVGG (Ding et al. 2021, "RepVGG: Making VGG-style ConvNets Great Again").

Key idea: a plain stack of 3x3 conv + ReLU at inference, trained as a multi-branch network
(3x3 + 1x1 + identity, see :mod:`cvcraft.nn.repvgg`) whose branches fold into one conv
afterwards. Call :func:`reparameterize_model` on a trained model before deploying it.

Five stages of 1, n1, n2, n3, 1 blocks; the first block of each stage has stride 2. Widths
are ``min(64, 64a)``, ``64a``, ``128a``, ``256a``, ``512b`` with multipliers a, b:
A0 (a=0.75, b=2.5, depths 1-2-4-14-1) and B0 (a=1, b=2.5, depths 1-4-6-16-1). Parameter
counts: A0 9.11M while training, 8.31M after fusing (paper, Table 4: 8.30M); B0 15.82M /
14.34M (paper: 14.33M). The paper's table counts the fused (inference-time) network.

Shapes (224 input): stage0 (B, 48|64, 112, 112) -> stage1 /4 -> stage2 /8 -> stage3 /16
-> stage4 (B, 512b, 7, 7) -> global average (B, 512b) -> fc (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.repvgg import RepVGGBlock, reparameterize_model

__all__ = ["RepVGG", "reparameterize_model", "repvgg_a0", "repvgg_b0"]


class RepVGG(nn.Module):
    """RepVGG with per-stage depths and width multipliers (a for stages 1-3, b for stage 4).

    Stages are ``stage0..stage4`` (``nn.Sequential`` of :class:`RepVGGBlock`); ``fc`` is the
    classifier on globally averaged features. ``feature_info`` taps every stage output,
    ``stage0`` (/2) .. ``stage4`` (/32).
    """

    head_names = ("fc",)

    def __init__(
        self,
        depths: Sequence[int] = (2, 4, 14, 1),
        width_mult: tuple[float, float] = (0.75, 2.5),
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(depths) != 4:
            raise ConfigError(
                f"RepVGG depths are 4 stage depths (after the stem), got {tuple(depths)}"
            )
        a, b = width_mult
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        c = min(64, int(64 * a))
        self.stage0 = nn.Sequential(RepVGGBlock(in_chans, c, stride=2))  # (B, c, H/2, W/2)
        widths = (int(64 * a), int(128 * a), int(256 * a), int(512 * b))
        self.feature_info = [feature_entry(c, 2, "stage0")]
        for i, (n, w) in enumerate(zip(depths, widths)):
            blocks = [RepVGGBlock(c, w, stride=2)]  # a stage's first block halves H, W
            blocks += [RepVGGBlock(w, w) for _ in range(n - 1)]
            self.add_module(f"stage{i + 1}", nn.Sequential(*blocks))
            c = w
            self.feature_info.append(feature_entry(c, 2 ** (i + 2), f"stage{i + 1}"))
        self.num_features = c
        self.fc = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``stage0`` .. ``stage4`` in order."""
        return [(f"stage{i}", getattr(self, f"stage{i}")) for i in range(5)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all), stage i at H / 2^(i+1)."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        return self.forward_intermediates(x, [-1])[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> fc: (B, C, h, w) -> (B, num_classes)."""
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, num_features)
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


# The paper: SGD lr 0.1 at batch 256 (cosine), weight decay 1e-4.
_CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4}


@register_model(default_cfg=_CFG)
def repvgg_a0(num_classes: int = 1000, in_chans: int = 3, **kw) -> RepVGG:
    """RepVGG-A0 (depths 1-2-4-14-1, a=0.75, b=2.5); 9.11M params training, 8.31M fused."""
    return RepVGG((2, 4, 14, 1), (0.75, 2.5), num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(default_cfg=_CFG)
def repvgg_b0(num_classes: int = 1000, in_chans: int = 3, **kw) -> RepVGG:
    """RepVGG-B0 (depths 1-4-6-16-1, a=1, b=2.5); 15.82M params training, 14.34M fused."""
    return RepVGG((4, 6, 16, 1), (1.0, 2.5), num_classes=num_classes, in_chans=in_chans, **kw)
