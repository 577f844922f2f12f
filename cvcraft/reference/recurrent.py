"""RNN, LSTM and GRU cells: one time step forward and backward, torch's gate layout.

Each cell has ``w_ih`` (G H, I), ``w_hh`` (G H, H), ``b_ih``, ``b_hh`` (G H,), G gates
stacked in torch's order; x (N, I), h (N, H). Backpropagation through time is the
backward of each step in reverse, adding the ``dh`` (and ``dc``) it returns to the next.

- RNN (G = 1):   ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``
- LSTM (G = 4, i f g o): ``c' = f c + i g``, ``h' = o tanh(c')``, with i, f, o sigmoids
  and g a tanh of the same affine sum. The additive path through c is what lets gradients
  survive many steps.
- GRU (G = 3, r z n): ``r, z = sigmoid(...)``, ``n = tanh(x W_in^T + b_in + r (h W_hn^T +
  b_hn))``, ``h' = (1 - z) n + z h``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cvcraft.reference.activations import sigmoid


class CellParams(NamedTuple):
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray


class CellCache(NamedTuple):
    x: np.ndarray
    h: np.ndarray
    c: np.ndarray | None  # LSTM's previous cell state
    gates: tuple[np.ndarray, ...]  # activated gates (and, GRU, the hidden-side n term)
    out: np.ndarray  # h' (RNN) or c' (LSTM) or h' (GRU)


def _affine(x: np.ndarray, h: np.ndarray, p: CellParams) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 2 or h.ndim != 2 or x.shape[1] != p.w_ih.shape[1] or h.shape[1] != p.w_hh.shape[1]:
        raise ValueError(
            f"cell input x {x.shape} and state h {h.shape} must be (N, {p.w_ih.shape[1]}) and "
            f"(N, {p.w_hh.shape[1]}) for w_ih {p.w_ih.shape}, w_hh {p.w_hh.shape}"
        )
    return x @ p.w_ih.T + p.b_ih, h @ p.w_hh.T + p.b_hh


def _param_grads(
    gi: np.ndarray, gh: np.ndarray, cache: CellCache, p: CellParams
) -> tuple[np.ndarray, np.ndarray, CellParams]:
    """From the gradients of the input-side (gi) and hidden-side (gh) pre-activations:
    ``dx = gi W_ih``, ``dh = gh W_hh``, ``dW_ih = gi^T x``, ``dW_hh = gh^T h``."""
    grads = CellParams(gi.T @ cache.x, gh.T @ cache.h, gi.sum(0), gh.sum(0))
    return gi @ p.w_ih, gh @ p.w_hh, grads


def rnn_cell(x: np.ndarray, h: np.ndarray, p: CellParams) -> tuple[np.ndarray, CellCache]:
    """Elman RNN step ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``: (N, H)."""
    a_i, a_h = _affine(x, h, p)
    h_new = np.tanh(a_i + a_h)
    return h_new, CellCache(x, h, None, (), h_new)


def rnn_cell_backward(
    dh_new: np.ndarray, cache: CellCache, p: CellParams
) -> tuple[np.ndarray, np.ndarray, CellParams]:
    """``(dx, dh, grads)`` of :func:`rnn_cell`; tanh' = 1 - h'^2."""
    da = dh_new * (1 - cache.out**2)
    return _param_grads(da, da, cache, p)


def lstm_cell(
    x: np.ndarray, h: np.ndarray, c: np.ndarray, p: CellParams
) -> tuple[np.ndarray, np.ndarray, CellCache]:
    """LSTM step (Hochreiter & Schmidhuber 1997, with a forget gate): ``(h', c', cache)``."""
    a_i, a_h = _affine(x, h, p)
    ai, af, ag, ao = np.split(a_i + a_h, 4, axis=1)
    i, f, g, o = sigmoid(ai), sigmoid(af), np.tanh(ag), sigmoid(ao)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, CellCache(x, h, c, (i, f, g, o), c_new)


def lstm_cell_backward(
    dh_new: np.ndarray, dc_new: np.ndarray, cache: CellCache, p: CellParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, CellParams]:
    """``(dx, dh, dc, grads)`` of :func:`lstm_cell` given the gradients of h' and c'."""
    i, f, g, o = cache.gates
    tc = np.tanh(cache.out)
    dc = dc_new + dh_new * o * (1 - tc**2)  # c' feeds the output and the next step
    da = np.concatenate(
        [
            dc * g * i * (1 - i),  # input gate
            dc * cache.c * f * (1 - f),  # forget gate
            dc * i * (1 - g**2),  # candidate
            dh_new * tc * o * (1 - o),  # output gate
        ],
        axis=1,
    )
    dx, dh, grads = _param_grads(da, da, cache, p)
    return dx, dh, dc * f, grads


def gru_cell(x: np.ndarray, h: np.ndarray, p: CellParams) -> tuple[np.ndarray, CellCache]:
    """GRU step (Cho et al. 2014, torch's variant: r gates ``h W_hn^T + b_hn``)."""
    a_i, a_h = _affine(x, h, p)
    ir, iz, in_ = np.split(a_i, 3, axis=1)
    hr, hz, hn = np.split(a_h, 3, axis=1)
    r, z = sigmoid(ir + hr), sigmoid(iz + hz)
    n = np.tanh(in_ + r * hn)
    h_new = (1 - z) * n + z * h
    return h_new, CellCache(x, h, None, (r, z, n, hn), h_new)


def gru_cell_backward(
    dh_new: np.ndarray, cache: CellCache, p: CellParams
) -> tuple[np.ndarray, np.ndarray, CellParams]:
    """``(dx, dh, grads)`` of :func:`gru_cell`."""
    r, z, n, hn = cache.gates
    dan = dh_new * (1 - z) * (1 - n**2)  # through n's tanh
    daz = dh_new * (cache.h - n) * z * (1 - z)
    dar = dan * hn * r * (1 - r)
    gi = np.concatenate([dar, daz, dan], axis=1)
    gh = np.concatenate([dar, daz, dan * r], axis=1)  # r scales the hidden-side n term
    dx, dh, grads = _param_grads(gi, gh, cache, p)
    return dx, dh + dh_new * z, grads
