"""Two small learners trained by hand: logistic regression by gradient descent, and a
two-layer MLP with hand-written backpropagation on a toy dataset (two-arm spirals).

Logistic regression: ``p = sigmoid(X w + b)``, loss
``L = mean(log(1 + e^z) - y z) + (lam / 2) ||w||^2`` with z = X w + b, gradient
``dL/dw = X^T (p - y) / n + lam w``, ``dL/db = mean(p - y)``; convex, so gradient descent
finds the same minimum as any other solver.
MLP: ``h = relu(x W1^T + b1)``, ``z = h W2^T + b2``, ``L = cross_entropy(z, y)``;
backward: ``dz = (softmax(z) - onehot(y)) / n``, ``dW2 = dz^T h``, ``dh = dz W2``,
``da = dh [a > 0]``, ``dW1 = da^T x``; then ``theta -= lr dtheta``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.reference.activations import sigmoid, softplus
from cvcraft.reference.layers import cross_entropy, cross_entropy_backward, linear, linear_backward

# --- logistic regression --------------------------------------------------------------


def logistic_loss(
    w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, lam: float = 0.0
) -> tuple[float, np.ndarray, float]:
    """``(L, dL/dw, dL/db)`` of L2-regularised logistic regression; y in {0, 1}, (n,)."""
    z = x @ w + b
    loss = np.mean(softplus(z) - y * z) + 0.5 * lam * (w @ w)  # log(1+e^z) - y z, stable
    r = sigmoid(z) - y  # (n,) the residual p - y
    return float(loss), x.T @ r / len(y) + lam * w, float(r.mean())


def fit_logistic(
    x: np.ndarray, y: np.ndarray, lr: float = 0.5, steps: int = 1000, lam: float = 0.0
) -> tuple[np.ndarray, float, list[float]]:
    """Gradient descent from zero: ``(w, b, losses)``, losses before each step."""
    if set(np.unique(y)) - {0, 1}:
        raise ValueError(f"fit_logistic labels must be 0/1, got {np.unique(y)}")
    w, b = np.zeros(x.shape[1]), 0.0
    losses = []
    for _ in range(steps):
        loss, dw, db = logistic_loss(w, b, x, y, lam)
        losses.append(loss)
        w, b = w - lr * dw, b - lr * db
    return w, b, losses


# --- a two-layer MLP --------------------------------------------------------------------


class MLP(NamedTuple):
    w1: np.ndarray  # (H, D)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (K, H)
    b2: np.ndarray  # (K,)


def spirals(n_per_class: int, classes: int, rng: np.random.Generator, noise: float = 0.2):
    """``classes`` interleaved spiral arms in 2-D, not linearly separable: (x (n, 2), y (n,))."""
    r = np.tile(np.linspace(0.05, 1.0, n_per_class), classes)
    y = np.repeat(np.arange(classes), n_per_class)
    theta = 4.0 * r + 2 * math.pi * y / classes + rng.normal(0, noise, size=r.shape)
    return np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1), y


def init_mlp(d_in: int, hidden: int, classes: int, rng: np.random.Generator) -> MLP:
    """He-normal weights for the ReLU layer, zero biases."""
    return MLP(
        rng.normal(0, math.sqrt(2 / d_in), size=(hidden, d_in)),
        np.zeros(hidden),
        rng.normal(0, math.sqrt(1 / hidden), size=(classes, hidden)),
        np.zeros(classes),
    )


def mlp_forward(p: MLP, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits (n, K), a (n, H) pre-activation, h (n, H) hidden)``."""
    a = linear(x, p.w1, p.b1)
    h = np.maximum(a, 0)
    return linear(h, p.w2, p.b2), a, h


def mlp_loss_and_grads(p: MLP, x: np.ndarray, y: np.ndarray) -> tuple[float, MLP]:
    """Mean cross-entropy and its gradient with respect to every parameter."""
    logits, a, h = mlp_forward(p, x)
    dz = cross_entropy_backward(logits, y)
    dh, dw2, db2 = linear_backward(dz, h, p.w2)
    da = dh * (a > 0)  # relu passes the gradient where it was active
    _, dw1, db1 = linear_backward(da, x, p.w1)
    return cross_entropy(logits, y), MLP(dw1, db1, dw2, db2)


def train_mlp(
    p: MLP,
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    steps: int,
    batch: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[MLP, list[float]]:
    """Plain SGD: full batch, or ``batch`` examples per step from a reshuffle of ``rng``
    each epoch. Returns the trained parameters and the loss of each step's batch."""
    if batch is not None and (rng is None or not 0 < batch <= len(x)):
        raise ConfigError(f"train_mlp batch={batch} needs an rng and 0 < batch <= {len(x)}")
    losses, order = [], np.arange(len(x))
    per_epoch = 1 if batch is None else len(x) // batch
    for step in range(steps):
        if batch is None:
            idx = order
        else:
            if step % per_epoch == 0:
                order = rng.permutation(len(x))
            j = step % per_epoch
            idx = order[j * batch : (j + 1) * batch]
        loss, g = mlp_loss_and_grads(p, x[idx], y[idx])
        losses.append(loss)
        p = MLP(*(w - lr * dw for w, dw in zip(p, g)))
    return p, losses
