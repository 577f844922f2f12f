"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

Key idea: cut the image into P x P patches, embed each linearly (a stride-P conv), prepend
a learned class token, add learned position embeddings, run a stack of pre-norm
Transformer encoder blocks, and classify from the class token's final state.

One :class:`VisionTransformer` builds every variant; the registered constructors pick
width/depth/heads and patch size:

- ``vit_tiny/small/base_patch16_224`` (192/384/768 wide, 12 blocks, 3/6/12 heads).
  ``vit_base_patch16_224`` matches ``torchvision.models.vit_b_16`` parameter for parameter;
  :func:`from_torchvision_state_dict` renames a torchvision checkpoint to our keys (the
  outputs are then identical).
- ``vit_tiny_patch4_32``: the tiny width/depth with 4x4 patches for 32x32 (CIFAR) input,
  an 8x8 grid of 64 tokens + class token.

Other input sizes work: the position table is resized bicubically to the new patch grid
(class token kept), as when fine-tuning at a higher resolution. H and W must be multiples
of the patch size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, resolve_out_indices, run_stages
from cvcraft.models.registry import register_model
from cvcraft.nn.transformer import LearnedPositionEmbedding, TransformerEncoderBlock


class VisionTransformer(nn.Module):
    """ViT classifier.

    Args:
        img_size: training resolution (square); sets the position table's grid.
        patch_size: side P of the square patches (the patch conv's kernel and stride).
        embed_dim, depth, num_heads, mlp_ratio: encoder width, blocks, heads, MLP widening.
        drop_rate, attn_drop_rate: dropout after projections / on attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 to this at the last block.
        norm_eps: LayerNorm epsilon (1e-6 as in the paper's code and torchvision).

    Shapes (base, 224): (B, 3, 224, 224) -> patches (B, 196, 768) -> + cls (B, 197, 768)
    -> blocks (B, 197, 768) -> norm, cls token (B, 768) -> head (B, num_classes).
    ``feature_info`` taps every block ``blocks.i`` at stride P; ``forward_intermediates``
    returns its patch tokens as a map (B, D, H/P, W/P), class token dropped (timm's choice).
    """

    head_names = ("norm", "head")

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_classes: int = 1000,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(f"ViT img_size {img_size} must be a multiple of patch {patch_size}")
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.num_features = embed_dim
        self.default_input_size = (in_chans, img_size, img_size)
        grid = (img_size // patch_size, img_size // patch_size)

        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = LearnedPositionEmbedding(grid, embed_dim, num_prefix=1)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[
            TransformerEncoderBlock(
                embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, r, norm_eps
            )
            for r in rates
        ])  # fmt: skip
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            feature_entry(embed_dim, patch_size, f"blocks.{i}") for i in range(depth)
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # Truncated normal (std 0.02) for linear layers and the class token, as in the
        # paper's code; the patch conv is a linear map on flattened patches, LeCun-scaled.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        fan_in = self.patch_embed.in_channels * self.patch_size**2
        nn.init.trunc_normal_(self.patch_embed.weight, std=fan_in**-0.5)
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> embedded tokens with class token and positions (B, 1 + gh gw, D)."""
        B, _, H, W = x.shape
        if H % self.patch_size or W % self.patch_size:
            raise ConfigError(
                f"ViT input {H}x{W} is not a multiple of the patch size {self.patch_size}; "
                "resize or crop the images"
            )
        x = self.patch_embed(x)  # (B, D, gh, gw)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, D): row-major patches
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + gh*gw, D)
        return self.pos_drop(self.pos_embed(x, grid)), grid

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The encoder blocks ``blocks.0`` .. ``blocks.L-1`` in order (on token sequences)."""
        return [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Patch tokens after ``blocks[i]`` for i in ``indices`` (default all) as maps
        (B, D, H/P, W/P), without the final norm."""
        idx = resolve_out_indices(self.feature_info, indices, "VisionTransformer")
        tokens, (gh, gw) = self._tokens(x)
        outs = run_stages(
            self.feature_stages(), tokens, [self.feature_info[i]["module"] for i in idx]
        )
        return [t[:, 1:].transpose(1, 2).unflatten(2, (gh, gw)) for t in outs]  # (B, D, gh, gw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> token states after the final norm (B, 1 + H/P * W/P, D)."""
        x, _ = self._tokens(x)
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, D) tokens -> (B, num_classes) from the class token."""
        x = x[:, 0]  # (B, D)
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


# torchvision name -> ours; applied as regex substitutions in order.
_TV_RENAMES = [
    (r"^conv_proj\.", "patch_embed."),
    (r"^class_token$", "cls_token"),
    (r"^encoder\.pos_embedding$", "pos_embed.weight"),
    (r"^encoder\.ln\.", "norm."),
    (r"^heads\.head\.", "head."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"blocks.\1."),
    (r"\.ln_1\.", ".norm1."),
    (r"\.ln_2\.", ".norm2."),
    (r"\.self_attention\.in_proj_", ".attn.qkv."),
    (r"\.self_attention\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.0\.", ".mlp.fc1."),
    (r"\.mlp\.3\.", ".mlp.fc2."),
]


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``torchvision.models.vit_*`` state_dict to this module's keys.

    conv_proj -> patch_embed, class_token -> cls_token, encoder.pos_embedding ->
    pos_embed.weight, encoder.layers.encoder_layer_i -> blocks.i with ln_1/ln_2 ->
    norm1/norm2, self_attention.in_proj_{weight,bias} -> attn.qkv.{weight,bias} (both
    stack [q; k; v]), self_attention.out_proj -> attn.proj, mlp.0/mlp.3 -> mlp.fc1/fc2,
    encoder.ln -> norm, heads.head -> head. Tensors are shared, not copied.
    """
    out = {}
    for key, value in sd.items():
        new = key
        for pat, rep in _TV_RENAMES:
            new = re.sub(pat, rep, new)
        out[new] = value
    return out


