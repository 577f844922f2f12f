"""Reference linear, dropout, softmax and cross-entropy vs torch: values and autograd
gradients, including logits large enough to overflow a naive softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from refcheck import close, t

from cvcraft.errors import ConfigError
from cvcraft.reference import layers


@pytest.mark.parametrize("xshape,o", [((5, 3), 4), ((2, 3, 6), 2), ((7,), 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_torch(xshape, o, bias):
    rng = np.random.default_rng(len(xshape) + o)
    x = rng.normal(size=xshape)
    w = rng.normal(size=(o, xshape[-1]))
    b = rng.normal(size=o) if bias else None
    xt, wt = t(x), t(w)
    bt = t(b) if bias else None
    yt = F.linear(xt, wt, bt)
    close(layers.linear(x, w, b), yt)
    dy = rng.normal(size=yt.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = layers.linear_backward(dy, x, w)
    close(dx, xt.grad)
    close(dw, wt.grad)
    if bias:
        close(db, bt.grad)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_equals_torch_given_its_mask(p):
    # torch draws its own mask; read it back from the output and replay it here.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, size=(50, 40))  # nonzero, so a zero output means dropped
    xt = t(x)
    yt = F.dropout(xt, p, training=True)
    mask = yt.detach().numpy() != 0
    close(layers.dropout(x, mask, p), yt)
    dy = rng.normal(size=x.shape)
    yt.backward(torch.tensor(dy))
    close(layers.dropout_backward(dy, mask, p), xt.grad)
    # and our own mask keeps 1 - p of the units (binomial, 2000 draws: 5 sigma)
    m = layers.dropout_mask((2000,), p, rng)
    assert abs(m.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / 2000)


@pytest.mark.parametrize("shape,axis", [((4, 5), 1), ((3, 2, 6), -1), ((3, 4, 2), 0)])
def test_softmax_and_log_softmax_equal_torch(shape, axis):
    rng = np.random.default_rng(len(shape))
    z = rng.normal(0, 50, size=shape)  # e^z overflows float64 for z > 709
    z.flat[0] = 1000.0
    zt = t(z)
    pt = torch.softmax(zt, axis)
    p = layers.softmax(z, axis)
    close(p, pt)
    close(layers.log_softmax(z, axis), torch.log_softmax(t(z, False), axis))
    dp = rng.normal(size=shape)
    pt.backward(torch.tensor(dp))
    close(layers.softmax_backward(dp, p, axis), zt.grad)


@pytest.mark.parametrize("n,k", [(6, 3), (1, 5), (16, 10)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_equals_torch(n, k, smoothing):
    rng = np.random.default_rng(n * k)
    z = rng.normal(0, 30, size=(n, k))
    y = rng.integers(0, k, size=n)
    zt = t(z)
    lt = F.cross_entropy(zt, torch.tensor(y), label_smoothing=smoothing)
    close(layers.cross_entropy(z, y, smoothing), lt)
    lt.backward()
    close(layers.cross_entropy_backward(z, y, smoothing), zt.grad)


def test_layer_errors():
    with pytest.raises(ValueError, match="3 features"):
        layers.linear(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ConfigError, match=r"dropout p=1.0"):
        layers.dropout_mask((3,), 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        layers.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
