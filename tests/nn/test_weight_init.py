import math

import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.init import init_weights


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.ReLU(), nn.GroupNorm(8, 128),
        nn.Flatten(), nn.Linear(512, 256),
    )  # fmt: skip


def _scramble(m: nn.Module) -> None:
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(0.37)


def test_kaiming_fan_out_std_matches_formula():
    torch.manual_seed(0)
    net = _net()
    _scramble(net)
    init_weights(net, "kaiming")
    conv, lin = net[0], net[5]
    # He et al.: std = gain / sqrt(fan_out), gain = sqrt(2) for ReLU.
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.02)
    assert lin.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.02)
    assert conv.weight.mean().abs().item() < 0.002
    for b in (conv.bias, lin.bias, net[1].bias, net[3].bias):
        assert torch.all(b == 0)
    assert torch.all(net[1].weight == 1) and torch.all(net[3].weight == 1)


def test_kaiming_tanh_gain():
    torch.manual_seed(0)
    lin = init_weights(nn.Linear(1000, 400), "kaiming", nonlinearity="tanh")
    assert lin.weight.std().item() == pytest.approx((5 / 3) / math.sqrt(400), rel=0.02)


def test_xavier_uniform_bound_and_std():
    torch.manual_seed(0)
    net = _net()
    _scramble(net)
    init_weights(net, "xavier")
    conv = net[0]
    bound = math.sqrt(6 / (64 * 9 + 128 * 9))  # Glorot: a = sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.abs().max().item() > 0.99 * bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch.all(conv.bias == 0)


def test_default_restores_pytorch_defaults():
    torch.manual_seed(0)
    net = _net()
    _scramble(net)
    net[1].running_mean.fill_(5.0)
    init_weights(net, "default")
    conv = net[0]
    bound = 1 / math.sqrt(64 * 9)  # torch default: kaiming_uniform(a=sqrt(5)) -> 1/sqrt(fan_in)
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch.all(net[1].running_mean == 0) and torch.all(net[1].weight == 1)


def test_unknown_scheme():
    with pytest.raises(ConfigError, match="kaiming"):
        init_weights(nn.Linear(2, 2), "orthogonal")
