"""Reference conv2d (naive, im2col) and transposed conv vs torch.nn.functional, values and
autograd gradients, over strides, paddings, dilations and groups; conv arithmetic vs the
shapes torch produces and the receptive field vs autograd's actual support."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from refcheck import close, t

from cvcraft.errors import ConfigError
from cvcraft.reference import conv
from cvcraft.reference.formulas import (
    conv_output_size,
    conv_transpose_output_size,
    receptive_field,
)

# (N, C_in, H, W, C_out, k, stride, padding, dilation, groups)
CASES = [
    (2, 3, 7, 6, 4, (3, 3), 1, 0, 1, 1),
    (1, 4, 8, 9, 6, (3, 2), (2, 1), (1, 2), 1, 2),
    (2, 4, 9, 9, 4, (3, 3), 2, 2, (2, 1), 4),  # depthwise, dilated
    (1, 6, 6, 7, 3, (1, 1), 1, 0, 1, 3),
    (1, 2, 5, 5, 2, (5, 5), 3, 2, 1, 1),  # kernel as large as the input
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["naive", "im2col"])
def test_conv2d_forward_backward_equals_torch(case, impl):
    n, cin, h, w_, cout, k, s, p, d, g = case
    rng = np.random.default_rng(CASES.index(case))
    x = rng.normal(size=(n, cin, h, w_))
    w = rng.normal(size=(cout, cin // g) + k)
    b = rng.normal(size=cout)
    fwd, bwd = (
        (conv.conv2d_naive, conv.conv2d_naive_backward)
        if impl == "naive"
        else (conv.conv2d_im2col, conv.conv2d_im2col_backward)
    )
    y = fwd(x, w, b, s, p, d, g)
    xt, wt, bt = t(x), t(w), t(b)
    yt = F.conv2d(xt, wt, bt, s, p, d, g)
    close(y, yt)
    dy = rng.normal(size=y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = bwd(dy, x, w, s, p, d, g)
    close(dx, xt.grad)
    close(dw, wt.grad)
    close(db, bt.grad)


# (N, C_in, H, W, C_out, k, stride, padding, output_padding, dilation, groups)
T_CASES = [
    (2, 3, 4, 5, 2, (3, 3), 2, 1, 1, 1, 1),
    (1, 4, 3, 3, 6, (2, 3), (2, 3), (0, 1), (1, 2), 1, 2),
    (1, 2, 4, 4, 2, (3, 3), 1, 2, 0, 2, 2),
    (2, 2, 3, 4, 3, (4, 4), 3, 0, 2, 1, 1),
    (1, 2, 4, 3, 4, (3, 2), 1, 1, 1, 2, 1),  # output_padding >= stride (allowed: < dilation)
]


@pytest.mark.parametrize("case", T_CASES)
def test_conv_transpose2d_equals_torch(case):
    n, cin, h, w_, cout, k, s, p, op, d, g = case
    rng = np.random.default_rng(T_CASES.index(case))
    x = rng.normal(size=(n, cin, h, w_))
    w = rng.normal(size=(cin, cout // g) + k)
    b = rng.normal(size=cout)
    y = conv.conv_transpose2d(x, w, b, s, p, op, d, g)
    xt, wt, bt = t(x), t(w), t(b)
    yt = F.conv_transpose2d(xt, wt, bt, s, p, op, g, d)
    close(y, yt)
    dy = rng.normal(size=y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = conv.conv_transpose2d_backward(dy, x, w, s, p, op, d, g)
    close(dx, xt.grad)
    close(dw, wt.grad)
    close(db, bt.grad)


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), c> == <x, col2im(c)> for every x, c: the defining property of an adjoint
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 8))
    cols = conv.im2col(x, (3, 2), (2, 1), (1, 1), (1, 2))
    c = rng.normal(size=cols.shape)
    lhs = (cols * c).sum()
    rhs = (x * conv.col2im(c, (7, 8), (2, 1), (1, 1), (1, 2))).sum()
    assert abs(lhs - rhs) < 1e-10


def test_conv_errors():
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(ConfigError, match="groups=3"):
        conv.conv2d_im2col(x, np.zeros((3, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match="does not fit"):
        conv.conv2d_naive(x, np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        conv.conv2d_im2col(x[0], np.zeros((2, 4, 3, 3)))
    with pytest.raises(ConfigError, match="shorter than the dilated kernel"):
        conv.conv2d_im2col(x, np.zeros((2, 4, 3, 3)), dilation=3)


@pytest.mark.parametrize("size", [1, 5, 8, 17])
@pytest.mark.parametrize("k,s,p,d", [(1, 1, 0, 1), (3, 2, 1, 1), (4, 3, 2, 2), (2, 2, 0, 1)])
def test_output_size_formulas_equal_torch_shapes(size, k, s, p, d):
    x = torch.zeros(1, 1, size, size)
    if size + 2 * p >= d * (k - 1) + 1:
        out = F.conv2d(x, torch.zeros(1, 1, k, k), None, s, p, d).shape[-1]
        assert conv_output_size(size, k, s, p, d) == out
        assert F.max_pool2d(x, k, s, min(p, k // 2), d).shape[-1] == conv_output_size(
            size, k, s, min(p, k // 2), d
        )
    else:
        with pytest.raises(ConfigError, match="shorter"):
            conv_output_size(size, k, s, p, d)
    for op in range(max(s, d)):
        out = F.conv_transpose2d(x, torch.zeros(1, 1, k, k), None, s, 0, op, 1, d).shape[-1]
        assert conv_transpose_output_size(size, k, s, 0, op, d) == out
    with pytest.raises(ConfigError, match="output_padding"):
        conv_transpose_output_size(size, k, s, 0, max(s, d), d)


@pytest.mark.parametrize(
    "layers",
    [
        [(3, 1)],
        [(3, 1), (3, 1)],
        [(7, 2), (3, 2), (3, 1), (3, 2)],
        [(3, 1, 2), (3, 2, 1), (5, 1, 3)],
    ],
)
def test_receptive_field_equals_autograd_support(layers):
    # The input pixels one output pixel depends on: the nonzero gradient of a stack of
    # all-ones convolutions (positive weights, so no cancellation).
    size = 80
    x = torch.ones(1, 1, size, size, requires_grad=True, dtype=torch.float64)
    y = x
    for layer in layers:
        k, s, d = layer[0], layer[1], layer[2] if len(layer) > 2 else 1
        y = F.conv2d(y, torch.ones(1, 1, k, k, dtype=torch.float64), None, s, 0, d)
    y[0, 0, 1, 1].backward()
    rows = torch.nonzero(x.grad[0, 0].sum(1)).squeeze(1)
    rf, jump = receptive_field(layers)
    assert int(rows[-1] - rows[0]) + 1 == rf
    assert int(rows[0]) == jump  # output 1 starts one jump after output 0
    with pytest.raises(ConfigError, match="kernel"):
        receptive_field([(0, 1)])
