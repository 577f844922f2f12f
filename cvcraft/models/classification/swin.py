"""Swin Transformer (Liu et al. 2021, "Hierarchical Vision Transformer using Shifted Windows").

Key idea: self-attention only inside local M x M windows (cost linear in image area), with
every second block shifting the windows by M/2 so information crosses window borders; patch
merging between stages halves the resolution and doubles the width, giving a CNN-like
pyramid (/4, /8, /16, /32) that detection and segmentation heads can use.

One :class:`SwinTransformer` builds every variant:

- ``swin_tiny_patch4_window7_224`` (96 wide, depths 2-2-6-2) and
  ``swin_small_patch4_window7_224`` (depths 2-2-18-2) match ``torchvision.models.swin_t`` /
  ``swin_s`` parameter for parameter; :func:`from_torchvision_state_dict` renames a
  torchvision checkpoint to our keys (outputs are then identical).
- ``swin_nano_patch2_window4_32``: our small variant for 32x32 (CIFAR) input — 2x2
  patches (16x16 tokens), 4x4 windows, three stages 16 -> 8 -> 4 (depths 2-2-2, 64 wide,
  heads 2-4-8, 2.2M params with 10 classes). The last stage is a single window, so its
  shift is skipped.

Features stay channels-last, (B, H, W, C), between blocks, as LayerNorm and the window
partition want.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, resolve_out_indices, run_stages
from cvcraft.models.registry import register_model
from cvcraft.nn.drop import DropPath
from cvcraft.nn.transformer import MLPBlock, WindowAttention


class PatchEmbed(nn.Module):
    """Patch partition + linear embedding: a stride-P conv, then LayerNorm.

    (B, C_in, H, W) -> (B, H/P, W/P, D) channels-last.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, H/P, W/P, D)


