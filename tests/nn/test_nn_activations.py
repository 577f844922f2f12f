import math

import pytest
import torch
from torch import nn

from cvcraft.errors import RegistryError
from cvcraft.nn.activations import ACTIVATIONS, get_act

X = torch.linspace(-6, 6, 241, dtype=torch.float64)


def _sig(x):
    return 1 / (1 + torch.exp(-x))


def _phi(x):  # standard normal CDF
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772

# name -> formula written out from the definitions, independent of torch's modules
FORMULAS = {
    "identity": lambda x: x,
    "sigmoid": _sig,
    "hardsigmoid": lambda x: torch.clamp(x + 3, 0, 6) / 6,
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "relu": lambda x: torch.where(x > 0, x, 0.0),
    "relu6": lambda x: torch.where(x > 6, 6.0, torch.where(x > 0, x, 0.0)),
    "leaky_relu": lambda x: torch.where(x >= 0, x, 0.01 * x),
    "prelu": lambda x: torch.where(x >= 0, x, 0.25 * x),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "selu": lambda x: SELU_L * torch.where(x > 0, x, SELU_A * (torch.exp(x) - 1)),
    "silu": lambda x: x * _sig(x),
    "swish": lambda x: x * _sig(x),
    "hardswish": lambda x: x * torch.clamp(x + 3, 0, 6) / 6,
    "gelu": lambda x: x * _phi(x),
    "gelu_tanh": lambda x: (
        0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    ),  # noqa: E501
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),
}


def test_every_registered_activation_has_a_formula_test():
    assert set(ACTIVATIONS.names()) == set(FORMULAS) | {"glu"}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_matches_formula(name):
    act = get_act(name).double()
    torch.testing.assert_close(act(X), FORMULAS[name](X), atol=1e-10, rtol=1e-10)


def test_glu_splits_last_dim_into_value_and_gate():
    x = torch.randn(4, 6, dtype=torch.float64)
    a, b = x[:, :3], x[:, 3:]
    torch.testing.assert_close(get_act("glu")(x), a * _sig(b))
    torch.testing.assert_close(get_act("glu", dim=0)(x), x[:2] * _sig(x[2:]))


def test_kwargs_reach_the_torch_constructor():
    act = get_act("leaky_relu", negative_slope=0.1)
    assert act(torch.tensor([-1.0])).item() == pytest.approx(-0.1)
    assert get_act("relu", inplace=True).inplace


def test_none_module_and_class_inputs():
    assert isinstance(get_act(None), nn.Identity)
    m = nn.Tanh()
    assert get_act(m) is m
    assert isinstance(get_act(nn.ReLU6), nn.ReLU6)
    assert isinstance(get_act("SiLU"), nn.SiLU)  # names are case-insensitive


def test_typo_raises_did_you_mean():
    with pytest.raises(RegistryError, match='Did you mean "swish"'):
        get_act("swishh")
