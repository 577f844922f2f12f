"""cvcraft.nn.recurrent vs torch.nn.RNN/LSTM/GRU (and their cells) with copied weights:
outputs, final states and gradients (input, initial state, every weight) to 1e-6, uni- and
bidirectional, stacked, batch_first both ways; a torch state_dict loads strictly."""

from __future__ import annotations

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.nn import recurrent as R

PAIRS = {
    "rnn": (R.RNN, torch.nn.RNN),
    "lstm": (R.LSTM, torch.nn.LSTM),
    "gru": (R.GRU, torch.nn.GRU),
}
CELLS = {
    "rnn": (R.RNNCell, torch.nn.RNNCell),
    "lstm": (R.LSTMCell, torch.nn.LSTMCell),
    "gru": (R.GRUCell, torch.nn.GRUCell),
}


def _pair(kind, **kw):
    ours_cls, torch_cls = PAIRS[kind]
    torch.manual_seed(0)
    ref = torch_cls(**kw).double()
    ours = ours_cls(**kw).double()
    ours.load_state_dict(ref.state_dict(), strict=True)  # same names, same layout
    return ours, ref


def _grads(module, *tensors):
    return [p.grad.clone() for p in module.parameters()] + [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidir", [(1, False), (1, True), (3, False), (2, True)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_layers_equal_torch(kind, layers, bidir, batch_first):
    ours, ref = _pair(kind, input_size=5, hidden_size=7, num_layers=layers,
                      bidirectional=bidir, batch_first=batch_first)  # fmt: skip
    g = torch.Generator().manual_seed(1)
    T, B, D = 6, 3, 2 if bidir else 1
    x = torch.randn((B, T, 5) if batch_first else (T, B, 5), generator=g, dtype=torch.float64)
    h0 = torch.randn(layers * D, B, 7, generator=g, dtype=torch.float64)
    c0 = torch.randn(layers * D, B, 7, generator=g, dtype=torch.float64)
    results = []
    for m in (ours, ref):
        xi, hi, ci = (t.clone().requires_grad_() for t in (x, h0, c0))
        out, state = m(xi, (hi, ci) if kind == "lstm" else hi)
        states = state if kind == "lstm" else (state,)
        # A loss touching output and every final state, with unequal weights per element.
        w = torch.linspace(-1, 2, out.numel(), dtype=torch.float64).view_as(out)
        loss = (out * w).sum() + sum((s**2).sum() for s in states)
        loss.backward()
        used = (xi, hi, ci) if kind == "lstm" else (xi, hi)
        results.append((out.detach(), [s.detach() for s in states], _grads(m, *used)))
    (o1, s1, g1), (o2, s2, g2) = results
    assert o1.shape == o2.shape == ((B, T, D * 7) if batch_first else (T, B, D * 7))
    torch.testing.assert_close(o1, o2, atol=1e-6, rtol=0)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_layers_float32_default_state_unbatched_and_no_bias(kind):
    ours_cls, torch_cls = PAIRS[kind]
    torch.manual_seed(3)
    ref = torch_cls(4, 6, num_layers=2, bias=False, bidirectional=True)
    ours = ours_cls(4, 6, num_layers=2, bias=False, bidirectional=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(5, 2, 4)
    o1, s1 = ours(x)
    o2, s2 = ref(x)
    torch.testing.assert_close(o1, o2, atol=1e-6, rtol=1e-5)
    u1, _ = ours(x[:, 0])  # unbatched (T, I)
    u2, _ = ref(x[:, 0])
    torch.testing.assert_close(u1, u2, atol=1e-6, rtol=1e-5)
    assert u1.shape == (5, 12)


def test_rnn_relu_and_dropout_eval():
    torch.manual_seed(0)
    ref = torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu", dropout=0.5)
    ours = R.RNN(3, 4, num_layers=2, nonlinearity="relu", dropout=0.5)
    ours.load_state_dict(ref.state_dict())
    ref.eval(), ours.eval()
    x = torch.randn(7, 2, 3)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-6, rtol=1e-5)
    ours.train()
    torch.manual_seed(5)
    a = ours(x)[0]
    torch.manual_seed(6)
    assert not torch.equal(a, ours(x)[0])  # dropout between layers acts in training


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cells_equal_torch(kind):
    ours_cls, torch_cls = CELLS[kind]
    torch.manual_seed(0)
    ref = torch_cls(5, 4).double()
    ours = ours_cls(5, 4).double()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 5, dtype=torch.float64)
    h = torch.randn(3, 4, dtype=torch.float64)
    c = torch.randn(3, 4, dtype=torch.float64)
    outs = []
    for m in (ours, ref):
        xi, hi, ci = (t.clone().requires_grad_() for t in (x, h, c))
        y = m(xi, (hi, ci)) if kind == "lstm" else m(xi, hi)
        ys = y if kind == "lstm" else (y,)
        sum((t * torch.arange(1.0, 5.0, dtype=torch.float64)).sum() for t in ys).backward()
        outs.append(([t.detach() for t in ys], _grads(m, xi, hi)))
    for a, b in zip(outs[0][0] + outs[0][1], outs[1][0] + outs[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # zero default state and an unbatched input
    y1 = ours(x[0])
    y2 = ref(x[0])
    for a, b in zip(y1 if kind == "lstm" else (y1,), y2 if kind == "lstm" else (y2,)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_torch_init_bounds():
    m = R.LSTM(3, 16, num_layers=2)
    for p in m.parameters():
        assert p.abs().max() <= 0.25  # U(-1/sqrt(16), 1/sqrt(16))
    assert [n for n, _ in m.named_parameters()] == [
        n for n, _ in torch.nn.LSTM(3, 16, num_layers=2).named_parameters()
    ]


def test_bad_input_errors():
    m = R.GRU(4, 5)
    with pytest.raises(ConfigError, match="expects input"):
        m(torch.randn(3, 2, 6))
    with pytest.raises(ConfigError, match="initial state"):
        m(torch.randn(3, 2, 4), torch.randn(2, 2, 5))
    with pytest.raises(ConfigError, match="empty"):
        m(torch.randn(0, 2, 4))
    with pytest.raises(ConfigError, match="num_layers"):
        R.LSTM(4, 5, num_layers=0)
    with pytest.raises(ConfigError, match="positive"):
        R.RNN(0, 5)
    with pytest.raises(ConfigError, match="nonlinearity"):
        R.RNN(4, 5, nonlinearity="sigmoid")
    with pytest.raises(ConfigError, match="expects input"):
        R.LSTMCell(4, 5)(torch.randn(2, 3))
