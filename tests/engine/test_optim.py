import pytest
import torch
from torch import nn

from cvcraft.engine.optim import (
    OPTIMIZERS,
    build_optimizer,
    freeze,
    freeze_bn_stats,
    param_groups,
    unfreeze,
)
from cvcraft.errors import ConfigError, RegistryError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),  # 0.weight (4-d, decay)
        nn.BatchNorm2d(4),  # 1.weight, 1.bias (no decay)
        nn.ReLU(),
        nn.Conv2d(4, 4, 1),  # 3.weight decay, 3.bias no decay
        nn.GroupNorm(2, 4),  # 4.weight, 4.bias no decay
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),  # 7.weight decay, 7.bias no decay
    )


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_groups_split_decay_and_no_decay():
    m = _net()
    groups = param_groups(m, 5e-4, base_lr=0.1)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"decay", "no_decay"}
    assert _names(m, by_name["decay"]) == ["0.weight", "3.weight", "7.weight"]
    assert _names(m, by_name["no_decay"]) == sorted(
        ["1.weight", "1.bias", "3.bias", "4.weight", "4.bias", "7.bias"]
    )
    assert by_name["decay"]["weight_decay"] == 5e-4
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert all(g["initial_lr"] == 0.1 and g["lr_mult"] == 1.0 for g in groups)
    # everything decays when the split is off
    (only,) = param_groups(m, 5e-4, base_lr=0.1, no_decay_norm_bias=False)
    assert len(only["params"]) == len(list(m.parameters()))


def test_norm_detected_by_type_even_if_2d():
    # LayerNorm over a 2-d shape has a 2-d weight: it must still be excluded by module type
    m = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm([2, 3]))
    groups = {g["name"]: g for g in param_groups(m, 0.1, base_lr=1.0)}
    assert _names(m, groups["no_decay"]) == ["0.bias", "1.bias", "1.weight"]


def test_lr_mults_and_frozen_left_out():
    m = _net()
    m[0].weight.requires_grad_(False)
    groups = param_groups(m, 1e-4, base_lr=0.01, lr_mults={"7": 10.0, "3": 0.0})
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(m.parameters())) - 1
    for g in groups:
        names = _names(m, g)
        for n in names:
            expect = 10.0 if n.startswith("7.") else 0.0 if n.startswith("3.") else 1.0
            assert g["lr_mult"] == expect
            assert g["lr"] == pytest.approx(0.01 * expect)
            assert g["initial_lr"] == g["lr"]
    with pytest.raises(ConfigError, match="match no trainable"):
        param_groups(m, 0.0, base_lr=0.1, lr_mults={"fc": 2.0})


def _hand_groups(m, wd, lr, mult_head=1.0):
    no_decay = {"1.weight", "1.bias", "3.bias", "4.weight", "4.bias", "7.bias"}
    named = dict(m.named_parameters())
    mk = lambda names, w, mult: {  # noqa: E731
        "params": [named[n] for n in names],
        "weight_decay": w,
        "lr": lr * mult,
    }
    head = ["7.weight", "7.bias"]
    return [
        mk([n for n in named if n not in no_decay and n not in head], wd, 1.0),
        mk([n for n in named if n in no_decay and n not in head], 0.0, 1.0),
        mk(["7.weight"], wd, mult_head),
        mk(["7.bias"], 0.0, mult_head),
    ]


@pytest.mark.parametrize(
    "name,ctor,kw",
    [
        (
            "sgd",
            lambda g, lr, **f: torch.optim.SGD(g, lr=lr, momentum=0.9, nesterov=True, **f),
            {"nesterov": True},
        ),
        ("adagrad", lambda g, lr, **f: torch.optim.Adagrad(g, lr=lr, **f), {}),
        ("rmsprop", lambda g, lr, **f: torch.optim.RMSprop(g, lr=lr, momentum=0.9, **f), {}),
        ("adadelta", lambda g, lr, **f: torch.optim.Adadelta(g, lr=lr, **f), {}),
        ("adam", lambda g, lr, **f: torch.optim.Adam(g, lr=lr, **f), {}),
        ("adamw", lambda g, lr, **f: torch.optim.AdamW(g, lr=lr, **f), {}),
    ],
)
def test_step_matches_hand_built_torch_optimizer(name, ctor, kw):
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8)
    a, b = _net(), _net()
    opt_a = build_optimizer(a, name, 0.05, weight_decay=0.01, lr_mults={"7": 3.0}, **kw)
    # build_optimizer picks torch's fused kernel where this build has one; same for the oracle
    fused = {"fused": True} if opt_a.defaults.get("fused") else {}
    opt_b = ctor(_hand_groups(b, 0.01, 0.05, 3.0), 0.05, **fused)
    assert type(opt_a) is type(opt_b)
    for _ in range(3):
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-7, msg=n)
    # the decayed weights actually moved
    assert not torch.equal(a[7].weight, _net()[7].weight)


def test_unknown_optimizer_did_you_mean():
    with pytest.raises(RegistryError, match='Did you mean "adamw"'):
        build_optimizer(_net(), "adamww", 0.1)
    assert set(OPTIMIZERS.names()) == {"sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw"}
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(_net(), "sgd", 0.1, momentum=0.0, nesterov=True)


def test_frozen_params_unchanged_and_bn_stats_fixed():
    m = _net()
    names = freeze(m, ["0", "1"])
    assert names == ["0.weight", "1.weight", "1.bias"]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = build_optimizer(m, "sgd", 0.1, weight_decay=0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters())) - 3
    x = torch.randn(4, 3, 8, 8)
    for _ in range(3):
        m.train()
        assert freeze_bn_stats(m) == 1
        assert freeze_bn_stats(m, ["0", "1"]) == 1 and not m[1].training
        opt.zero_grad()
        m(x).sum().backward()
        opt.step()
    after = m.state_dict()
    for k in ("0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["3.weight"], after["3.weight"])
    assert unfreeze(m, "1") == ["1.weight", "1.bias"] and m[1].weight.requires_grad
    with pytest.raises(ConfigError, match="match no parameter"):
        freeze(m, "backbone")


def test_ddp_like_wrapper_unwrapped():
    m = _net()
    wrapped = nn.DataParallel(m)  # same .module convention as DDP; works on CPU
    g1 = param_groups(wrapped, 0.1, base_lr=1.0, lr_mults={"7": 2.0})
    g2 = param_groups(m, 0.1, base_lr=1.0, lr_mults={"7": 2.0})
    assert [g["name"] for g in g1] == [g["name"] for g in g2]


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam", "adamw"])
def test_fused_kernel_agrees_with_default_implementation(name):
    """The fused step is the same update in one pass per tensor: equal to torch's default
    (per-op) implementation up to float rounding."""
    torch.manual_seed(2)
    x = torch.randn(4, 3, 8, 8)
    a, b = _net(), _net()
    opt_a = build_optimizer(a, name, 0.05, weight_decay=0.01)
    if not opt_a.defaults.get("fused"):
        pytest.skip(f"this torch has no fused CPU kernel for {name}")
    same = {
        k: v
        for k, v in opt_a.defaults.items()
        if k not in ("fused", "foreach", "decoupled_weight_decay")
    }
    opt_b = type(opt_a)(_hand_groups(b, 0.01, 0.05, 1.0), **same)  # the per-op implementation
    for _ in range(3):
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)
