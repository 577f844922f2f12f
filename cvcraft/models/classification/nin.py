"""Network in Network (Lin, Chen & Yan 2014, "Network In Network").

Key idea: replace each linear conv filter with an "mlpconv" block, a conv followed by two
1x1 convs (a tiny MLP slid over every position), and replace the fully connected classifier
with global average pooling over a last layer that has one feature map per class. No FC
layer means far fewer parameters and a head that cannot overfit on its own.

This is the paper's CIFAR-10 network (the released Caffe model): three mlpconv blocks
192-160-96 / 192-192-192 / 192-192-classes with 5x5, 5x5, 3x3 first convs, 3x3 stride-2
max- then average-pooling, dropout 0.5 between blocks; 0.97M parameters for 10 classes.
``batch_norm=True`` adds BatchNorm after every conv (the paper predates BN; with it NIN
trains at ordinary learning rates without the paper's careful init).

Shapes: (B, C, 32, 32) -> block1 (B, 96, 16, 16) -> block2 (B, 192, 8, 8)
-> block3 (B, num_classes, 8, 8) -> global average (B, num_classes).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model


class MlpConv(nn.Sequential):
    """conv kxk -> ReLU -> conv 1x1 -> ReLU -> conv 1x1 -> ReLU; (B, c_in, H, W) -> (B, c3, H, W).

    ``last_act=False`` leaves the final 1x1 conv linear (used for the class maps, whose
    averages are the logits: a ReLU there would clip every negative logit to 0).
    """

    def __init__(
        self,
        c_in: int,
        widths: tuple[int, int, int],
        kernel: int,
        batch_norm: bool = False,
        last_act: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        for i, (k, c) in enumerate(zip((kernel, 1, 1), widths)):
            layers.append(nn.Conv2d(c_in, c, k, padding=k // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            if i < 2 or last_act:
                layers.append(nn.ReLU(inplace=True))
            c_in = c
        super().__init__(*layers)


class NIN(nn.Module):
    """Network in Network for 32x32 inputs; the class maps' global average gives logits."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        batch_norm: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ConfigError("NIN needs num_classes > 0: its last conv has one map per class")
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"NIN drop_rate must be in [0, 1), got {drop_rate}")
        self.num_classes = num_classes
        self.batch_norm = batch_norm
        self.default_input_size = (in_chans, 32, 32)
        self.block1 = MlpConv(in_chans, (192, 160, 96), 5, batch_norm)
        # ceil_mode makes 32 -> 16 -> 8 as in the Caffe model.
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.drop1 = nn.Dropout(drop_rate)
        self.block2 = MlpConv(96, (192, 192, 192), 5, batch_norm)
        self.pool2 = nn.AvgPool2d(3, stride=2, ceil_mode=True)
        self.drop2 = nn.Dropout(drop_rate)
        self.num_features = 192
        self.head = MlpConv(192, (192, 192, num_classes), 3, batch_norm, last_act=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # The class-map conv feeds logits directly: a small init keeps them near 0 at start.
        nn.init.normal_(self.head[-1 - self.batch_norm].weight, 0.0, 0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 192, H/4, W/4): input to the class-map mlpconv."""
        x = self.drop1(self.pool1(self.block1(x)))  # (B, 96, H/2, W/2)
        return self.drop2(self.pool2(self.block2(x)))  # (B, 192, H/4, W/4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.head(self.forward_features(x))  # (B, num_classes, H/4, W/4)
        return maps.mean(dim=(2, 3))  # global average pooling -> (B, num_classes)

    def get_classifier(self) -> nn.Module:
        """The class-map mlpconv block (``head``); NIN has no linear classifier."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Rebuild the class-map block for ``num_classes`` (> 0)."""
        if num_classes <= 0:
            raise ConfigError("NIN needs num_classes > 0: its last conv has one map per class")
        self.num_classes = num_classes
        self.head = MlpConv(192, (192, 192, num_classes), 3, self.batch_norm, last_act=False)


@register_model(default_cfg={"mean": "dataset", "std": "dataset", "lr": 0.1, "weight_decay": 1e-4})
def nin(num_classes: int = 10, in_chans: int = 3, **kw) -> NIN:
    """Network in Network (CIFAR-10 model); options ``batch_norm``, ``drop_rate``."""
    return NIN(num_classes=num_classes, in_chans=in_chans, **kw)
