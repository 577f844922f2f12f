"""Reference BatchNorm (train and eval, running statistics), LayerNorm, GroupNorm and
InstanceNorm vs torch.nn.functional: values, running statistics and autograd gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from refcheck import close, t

from cvcraft.errors import ConfigError
from cvcraft.reference import norm

SHAPES = [(4, 3), (2, 3, 5, 4), (3, 2, 6)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_equals_torch(shape, training):
    rng = np.random.default_rng(len(shape) + 10 * training)
    x = rng.normal(2.0, 3.0, size=shape)
    c = shape[1]
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    rm, rv = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
    y, cache, rm2, rv2 = norm.batch_norm(x, gamma, beta, rm, rv, training, 0.3, 1e-5)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)  # torch updates these in place
    xt, gt, bt = t(x), t(gamma), t(beta)
    yt = F.batch_norm(xt, rmt, rvt, gt, bt, training, 0.3, 1e-5)
    close(y, yt)
    close(rm2, rmt)
    close(rv2, rvt)
    dy = rng.normal(size=shape)
    yt.backward(torch.tensor(dy))
    dx, dg, db = norm.batch_norm_backward(dy, cache, gamma, training)
    close(dx, xt.grad)
    close(dg, gt.grad)
    close(db, bt.grad)


def test_batch_norm_eval_is_the_train_statistics_after_convergence():
    # Many training steps on the same batch with momentum 1 make the running stats the batch
    # stats, except the variance stays unbiased: the train/eval gap is exactly m / (m - 1).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 3, 3))
    g, b = np.ones(2), np.zeros(2)
    y_train, _, rm, rv = norm.batch_norm(x, g, b, np.zeros(2), np.ones(2), True, 1.0)
    y_eval, *_ = norm.batch_norm(x, g, b, rm, rv * (71 / 72), False)
    close(y_eval, y_train, 1e-10)


def _check_affine_norm(rng, x, param_shape, affine, ours, ours_backward, theirs):
    """Values and gradients of a (possibly affine) norm: ``ours(x, gamma, beta) -> (y, cache)``,
    ``ours_backward(dy, cache, gamma)``, ``theirs(xt, gamma_t, beta_t)`` in torch."""
    gamma = rng.normal(size=param_shape) if affine else None
    beta = rng.normal(size=param_shape) if affine else None
    y, cache = ours(x, gamma, beta)
    xt = t(x)
    gt, bt = (t(gamma), t(beta)) if affine else (None, None)
    yt = theirs(xt, gt, bt)
    close(y, yt)
    dy = rng.normal(size=x.shape)
    yt.backward(torch.tensor(dy))
    dx, dg, db = ours_backward(dy, cache, gamma)
    close(dx, xt.grad)
    if affine:
        close(dg, gt.grad)
        close(db, bt.grad)


@pytest.mark.parametrize(
    "shape,k", [((3, 5), 1), ((2, 3, 4), 1), ((2, 3, 4, 5), 2), ((2, 3, 4), 3)]
)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_equals_torch(shape, k, affine):
    rng = np.random.default_rng(sum(shape) + k)
    ns = shape[len(shape) - k :]
    _check_affine_norm(
        rng, rng.normal(1.0, 2.0, size=shape), ns, affine,
        lambda x, g, b: norm.layer_norm(x, ns, g, b), norm.layer_norm_backward,
        lambda x, g, b: F.layer_norm(x, ns, g, b, 1e-5),
    )  # fmt: skip


@pytest.mark.parametrize("shape,groups", [((2, 4, 3, 3), 2), ((3, 6, 5), 3), ((2, 4, 2, 2), 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_equals_torch(shape, groups, affine):
    rng = np.random.default_rng(groups + len(shape))
    _check_affine_norm(
        rng, rng.normal(-1.0, 2.0, size=shape), shape[1], affine,
        lambda x, g, b: norm.group_norm(x, groups, g, b), norm.group_norm_backward,
        lambda x, g, b: F.group_norm(x, groups, g, b, 1e-5),
    )  # fmt: skip


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_equals_torch(shape, affine):
    rng = np.random.default_rng(len(shape))
    _check_affine_norm(
        rng, rng.normal(size=shape), shape[1], affine,
        norm.instance_norm, norm.instance_norm_backward,
        lambda x, g, b: F.instance_norm(x, weight=g, bias=b, eps=1e-5),
    )  # fmt: skip


def test_norm_errors():
    with pytest.raises(ConfigError, match="groups=3 must divide"):
        norm.group_norm(np.zeros((1, 4, 2, 2)), 3)
    with pytest.raises(ValueError, match="must end with"):
        norm.layer_norm(np.zeros((2, 3)), (4,))
    with pytest.raises(ValueError, match="more than one value per channel"):
        norm.batch_norm(np.zeros((1, 2)), np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), True)
