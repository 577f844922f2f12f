"""Linear layer, dropout, and a numerically stable softmax + cross-entropy, with gradients.

Linear: ``y = x W^T + b``; ``dx = dy W``, ``dW = dy^T x``, ``db = sum dy`` (x (..., I),
W (O, I), b (O,), y (..., O); torch's layout).
Dropout (inverted): ``y = x m / (1 - p)``, m ~ Bernoulli(1 - p), so E[y] = x and nothing
changes at test time; ``dx = dy m / (1 - p)``.
Softmax: ``p_k = e^(z_k - max z) / sum_j e^(z_j - max z)`` (the shift changes nothing but
keeps e^z finite); cross-entropy ``L = -(1/N) sum_n sum_k q_nk log p_nk`` with q the
(label-smoothed) one-hot target, and the famous gradient ``dL/dz = (p - q) / N``.
"""

from __future__ import annotations

import numpy as np

from cvcraft.errors import ConfigError


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``x W^T + b``: (..., I), (O, I), (O,) -> (..., O)."""
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear x {x.shape} has {x.shape[-1]} features, W {w.shape} wants {w.shape[1]}"
        )
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dW, db)`` of :func:`linear`; leading axes of x are all batch axes."""
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    return dy @ w, dy2.T @ x2, dy2.sum(axis=0)


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator) -> np.ndarray:
    """A keep mask, True with probability ``1 - p``."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout p={p} must be in [0, 1)")
    return rng.random(shape) >= p


def dropout(x: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """Inverted dropout with a given keep ``mask``: ``x m / (1 - p)``."""
    return np.where(mask, x / (1.0 - p), 0.0)


def dropout_backward(dy: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """``dx = dy m / (1 - p)``: dropped units pass no gradient."""
    return np.where(mask, dy / (1.0 - p), 0.0)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``z - max z - log sum e^(z - max z)`` (log-sum-exp, stable for any z)."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``e^(z - max z) / sum e^(z - max z)`` along ``axis``."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(dp: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """``dz = p (dp - sum_k dp_k p_k)``: the Jacobian ``diag(p) - p p^T`` applied to dp."""
    return p * (dp - (dp * p).sum(axis=axis, keepdims=True))


def _targets(labels: np.ndarray, k: int, smoothing: float) -> np.ndarray:
    """Label-smoothed one-hot ``q = (1 - eps) onehot + eps / K``: (N,) -> (N, K)."""
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        raise ValueError(
            f"cross_entropy labels must be in [0, {k}), got {labels.min()}..{labels.max()}"
        )
    return (1.0 - smoothing) * np.eye(k)[labels] + smoothing / k


def cross_entropy(logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0) -> float:
    """Mean cross-entropy of logits (N, K) against integer labels (N,):
    ``-(1/N) sum_n sum_k q_nk log softmax(z_n)_k``."""
    q = _targets(labels, logits.shape[1], label_smoothing)
    return float(-(q * log_softmax(logits, axis=1)).sum() / len(logits))


def cross_entropy_backward(
    logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0
) -> np.ndarray:
    """``dL/dz = (softmax(z) - q) / N``, (N, K)."""
    q = _targets(labels, logits.shape[1], label_smoothing)
    return (softmax(logits, axis=1) - q) / len(logits)
