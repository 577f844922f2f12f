import warnings

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from cvcraft.engine.schedules import SCHEDULES, build_scheduler, make_lr_factor
from cvcraft.errors import ConfigError, RegistryError

LRS = (0.1, 0.02)  # two groups, as lr_mults would give: every group is scaled by the factor
N = 60


def _opt(lrs=LRS):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def _torch_seq(make, n=N, lrs=LRS):
    opt = _opt(lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        out = []
        for _ in range(n):
            out.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.step()
    return np.array(out)


def _our_seq(name, total, n=N, **kw):
    opt = _opt()
    sched = build_scheduler(opt, name, total, **kw)
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr())
        opt.step()
        sched.step()
    return np.array(out)


def _close(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-12)


def test_step_and_multistep():
    _close(_our_seq("step", N, step_size=7, gamma=0.5), _torch_seq(lambda o: tls.StepLR(o, 7, 0.5)))
    _close(
        _our_seq("multistep", N, milestones=[10, 25, 40], gamma=0.3),
        _torch_seq(lambda o: tls.MultiStepLR(o, [10, 25, 40], 0.3)),
    )


def test_linear():
    ref = _torch_seq(lambda o: tls.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=40))
    _close(_our_seq("linear", 40, min_factor=0.05), ref)


def test_cosine_matches_closed_form_and_torch():
    total, m = 50, 0.01
    ours = _our_seq("cosine", total, n=total + 1, min_factor=m)
    t = np.arange(total + 1)
    closed = m + (1 - m) * (1 + np.cos(np.pi * t / total)) / 2
    _close(ours, closed[:, None] * np.array(LRS))
    ref = _torch_seq(lambda o: tls.CosineAnnealingLR(o, T_max=total, eta_min=0.0), n=total + 1)
    # torch's recursion accumulates rounding; compare with a relative tolerance
    np.testing.assert_allclose(_our_seq("cosine", total, n=total + 1), ref, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("power", [1.0, 2.0, 0.9])
def test_poly(power):
    ref = _torch_seq(lambda o: tls.PolynomialLR(o, total_iters=45, power=power))
    _close(_our_seq("poly", 45, power=power), ref)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic(mode):
    mf, up, down, gamma = 0.2, 6, 9, 0.97
    ref = _torch_seq(
        lambda o: tls.CyclicLR(
            o,
            base_lr=[lr * mf for lr in LRS],
            max_lr=list(LRS),
            step_size_up=up,
            step_size_down=down,
            mode=mode,
            gamma=gamma,
            cycle_momentum=False,
        )
    )
    ours = _our_seq(
        "cyclic", N, min_factor=mf, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma
    )
    _close(ours, ref)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle(anneal):
    total = 50
    ref = _torch_seq(
        lambda o: tls.OneCycleLR(
            o,
            max_lr=list(LRS),
            total_steps=total,
            pct_start=0.25,
            anneal_strategy=anneal,
            div_factor=20.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        ),
        n=total,
    )
    ours = _our_seq(
        "one_cycle",
        total,
        n=total,
        pct_start=0.25,
        anneal=anneal,
        div_factor=20.0,
        final_div_factor=100.0,
    )
    _close(ours, ref)


@pytest.mark.parametrize(
    "name,kw,make_main",
    [
        ("cosine", {}, lambda o, t: tls.CosineAnnealingLR(o, T_max=t)),
        ("step", {"step_size": 8, "gamma": 0.5}, lambda o, t: tls.StepLR(o, 8, 0.5)),
        ("linear", {"min_factor": 0.1}, lambda o, t: tls.LinearLR(o, 1.0, 0.1, total_iters=t)),
    ],
)
def test_warmup_matches_sequential_lr(name, kw, make_main):
    total, warm, start = N, 10, 0.1

    def make(o):
        w = tls.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=warm)
        main = make_main(o, total - warm)
        return tls.SequentialLR(o, [w, main], milestones=[warm])

    ref = _torch_seq(make)
    ours = _our_seq(name, total, warmup_steps=warm, warmup_start_factor=start, **kw)
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-12)


def test_state_dict_resumes_exactly():
    kw = dict(warmup_steps=5, min_factor=0.05)
    full = _our_seq("cosine", 40, n=40, **kw)
    opt = _opt()
    s = build_scheduler(opt, "cosine", 40, **kw)
    for _ in range(17):
        s.step()
    state = s.state_dict()
    opt2 = _opt()
    s2 = build_scheduler(opt2, "cosine", 40, **kw)
    s2.load_state_dict(state)
    rest = []
    for _ in range(17, 40):
        rest.append(s2.get_last_lr())
        s2.step()
    np.testing.assert_array_equal(np.array(rest), full[17:])


def test_factor_is_pure_and_holds_after_end():
    f = make_lr_factor("cosine", 20, min_factor=0.1)
    assert f(5) == f(5)
    assert f(20) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert make_lr_factor("constant", 10)(7) == 1.0


def test_errors():
    with pytest.raises(RegistryError, match='Did you mean "cosine"'):
        build_scheduler(_opt(), "cosin", 10)
    with pytest.raises(ConfigError, match="bad arguments"):
        build_scheduler(_opt(), "cosine", 10, gama=0.1)
    with pytest.raises(ConfigError, match="warmup_steps"):
        build_scheduler(_opt(), "cosine", 10, warmup_steps=10)
    with pytest.raises(ConfigError, match="mode"):
        build_scheduler(_opt(), "cyclic", 10, mode="sine")
    assert {
        "constant",
        "step",
        "multistep",
        "linear",
        "cosine",
        "poly",
        "cyclic",
        "one_cycle",
    } <= set(SCHEDULES.names())
