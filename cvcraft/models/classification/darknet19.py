"""Darknet-19 (Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger"), YOLOv2's trunk.

Key idea: VGG-like 3x3 convs whose channels double after every 2x2 max-pool, with 1x1
convs between the 3x3s to squeeze the width (NIN-style), BatchNorm + LeakyReLU(0.1) after
every conv, and global average pooling instead of fully connected layers: 19 convs and 5
max-pools, 5.58 billion FLOPs at 224 (the paper's Table 6; = 2 x multiply-adds).
The classifier is the paper's 1x1 conv to ``num_classes`` after the last stage, applied
here after the global average as a linear layer (the same map: a linear layer commutes
with averaging).

Shapes (224 input): stages (B, 32|64|128|256|512|1024, 224|112|56|28|14|7) -> global
average (B, 1024) -> fc (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.darknet import darknet_conv
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.init import init_weights

__all__ = ["DARKNET19_STAGES", "Darknet19", "darknet19"]

# Table 6: per stage, the (filters, kernel) convs after that stage's 2x2 max-pool (none
# before the first). Widths alternate 3x3 at C and 1x1 at C/2.
DARKNET19_STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((32, 3),),
    ((64, 3),),
    ((128, 3), (64, 1), (128, 3)),
    ((256, 3), (128, 1), (256, 3)),
    ((512, 3), (256, 1), (512, 3), (256, 1), (512, 3)),
    ((1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)),
)


class Darknet19(nn.Module):
    """Darknet-19 classifier / YOLOv2 trunk.

    Args:
        stages: per stage, (filters, kernel) of its convs; stage i > 0 opens with a 2x2
            max-pool (default: the paper's Table 6).
        width_mult: scales every conv's filters (at least 8), so a small variant trains on CPU.

    ``feature_info`` taps: ``stages.0`` (/1) .. ``stages.5`` (/32) -- YOLOv2's passthrough
    layer reads ``stages.4`` (/16), its head ``stages.5``.
    """

    head_names = ("fc",)

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        stages: Sequence[Sequence[tuple[int, int]]] = DARKNET19_STAGES,
        width_mult: float = 1.0,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ConfigError(f"Darknet19 width_mult must be > 0, got {width_mult}")
        if not stages or any(not s for s in stages):
            raise ConfigError("Darknet19 needs at least one stage, each with at least one conv")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        c, blocks, self.feature_info = in_chans, [], []
        for i, convs in enumerate(stages):
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if i > 0 else []
            for filters, k in convs:
                out = max(8, round(filters * width_mult))
                layers.append(darknet_conv(c, out, k))
                c = out
            blocks.append(nn.Sequential(*layers))
            self.feature_info.append(feature_entry(c, 2**i, f"stages.{i}"))
        self.stages = nn.Sequential(*blocks)
        self.num_features = c
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self, "kaiming", nonlinearity="leaky_relu")

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``stages.0`` .. ``stages.K-1`` in order."""
        return [(f"stages.{i}", s) for i, s in enumerate(self.stages)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): stage i at H / 2^i."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 1024, H/32, W/32)."""
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> fc (the paper's final 1x1 conv): (B, C, h, w) -> (B, K)."""
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


# YOLO9000, Sec. 3: SGD lr 0.1, polynomial decay (power 4), weight decay 5e-4, momentum 0.9.
_CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4}


@register_model(default_cfg=_CFG)
def darknet19(num_classes: int = 1000, in_chans: int = 3, **kw) -> Darknet19:
    """Darknet-19 (YOLOv2's classifier, Table 6); 20.8M params; option ``width_mult``."""
    return Darknet19(num_classes=num_classes, in_chans=in_chans, **kw)
