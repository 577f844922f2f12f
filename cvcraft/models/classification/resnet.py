"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition").

Key idea: each block learns a residual ``F(x)`` and outputs ``relu(F(x) + shortcut(x))``,
so very deep networks start near the identity and optimise easily.

One configurable :class:`ResNet` builds every variant; the registered constructors below
only pick block type, depth and stem:

- ImageNet ResNets ``resnet18/34/50/101/152`` (and ``resnext50_32x4d``,
  ``wide_resnet50_2``). Module names, state_dict keys and shapes are identical to
  ``torchvision.models.resnetXX`` (v1.5: the stride sits in the bottleneck's 3x3 conv), so
  torchvision checkpoints load with ``strict=True`` and give identical outputs.
- ``resnet18_cifar`` etc.: the same networks with a CIFAR stem (3x3 stride-1 conv1, no
  max-pool; ``maxpool`` is ``nn.Identity`` so the keys stay torchvision-compatible).
- He et al.'s CIFAR ResNets ``resnet20/32/44/56/110``: 3 stages of 16/32/64 channels with
  n BasicBlocks each (6n+2 layers). Where the channel count changes we use the paper's
  **option B** (1x1 conv + BN projection) rather than option A (zero-padded identity): it
  keeps one shortcut implementation for all ResNets and costs ~2.7k parameters (1%
  more than the paper's table, e.g. resnet20 0.272M vs 0.27M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.init import init_weights
from cvcraft.nn.residual import BasicBlock, Bottleneck, conv1x1, conv3x3

_BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
STEMS = ("imagenet", "cifar")


class ResNet(nn.Module):
    """A ResNet of any depth, width and stem.

    Args:
        block: "basic" or "bottleneck" (or the block class).
        layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50; stages are named
            ``layer1..layerK`` as in torchvision.
        widths: base channel count per stage (default 64, 128, 256, 512); the first stage
            keeps the resolution, every later one halves it.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool, /4) or "cifar" (3x3/1 conv, no pool).
        stem_width: channels out of conv1 (default ``widths[0]``).
        groups, base_width: ResNeXt cardinality and width per group (bottleneck only).
        drop_rate: dropout probability on the pooled features before ``fc``.
        zero_init_residual: zero each block's last BN gamma so every block starts as the
            identity (Goyal et al. 2017); helps large-batch training.

    Shapes (imagenet stem, 224 input): (B, in_chans, 224, 224) -> layer4 (B, 512*e, 7, 7)
    -> avgpool (B, 512*e) -> fc (B, num_classes), e = block expansion.

    ``feature_info`` taps (timm's): the stem after ``relu`` (/2, /1 with the cifar stem),
    then ``layer1`` .. ``layerK``; ``dilate_resnet`` keeps them at the output stride.
    """

    head_names = ("avgpool", "fc")

    def __init__(
        self,
        block: str | type[nn.Module] = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        stem_width: int | None = None,
        groups: int = 1,
        base_width: int = 64,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(block, str):
            if block not in _BLOCKS:
                raise ConfigError(f"ResNet block must be one of {sorted(_BLOCKS)}, got {block!r}")
            block = _BLOCKS[block]
        if stem not in STEMS:
            raise ConfigError(f"ResNet stem must be one of {STEMS}, got {stem!r}")
        if len(layers) != len(widths):
            raise ConfigError(
                f"ResNet: layers {tuple(layers)} and widths {tuple(widths)} differ in length"
            )
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"ResNet drop_rate must be in [0, 1), got {drop_rate}")
        stem_width = stem_width or widths[0]
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.groups, self.base_width = groups, base_width
        self.default_input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32)

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:  # small images: keep full resolution into layer1
            self.conv1 = conv3x3(in_chans, stem_width)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)

        in_ch = stem_width
        stem_red = 2 if stem == "imagenet" else 1  # conv1's stride
        pooled = stem_red * (2 if stem == "imagenet" else 1)  # after the max-pool
        self.feature_info = [feature_entry(stem_width, stem_red, "relu")]
        for i, (n, w) in enumerate(zip(layers, widths)):
            stage, in_ch = self._make_stage(block, in_ch, w, n, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
            self.feature_info.append(feature_entry(in_ch, pooled * 2**i, f"layer{i + 1}"))
        self.num_stages = len(layers)
        self.num_features = in_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes) if num_classes > 0 else nn.Identity()

        # torchvision's recipe: He (fan_out) init for convs, BN = identity, fc left at the
        # PyTorch default (uniform +-1/sqrt(fan_in)), which the kaiming pass would overwrite.
        fc_state = {k: v.clone() for k, v in self.fc.state_dict().items()}
        init_weights(self, "kaiming", nonlinearity="relu")
        self.fc.load_state_dict(fc_state)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def _make_stage(
        self, block: type[nn.Module], in_ch: int, width: int, n: int, stride: int
    ) -> tuple[nn.Sequential, int]:
        out_ch = width * block.expansion
        downsample = None
        if stride != 1 or in_ch != out_ch:  # option B: projection shortcut when shape changes
            downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
        blocks = [block(in_ch, width, stride, downsample, self.groups, self.base_width)]
        blocks += [
            block(out_ch, width, 1, None, self.groups, self.base_width) for _ in range(n - 1)
        ]
        return nn.Sequential(*blocks), out_ch

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk in order: stem conv, bn, relu, max-pool, then ``layer1..layerK``."""
        stem = [(n, getattr(self, n)) for n in ("conv1", "bn1", "relu", "maxpool")]
        return stem + [
            (f"layer{i}", getattr(self, f"layer{i}")) for i in range(1, self.num_stages + 1)
        ]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): stem (B, stem_width, H/2, W/2),
        layer1 (H/4), ..., layer4 (B, num_features, H/32, W/32) for the imagenet stem."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> last feature map (B, num_features, H/32, W/32) (imagenet stem)."""
        return self.forward_intermediates(x, [-1])[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, num_features, h, w) -> (B, num_classes) logits (or pooled features)."""
        x = self.avgpool(x).flatten(1)  # (B, num_features)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a freshly initialised layer for ``num_classes`` (0 -> identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


# -- registered constructors ------------------------------------------------------------
_IMAGENET = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _resnet(depth: int, num_classes: int, in_chans: int, **kw) -> ResNet:
    block, layers = _IMAGENET[depth]
    return ResNet(block, layers, num_classes=num_classes, in_chans=in_chans, **kw)


def _cifar_resnet(depth: int, num_classes: int, in_chans: int, width: int = 16, **kw) -> ResNet:
    """He et al.'s CIFAR ResNet; ``width`` is the first stage's channels (stages w, 2w, 4w),
    the knob a width ladder (``cvcraft scaling widths=``) turns."""
    n = (depth - 2) // 6  # 6n + 2 layers: stem conv + 3 stages x n blocks x 2 convs + fc
    return ResNet(
        "basic", (n, n, n), num_classes=num_classes, in_chans=in_chans,
        widths=(width, 2 * width, 4 * width), stem="cifar", **kw,
    )  # fmt: skip


# Recipes: ImageNet, SGD lr 0.1 at batch 256, weight decay 1e-4 (He et al. 2016, torchvision's
# reference); CIFAR, the same at batch 128 (He et al. 2016, Sec. 4.2) with the data's own stats.
_CIFAR_CFG = {
    "mean": "dataset",
    "std": "dataset",
    "optimizer": "sgd",
    "lr": 0.1,
    "weight_decay": 1e-4,
}


@register_model(tv_twin="resnet18")
def resnet18(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2), torchvision-compatible; 11.7M params."""
    return _resnet(18, num_classes, in_chans, **kw)


