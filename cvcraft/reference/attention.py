"""Multi-head self-attention forward and backward (Vaswani et al. 2017).

``Q = x Wq^T + bq``, ``K``, ``V`` likewise, split into h heads of d = D / h;
per head ``A = softmax(Q K^T / sqrt(d) + mask)``, ``O = A V``; the heads are concatenated
and projected, ``y = O Wo^T + bo``. The 1/sqrt(d) keeps the logits' variance near 1 so
the softmax does not saturate as d grows. Backward, per head:
``dV = A^T dO``, ``dA = dO V^T``, ``dS = A (dA - rowsum(dA A))`` (softmax's Jacobian),
``dQ = dS K / sqrt(d)``, ``dK = dS^T Q / sqrt(d)``, then through the three projections.
Shapes: x (N, T, D); every W (D, D), b (D,); A (N, h, T, T); y (N, T, D).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.reference.layers import linear, linear_backward, softmax, softmax_backward


class AttentionParams(NamedTuple):
    """Projection weights in torch's layout (``y = x W^T + b``)."""

    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    bq: np.ndarray
    bk: np.ndarray
    bv: np.ndarray
    bo: np.ndarray


class AttentionCache(NamedTuple):
    x: np.ndarray
    q: np.ndarray  # (N, h, T, d)
    k: np.ndarray
    v: np.ndarray
    attn: np.ndarray  # (N, h, T, T)
    o: np.ndarray  # (N, T, D), heads concatenated


def _split(z: np.ndarray, heads: int) -> np.ndarray:
    """(N, T, D) -> (N, h, T, D/h)."""
    n, t, d = z.shape
    return z.reshape(n, t, heads, d // heads).transpose(0, 2, 1, 3)


def _merge(z: np.ndarray) -> np.ndarray:
    """(N, h, T, d) -> (N, T, h d)."""
    n, h, t, d = z.shape
    return z.transpose(0, 2, 1, 3).reshape(n, t, h * d)


def causal_mask(t: int) -> np.ndarray:
    """(T, T) bool, True where query i may not see key j > i (the future)."""
    return np.triu(np.ones((t, t), dtype=bool), k=1)


def self_attention(
    x: np.ndarray, p: AttentionParams, heads: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, AttentionCache]:
    """Multi-head self-attention of x (N, T, D); ``mask`` (T, T) bool, True = blocked.
    Returns ``(y, cache)``, y (N, T, D)."""
    if x.ndim != 3 or x.shape[2] % heads:
        raise ConfigError(
            f"self_attention x {x.shape} must be (N, T, D) with D divisible by heads={heads}"
        )
    q = _split(linear(x, p.wq, p.bq), heads)  # (N, h, T, d)
    k = _split(linear(x, p.wk, p.bk), heads)
    v = _split(linear(x, p.wv, p.bv), heads)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])  # (N, h, T, T)
    if mask is not None:
        scores = np.where(mask, -np.inf, scores)
    attn = softmax(scores, axis=-1)
    o = _merge(attn @ v)  # (N, T, D)
    return linear(o, p.wo, p.bo), AttentionCache(x, q, k, v, attn, o)


def self_attention_backward(
    dy: np.ndarray, cache: AttentionCache, p: AttentionParams
) -> tuple[np.ndarray, AttentionParams]:
    """``(dx, grads)`` of :func:`self_attention`, grads an :class:`AttentionParams` of
    gradients. Masked entries have A = 0, so they pass no gradient on their own."""
    heads = cache.q.shape[1]
    do, dwo, dbo = linear_backward(dy, cache.o, p.wo)
    do = _split(do, heads)  # (N, h, T, d)
    dattn = do @ cache.v.transpose(0, 1, 3, 2)  # (N, h, T, T)
    dv = cache.attn.transpose(0, 1, 3, 2) @ do
    dscores = softmax_backward(dattn, cache.attn, axis=-1) / math.sqrt(cache.q.shape[-1])
    dq = dscores @ cache.k
    dk = dscores.transpose(0, 1, 3, 2) @ cache.q
    dx = np.zeros_like(cache.x)
    grads = {}
    for name, dz in (("q", dq), ("k", dk), ("v", dv)):
        dxi, grads["w" + name], grads["b" + name] = linear_backward(
            _merge(dz), cache.x, getattr(p, "w" + name)
        )
        dx += dxi
    return dx, AttentionParams(wo=dwo, bo=dbo, **grads)
