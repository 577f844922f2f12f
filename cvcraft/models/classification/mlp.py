"""Multi-layer perceptron classifier: the baseline every convolutional network is measured
against.

Key idea: flatten the image and apply ``Linear -> ReLU (-> Dropout)`` per hidden layer, then
a linear classifier. With no weight sharing or locality prior it needs far more parameters
than a CNN for the same accuracy, which is exactly what it is here to show. Built for small
images (28x28 MNIST, 32x32 CIFAR): the first layer's width depends on ``img_size``.

Shapes: (B, in_chans, S, S) -> flatten (B, in_chans*S*S) -> hidden (B, h_i) -> (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model


class MLP(nn.Module):
    """Fully connected classifier on flattened pixels.

    Args:
        hidden: widths of the hidden layers, e.g. (512, 256); () gives logistic regression.
        img_size: the square input side the model expects (28 for MNIST, 32 for CIFAR).
        drop_rate: dropout after every hidden activation.

    Hidden layers live in ``self.layers`` as (Linear, ReLU, Dropout) triples; ``self.head``
    is the classifier.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        hidden: Sequence[int] = (512, 256),
        img_size: int = 32,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if img_size <= 0 or any(h <= 0 for h in hidden):
            raise ConfigError(f"MLP img_size and hidden widths must be positive, got "
                              f"img_size={img_size}, hidden={tuple(hidden)}")  # fmt: skip
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"MLP drop_rate must be in [0, 1), got {drop_rate}")
        self.num_classes = num_classes
        self.img_size = img_size
        self.default_input_size = (in_chans, img_size, img_size)
        layers: list[nn.Module] = []
        width = in_chans * img_size * img_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            width = h
        self.layers = nn.Sequential(*layers)
        self.num_features = width
        self.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, S, S) -> (B, hidden[-1]) last hidden activations."""
        if tuple(x.shape[1:]) != self.default_input_size:
            raise ValueError(
                f"MLP expects inputs of shape (B, {', '.join(map(str, self.default_input_size))})"
                f", got {tuple(x.shape)}; build it with img_size={x.shape[-1]} / "
                f"in_chans={x.shape[1]} or resize the images"
            )
        return self.layers(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))  # (B, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``head`` for ``num_classes``; 0 -> identity (last hidden features)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


@register_model(
    default_cfg={
        "mean": "dataset", "std": "dataset", "lr": 0.01, "weight_decay": 0.0,
        "img_size_arg": True,  # its first layer is sized from the input: pass imgsz
    }
)  # fmt: skip
def mlp(num_classes: int = 10, in_chans: int = 3, **kw) -> MLP:
    """MLP 512-256 on 32x32 inputs; options ``hidden``, ``img_size`` (28: MNIST), ``drop_rate``."""
    return MLP(num_classes=num_classes, in_chans=in_chans, **kw)
