"""Reference LR schedules vs torch.optim.lr_scheduler stepped the same number of times
(the lr seen at each step), and vs cvcraft.engine.schedules' factors."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch.optim import lr_scheduler as ls

from cvcraft.engine import schedules as lib
from cvcraft.errors import ConfigError
from cvcraft.reference import schedules as rs

LR = 0.4
STEPS = 40


def _torch_lrs(make) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched = make(opt)
    out = []
    for _ in range(STEPS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


CASES = {
    "step": (lambda o: ls.StepLR(o, 7, 0.5), partial(rs.step_lr, lr0=LR, step_size=7, gamma=0.5)),
    "multistep": (
        lambda o: ls.MultiStepLR(o, [5, 12, 30], 0.3),
        partial(rs.multistep_lr, lr0=LR, milestones=[5, 12, 30], gamma=0.3),
    ),
    "exponential": (
        lambda o: ls.ExponentialLR(o, 0.9),
        partial(rs.exponential_lr, lr0=LR, gamma=0.9),
    ),
    "cosine": (
        lambda o: ls.CosineAnnealingLR(o, STEPS, eta_min=0.01),
        partial(rs.cosine_lr, lr0=LR, total=STEPS, lr_min=0.01),
    ),
    "restarts": (
        lambda o: ls.CosineAnnealingWarmRestarts(o, 5, 2, eta_min=0.02),
        partial(rs.cosine_restarts_lr, lr0=LR, t0=5, mult=2, lr_min=0.02),
    ),
    "polynomial": (
        lambda o: ls.PolynomialLR(o, 25, 2.0),
        partial(rs.polynomial_lr, lr0=LR, total=25, power=2.0),
    ),
    "one_cycle": (
        lambda o: ls.OneCycleLR(o, LR, total_steps=STEPS, cycle_momentum=False),
        partial(rs.one_cycle_lr, lr_max=LR, total=STEPS),
    ),
    "warmup_cosine": (
        lambda o: ls.SequentialLR(
            o, [ls.LinearLR(o, 0.1, 1.0, 8), ls.CosineAnnealingLR(o, STEPS - 8)], [8]
        ),
        lambda t: rs.warmup(partial(rs.cosine_lr, lr0=LR, total=STEPS - 8), t, LR, 8, 0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_equals_torch(name):
    make, ours = CASES[name]
    expected = _torch_lrs(make)
    got = [ours(t) for t in range(STEPS)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("t", [0, 1, 9, 10, 25, 49, 60])
def test_library_schedule_factors_equal_reference(t):
    total = 50
    assert lib.cosine_factor(t, total, min_factor=0.1) == pytest.approx(
        rs.cosine_lr(t, 1.0, total, 0.1)
    )
    assert lib.poly_factor(t, total, power=0.9) == pytest.approx(
        rs.polynomial_lr(t, 1.0, total, 0.9)
    )
    assert lib.step_factor(t, total, step_size=10, gamma=0.5) == pytest.approx(
        rs.step_lr(t, 1.0, 10, 0.5)
    )
    assert lib.one_cycle_factor(min(t, total - 1), total) == pytest.approx(
        rs.one_cycle_lr(min(t, total - 1), 1.0, total)
    )
    warm = lib.make_lr_factor("cosine", total, warmup_steps=5, warmup_start_factor=0.2)
    ref = rs.warmup(partial(rs.cosine_lr, lr0=1.0, total=total - 5), t, 1.0, 5, 0.2)
    assert warm(t) == pytest.approx(ref)


def test_schedule_edges_and_errors():
    assert rs.cosine_lr(30, LR, 30) == pytest.approx(0.0, abs=1e-15)
    assert rs.cosine_lr(15, LR, 30) == pytest.approx(LR / 2)
    assert rs.one_cycle_lr(0, 1.0, 100) == pytest.approx(1 / 25)
    assert rs.one_cycle_lr(29, 1.0, 100) == pytest.approx(1.0)
    assert rs.one_cycle_lr(99, 1.0, 100) == pytest.approx(1 / 25e4)
    assert math.isclose(rs.cosine_restarts_lr(5, 1.0, 5, 2), 1.0)  # a restart
    with pytest.raises(ConfigError, match="pct_start"):
        rs.one_cycle_lr(0, 1.0, 2)
    with pytest.raises(ConfigError, match="warmup steps=0"):
        rs.warmup(lambda t: 1.0, 0, 1.0, 0)
