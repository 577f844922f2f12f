"""Transformer building blocks for vision: attention, MLP, encoder block, windows, positions.

Key idea (Vaswani et al. 2017): every token looks at every other token through
``softmax(Q K^T / sqrt(d)) V``; several heads do this in parallel subspaces. Vision
Transformers (Dosovitskiy et al. 2021) feed image patches as tokens; Swin (Liu et al. 2021)
restricts attention to local windows and shifts them between blocks so windows talk.

Shapes follow nanoGPT's habit: B batch, N tokens, C channels, nh heads, hs = C / nh.
Attention runs through ``F.scaled_dot_product_attention`` (fused kernels where available).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.drop import DropPath


def _check_heads(dim: int, num_heads: int) -> int:
    if num_heads <= 0 or dim % num_heads:
        raise ConfigError(
            f"attention dim {dim} must be a positive multiple of num_heads {num_heads}"
        )
    return dim // num_heads


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: one fused qkv projection, SDPA, output projection.

    (B, N, C) -> (B, N, C). The qkv weight is laid out [q; k; v] as in
    ``nn.MultiheadAttention.in_proj_weight``, so weights copy across one to one.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # (B, N, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, N, hs)
        drop = self.attn_drop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, N, C)  # (B, N, nh*hs): heads side by side
        return self.proj_drop(self.proj(y))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x``, keys and values from ``context``.

    x (B, N, C), context (B, M, Cc) -> (B, N, C). Used where one set of tokens reads
    another (decoder queries reading image features, text conditioning, ...).
    """

    def __init__(
        self, dim: int, num_heads: int, context_dim: int | None = None, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, N, C = x.shape
        M = context.shape[1]
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B,nh,N,hs)
        kv = self.kv(context).reshape(B, M, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, M, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, nh, N, hs)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class MLPBlock(nn.Module):
    """Position-wise feed-forward: ``fc2(drop(gelu(fc1(x))))``; (..., C) -> (..., C).

    The hidden width is usually 4x the embedding (``mlp_ratio``). ``act`` replaces GELU
    (the original Transformer used ReLU).
    """

    def __init__(
        self, dim: int, hidden_dim: int, drop: float = 0.0, act: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act if act is not None else nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerEncoderBlock(nn.Module):
    """Pre-norm encoder block: ``x += attn(norm1(x)); x += mlp(norm2(x))``; (B, N, C) -> same.

    Pre-norm (norm inside the residual branch) keeps the residual path an identity, which
    lets deep stacks train without warm-up tricks (Xiong et al. 2020).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))  # (B, N, C)
        return x + self.drop_path(self.mlp(self.norm2(x)))


# -- windows (Swin) -----------------------------------------------------------------------
def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Cut a feature map into non-overlapping windows: (B, H, W, C) -> (B*nW, window², C).

    Windows are ordered row-major over the (H/window, W/window) grid; H and W must be
    multiples of ``window``.
    """
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)  # (B, gh, ws, gw, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B*nW, window², C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window, W // window, window, window, C)  # (B, gh, gw, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the relative-position bias table for every (query, key) pair of a window.

    Two tokens at (y1, x1), (y2, x2) differ by (dy, dx) in [-(w-1), w-1]²; the pair maps to
    table row ``(dy + w-1) * (2w-1) + (dx + w-1)``. Returns (window², window²) int64.
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # (2, w²): (y, x) of each token
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, w², w²), >= 0
    return rel[0] * (2 * window - 1) + rel[1]


def shifted_window_mask(
    H: int, W: int, window: int, shift: int | tuple[int, int], device=None
) -> torch.Tensor:
    """Additive mask (nW, window², window²) for attention in cyclically shifted windows.

    After ``torch.roll(x, (-sh, -sw))`` the last windows of each row/column hold tokens
    from opposite image edges that are not neighbours. Each axis is split into bands
    ``[0, H-w)``, ``[H-w, H-sh)``, ``[H-sh, H)``; tokens of different (row band, column
    band) regions get ``-inf`` so they never attend to each other, the rest get 0.
    ``shift`` is one int or (sh, sw); a 0 shift on an axis leaves that axis one region.
    """
    sh, sw = (shift, shift) if isinstance(shift, int) else shift

    def bands(n: int, s: int) -> torch.Tensor:  # band id 0/1/2 of each row (or column)
        i = torch.arange(n, device=device)
        return (i >= n - window).long() + (i >= n - s).long() if s else torch.zeros_like(i)

    region = bands(H, sh)[:, None] * 3 + bands(W, sw)[None, :]  # (H, W) region id
    win = window_partition(region[None, :, :, None], window).squeeze(-1)  # (nW, w²)
    same = win[:, :, None] == win[:, None, :]  # (nW, w², w²)
    zero = torch.zeros((), device=device)
    return torch.where(same, zero, torch.full((), float("-inf"), device=device))