@register_model(tv_twin="resnet34")
def resnet34(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3), torchvision-compatible; 21.8M params."""
    return _resnet(34, num_classes, in_chans, **kw)


@register_model(tv_twin="resnet50")
def resnet50(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3), torchvision-compatible; 25.6M params."""
    return _resnet(50, num_classes, in_chans, **kw)


@register_model(tv_twin="resnet101")
def resnet101(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-101 (Bottleneck, 3-4-23-3), torchvision-compatible; 44.5M params."""
    return _resnet(101, num_classes, in_chans, **kw)


@register_model(tv_twin="resnet152")
def resnet152(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-152 (Bottleneck, 3-8-36-3), torchvision-compatible; 60.2M params."""
    return _resnet(152, num_classes, in_chans, **kw)


@register_model(tv_twin="resnext50_32x4d")
def resnext50_32x4d(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017): grouped 3x3 convs, torchvision-compatible."""
    return _resnet(50, num_classes, in_chans, groups=32, base_width=4, **kw)


@register_model(tv_twin="wide_resnet50_2")
def wide_resnet50_2(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): 2x bottleneck width; torchvision keys."""
    return _resnet(50, num_classes, in_chans, base_width=128, **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-18 with the CIFAR stem (3x3/1 conv1, no max-pool) for 32x32 input."""
    return _resnet(18, num_classes, in_chans, stem="cifar", **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet34_cifar(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-34 with the CIFAR stem for 32x32 input."""
    return _resnet(34, num_classes, in_chans, stem="cifar", **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet50_cifar(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """ResNet-50 with the CIFAR stem for 32x32 input."""
    return _resnet(50, num_classes, in_chans, stem="cifar", **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet20(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """He et al. CIFAR ResNet-20 (n=3), option-B shortcuts; 0.27M params."""
    return _cifar_resnet(20, num_classes, in_chans, **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet32(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """He et al. CIFAR ResNet-32 (n=5), option-B shortcuts; 0.47M params."""
    return _cifar_resnet(32, num_classes, in_chans, **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet44(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """He et al. CIFAR ResNet-44 (n=7), option-B shortcuts; 0.66M params."""
    return _cifar_resnet(44, num_classes, in_chans, **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet56(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """He et al. CIFAR ResNet-56 (n=9), option-B shortcuts; 0.86M params."""
    return _cifar_resnet(56, num_classes, in_chans, **kw)


@register_model(default_cfg=_CIFAR_CFG)
def resnet110(num_classes: int = 10, in_chans: int = 3, **kw) -> ResNet:
    """He et al. CIFAR ResNet-110 (n=18), option-B shortcuts; 1.7M params."""
    return _cifar_resnet(110, num_classes, in_chans, **kw)
