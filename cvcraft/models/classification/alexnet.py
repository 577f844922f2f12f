"""AlexNet (Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional Neural
Networks").

Key idea: a deep (for 2012) stack of five ReLU convolutions and three dropout-regularised
fully connected layers, trained on GPUs, beats hand-made features on ImageNet by a wide
margin. This is the single-tower variant of Krizhevsky 2014 ("One weird trick"), the one
torchvision ships: 64-192-384-256-256 conv channels, no local response normalisation.

Module names, state_dict keys (``features.0``, ..., ``classifier.6``) and shapes equal
``torchvision.models.alexnet``, so its checkpoints load with ``strict=True``.
An adaptive average pool to 6x6 before the classifier lets any input of at least 63x63
pixels through (smaller inputs vanish in the stride-4 stem and three max-pools).

Shapes (224 input): (B, 3, 224, 224) -> features (B, 256, 6, 6) -> avgpool (B, 256, 6, 6)
-> flatten (B, 9216) -> classifier (B, num_classes).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model


class AlexNet(nn.Module):
    """AlexNet with a configurable classifier dropout (``drop_rate``, 0.5 in the paper)."""

    num_features = 256 * 6 * 6

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"AlexNet drop_rate must be in [0, 1), got {drop_rate}")
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.default_input_size = (in_chans, 224, 224)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2),  # (B, 64, 55, 55)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 6, 6)
        )
        # Fixed 6x6 grid so the first FC layer's size does not depend on the input size.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = self._make_classifier(num_classes)

    def _make_classifier(self, num_classes: int) -> nn.Sequential:
        # Index layout (dropout at 0 and 3, linears at 1, 4, 6) is torchvision's key layout.
        last = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
        return nn.Sequential(
            nn.Dropout(self.drop_rate),
            nn.Linear(self.num_features, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(self.drop_rate),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            last,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 256, 6, 6) pooled conv features (H, W >= 63)."""
        if min(x.shape[-2:]) < 63:
            raise ValueError(f"AlexNet needs inputs of at least 63x63, got {tuple(x.shape[-2:])}")
        return self.avgpool(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x).flatten(1))  # (B, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``classifier[6]``)."""
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer for ``num_classes``; 0 -> identity (4096-d features)."""
        self.num_classes = num_classes
        self.classifier[6] = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()


@register_model(
    tv_twin="alexnet",
    default_cfg={"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4},  # the paper's
)
def alexnet(num_classes: int = 1000, in_chans: int = 3, **kw) -> AlexNet:
    """AlexNet (one-tower, torchvision layout); 61.1M params; option ``drop_rate``."""
    return AlexNet(num_classes=num_classes, in_chans=in_chans, **kw)
