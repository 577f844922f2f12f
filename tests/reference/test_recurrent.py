"""Reference RNN/LSTM/GRU cells vs torch.nn.*Cell with the same weights (values and
autograd gradients), and backpropagation through time by chaining the cells vs nn.LSTM /
nn.GRU over a short sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refcheck import close

from cvcraft.reference import recurrent as rr

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _params(rng, kind, i, h) -> rr.CellParams:
    g = GATES[kind]
    return rr.CellParams(
        *(rng.normal(0, 0.5, size=s) for s in ((g * h, i), (g * h, h), (g * h,), (g * h,)))
    )


def _load(module: torch.nn.Module, p: rr.CellParams, suffix: str = "") -> None:
    with torch.no_grad():
        for name, value in zip(rr.CellParams._fields, p):
            getattr(
                module,
                f"weight_{name[2:]}" + suffix
                if name.startswith("w")
                else f"bias_{name[2:]}" + suffix,
            ).copy_(torch.tensor(value))


def _grads(module: torch.nn.Module, suffix: str = "") -> list[torch.Tensor]:
    return [
        getattr(module, n + suffix).grad for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("n,i,h", [(3, 4, 5), (1, 2, 3)])
def test_cell_equals_torch(kind, n, i, h):
    rng = np.random.default_rng(n + i + h + GATES[kind])
    p = _params(rng, kind, i, h)
    x, h0, c0 = rng.normal(size=(n, i)), rng.normal(size=(n, h)), rng.normal(size=(n, h))
    cell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](
        i, h, dtype=torch.float64
    )
    _load(cell, p)
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    dh = rng.normal(size=(n, h))
    if kind == "lstm":
        dc = rng.normal(size=(n, h))
        h1, c1, cache = rr.lstm_cell(x, h0, c0, p)
        h1t, c1t = cell(xt, (ht, ct))
        close(h1, h1t)
        close(c1, c1t)
        torch.autograd.backward([h1t, c1t], [torch.tensor(dh), torch.tensor(dc)])
        dx, dh0, dc0, g = rr.lstm_cell_backward(dh, dc, cache, p)
        close(dc0, ct.grad)
    else:
        fwd, bwd = (
            (rr.rnn_cell, rr.rnn_cell_backward)
            if kind == "rnn"
            else (rr.gru_cell, rr.gru_cell_backward)
        )
        h1, cache = fwd(x, h0, p)
        h1t = cell(xt, ht)
        close(h1, h1t)
        h1t.backward(torch.tensor(dh))
        dx, dh0, g = bwd(dh, cache, p)
    close(dx, xt.grad)
    close(dh0, ht.grad)
    for ours, theirs in zip(g, _grads(cell)):
        close(ours, theirs)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bptt_through_chained_cells_equals_torch_sequence_module(kind):
    rng = np.random.default_rng(7)
    steps, n, i, h = 5, 2, 3, 4
    p = _params(rng, kind, i, h)
    xs = rng.normal(size=(steps, n, i))
    h, c = np.zeros((n, h)), np.zeros((n, h))
    caches, outs = [], []
    for x in xs:
        if kind == "lstm":
            h, c, cache = rr.lstm_cell(x, h, c, p)
        else:
            h, cache = rr.gru_cell(x, h, p)
        caches.append(cache)
        outs.append(h)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](i, h.shape[1], dtype=torch.float64)
    _load(module, p, "_l0")
    xt = torch.tensor(xs, requires_grad=True)
    yt, _ = module(xt)
    close(np.stack(outs), yt)
    dys = rng.normal(size=yt.shape)
    yt.backward(torch.tensor(dys))
    # reverse time: each step's dh is the loss's gradient plus what the later step sent back
    dh, dc = np.zeros_like(h), np.zeros_like(h)
    total = [np.zeros_like(a) for a in p]
    dxs = []
    for cache, dy in zip(reversed(caches), dys[::-1]):
        if kind == "lstm":
            dx, dh, dc, g = rr.lstm_cell_backward(dy + dh, dc, cache, p)
        else:
            dx, dh, g = rr.gru_cell_backward(dy + dh, cache, p)
        dxs.append(dx)
        total = [a + b for a, b in zip(total, g)]
    close(np.stack(dxs[::-1]), xt.grad)
    for ours, theirs in zip(total, _grads(module, "_l0")):
        close(ours, theirs)


def test_cell_shape_errors():
    p = _params(np.random.default_rng(0), "gru", 3, 4)
    with pytest.raises(ValueError, match=r"must be \(N, 3\) and \(N, 4\)"):
        rr.gru_cell(np.zeros((2, 5)), np.zeros((2, 4)), p)
