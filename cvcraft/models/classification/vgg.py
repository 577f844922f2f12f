"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition").

Key idea: depth from stacks of small 3x3 convolutions only; two 3x3 layers see a 5x5 field
with fewer weights and an extra non-linearity. Configurations A/B/D/E of the paper (11, 13,
16, 19 weight layers) are rows of one table, optionally with BatchNorm after each conv
(Ioffe & Szegedy 2015; the ``_bn`` variants).

Module names, state_dict keys (``features.<i>``, ``classifier.0/3/6``) and shapes equal
``torchvision.models.vgg*``, so its checkpoints load with ``strict=True``. An adaptive
average pool to 7x7 before the classifier lets any input of at least 32x32 through (the
five max-pools reduce 32 -> 1, which the pool then replicates to 7x7).

Shapes (224 input): (B, 3, 224, 224) -> features (B, 512, 7, 7) -> flatten (B, 25088)
-> classifier (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model

# Conv widths per layer; "M" is a 2x2 max-pool. Keys are the paper's column letters.
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}  # fmt: skip
_DEPTH_CFG = {11: "A", 13: "B", 16: "D", 19: "E"}


class VGG(nn.Module):
    """A VGG network from a layer table.

    Args:
        cfg: a key of :data:`CFGS` ("A", "B", "D", "E") or a list of widths and "M".
        batch_norm: BatchNorm2d after every conv (the ``_bn`` models).
        drop_rate: dropout before the second and third FC layer (0.5 in the paper).

    ``feature_info`` taps (timm's): the ReLU before each max-pool (/1, /2, /4, /8, /16) and
    the last max-pool (/32), named by their ``features.<i>`` index.
    """

    head_names = ("avgpool", "classifier")

    def __init__(
        self,
        cfg: str | list[int | str] = "D",
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in CFGS:
                raise ConfigError(f"VGG cfg must be one of {sorted(CFGS)} or a list, got {cfg!r}")
            cfg = CFGS[cfg]
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"VGG drop_rate must be in [0, 1), got {drop_rate}")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 224, 224)
        layers: list[nn.Module] = []
        ch, red = in_chans, 1
        self.feature_info = []
        for v in cfg:
            if v == "M":
                self.feature_info.append(feature_entry(ch, red, f"features.{len(layers) - 1}"))
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))  # halves H, W
                red *= 2
                continue
            layers.append(nn.Conv2d(ch, int(v), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            ch = int(v)
        self.feature_info.append(feature_entry(ch, red, f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.num_features = ch  # channels of forward_features; the classifier sees ch * 7 * 7
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(ch * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity(),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # He (fan_out) for convs; small Gaussian FC weights keep the 25088-wide first FC
        # from exploding the logits at start (torchvision's recipe).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``features.0`` .. ``features.<last>`` in order."""
        return [(f"features.{i}", m) for i, m in enumerate(self.features)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): (B, 64, H, W) .. (B, 512, H/32, W/32)
        for the 64..512 VGG widths."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 512, H/32, W/32) conv features, before the 7x7 pool."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x)).flatten(1)  # (B, 512 * 7 * 7)
        return self.classifier(x)  # (B, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``classifier[6]``)."""
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer for ``num_classes``; 0 -> identity (4096-d features)."""
        self.num_classes = num_classes
        self.classifier[6] = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()


def _vgg(depth: int, batch_norm: bool, num_classes: int, in_chans: int, **kw) -> VGG:
    return VGG(_DEPTH_CFG[depth], num_classes, in_chans, batch_norm=batch_norm, **kw)


# The paper: SGD lr 0.01 at batch 256, weight decay 5e-4.
_CFG = {"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4}


@register_model(tv_twin="vgg11", default_cfg=_CFG)
def vgg11(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-11 (config A); 132.9M params."""
    return _vgg(11, False, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg11_bn", default_cfg=_CFG)
def vgg11_bn(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-11 with BatchNorm; 132.9M params."""
    return _vgg(11, True, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg13", default_cfg=_CFG)
def vgg13(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-13 (config B); 133.0M params."""
    return _vgg(13, False, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg13_bn", default_cfg=_CFG)
def vgg13_bn(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-13 with BatchNorm; 133.1M params."""
    return _vgg(13, True, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg16", default_cfg=_CFG)
def vgg16(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-16 (config D); 138.4M params."""
    return _vgg(16, False, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg16_bn", default_cfg=_CFG)
def vgg16_bn(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-16 with BatchNorm; 138.4M params."""
    return _vgg(16, True, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg19", default_cfg=_CFG)
def vgg19(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-19 (config E); 143.7M params."""
    return _vgg(19, False, num_classes, in_chans, **kw)


@register_model(tv_twin="vgg19_bn", default_cfg=_CFG)
def vgg19_bn(num_classes: int = 1000, in_chans: int = 3, **kw) -> VGG:
    """VGG-19 with BatchNorm; 143.7M params."""
    return _vgg(19, True, num_classes, in_chans, **kw)