# -- registered constructors ------------------------------------------------------------
_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}


def _vit(size: str, patch: int, img: int, num_classes: int, in_chans: int, **kw):
    dim, depth, heads = _SIZES[size]
    img = kw.pop("img_size", img)  # the input size the position table is built for
    return VisionTransformer(
        img, patch, num_classes, in_chans, embed_dim=dim, depth=depth, num_heads=heads, **kw
    )


# DeiT's recipe for ViTs trained on ImageNet alone: AdamW lr 5e-4 at batch 512, decay 0.05.
# "img_size": the model is built for one input size (position table); the classify task
# passes its imgsz
_CFG = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.05, "img_size_arg": True}
_SMALL_CFG = {**_CFG, "mean": "dataset", "std": "dataset"}


@register_model(default_cfg=_CFG)
def vit_tiny_patch16_224(num_classes: int = 1000, in_chans: int = 3, **kw) -> VisionTransformer:
    """ViT-Ti/16 (192 wide, 12 blocks, 3 heads); 5.7M params, 1.3 GMACs at 224."""
    return _vit("tiny", 16, 224, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def vit_small_patch16_224(num_classes: int = 1000, in_chans: int = 3, **kw) -> VisionTransformer:
    """ViT-S/16 (384 wide, 12 blocks, 6 heads); 22M params, 4.6 GMACs at 224."""
    return _vit("small", 16, 224, num_classes, in_chans, **kw)


@register_model(
    aliases=("vit_b_16",),
    tv_twin="vit_b_16",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def vit_base_patch16_224(num_classes: int = 1000, in_chans: int = 3, **kw) -> VisionTransformer:
    """ViT-B/16 (768 wide, 12 blocks, 12 heads); 86.6M params = torchvision ``vit_b_16``."""
    return _vit("base", 16, 224, num_classes, in_chans, **kw)


@register_model(default_cfg=_SMALL_CFG)
def vit_tiny_patch4_32(num_classes: int = 10, in_chans: int = 3, **kw) -> VisionTransformer:
    """ViT-Ti with 4x4 patches for 32x32 (CIFAR) input: 64 patch tokens + class token."""
    return _vit("tiny", 4, 32, num_classes, in_chans, **kw)
