"""Reference max/avg pooling vs torch.nn.functional: values and autograd gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from refcheck import close, t

from cvcraft.errors import ConfigError
from cvcraft.reference import pool

# (shape, kernel, stride, padding, dilation)
CASES = [
    ((2, 3, 6, 6), 2, None, 0, 1),
    ((1, 2, 7, 8), (3, 2), (2, 1), (1, 1), 1),
    ((2, 1, 9, 9), 3, 2, 1, 2),
    ((1, 3, 5, 5), 5, 1, 2, 1),
]


@pytest.mark.parametrize("case", CASES)
def test_max_pool_equals_torch(case):
    shape, k, s, p, d = case
    rng = np.random.default_rng(CASES.index(case))
    x = rng.normal(size=shape)
    y, arg = pool.max_pool2d(x, k, s, p, d)
    xt = t(x)
    yt = F.max_pool2d(xt, k, s, p, d)
    close(y, yt)
    dy = rng.normal(size=y.shape)
    yt.backward(torch.tensor(dy))
    close(pool.max_pool2d_backward(dy, arg, x.shape, k, s, p, d), xt.grad)


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 1, 4, 4))  # every window is a tie
    y, arg = pool.max_pool2d(x, 2, 1)
    xt = t(x)
    F.max_pool2d(xt, 2, 1).sum().backward()
    close(pool.max_pool2d_backward(np.ones_like(y), arg, x.shape, 2, 1), xt.grad)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_equals_torch(case, include_pad):
    shape, k, s, p, _ = case
    rng = np.random.default_rng(CASES.index(case))
    x = rng.normal(size=shape)
    y = pool.avg_pool2d(x, k, s, p, include_pad)
    xt = t(x)
    yt = F.avg_pool2d(xt, k, s, p, count_include_pad=include_pad)
    close(y, yt)
    dy = rng.normal(size=y.shape)
    yt.backward(torch.tensor(dy))
    close(pool.avg_pool2d_backward(dy, x.shape, k, s, p, include_pad), xt.grad)


def test_pool_errors():
    with pytest.raises(ConfigError, match="at most half the kernel"):
        pool.max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        pool.avg_pool2d(np.zeros((4, 4)), 2)
