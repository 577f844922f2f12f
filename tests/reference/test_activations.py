"""Reference activations and derivatives vs the torch modules cvcraft.nn.activations
registers (the same names): values and autograd gradients on random inputs, at the kinks,
and far out in the tails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refcheck import close, t

from cvcraft.errors import ConfigError
from cvcraft.nn.activations import ACTIVATIONS as TORCH_ACTS
from cvcraft.nn.activations import get_act
from cvcraft.reference import activations as ra

KINKS = np.array([-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0, -40.0, 40.0])


def test_every_library_activation_has_a_reference():
    assert set(TORCH_ACTS.names()) - {"prelu", "glu"} == set(ra.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ra.ACTIVATIONS))
def test_activation_and_derivative_equal_torch(name):
    rng = np.random.default_rng(len(name))
    x = np.concatenate([rng.normal(0, 3, size=200), KINKS])
    f, df = ra.activation(name)
    xt = t(x)
    yt = get_act(name)(xt)
    close(f(x), yt)
    yt.sum().backward()
    close(df(x), xt.grad)


@pytest.mark.parametrize("shape,channels", [((5, 3, 4), 3), ((6,), 1), ((2, 4, 3, 3), 1)])
def test_prelu_equals_torch(shape, channels):
    rng = np.random.default_rng(channels)
    x = np.concatenate([rng.normal(size=shape).ravel()[:-1], [0.0]]).reshape(shape)
    a = rng.uniform(0, 0.5, size=channels)
    xt, at = t(x), t(a)
    yt = torch.nn.functional.prelu(xt, at)
    close(ra.prelu(x, a), yt)
    dy = rng.normal(size=shape)
    yt.backward(torch.tensor(dy))
    dx, da = ra.prelu_backward(dy, x, a)
    close(dx, xt.grad)
    close(da, at.grad)


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((2, 4, 3), 1), ((8,), 0)])
def test_glu_equals_torch(shape, axis):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(0, 2, size=shape)
    xt = t(x)
    yt = torch.nn.functional.glu(xt, axis)
    close(ra.glu(x, axis), yt)
    dy = rng.normal(size=yt.shape)
    yt.backward(torch.tensor(dy))
    close(ra.glu_backward(dy, x, axis), xt.grad)


def test_activation_errors():
    with pytest.raises(ConfigError, match="unknown reference activation 'relu7'"):
        ra.activation("relu7")
    with pytest.raises(ValueError, match="even size"):
        ra.glu(np.zeros((3, 5)))
