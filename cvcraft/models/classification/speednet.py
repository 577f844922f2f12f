"""SpeedNet: a small VGG-style CIFAR network built to train to ~94 % in a few epochs (the
architecture family of Keller Jordan's airbench94, written here from its description).

Stem: a frozen 2x2 patch-whitening conv (nn/whitening.py, fitted on the training images
by the classify task) -> GELU. Then three stages of ``conv3x3 -> maxpool2 -> BN -> GELU ->
conv3x3 -> BN -> GELU``, widths 64/256/256, global max-pool and a bias-free linear head
whose logits are scaled by ``1/9`` (a fixed temperature that keeps early softmaxes soft).
BatchNorm keeps its bias but not its scale (the scale would only fight weight decay).
Shapes: (B, 3, 32, 32) -> whiten (B, 24, 31, 31) -> (B, 64, 15, 15) -> (B, 256, 7, 7)
-> (B, 256, 3, 3) -> (B, 256) -> (B, num_classes).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.models.registry import register_model
from cvcraft.nn.whitening import PatchWhitening


def _bn(c: int, momentum: float, eps: float) -> nn.BatchNorm2d:
    """BatchNorm with a learned bias and a scale fixed at 1 (``momentum`` as in torch)."""
    bn = nn.BatchNorm2d(c, eps=eps, momentum=momentum)
    bn.weight.requires_grad_(False)
    return bn


class SpeedStage(nn.Module):
    """``conv -> maxpool2 -> BN -> GELU -> conv -> BN -> GELU``: halves the side."""

    def __init__(self, c_in: int, c_out: int, momentum: float, eps: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = _bn(c_out, momentum, eps)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = _bn(c_out, momentum, eps)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class SpeedNet(nn.Module):
    """Whitening stem, three :class:`SpeedStage` s, max-pool, scaled linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, int, int] = (64, 256, 256),
        whiten_kernel: int = 2,
        whiten_eps: float = 5e-4,
        whiten_epochs: int = 3,
        bn_momentum: float = 0.4,
        bn_eps: float = 1e-12,
        logit_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        self.num_classes, self.logit_scale = num_classes, logit_scale
        self.default_input_size = (in_chans, 32, 32)
        self.whiten = PatchWhitening(in_chans, whiten_kernel, whiten_eps, whiten_epochs)
        self.act = nn.GELU()
        c = [self.whiten.out_channels, *widths]
        self.stages = nn.Sequential(
            *(SpeedStage(c[i], c[i + 1], bn_momentum, bn_eps) for i in range(3))
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes, bias=False) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not isinstance(m, PatchWhitening):
                # Dirac init of the first in-channels: each conv starts close to identity
                nn.init.kaiming_uniform_(m.weight, a=5**0.5)
                k = min(m.in_channels, m.out_channels)
                with torch.no_grad():
                    nn.init.dirac_(m.weight[:k])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.act(self.whiten(x)))  # (B, 256, 3, 3)
        return self.pool(x).flatten(1)  # (B, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x)) * self.logit_scale

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = (
            nn.Linear(self.num_features, num_classes, bias=False) if num_classes else nn.Identity()
        )


@register_model(default_cfg={"mean": "dataset", "std": "dataset", "lr": 0.2, "weight_decay": 5e-4})
def speednet(num_classes: int = 10, in_chans: int = 3, **kw) -> SpeedNet:
    """SpeedNet at widths 64/256/256 (the airbench94 size)."""
    return SpeedNet(num_classes=num_classes, in_chans=in_chans, **kw)
