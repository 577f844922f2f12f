"""LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition").

The first convolutional network to work at scale: two conv + subsampling stages learn
local features, three fully connected layers classify them. Built for 32x32 input:

    conv5x5(6) -> pool/2 -> conv5x5(16) -> pool/2 -> fc120 -> fc84 -> fc(num_classes)

Defaults follow the paper: ``act="tanh"`` and average pooling ("subsampling"). The
paper's sparse C3 connection table, trainable subsampling coefficients and RBF output are
replaced by a full conv, plain pooling and a linear layer, as every modern re-implementation
does. ``act="relu", pool="max"`` gives the variant that trains faster on CIFAR.
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model

_ACTS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(nn.Module):
    """LeNet-5 for (B, in_chans, 32, 32) input -> (B, num_classes) logits."""

    def __init__(
        self, num_classes: int = 10, in_chans: int = 1, act: str = "tanh", pool: str = "avg"
    ) -> None:
        super().__init__()
        if act not in _ACTS or pool not in _POOLS:
            raise ConfigError(
                f"LeNet5: act must be one of {sorted(_ACTS)} (got {act!r}) and pool one of "
                f"{sorted(_POOLS)} (got {pool!r})"
            )
        self.default_input_size = (in_chans, 32, 32)
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.pool = _POOLS[pool](kernel_size=2, stride=2)
        self.act = _ACTS[act]()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 32, 32) -> (B, 84) penultimate features."""
        if x.shape[-2:] != (32, 32):
            raise ValueError(
                f"LeNet5 expects 32x32 input, got {tuple(x.shape[-2:])}; resize (or pad "
                "28x28 MNIST by 2 pixels) first"
            )
        x = self.pool(self.act(self.conv1(x)))  # (B, 6, 14, 14)
        x = self.pool(self.act(self.conv2(x)))  # (B, 16, 5, 5)
        x = x.flatten(1)  # (B, 400)
        x = self.act(self.fc1(x))  # (B, 120)
        return self.act(self.fc2(x))  # (B, 84)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.forward_features(x))  # (B, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc3

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a fresh one for ``num_classes`` (0 -> identity)."""
        self.num_classes = num_classes
        self.fc3 = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()


@register_model(default_cfg={"mean": "dataset", "std": "dataset", "lr": 0.01, "weight_decay": 0.0})
def lenet5(num_classes: int = 10, in_chans: int = 1, **kw) -> LeNet5:
    """LeNet-5; ``act`` ("tanh" | "relu") and ``pool`` ("avg" | "max") are options."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans, **kw)
