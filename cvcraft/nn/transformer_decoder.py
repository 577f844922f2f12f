"""Transformer decoder: masked self-attention, cross-attention to a memory, feed-forward.

Key idea (Vaswani et al. 2017): a decoder token attends to earlier tokens only (the causal
mask sets ``-inf`` on keys ``j > i`` before the softmax), then reads the encoder's output
("memory") through cross-attention; padded positions are masked out of the keys. Position
information comes from the codes shared with ViT in :mod:`cvcraft.nn.transformer`
(``sinusoidal_position_embedding``, ``LearnedPositionEmbedding``).

Block (post-norm, torch's default): ``x = norm1(x + SA(x)); x = norm2(x + CA(x, m));
x = norm3(x + FF(x))``; pre-norm (``norm_first``) puts each norm inside its branch.
Shapes: tgt (B, N, C), memory (B, M, C) (``batch_first=False``: (N, B, C), (M, B, C)).
:func:`from_torch_decoder_state_dict` maps a ``torch.nn.TransformerDecoderLayer`` /
``TransformerDecoder`` state_dict onto these modules.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.transformer import CrossAttention, MLPBlock, MultiHeadSelfAttention

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def causal_mask(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Additive (n, n) mask: 0 where key j <= query i, ``-inf`` above the diagonal (the
    future), as ``nn.Transformer.generate_square_subsequent_mask``."""
    if n < 1:
        raise ConfigError(f"causal mask needs n >= 1 tokens, got {n}")
    future = torch.ones(n, n, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(n, n, device=device).masked_fill(future, float("-inf"))


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Key padding mask from sequence lengths: (B,) -> bool (B, max_len), True = padding
    (torch's ``key_padding_mask`` convention)."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or (lengths < 0).any():
        raise ConfigError(f"lengths must be a 1-d tensor of counts >= 0, got {lengths.tolist()}")
    n = int(lengths.max()) if max_len is None else max_len
    if lengths.numel() and int(lengths.max()) > n:
        raise ConfigError(f"max_len={n} is shorter than the longest sequence {int(lengths.max())}")
    return torch.arange(n, device=lengths.device)[None, :] >= lengths[:, None]


def attention_bias(
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    dtype: torch.dtype = torch.float32,
    nhead: int = 1,
) -> torch.Tensor | None:
    """One additive bias for SDPA from torch-style masks: ``attn_mask`` (Lq, Lk) or
    (B*nh, Lq, Lk) additive float, or bool with True = not allowed; ``key_padding_mask``
    bool (B, Lk), True = padding. Returns (B or 1, 1 or nh, Lq, Lk), or None."""
    bias = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device
                                    ).masked_fill(attn_mask, float("-inf"))  # fmt: skip
        bias = attn_mask.to(dtype)
        bias = bias[None, None] if bias.dim() == 2 else bias.reshape(-1, nhead, *bias.shape[-2:])
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise ConfigError("key_padding_mask must be bool (True = padding)")
        pad = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
        pad = pad.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]  # (B,1,1,Lk)
        bias = pad if bias is None else bias + pad
    return bias


class TransformerDecoderBlock(nn.Module):
    """One decoder layer, ``torch.nn.TransformerDecoderLayer``'s arguments and maths.

    forward(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
    memory_key_padding_mask, tgt_is_causal) -> (B, N, C); masks as :func:`attention_bias`.
    ``tgt_is_causal=True`` without ``tgt_mask`` builds the causal mask.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = True,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        self.batch_first, self.norm_first, self.nhead = batch_first, norm_first, nhead
        self.self_attn = MultiHeadSelfAttention(d_model, nhead, attn_drop=dropout)
        self.cross_attn = CrossAttention(d_model, nhead)
        self.mlp = MLPBlock(d_model, dim_feedforward, dropout, act=ACTIVATIONS[activation]())
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_is_causal: bool = False,
    ) -> torch.Tensor:
        if tgt.dim() != 3 or memory.dim() != 3 or tgt.shape[-1] != memory.shape[-1]:
            raise ConfigError(
                f"decoder expects tgt and memory of 3 dims with one width, got "
                f"{tuple(tgt.shape)} and {tuple(memory.shape)}"
            )
        if not self.batch_first:
            tgt, memory = tgt.transpose(0, 1), memory.transpose(0, 1)  # (B, N, C), (B, M, C)
        if tgt_is_causal and tgt_mask is None:
            tgt_mask = causal_mask(tgt.shape[1], tgt.device)
        self_bias = attention_bias(tgt_mask, tgt_key_padding_mask, tgt.dtype, self.nhead)
        cross_bias = attention_bias(memory_mask, memory_key_padding_mask, tgt.dtype, self.nhead)
        x = tgt
        if self.norm_first:
            x = x + self.drop1(self.self_attn(self.norm1(x), self_bias))
            x = x + self.drop2(self.cross_attn(self.norm2(x), memory, cross_bias))
            x = x + self.mlp(self.norm3(x))
        else:
            x = self.norm1(x + self.drop1(self.self_attn(x, self_bias)))
            x = self.norm2(x + self.drop2(self.cross_attn(x, memory, cross_bias)))
            x = self.norm3(x + self.mlp(x))
        return x if self.batch_first else x.transpose(0, 1)


class TransformerDecoder(nn.Module):
    """``num_layers`` decoder blocks and an optional final norm (``torch.nn.TransformerDecoder``;
    pre-norm stacks need the final norm)."""

    def __init__(self, num_layers: int, final_norm: bool = False, **block_kw) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList(TransformerDecoderBlock(**block_kw) for _ in range(num_layers))
        eps = block_kw.get("layer_norm_eps", 1e-5)
        self.norm = nn.LayerNorm(block_kw["d_model"], eps=eps) if final_norm else None

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, **masks) -> torch.Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, **masks)
        return self.norm(x) if self.norm is not None else x


def from_torch_decoder_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of ``torch.nn.TransformerDecoderLayer`` (or ``TransformerDecoder``) -> ours.

    self_attn.in_proj -> self_attn.qkv and out_proj -> proj (same [q; k; v] layout);
    multihead_attn.in_proj is split into cross_attn.q (first C rows) and cross_attn.kv;
    linear1/linear2 -> mlp.fc1/fc2; norms keep their names.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = re.match(
            r"^(.*?)(self_attn|multihead_attn)\.(in_proj_weight|in_proj_bias|out_proj\.\w+)$", key
        )
        if m is None:
            key = re.sub(r"linear1\.", "mlp.fc1.", re.sub(r"linear2\.", "mlp.fc2.", key))
            out[key] = value
            continue
        prefix, attn, name = m.groups()
        kind = "weight" if name.endswith("weight") else "bias"
        if attn == "self_attn":
            sub = "qkv" if name.startswith("in_proj") else "proj"
            out[f"{prefix}self_attn.{sub}.{kind}"] = value
        elif name.startswith("in_proj"):
            c = value.shape[0] // 3
            out[f"{prefix}cross_attn.q.{kind}"] = value[:c]
            out[f"{prefix}cross_attn.kv.{kind}"] = value[c:]
        else:
            out[f"{prefix}cross_attn.proj.{kind}"] = value
    return out
