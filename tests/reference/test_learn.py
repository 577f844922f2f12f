"""Reference logistic regression (loss, gradient, GD trajectory vs torch; solution vs
scikit-learn) and the hand-backpropagated two-layer MLP (loss curve vs the same MLP
trained by torch from the same initial weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from refcheck import close, t

from cvcraft.errors import ConfigError
from cvcraft.reference import learn

sklearn_linear = pytest.importorskip("sklearn.linear_model")


def _binary(rng, n=120, d=4):
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    y = (x @ w + 0.5 + rng.normal(0, 1.0, size=n) > 0).astype(float)
    return x, y


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_logistic_loss_and_gradient_equal_torch(lam):
    rng = np.random.default_rng(0)
    x, y = _binary(rng)
    w, b = rng.normal(size=4), 0.3
    loss, dw, db = learn.logistic_loss(w, b, x, y, lam)
    wt, bt = t(w), t(np.array(b))
    lt = (
        F.binary_cross_entropy_with_logits(t(x, False) @ wt + bt, t(y, False)) + 0.5 * lam * wt @ wt
    )
    lt.backward()
    close(loss, lt, 1e-12)
    close(dw, wt.grad, 1e-12)
    close(db, bt.grad, 1e-12)


def test_logistic_gd_trajectory_equals_torch_sgd_and_converges_to_sklearn():
    rng = np.random.default_rng(1)
    x, y = _binary(rng)
    lam, steps = 0.05, 1500
    w, b, losses = learn.fit_logistic(x, y, lr=1.0, steps=steps, lam=lam)
    wt, bt = (
        torch.zeros(4, dtype=torch.float64, requires_grad=True),
        torch.zeros((), dtype=torch.float64, requires_grad=True),
    )
    opt = torch.optim.SGD([wt, bt], lr=1.0)
    xt, yt = t(x, False), t(y, False)
    for i in range(50):  # the first 50 steps, step for step
        opt.zero_grad()
        lt = F.binary_cross_entropy_with_logits(xt @ wt + bt, yt) + 0.5 * lam * wt @ wt
        lt.backward()
        opt.step()
        assert losses[i] == pytest.approx(float(lt.detach()), abs=1e-12)
    # the minimiser of mean log-loss + lam/2 |w|^2 is sklearn's with C = 1 / (lam n)
    sk = sklearn_linear.LogisticRegression(C=1 / (lam * len(y)), tol=1e-12, max_iter=10_000).fit(
        x, y
    )
    close(w, sk.coef_[0], 1e-5)
    close(b, sk.intercept_[0], 1e-5)


def _torch_mlp(p: learn.MLP) -> torch.nn.Sequential:
    net = torch.nn.Sequential(
        torch.nn.Linear(2, p.w1.shape[0]),
        torch.nn.ReLU(),
        torch.nn.Linear(p.w1.shape[0], p.w2.shape[0]),
    ).double()
    with torch.no_grad():
        for param, value in zip(net.parameters(), p):
            param.copy_(torch.tensor(value))
    return net


@pytest.mark.parametrize("batch", [None, 50])
def test_mlp_loss_curve_equals_torch_from_the_same_init(batch):
    rng = np.random.default_rng(2)
    x, y = learn.spirals(100, 3, rng)
    p0 = learn.init_mlp(2, 32, 3, rng)
    p, losses = learn.train_mlp(
        p0, x, y, lr=0.5, steps=120, batch=batch, rng=np.random.default_rng(5)
    )
    net = _torch_mlp(p0)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    xt, yt = torch.tensor(x), torch.tensor(y)
    order_rng, order, per_epoch = (
        np.random.default_rng(5),
        np.arange(len(x)),
        len(x) // (batch or len(x)),
    )
    torch_losses = []
    for step in range(120):
        if batch is not None and step % per_epoch == 0:
            order = order_rng.permutation(len(x))
        j = step % per_epoch
        idx = torch.tensor(order if batch is None else order[j * batch : (j + 1) * batch])
        opt.zero_grad()
        loss = F.cross_entropy(net(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        torch_losses.append(float(loss.detach()))
    close(losses, torch_losses, 1e-8)
    for ours, theirs in zip(p, net.parameters()):
        close(ours, theirs, 1e-8)


def test_hand_trained_mlp_learns_the_spirals():
    rng = np.random.default_rng(3)
    x, y = learn.spirals(100, 3, rng, noise=0.1)
    p, losses = learn.train_mlp(learn.init_mlp(2, 64, 3, rng), x, y, lr=1.0, steps=1500)
    accuracy = (learn.mlp_forward(p, x)[0].argmax(1) == y).mean()
    assert losses[-1] < 0.25 * losses[0]
    assert accuracy > 0.9


def test_learn_errors():
    with pytest.raises(ValueError, match="0/1"):
        learn.fit_logistic(np.zeros((3, 2)), np.array([0, 1, 2]))
    p = learn.init_mlp(2, 4, 2, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="batch=8 needs an rng"):
        learn.train_mlp(p, np.zeros((4, 2)), np.zeros(4, int), 0.1, 1, batch=8)
