"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s").

Key idea: modernise a ResNet step by step towards a Swin Transformer while staying a pure
ConvNet: a 4x4 stride-4 "patchify" stem, stage depths 3-3-9-3, an inverted bottleneck
whose spatial mixing is one large 7x7 depthwise conv (like a local attention window),
LayerNorm instead of BatchNorm, one GELU per block, separate 2x2 stride-2 downsampling
layers, and a learnable per-channel layer scale (init 1e-6) on every residual branch:
``x + drop_path(gamma * pw2(gelu(pw1(ln(dwconv7(x))))))``.

Module names, state_dict keys (``features.1.0.block.3.weight``, ``features.1.0.layer_scale``)
and shapes equal ``torchvision.models.convnext_tiny`` / ``_small`` / ``_base`` / ``_large``,
so their checkpoints load with ``strict=True``.

Shapes (tiny, 224 input): stem (B, 96, 56, 56) -> stages (B, 96|192|384|768, 56|28|14|7)
-> global average (B, 768) -> LayerNorm -> linear (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.drop import DropPath
from cvcraft.nn.norm import LayerNorm2d

__all__ = ["ConvNeXt", "ConvNeXtBlock", "convnext_tiny", "convnext_small", "convnext_base"]


class Permute(nn.Module):
    """Reorder a tensor's dims (NCHW <-> NHWC), so LayerNorm and Linear act on channels."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LayerNorm -> linear 4C -> GELU -> linear C, scaled by ``layer_scale``,
    plus the input. (B, C, H, W) -> (B, C, H, W); the MLP runs channels-last (B, H, W, C)."""

    def __init__(self, dim: int, layer_scale: float = 1e-6, drop_path: float = 0.0) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),  # (B, C, H, W)
            Permute((0, 2, 3, 1)),  # (B, H, W, C)
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),  # (B, H, W, 4C)
            nn.GELU(),
            nn.Linear(4 * dim, dim),  # (B, H, W, C)
            Permute((0, 3, 1, 2)),  # (B, C, H, W)
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), float(layer_scale)))
        self.stochastic_depth = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    """ConvNeXt of any depths and widths.

    Args:
        depths, dims: blocks and channels per stage (tiny: (3, 3, 9, 3), (96, 192, 384, 768)).
        drop_path_rate: stochastic depth of the last block; block i of N gets
            ``drop_path_rate * i / (N - 1)`` (torchvision's schedule: the last block gets it all).
        layer_scale: initial value of every block's per-channel scale (1e-6).
        stem_stride: 4 (ImageNet patchify stem) or 2 for small (CIFAR-size) images.

    ``feature_info`` taps (timm's): the output of every stage, ``features.1, .3, .5, .7``
    at strides 4, 8, 16, 32 (with the 4x4 stem).
    """

    head_names = ("avgpool", "classifier")

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_path_rate: float = 0.1,
        layer_scale: float = 1e-6,
        stem_stride: int = 4,
    ) -> None:
        super().__init__()
        if len(depths) != len(dims) or not depths:
            raise ConfigError(f"ConvNeXt: depths {tuple(depths)} and dims {tuple(dims)} differ")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"ConvNeXt drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if stem_stride not in (2, 4):
            raise ConfigError(f"ConvNeXt stem_stride must be 2 or 4, got {stem_stride}")
        self.num_classes = num_classes
        side = 224 if stem_stride == 4 else 32
        self.default_input_size = (in_chans, side, side)
        stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], stem_stride, stride=stem_stride),
            LayerNorm2d(dims[0], eps=1e-6),
        )  # (B, dims[0], H/4, W/4)
        layers: list[nn.Module] = [stem]
        total, done, red = sum(depths), 0, stem_stride
        self.feature_info = []
        for i, (n, dim) in enumerate(zip(depths, dims)):
            if i > 0:  # downsample between stages: LN then 2x2 stride-2 conv
                layers.append(
                    nn.Sequential(
                        LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)
                    )
                )
                red *= 2
            rates = [drop_path_rate * (done + j) / max(1, total - 1) for j in range(n)]
            layers.append(nn.Sequential(*(ConvNeXtBlock(dim, layer_scale, r) for r in rates)))
            done += n
            self.feature_info.append(feature_entry(dim, red, f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.num_features = dims[-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(self.num_features, eps=1e-6), nn.Flatten(1), self._linear(num_classes)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(fc.weight, std=0.02)
        nn.init.zeros_(fc.bias)
        return fc

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``features.0`` (stem), then downsample / stage pairs, in order."""
        return [(f"features.{i}", m) for i, m in enumerate(self.features)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): (B, dims[i], H/r_i, W/r_i)."""
        return stage_features(self, x, indices)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, dims[-1], H/32, W/32)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> LayerNorm -> linear: (B, C, h, w) -> (B, num_classes)."""
        x = self.classifier[:2](self.avgpool(x))  # (B, C), normalised
        return x if pre_logits else self.classifier[2](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``classifier[2]``)."""
        return self.classifier[2]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer for ``num_classes`` (0 -> identity, pooled features)."""
        self.num_classes = num_classes
        self.classifier[2] = self._linear(num_classes)


# The paper's recipe: AdamW lr 4e-3 at batch 4096 (2.5e-4 per 256), weight decay 0.05.
_CFG = {"optimizer": "adamw", "lr": 2.5e-4, "weight_decay": 0.05}


@register_model(tv_twin="convnext_tiny", default_cfg=_CFG)
def convnext_tiny(num_classes: int = 1000, in_chans: int = 3, **kw) -> ConvNeXt:
    """ConvNeXt-T: depths 3-3-9-3, widths 96..768, stochastic depth 0.1; 28.6M params."""
    return ConvNeXt((3, 3, 9, 3), (96, 192, 384, 768), num_classes, in_chans, **kw)


@register_model(tv_twin="convnext_small", default_cfg=_CFG)
def convnext_small(num_classes: int = 1000, in_chans: int = 3, **kw) -> ConvNeXt:
    """ConvNeXt-S: depths 3-3-27-3, widths 96..768, stochastic depth 0.4; 50.2M params."""
    kw.setdefault("drop_path_rate", 0.4)
    return ConvNeXt((3, 3, 27, 3), (96, 192, 384, 768), num_classes, in_chans, **kw)


@register_model(tv_twin="convnext_base", default_cfg=_CFG)
def convnext_base(num_classes: int = 1000, in_chans: int = 3, **kw) -> ConvNeXt:
    """ConvNeXt-B: depths 3-3-27-3, widths 128..1024, stochastic depth 0.5; 88.6M params."""
    kw.setdefault("drop_path_rate", 0.5)
    return ConvNeXt((3, 3, 27, 3), (128, 256, 512, 1024), num_classes, in_chans, **kw)


@register_model(default_cfg={**_CFG, "mean": "dataset", "std": "dataset"})
def convnext_tiny_cifar(num_classes: int = 10, in_chans: int = 3, **kw) -> ConvNeXt:
    """ConvNeXt-T layout for 32x32 images: a 2x2 stride-2 stem, so the last map is 2x2."""
    kw.setdefault("stem_stride", 2)
    return ConvNeXt((3, 3, 9, 3), (96, 192, 384, 768), num_classes, in_chans, **kw)
