"""One optimizer step each, as the update rule reads in the paper (torch's conventions).

Every function takes the parameter ``p``, its gradient ``g`` and a ``state`` dict it reads
and updates in place (empty at the first step), and returns the new parameter. ``wd`` is
L2 regularisation added to the gradient (``g + wd p``), except in AdamW, which decays the
weights directly (Loshchilov & Hutter 2019): with Adam's per-coordinate scaling an L2 term
is scaled too, so it no longer acts as weight decay.

- SGD:       ``p -= lr g``
- momentum:  ``b = mu b + (1 - dampening) g`` (b = g at step 1), ``p -= lr b``
- Nesterov:  ``p -= lr (g + mu b)`` (look ahead along the velocity)
- AdaGrad:   ``G += g^2``, ``p -= lr g / (sqrt(G) + eps)`` (lr decays per coordinate)
- RMSProp:   ``v = a v + (1 - a) g^2``, ``p -= lr g / (sqrt(v) + eps)`` (a leaky AdaGrad)
- AdaDelta:  ``v = r v + (1 - r) g^2``, ``dx = sqrt(u + eps) / sqrt(v + eps) g``,
  ``u = r u + (1 - r) dx^2``, ``p -= lr dx`` (units of p, no global lr needed)
- Adam:      ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
  ``p -= lr m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``,
  ``v_hat = v / (1 - b2^t)``: m and v start at 0, so early averages are biased towards 0
  by exactly the factor ``1 - b^t``; dividing it out makes the first steps full-sized.
- AdamW:     ``p -= lr wd p``, then the Adam step without L2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.errors import ConfigError

State = dict[str, Any]


def _l2(p: np.ndarray, g: np.ndarray, wd: float) -> np.ndarray:
    """The gradient plus the L2 term; also where every step checks that g matches p."""
    if np.shape(p) != np.shape(g):
        raise ValueError(f"gradient shape {np.shape(g)} differs from the parameter's {np.shape(p)}")
    return g + wd * p if wd else g


def _step(state: State) -> int:
    state["step"] = state.get("step", 0) + 1
    return state["step"]


def sgd(
    p: np.ndarray,
    g: np.ndarray,
    state: State,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    wd: float = 0.0,
) -> np.ndarray:
    """SGD with optional (heavy-ball or Nesterov) momentum; torch's ``optim.SGD``."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ConfigError("Nesterov momentum needs momentum > 0 and dampening = 0")
    g = _l2(p, g, wd)
    if momentum:
        if "buf" not in state:
            state["buf"] = g.copy()  # the first step has no history to damp
        else:
            state["buf"] = momentum * state["buf"] + (1 - dampening) * g
        g = g + momentum * state["buf"] if nesterov else state["buf"]
    return p - lr * g


def adagrad(
    p: np.ndarray,
    g: np.ndarray,
    state: State,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    eps: float = 1e-10,
    wd: float = 0.0,
) -> np.ndarray:
    """AdaGrad (Duchi et al. 2011): divide by the root of all squared gradients so far."""
    t = _step(state)
    g = _l2(p, g, wd)
    state["sum"] = state.get("sum", 0.0) + g * g
    clr = lr / (1 + (t - 1) * lr_decay)
    return p - clr * g / (np.sqrt(state["sum"]) + eps)


def rmsprop(
    p: np.ndarray,
    g: np.ndarray,
    state: State,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
    wd: float = 0.0,
) -> np.ndarray:
    """RMSProp (Hinton's lecture 6e): a running mean of g^2 instead of AdaGrad's sum;
    ``centered`` divides by the running variance ``v - mean(g)^2`` instead."""
    g = _l2(p, g, wd)
    state["sq"] = alpha * state.get("sq", 0.0) + (1 - alpha) * g * g
    v = state["sq"]
    if centered:
        state["avg"] = alpha * state.get("avg", 0.0) + (1 - alpha) * g
        v = v - state["avg"] ** 2
    update = g / (np.sqrt(v) + eps)
    if momentum:
        state["buf"] = momentum * state.get("buf", 0.0) + update
        update = state["buf"]
    return p - lr * update


def adadelta(
    p: np.ndarray,
    g: np.ndarray,
    state: State,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    wd: float = 0.0,
) -> np.ndarray:
    """AdaDelta (Zeiler 2012): the step is scaled by RMS(past steps) / RMS(gradients)."""
    g = _l2(p, g, wd)
    state["sq"] = rho * state.get("sq", 0.0) + (1 - rho) * g * g
    delta = np.sqrt(state.get("acc_delta", 0.0) + eps) / np.sqrt(state["sq"] + eps) * g
    state["acc_delta"] = rho * state.get("acc_delta", 0.0) + (1 - rho) * delta * delta
    return p - lr * delta


def adam(
    p: np.ndarray,
    g: np.ndarray,
    state: State,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    wd: float = 0.0,
    decoupled: bool = False,
) -> np.ndarray:
    """Adam (Kingma & Ba 2015) with bias correction; ``decoupled`` makes it AdamW."""
    b1, b2 = betas
    t = _step(state)
    g = _l2(p, g, 0.0 if decoupled else wd)
    if decoupled:
        p = p * (1 - lr * wd)
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    m_hat = state["m"] / (1 - b1**t)
    v_hat = state["v"] / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw(
    p: np.ndarray,
    g: np.ndarray,
    state: State,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    wd: float = 1e-2,
) -> np.ndarray:
    """AdamW: decoupled weight decay ``p *= 1 - lr wd`` before the Adam step."""
    return adam(p, g, state, lr, betas, eps, wd, decoupled=True)


OPTIMIZERS = {
    "sgd": sgd,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
    "adamw": adamw,
}
