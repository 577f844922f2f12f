"""Transformer in Transformer, TNT (Han et al. 2021, "Transformer in Transformer").

Key idea: ViT treats a 16x16 patch as one token and never looks inside it. TNT keeps two
token streams: *pixel* tokens (each patch seen as a 4x4 grid of 24-d "visual words", from a
7x7/4 conv on the patch) and *patch* tokens (384-d "visual sentences", as ViT's). Each block
runs an inner transformer among the 16 pixel tokens of every patch, adds their flattened,
projected result to the patch token, then runs the outer transformer over the patches:

    pix  = pix + attn_in(LN(pix));   pix = pix + mlp_in(LN(pix))        # per patch, (B*N, 16, 24)
    patch[1:] += LN(proj(LN(flatten(pix))))                             # (B, N, 384)
    patch = patch + attn_out(LN(patch));   patch = patch + mlp(LN(patch))

Module names follow timm's ``tnt_s_patch16_224`` except that each attention holds one fused
``qkv`` projection (cvcraft's ``MultiHeadSelfAttention``) where timm has ``qk`` and ``v``;
``from_timm_state_dict`` concatenates them ([q; k] then v: the same rows).

Shapes (TNT-S, 224 input): pixel tokens (B*196, 16, 24), patch tokens (B, 197, 384) ->
12 blocks -> LayerNorm -> class token (B, 384) -> head (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, resolve_out_indices
from cvcraft.models.registry import register_model
from cvcraft.nn.drop import DropPath
from cvcraft.nn.transformer import MLPBlock, MultiHeadSelfAttention

__all__ = ["TNT", "TNTBlock", "from_timm_state_dict", "tnt_s_patch16_224"]


class TNTBlock(nn.Module):
    """One TNT block: inner transformer on pixel tokens, their projection added to the patch
    tokens (class token untouched), outer transformer on patch tokens.

    pixel (B*N, P, c), patch (B, 1 + N, D) -> the same shapes; P pixels of c dims per patch.
    """

    def __init__(
        self,
        dim: int,
        in_dim: int,
        num_pixel: int,
        num_heads: int = 6,
        in_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(in_dim)
        self.attn_in = MultiHeadSelfAttention(in_dim, in_num_heads, qkv_bias)
        self.norm_mlp_in = nn.LayerNorm(in_dim)
        self.mlp_in = MLPBlock(in_dim, int(in_dim * mlp_ratio))
        self.norm1_proj = nn.LayerNorm(in_dim * num_pixel)
        self.proj = nn.Linear(in_dim * num_pixel, dim, bias=False)
        self.norm2_proj = nn.LayerNorm(dim)
        self.norm_out = nn.LayerNorm(dim)
        self.attn_out = MultiHeadSelfAttention(dim, num_heads, qkv_bias)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(
        self, pixel: torch.Tensor, patch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pixel = pixel + self.drop_path(self.attn_in(self.norm_in(pixel)))  # (B*N, P, c)
        pixel = pixel + self.drop_path(self.mlp_in(self.norm_mlp_in(pixel)))
        b, n1, _ = patch.shape
        words = self.norm2_proj(self.proj(self.norm1_proj(pixel.reshape(b, n1 - 1, -1))))
        patch = torch.cat([patch[:, :1], patch[:, 1:] + words], dim=1)  # (B, 1 + N, D)
        patch = patch + self.drop_path(self.attn_out(self.norm_out(patch)))
        patch = patch + self.drop_path(self.mlp(self.norm_mlp(patch)))
        return pixel, patch


class PixelEmbed(nn.Module):
    """Cut the image into patches, embed each patch's pixels with a 7x7/``stride`` conv.

    (B, C, H, W) -> (B * N, P, in_dim), N = (H/patch)(W/patch) patches of
    P = (patch/stride)^2 pixel tokens.
    """

    def __init__(self, patch_size: int, in_chans: int, in_dim: int, stride: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, in_dim, 7, stride=stride, padding=3)

    def forward(self, x: torch.Tensor, pixel_pos: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        p = self.patch_size
        patches = F.unfold(x, p, stride=p)  # (B, C*p*p, N)
        patches = patches.transpose(1, 2).reshape(-1, c, p, p)  # (B*N, C, p, p)
        y = self.proj(patches) + pixel_pos  # (B*N, in_dim, p/s, p/s)
        return y.flatten(2).transpose(1, 2)  # (B*N, P, in_dim)


class TNT(nn.Module):
    """Transformer in Transformer.

    Args:
        img_size: input side the position embeddings are made for (divisible by patch_size).
        patch_size, in_dim, stride: patch side, pixel-token width, pixel conv stride
            (16, 24, 4: 4x4 = 16 pixel tokens per patch).
        embed_dim, depth, num_heads, in_num_heads: patch-token width, blocks, heads of the
            outer and inner attention (TNT-S: 384, 12, 6, 4).
        drop_path_rate: stochastic depth, rising linearly to this value at the last block.

    ``feature_info`` taps every block ``blocks.i`` at stride ``patch_size``;
    ``forward_intermediates`` returns its patch tokens as a (B, D, H/p, W/p) map.
    """

    head_names = ("norm", "head")

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        patch_size: int = 16,
        in_dim: int = 24,
        stride: int = 4,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        in_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        if img_size % patch_size or patch_size % stride:
            raise ConfigError(
                f"TNT: img_size {img_size} must be a multiple of patch_size {patch_size}, "
                f"and patch_size of stride {stride}"
            )
        self.num_classes = num_classes
        self.default_input_size = (in_chans, img_size, img_size)
        self.grid = img_size // patch_size
        side = patch_size // stride
        num_pixel = side * side
        self.pixel_embed = PixelEmbed(patch_size, in_chans, in_dim, stride)
        self.norm1_proj = nn.LayerNorm(num_pixel * in_dim)
        self.proj = nn.Linear(num_pixel * in_dim, embed_dim)
        self.norm2_proj = nn.LayerNorm(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_pos = nn.Parameter(torch.zeros(1, self.grid**2 + 1, embed_dim))
        self.pixel_pos = nn.Parameter(torch.zeros(1, in_dim, side, side))
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            TNTBlock(embed_dim, in_dim, num_pixel, num_heads, in_num_heads, mlp_ratio,
                     qkv_bias, r)
            for r in rates
        )  # fmt: skip
        self.norm = nn.LayerNorm(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.num_features = embed_dim
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            feature_entry(embed_dim, patch_size, f"blocks.{i}") for i in range(depth)
        ]
        for t in (self.cls_token, self.patch_pos, self.pixel_pos):
            nn.init.trunc_normal_(t, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> pixel tokens (B*N, P, c) and patch tokens (B, 1 + N, D)."""
        b, _, h, w = x.shape
        p = self.pixel_embed.patch_size
        if (h // p) * (w // p) != self.grid**2 or h % p or w % p:
            raise ConfigError(
                f"TNT was built for {self.default_input_size[1:]} inputs, got {(h, w)}; "
                "build it with img_size=<your side>"
            )
        pixel = self.pixel_embed(x, self.pixel_pos)  # (B*N, P, c)
        patch = self.norm2_proj(self.proj(self.norm1_proj(pixel.reshape(b, self.grid**2, -1))))
        patch = torch.cat([self.cls_token.expand(b, -1, -1), patch], dim=1) + self.patch_pos
        return pixel, patch  # (B, 1 + N, D)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``blocks.0`` .. ``blocks.{depth-1}`` (each maps (pixel, patch) to the same)."""
        return [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Patch tokens after ``blocks[i]`` for i in ``indices`` (default all) as maps
        (B, D, H/p, W/p), class token dropped; stops after the deepest one asked for."""
        idx = resolve_out_indices(self.feature_info, indices, "TNT")
        pixel, patch = self._tokens(x)
        outs: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks[: max(idx) + 1]):
            pixel, patch = blk(pixel, patch)
            if i in idx:
                outs[i] = patch[:, 1:].transpose(1, 2).unflatten(2, (self.grid, self.grid))
        return [outs[i] for i in idx]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, 1 + N, D)."""
        pixel, patch = self._tokens(x)
        for blk in self.blocks:
            pixel, patch = blk(pixel, patch)
        return self.norm(patch)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class token -> dropout -> head: (B, 1 + N, D) -> (B, num_classes)."""
        x = self.head_drop(x[:, 0])  # (B, D)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``head`` for ``num_classes`` (0 -> identity, the class token's features)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def from_timm_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``tnt_*`` keys -> ours: each attention's ``qk`` and ``v`` weights (and biases)
    concatenated into one ``qkv`` ([q; k; v] rows, the layout both reshape into heads)."""
    out = {k: v for k, v in sd.items() if not (".qk." in k or ".v." in k)}
    for k in sd:
        if ".qk." in k:
            v_key = k.replace(".qk.", ".v.")
            out[k.replace(".qk.", ".qkv.")] = torch.cat([sd[k], sd[v_key]], dim=0)
    return out


# The paper (DeiT's recipe): AdamW lr 1e-3 at batch 1024 (2.5e-4 per 256), weight decay 0.05.
_CFG = {"optimizer": "adamw", "lr": 2.5e-4, "weight_decay": 0.05, "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5)}  # fmt: skip


@register_model(default_cfg=_CFG)
def tnt_s_patch16_224(num_classes: int = 1000, in_chans: int = 3, **kw) -> TNT:
    """TNT-S: 384-d patch tokens, 24-d pixel tokens, 12 blocks; 23.8M params (timm's)."""
    return TNT(num_classes=num_classes, in_chans=in_chans, **kw)
