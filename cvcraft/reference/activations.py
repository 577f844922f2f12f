"""Every activation of :mod:`cvcraft.nn.activations` with its derivative, elementwise.

``ACTIVATIONS[name] = (f, df)``: ``f(x) -> y`` and ``df(x) -> dy/dx``, so the backward
pass is ``dx = dy * df(x)``. At the kinks (relu at 0, relu6 at 0 and 6, the hard
functions at +-3) the derivative takes the one-sided value torch's kernels use.
PReLU (learned slope) and GLU (gates half the input with the other) have more than one
input and get their own forward/backward functions below.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cvcraft.errors import ConfigError

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf, otypes=[float])  # numpy has no erf; the exact one, per element


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^-x)``, evaluated as ``e^x / (1 + e^x)`` for x < 0 so e^-x never overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """``(1/beta) log(1 + e^(beta x))``, as ``max(z, 0) + log1p(e^-|z|)`` (z = beta x) so it
    neither overflows nor loses the small values."""
    z = beta * x
    return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal density."""
    return np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _Phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, ``(1 + erf(x / sqrt 2)) / 2``."""
    return 0.5 * (1 + _erf(x / math.sqrt(2)))


_K = math.sqrt(2 / math.pi)  # gelu_tanh's constant


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(_K * (x + 0.044715 * x**3)))


def _gelu_tanh_grad(x: np.ndarray) -> np.ndarray:
    th = np.tanh(_K * (x + 0.044715 * x**3))
    return 0.5 * (1 + th) + 0.5 * x * (1 - th**2) * _K * (1 + 3 * 0.044715 * x**2)


def _mish_grad(x: np.ndarray) -> np.ndarray:
    th = np.tanh(softplus(x))
    return th + x * (1 - th**2) * sigmoid(x)  # d softplus / dx = sigmoid


def _leaky(slope: float) -> tuple[Callable, Callable]:
    return (
        lambda x: np.where(x > 0, x, slope * x),
        lambda x: np.where(x > 0, 1.0, slope),
    )


def _elu(alpha: float, scale: float) -> tuple[Callable, Callable]:
    return (
        lambda x: scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
        lambda x: scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))),
    )


ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], ...]] = {
    "identity": (lambda x: x, np.ones_like),
    "sigmoid": (sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x))),
    "hardsigmoid": (
        lambda x: np.clip(x + 3, 0, 6) / 6,
        lambda x: np.where((x > -3) & (x < 3), 1 / 6, 0.0),
    ),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "relu6": (lambda x: np.clip(x, 0, 6), lambda x: ((x > 0) & (x < 6)).astype(float)),
    "leaky_relu": _leaky(0.01),
    "softplus": (softplus, sigmoid),
    "elu": _elu(1.0, 1.0),
    "selu": _elu(SELU_ALPHA, SELU_SCALE),
    "silu": (lambda x: x * sigmoid(x), lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x)))),
    "hardswish": (
        lambda x: x * np.clip(x + 3, 0, 6) / 6,
        lambda x: np.where(x <= -3, 0.0, np.where(x < 3, x / 3 + 0.5, 1.0)),
    ),
    "gelu": (lambda x: x * _Phi(x), lambda x: _Phi(x) + x * _phi(x)),
    "gelu_tanh": (_gelu_tanh, _gelu_tanh_grad),
    "mish": (lambda x: x * np.tanh(softplus(x)), _mish_grad),
}
ACTIVATIONS["swish"] = ACTIVATIONS["silu"]  # the same function under its other name


def activation(name: str) -> tuple[Callable[[np.ndarray], np.ndarray], ...]:
    """``(f, df)`` of a named elementwise activation (``prelu``/``glu``: see below)."""
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"unknown reference activation {name!r}; use one of {sorted(ACTIVATIONS)} "
            "(prelu and glu have their own functions)"
        )
    return ACTIVATIONS[name]


def prelu(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``x if x > 0 else a x`` with one learned slope per channel (axis 1) or a single one."""
    a = a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.size > 1 else a.reshape(())
    return np.where(x > 0, x, a * x)


def prelu_backward(dy: np.ndarray, x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(dx, da)``: ``dx = dy`` where x > 0 else ``a dy``; ``da = sum over x <= 0 of dy x``."""
    a_b = a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.size > 1 else a.reshape(())
    dx = np.where(x > 0, dy, a_b * dy)
    contrib = np.where(x > 0, 0.0, dy * x)
    if a.size > 1:
        da = contrib.sum(axis=tuple(i for i in range(x.ndim) if i != 1))
    else:
        da = contrib.sum().reshape(a.shape)
    return dx, da


def glu(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gated linear unit: split x in halves ``[a, b]`` along ``axis``, ``a * sigmoid(b)``."""
    if x.shape[axis] % 2:
        raise ValueError(f"glu needs an even size along axis {axis}, got shape {x.shape}")
    a, b = np.split(x, 2, axis=axis)
    return a * sigmoid(b)


def glu_backward(dy: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``dx = [dy sigmoid(b), dy a sigmoid(b) (1 - sigmoid(b))]`` along ``axis``."""
    a, b = np.split(x, 2, axis=axis)
    s = sigmoid(b)
    return np.concatenate([dy * s, dy * a * s * (1 - s)], axis=axis)
