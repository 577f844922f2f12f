"""Reference optimizer steps vs torch.optim over several steps of the same random gradients,
for each optimizer and a few hyperparameter combinations (weight decay, momentum, Nesterov,
dampening, centred RMSProp, ...)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refcheck import close

from cvcraft.errors import ConfigError
from cvcraft.reference import optim as ro

# (reference name, torch class, reference kwargs, torch kwargs)
CASES = [
    ("sgd", torch.optim.SGD, {"lr": 0.1}, {"lr": 0.1}),
    ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "wd": 1e-2},
     {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2}),
    ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
     {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "wd": 5e-3},
     {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-3}),
    ("adagrad", torch.optim.Adagrad, {"lr": 0.1}, {"lr": 0.1}),
    ("adagrad", torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.1, "wd": 0.1},
     {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.1}),
    ("rmsprop", torch.optim.RMSprop, {"lr": 0.01}, {"lr": 0.01}),
    ("rmsprop", torch.optim.RMSprop,
     {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True, "wd": 0.01},
     {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.01}),
    ("adadelta", torch.optim.Adadelta, {}, {}),
    ("adadelta", torch.optim.Adadelta, {"lr": 0.5, "rho": 0.8, "wd": 0.1},
     {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1}),
    ("adam", torch.optim.Adam, {"lr": 0.01}, {"lr": 0.01}),
    ("adam", torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "wd": 0.1},
     {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adamw", torch.optim.AdamW, {"lr": 0.01}, {"lr": 0.01}),
    ("adamw", torch.optim.AdamW, {"lr": 0.02, "wd": 0.3, "betas": (0.5, 0.9)},
     {"lr": 0.02, "weight_decay": 0.3, "betas": (0.5, 0.9)}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_optimizer_steps_equal_torch(case):
    name, cls, ours_kw, torch_kw = case
    rng = np.random.default_rng(CASES.index(case))
    p = rng.normal(size=(3, 4))
    pt = torch.tensor(p, requires_grad=True)
    opt = cls([pt], foreach=False, **torch_kw)
    state: dict = {}
    for _ in range(6):
        g = rng.normal(size=p.shape)
        pt.grad = torch.tensor(g)
        opt.step()
        p = ro.OPTIMIZERS[name](p, g, state, **ours_kw)
        close(p, pt, 1e-10)


def test_adam_bias_correction_makes_the_first_step_lr_sized():
    # m_1 = (1 - b1) g and v_1 = (1 - b2) g^2: uncorrected the first step would be
    # lr (1 - b1) / sqrt(1 - b2) ~ 3.2 lr; corrected it is lr sign(g) for any gradient scale.
    for scale in (1e-4, 1.0, 1e4):
        g = np.array([scale, -scale])
        p = ro.adam(np.zeros(2), g, {}, lr=0.1, eps=0.0)
        close(p, [-0.1, 0.1], 1e-12)


def test_adamw_decays_weights_even_without_gradient():
    p = ro.adamw(np.ones(3), np.zeros(3), {}, lr=0.1, wd=0.5, eps=1e-8)
    close(p, np.full(3, 0.95), 1e-12)  # Adam + L2 would step by lr whatever wd: 0.9


def test_optimizer_errors():
    with pytest.raises(ConfigError, match="Nesterov"):
        ro.sgd(np.zeros(1), np.zeros(1), {}, lr=0.1, nesterov=True)
    for step in ro.OPTIMIZERS.values():
        with pytest.raises(ValueError, match=r"gradient shape \(4,\) differs"):
            step(np.zeros((3, 4)), np.zeros(4), {}, lr=0.1)
