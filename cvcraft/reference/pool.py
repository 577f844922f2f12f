"""Max and average pooling, forward and backward, on top of :func:`~.conv.im2col`.

Max:  ``y[n, c, i, j] = max_{u, v} x_pad[n, c, i s + u d, j s + v d]`` (padding is -inf);
the gradient goes only to the arg-max of each window (the first one on ties), so
``dx = col2im(onehot(argmax) * dy)``.
Average: ``y = (1 / D) sum_{u, v} x_pad[...]`` with ``D = kh kw`` (``count_include_pad``)
or the number of real, non-padding pixels in the window; ``dx = col2im(dy / D)``.
Shapes: x (N, C, H, W) -> y (N, C, Ho, Wo), Ho from :func:`~.formulas.conv_output_size`.
"""

from __future__ import annotations

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.reference.conv import Pair, col2im, im2col, pair


def _check(x: np.ndarray, kernel: Pair, padding: Pair) -> None:
    if x.ndim != 4:
        raise ValueError(f"pooling needs x (N, C, H, W), got shape {x.shape}")
    k, p = pair(kernel), pair(padding)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ConfigError(f"pool padding {p} must be at most half the kernel {k}")


def _windows(cols: np.ndarray) -> np.ndarray:
    """(N, C, kh, kw, Ho, Wo) -> (N, C, kh kw, Ho, Wo): one axis over the window."""
    n, c, kh, kw, ho, wo = cols.shape
    return cols.reshape(n, c, kh * kw, ho, wo)


def max_pool2d(
    x: np.ndarray,
    kernel: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling; returns ``(y, argmax)``, ``argmax`` (N, C, Ho, Wo) the flat window index
    of each maximum, which the backward pass needs. ``stride`` defaults to ``kernel``."""
    _check(x, kernel, padding)
    stride = kernel if stride is None else stride
    cols = _windows(im2col(x, kernel, stride, padding, dilation, pad_value=-np.inf))
    arg = cols.argmax(axis=2)  # first maximum on ties
    return np.take_along_axis(cols, arg[:, :, None], axis=2)[:, :, 0], arg


def max_pool2d_backward(
    dy: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, ...],
    kernel: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> np.ndarray:
    """``dx`` of :func:`max_pool2d`: each ``dy`` flows to its window's arg-max pixel."""
    stride = kernel if stride is None else stride
    k = pair(kernel)
    n, c, ho, wo = dy.shape
    dcols = np.zeros((n, c, k[0] * k[1], ho, wo), dtype=dy.dtype)
    np.put_along_axis(dcols, argmax[:, :, None], dy[:, :, None], axis=2)
    return col2im(dcols.reshape(n, c, k[0], k[1], ho, wo), x_shape[2:], stride, padding, dilation)


def _divisor(
    x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair, count_include_pad: bool
) -> np.ndarray | float:
    k = pair(kernel)
    if count_include_pad:
        return float(k[0] * k[1])
    ones = np.ones((1, 1) + tuple(x_shape[2:]))
    return _windows(im2col(ones, kernel, stride, padding)).sum(axis=2)  # (1, 1, Ho, Wo)


def avg_pool2d(
    x: np.ndarray,
    kernel: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling: the window mean, padding counted as zeros in the divisor when
    ``count_include_pad`` (torch's default), else divided by the real pixels only."""
    _check(x, kernel, padding)
    stride = kernel if stride is None else stride
    cols = _windows(im2col(x, kernel, stride, padding))
    return cols.sum(axis=2) / _divisor(x.shape, kernel, stride, padding, count_include_pad)


def avg_pool2d_backward(
    dy: np.ndarray,
    x_shape: tuple[int, ...],
    kernel: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """``dx`` of :func:`avg_pool2d`: every pixel of a window receives ``dy / D``."""
    stride = kernel if stride is None else stride
    k = pair(kernel)
    g = dy / _divisor(x_shape, kernel, stride, padding, count_include_pad)
    dcols = np.broadcast_to(g[:, :, None, None], dy.shape[:2] + k + dy.shape[2:])
    return col2im(np.ascontiguousarray(dcols), x_shape[2:], stride, padding)
