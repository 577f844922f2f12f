"""Activation functions by name, so configs and layer factories can say ``act="silu"``.

Every entry is the ``torch.nn`` module itself (nothing re-implemented); this file only
gives them names. The formulas, for reference (``σ`` = logistic sigmoid, ``Φ`` = standard
normal CDF):

================  ===================================================================
name              f(x)
================  ===================================================================
identity          x
sigmoid           σ(x) = 1 / (1 + e^-x)
hardsigmoid       relu6(x + 3) / 6                      (MobileNetV3's cheap σ)
tanh              (e^x - e^-x) / (e^x + e^-x)
relu              max(0, x)
relu6             min(max(0, x), 6)
leaky_relu        x if x >= 0 else a·x                  (a = negative_slope, 0.01)
prelu             x if x >= 0 else a·x                  (a learned, init 0.25)
softplus          (1/β) · log(1 + e^(β·x))              (β = 1)
elu               x if x > 0 else α·(e^x - 1)           (α = 1)
selu              λ·(x if x > 0 else α·(e^x - 1))       (λ ≈ 1.0507, α ≈ 1.6733)
silu / swish      x · σ(x)
hardswish         x · relu6(x + 3) / 6
gelu              x · Φ(x)                              (exact, erf form)
gelu_tanh         0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
glu               a · σ(b), [a, b] = x split in two along ``dim`` (default -1)
mish              x · tanh(softplus(x))
================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from cvcraft.registry import Registry

ACTIVATIONS: Registry[Callable[..., nn.Module]] = Registry("activation")

for _name, _factory in {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,  # Ramachandran et al. 2017 named it swish; same function as SiLU
    "hardswish": nn.Hardswish,
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "glu": nn.GLU,
    "mish": nn.Mish,
}.items():
    ACTIVATIONS.register(_name, _factory)


def get_act(name: str | nn.Module | Callable[..., nn.Module] | None, **kw: Any) -> nn.Module:
    """Build an activation module from a registered ``name`` (``"relu"``, ``"gelu_tanh"``...).

    ``None`` or ``""`` gives ``nn.Identity`` (no activation); an ``nn.Module`` instance is
    returned as is; a module class/factory is called with ``kw``. ``kw`` goes to the torch
    constructor (``get_act("leaky_relu", negative_slope=0.1)``, ``inplace=True``).
    An unknown name raises ``RegistryError`` with the closest registered name.
    """
    if name is None or name == "":
        return nn.Identity()
    if isinstance(name, nn.Module):
        return name
    if isinstance(name, str):
        return ACTIVATIONS.get(name.lower())(**kw)
    return name(**kw)