class WindowAttention(nn.Module):
    """Swin's (shifted) window multi-head self-attention with relative position bias.

    Attention runs inside non-overlapping ``window x window`` patches, so the cost is
    linear in the image area. Each head adds a learned bias ``B[dy, dx]`` indexed by the
    relative offset of query and key (``relative_position_bias_table``, ((2w-1)², nh)).
    With ``shift > 0`` the map is rolled by ``-shift`` first (and back after), connecting
    neighbouring windows of the previous block; :func:`shifted_window_mask` stops tokens
    that were wrapped around from attending across the seam.

    (B, H, W, C) -> (B, H, W, C). H, W that are not multiples of the window are zero-padded
    on the bottom/right; when the window covers the whole (padded) map there is nothing
    to shift and the shift is skipped.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int = 7,
        shift: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift < window:
            raise ConfigError(f"WindowAttention shift {shift} must be in [0, window={window})")
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads, self.window, self.shift = num_heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Derived from the window size alone, so it is not saved in checkpoints.
        self.register_buffer(
            "relative_position_index", relative_position_index(window).flatten(), persistent=False
        )

    def relative_position_bias(self) -> torch.Tensor:
        """(nh, w², w²) bias gathered from the table."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index]  # (w²*w², nh)
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        w = self.window
        pad_h, pad_w = (-H) % w, (-W) % w
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
        Hp, Wp = H + pad_h, W + pad_w
        # A window as large as the map on an axis already sees all of it: shifting that
        # axis would only wrap tokens around, so it is skipped.
        sh = self.shift if Hp > w else 0
        sw = self.shift if Wp > w else 0
        shift = sh or sw
        if shift:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        win = window_partition(x, w)  # (B*nW, w², C)
        Bw, N, _ = win.shape
        qkv = self.qkv(win).reshape(Bw, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, nh, w², hs)
        bias = self.relative_position_bias()  # (nh, w², w²)
        if shift:
            nW = Bw // B
            mask = shifted_window_mask(Hp, Wp, w, (sh, sw), device=x.device).to(bias.dtype)
            bias = (bias[None, None] + mask[None, :, None]).expand(B, nW, -1, -1, -1)
            bias = bias.reshape(Bw, self.num_heads, N, N)  # (B*nW, nh, w², w²)
        drop = self.attn_drop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        y = self.proj_drop(self.proj(y.transpose(1, 2).reshape(Bw, N, C)))  # (B*nW, w², C)
        x = window_reverse(y, w, Hp, Wp)  # (B, Hp, Wp, C)
        if shift:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        return x[:, :H, :W].contiguous()


# -- position embeddings -------------------------------------------------------------------
def sinusoidal_position_embedding(n: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed sine/cosine position codes (Vaswani et al. 2017): (n, dim).

    ``PE[p, 2i] = sin(p / base^(2i/dim))``, ``PE[p, 2i+1] = cos(p / base^(2i/dim))``: each
    pair of channels is a rotation at its own frequency, so offsets are linear maps.
    """
    if dim % 2:
        raise ConfigError(f"sinusoidal position embedding needs an even dim, got {dim}")
    pos = torch.arange(n, dtype=torch.float64)[:, None]  # (n, 1)
    freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pe = torch.empty(n, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.float()


def interpolate_pos_embed(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix: int = 1
) -> torch.Tensor:
    """Resize a learned patch-position table to a new patch grid, keeping prefix tokens.

    pos (1, num_prefix + gh*gw, C) -> (1, num_prefix + gh'*gw', C). The patch part is
    reshaped to its 2-D grid and resized bicubically (as ViT fine-tuning at a higher
    resolution does); the class token's embedding has no position and is kept as is.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos
    gh, gw = old_grid
    if pos.shape[1] != num_prefix + gh * gw:
        raise ConfigError(
            f"position table has {pos.shape[1]} rows, expected {num_prefix} + {gh}x{gw}"
        )
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    C = pos.shape[-1]
    grid = grid.reshape(1, gh, gw, C).permute(0, 3, 1, 2)  # (1, C, gh, gw)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, C)  # (1, gh'*gw', C)
    return torch.cat([prefix, grid], dim=1)


class LearnedPositionEmbedding(nn.Module):
    """A learned position table for ``num_prefix`` tokens plus a (gh, gw) patch grid.

    ``forward(x, grid)`` adds the table to tokens x (B, num_prefix + gh'*gw', C), resizing
    it with :func:`interpolate_pos_embed` when the input's grid differs from training's.
    """

    def __init__(self, grid: tuple[int, int], dim: int, num_prefix: int = 1) -> None:
        super().__init__()
        self.grid, self.num_prefix = tuple(grid), num_prefix
        self.weight = nn.Parameter(torch.zeros(1, num_prefix + grid[0] * grid[1], dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + interpolate_pos_embed(self.weight, self.grid, grid, self.num_prefix)
