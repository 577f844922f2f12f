"""Normalisation layers forward and backward: BatchNorm, LayerNorm, GroupNorm, InstanceNorm.

All four are one computation over different axes A of x:
``mu = mean_A(x)``, ``var = mean_A((x - mu)^2)`` (biased), ``x_hat = (x - mu) / sqrt(var + eps)``,
``y = gamma x_hat + beta``. They differ only in A (N C H W shapes, statistics per ...):
BatchNorm A = (N, H, W) per channel; LayerNorm A = the trailing ``normalized_shape`` per
sample; GroupNorm A = (C/G, H, W) per sample and group; InstanceNorm A = (H, W) per sample
and channel. The backward of ``x_hat`` over m = |A| elements:
``dx = (1/sqrt(var+eps)) (dx_hat - mean_A(dx_hat) - x_hat mean_A(dx_hat x_hat))``.

BatchNorm in training normalises with the batch statistics and updates the running ones
(``r = (1 - momentum) r + momentum stat``, the variance unbiased, ``m / (m - 1)``); in
evaluation it normalises with the running statistics, so it is a fixed affine map and its
gradient is just ``gamma / sqrt(r_var + eps)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cvcraft.errors import ConfigError


class NormCache(NamedTuple):
    """What a backward pass needs from its forward: the normalised input and 1/std."""

    x_hat: np.ndarray
    inv_std: np.ndarray
    axes: tuple[int, ...]


def normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> NormCache:
    """``x_hat = (x - mean_A x) / sqrt(var_A x + eps)`` over ``axes`` (kept for broadcasting)."""
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    return NormCache((x - mu) * inv_std, inv_std, axes)


def normalize_backward(dx_hat: np.ndarray, cache: NormCache) -> np.ndarray:
    """``dx`` of :func:`normalize`: the mean and the scale both depend on every x in A, which
    is where the two subtracted terms come from."""
    a = cache.axes
    return cache.inv_std * (
        dx_hat
        - dx_hat.mean(axis=a, keepdims=True)
        - cache.x_hat * (dx_hat * cache.x_hat).mean(axis=a, keepdims=True)
    )


def _affine_backward(
    dy: np.ndarray, x_hat: np.ndarray, gamma: np.ndarray | None, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``dx_hat = gamma dy``, ``dgamma = sum dy x_hat``, ``dbeta = sum dy``, the sums over
    every axis gamma is broadcast along; ``shape`` is gamma's broadcast shape."""
    if gamma is None:
        return dy, None, None
    over = tuple(i for i in range(dy.ndim) if shape[i] == 1)
    dgamma = (dy * x_hat).sum(axis=over).reshape(gamma.shape)
    dbeta = dy.sum(axis=over).reshape(gamma.shape)
    return dy * gamma.reshape(shape), dgamma, dbeta


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


# --- BatchNorm ----------------------------------------------------------------------------


def batch_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, NormCache, np.ndarray, np.ndarray]:
    """BatchNorm over (N, C, ...) per channel. Returns ``(y, cache, running_mean,
    running_var)``, the running statistics updated when ``training`` (new arrays)."""
    if x.ndim < 2 or x.shape[1] != len(gamma):
        raise ValueError(f"batch_norm x {x.shape} must be (N, C, ...) with C = {len(gamma)}")
    shape = _channel_shape(x)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    if training:
        m = x.size // x.shape[1]
        if m < 2:
            raise ValueError("batch_norm in training needs more than one value per channel")
        cache = normalize(x, axes, eps)
        mean = x.mean(axis=axes)
        unbiased = x.var(axis=axes) * m / (m - 1)
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * unbiased
    else:
        inv_std = 1.0 / np.sqrt(running_var.reshape(shape) + eps)
        cache = NormCache((x - running_mean.reshape(shape)) * inv_std, inv_std, axes)
    y = gamma.reshape(shape) * cache.x_hat + beta.reshape(shape)
    return y, cache, running_mean, running_var


def batch_norm_backward(
    dy: np.ndarray, cache: NormCache, gamma: np.ndarray, training: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)`` of :func:`batch_norm`; in eval mode the statistics are
    constants, so ``dx = gamma dy / sqrt(r_var + eps)``."""
    dx_hat, dgamma, dbeta = _affine_backward(dy, cache.x_hat, gamma, _channel_shape(dy))
    dx = normalize_backward(dx_hat, cache) if training else dx_hat * cache.inv_std
    return dx, dgamma, dbeta


# --- LayerNorm, GroupNorm, InstanceNorm ---------------------------------------------------


def layer_norm(
    x: np.ndarray,
    normalized_shape: tuple[int, ...],
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, NormCache]:
    """LayerNorm over the trailing ``normalized_shape`` of x, per leading index; gamma and
    beta have ``normalized_shape``. Returns ``(y, cache)``."""
    k = len(normalized_shape)
    if tuple(x.shape[x.ndim - k :]) != tuple(normalized_shape):
        raise ValueError(f"layer_norm x {x.shape} must end with {tuple(normalized_shape)}")
    cache = normalize(x, tuple(range(x.ndim - k, x.ndim)), eps)
    y = cache.x_hat if gamma is None else cache.x_hat * gamma + beta
    return y, cache


def layer_norm_backward(
    dy: np.ndarray, cache: NormCache, gamma: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(dx, dgamma, dbeta)`` of :func:`layer_norm` (None for the absent affine)."""
    shape = (1,) * (dy.ndim - len(cache.axes)) + dy.shape[dy.ndim - len(cache.axes) :]
    dx_hat, dgamma, dbeta = _affine_backward(dy, cache.x_hat, gamma, shape)
    return normalize_backward(dx_hat, cache), dgamma, dbeta


def group_norm(
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, NormCache]:
    """GroupNorm: x (N, C, ...) split into ``groups`` of C/G channels, each normalised per
    sample over its channels and positions; per-channel gamma, beta (C,). ``groups = C`` is
    InstanceNorm, ``groups = 1`` LayerNorm over (C, H, W) with per-channel affine."""
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise ConfigError(f"group_norm groups={groups} must divide the {c} channels")
    xg = x.reshape(n, groups, -1)  # (N, G, C/G * H * W)
    cache = normalize(xg, (2,), eps)
    y = cache.x_hat.reshape(x.shape)
    if gamma is not None:
        y = y * gamma.reshape(_channel_shape(x)) + beta.reshape(_channel_shape(x))
    return y, cache


def group_norm_backward(
    dy: np.ndarray, cache: NormCache, gamma: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(dx, dgamma, dbeta)`` of :func:`group_norm`."""
    x_hat = cache.x_hat.reshape(dy.shape)
    dx_hat, dgamma, dbeta = _affine_backward(dy, x_hat, gamma, _channel_shape(dy))
    dx = normalize_backward(dx_hat.reshape(cache.x_hat.shape), cache)
    return dx.reshape(dy.shape), dgamma, dbeta


def instance_norm(
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, NormCache]:
    """InstanceNorm: each (sample, channel) plane normalised on its own (style transfer's
    contrast normalisation); GroupNorm with one channel per group."""
    return group_norm(x, x.shape[1], gamma, beta, eps)


def instance_norm_backward(
    dy: np.ndarray, cache: NormCache, gamma: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(dx, dgamma, dbeta)`` of :func:`instance_norm`."""
    return group_norm_backward(dy, cache, gamma)