class PatchMerging(nn.Module):
    """Downsample 2x: concatenate each 2x2 neighbourhood (4C), LayerNorm, linear to 2C.

    (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C); odd sizes are zero-padded first. The
    concatenation order is (top-left, bottom-left, top-right, bottom-right), the paper's.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1], x.shape[2]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )  # (B, H/2, W/2, 4C)
        return self.reduction(self.norm(x))


class SwinBlock(nn.Module):
    """Pre-norm block with (shifted) window attention: ``x += WA(norm1(x)); x += MLP(norm2(x))``.

    (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, shift, True, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """Optional patch merging (every stage but the first), then ``depth`` blocks alternating
    regular (shift 0) and shifted (shift window/2) windows."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        downsample: bool,
        mlp_ratio: float,
        drop: float,
        attn_drop: float,
        drop_paths: Sequence[float],
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(in_dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2,
                      mlp_ratio, drop, attn_drop, drop_paths[i])
            for i in range(depth)
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class SwinTransformer(nn.Module):
    """Swin Transformer classifier.

    Args:
        patch_size: side of the patches embedded at the stem (4 for ImageNet models).
        embed_dim: width of stage 1; stage i is ``embed_dim * 2**i`` wide.
        depths, num_heads: blocks and attention heads per stage.
        window: attention window side M (7 at 224: 56, 28, 14, 7 are all multiples).
        drop_path_rate: stochastic depth, rising linearly over all blocks to this value.
        img_size: the resolution the model is designed for (``default_input_size``); any
            size works (maps are padded to window multiples inside attention).

    Shapes (tiny, 224): (B, 3, 224, 224) -> embed (B, 56, 56, 96) -> stages (B, 28, 28,
    192), (B, 14, 14, 384), (B, 7, 7, 768) -> norm, mean over H, W (B, 768) -> head.
    ``feature_info`` taps every stage, ``stages.0`` (/P) .. ``stages.K-1`` (/(P 2^(K-1))),
    returned channels-first (B, C, h, w) for necks; ``forward_features`` stays channels-last.
    """

    head_names = ("norm", "head")

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window: int = 7,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ConfigError(f"Swin: depths {tuple(depths)} and num_heads {tuple(num_heads)} "
                              "must have one entry per stage")  # fmt: skip
        self.num_classes = num_classes
        self.default_input_size = (in_chans, img_size, img_size)
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages, dim, start = [], embed_dim, 0
        self.feature_info = []
        for i, (d, h) in enumerate(zip(depths, num_heads)):
            out_dim = embed_dim * 2**i
            stages.append(SwinStage(dim, out_dim, d, h, window, i > 0, mlp_ratio,
                                    drop_rate, attn_drop_rate, rates[start:start + d]))  # fmt: skip
            dim, start = out_dim, start + d
            self.feature_info.append(feature_entry(dim, patch_size * 2**i, f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = dim
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():  # the paper's init: truncated normal linears, zero biases
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``patch_embed``, ``stages.0`` .. ``stages.K-1`` in order (channels-last maps)."""
        return [("patch_embed", self.patch_embed)] + [
            (f"stages.{i}", s) for i, s in enumerate(self.stages)
        ]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Stage outputs at ``feature_info[indices]`` (default all), channels-first
        (B, embed_dim 2^i, H / (P 2^i), W / (P 2^i)), before the final norm."""
        idx = resolve_out_indices(self.feature_info, indices, "SwinTransformer")
        maps = run_stages(self.feature_stages(), x, [self.feature_info[i]["module"] for i in idx])
        return [m.permute(0, 3, 1, 2) for m in maps]  # (B, h, w, C) -> (B, C, h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised last-stage map, channels-last (B, H/32, W/32, D)."""
        x = self.patch_embed(x)  # (B, H/P, W/P, embed_dim)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, h, w, D) -> (B, num_classes) after global average pooling."""
        x = x.mean(dim=(1, 2))  # (B, D)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``head`` with a fresh layer for ``num_classes`` (0 -> identity, features)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``torchvision.models.swin_t/s/b`` state_dict to this module's keys.

    torchvision keeps one flat ``features`` list: ``features.0.0`` / ``features.0.2`` (patch
    conv / norm) -> ``patch_embed.proj`` / ``patch_embed.norm``; odd ``features.{2k+1}.j``
    (blocks of stage k) -> ``stages.k.blocks.j``; even ``features.{2k}`` (k >= 1, patch
    merging before stage k) -> ``stages.k.downsample``; ``mlp.0`` / ``mlp.3`` ->
    ``mlp.fc1`` / ``mlp.fc2``. ``relative_position_index`` buffers are dropped: ours are
    rebuilt from the window size and not saved. Tensors are shared, not copied.
    """
    out = {}
    for key, value in sd.items():
        if key.endswith("relative_position_index"):
            continue
        new = re.sub(r"^features\.0\.0\.", "patch_embed.proj.", key)
        new = re.sub(r"^features\.0\.2\.", "patch_embed.norm.", new)
        m = re.match(r"^features\.(\d+)\.(.*)$", new)
        if m:
            idx, rest = int(m.group(1)), m.group(2)
            if idx % 2:  # a stage's blocks: "j.<param>"
                new = f"stages.{idx // 2}.blocks.{rest}"
            else:  # patch merging that opens stage idx/2
                new = f"stages.{idx // 2}.downsample.{rest}"
        new = new.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.3.", ".mlp.fc2.")
        out[new] = value
    return out


# -- registered constructors ------------------------------------------------------------
# The paper: AdamW lr 1e-3 at batch 1024, weight decay 0.05.
# "img_size": the model is built for one input size (window grid); the classify task
# passes its imgsz
_CFG = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "img_size_arg": True}
_SMALL_CFG = {**_CFG, "mean": "dataset", "std": "dataset"}


@register_model(
    aliases=("swin_t",),
    tv_twin="swin_t",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def swin_tiny_patch4_window7_224(
    num_classes: int = 1000, in_chans: int = 3, **kw
) -> SwinTransformer:
    """Swin-T (96 wide, depths 2-2-6-2, heads 3-6-12-24); 28.3M params = torchvision swin_t."""
    kw.setdefault("drop_path_rate", 0.2)
    return SwinTransformer(num_classes, in_chans, 4, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, **kw)


@register_model(
    aliases=("swin_s",),
    tv_twin="swin_s",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def swin_small_patch4_window7_224(
    num_classes: int = 1000, in_chans: int = 3, **kw
) -> SwinTransformer:
    """Swin-S (96 wide, depths 2-2-18-2, heads 3-6-12-24); 49.6M params = torchvision swin_s."""
    kw.setdefault("drop_path_rate", 0.3)
    return SwinTransformer(num_classes, in_chans, 4, 96, (2, 2, 18, 2), (3, 6, 12, 24), 7, **kw)


@register_model(default_cfg=_SMALL_CFG)
def swin_nano_patch2_window4_32(num_classes: int = 10, in_chans: int = 3, **kw) -> SwinTransformer:
    """Small Swin for 32x32 input: 2x2 patches, 4x4 windows, 64 wide, depths 2-2-2."""
    kw.setdefault("drop_path_rate", 0.1)
    kw.setdefault("img_size", 32)
    return SwinTransformer(num_classes, in_chans, 2, 64, (2, 2, 2), (2, 4, 8), 4, **kw)
