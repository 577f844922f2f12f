"""Attention rollout (Abnar & Zuidema 2020) for Vision Transformers.

Key idea: attention alone ignores the residual path, so each layer's head-fused attention
is mixed with the identity and re-normalised, ``A'_l = rownorm(0.5 A_l + 0.5 I)``, and the
layers are chained, ``R = A'_L ... A'_2 A'_1``. The class token's row of ``R`` over the
patch tokens says how much each patch flows into the prediction.

The attention probabilities are not kept by fused SDPA kernels, so they are recomputed
from each ``MultiHeadSelfAttention``'s input and its own qkv weights:
``softmax(q k^T / sqrt(hs))``. Shapes: input (B, C, H, W) -> per layer (B, nh, N, N) ->
heat maps (B, H, W) in [0, 1] (N = prefix tokens + (H/P)(W/P)).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.explain.cam import upsample_maps
from cvcraft.nn.transformer import MultiHeadSelfAttention

HEAD_FUSIONS = ("mean", "max", "min")


def _attention_probs(attn: MultiHeadSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) block input -> (B, nh, N, N) attention probabilities of ``attn``."""
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]  # (B, nh, N, hs)
    return (q @ k.transpose(-2, -1) * attn.head_dim**-0.5).softmax(-1)


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every self-attention layer's probabilities (B, nh, N, N), in forward order, and the
    logits, from one eval forward of ``model`` on ``x``."""
    layers = [m for m in model.modules() if isinstance(m, MultiHeadSelfAttention)]
    if not layers:
        raise ConfigError(
            f"method=rollout needs a Vision Transformer (MultiHeadSelfAttention layers); "
            f"{type(model).__name__} has none — use a CAM method for CNNs"
        )
    probs: list[torch.Tensor] = []
    handles = [
        m.register_forward_pre_hook(
            lambda mod, inp: probs.append(_attention_probs(mod, inp[0]))  # noqa: B023
        )
        for m in layers
    ]
    was_training = model.training
    try:
        model.eval()
        logits = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return probs, logits


def rollout(probs: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """Chain per-layer attentions (B, nh, N, N) into the rollout matrix (B, N, N)."""
    if head_fusion not in HEAD_FUSIONS:
        raise ConfigError(f"head_fusion={head_fusion!r}: choose one of {HEAD_FUSIONS}")
    result = None
    for a in probs:
        fused = getattr(a, head_fusion)(1)
        fused = fused.values if head_fusion != "mean" else fused  # (B, N, N)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        mixed = 0.5 * fused + 0.5 * eye
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed if result is None else mixed @ result  # later layer on the left
    assert result is not None
    return result


def attention_rollout(
    model: nn.Module, x: torch.Tensor, head_fusion: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rollout heat maps (B, H, W) in [0, 1] of the class token over the patches, and the
    logits. The patch grid is ``H / model.patch_size`` by ``W / model.patch_size``; the
    tokens before the grid (class token, ...) are the prefix."""
    probs, logits = attention_maps(model, x)
    patch = getattr(model, "patch_size", None)
    if not patch:
        raise ConfigError(f"method=rollout needs model.patch_size; {type(model).__name__} has none")
    gh, gw = x.shape[-2] // patch, x.shape[-1] // patch
    r = rollout(probs, head_fusion)  # (B, N, N)
    prefix = r.shape[-1] - gh * gw
    if prefix < 1:
        raise ConfigError("method=rollout needs a class token before the patch tokens")
    grid = r[:, 0, prefix:].reshape(-1, gh, gw)  # class token's row over the patches
    return upsample_maps(grid, tuple(x.shape[-2:])), logits
