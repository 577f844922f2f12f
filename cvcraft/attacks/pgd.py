"""Projected Gradient Descent (Madry et al. 2018, "Towards Deep Learning Models Resistant
to Adversarial Attacks"), under an L-inf or an L2 budget.

Key idea: many small ascent steps on the loss, each followed by projection back onto the
eps-ball around ``x`` and the image domain, from a random start inside the ball:

- L-inf: ``x_{t+1} = P(x_t + alpha * sign(g))``, start ``x + U(-eps, eps)``.
- L2: ``x_{t+1} = P(x_t + alpha * g / ||g||_2)``, start a uniform random direction with
  radius ``eps * U(0, 1)``; projection rescales ``delta`` to norm <= eps.

The start is drawn from ``generator`` (the global generator if None) in the same order as
torchattacks draws it, so seeding both gives the same attack. Shapes: x (B, C, H, W) in
[0, 1], y (B,) -> x' like x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.attacks.checks import check_budget, check_pixels

L2_DIV_EPS = 1e-10  # keeps g / ||g|| finite where the gradient vanishes


def _grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD: ``steps`` signed-gradient steps of size ``alpha`` inside the eps-ball."""
    check_budget(eps, alpha, steps)
    check_pixels(x)
    x = x.detach()
    adv = x.clone()
    if random_start:
        adv = (adv + torch.empty_like(adv).uniform_(-eps, eps, generator=generator)).clamp(0, 1)
    for _ in range(int(steps)):
        adv = adv + alpha * _grad(model, adv, y).sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def _l2_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped (B, 1, ..., 1) to broadcast against ``t``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def pgd_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 0.5,
    alpha: float = 0.1,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L2 PGD: ``steps`` normalised-gradient steps of length ``alpha``, delta kept in the
    L2 ball of radius ``eps``."""
    check_budget(eps, alpha, steps)
    check_pixels(x)
    x = x.detach()
    adv = x.clone()
    if random_start:
        delta = torch.empty_like(adv).normal_(generator=generator)
        n = _l2_norm(delta)
        r = torch.zeros_like(n).uniform_(0, 1, generator=generator)
        adv = (adv + delta * (r / n * eps)).clamp(0, 1)
    for _ in range(int(steps)):
        g = _grad(model, adv, y)
        adv = adv + alpha * g / (_l2_norm(g) + L2_DIV_EPS)
        delta = adv - x
        scale = torch.clamp(eps / _l2_norm(delta), max=1.0)  # project onto the ball
        adv = (x + delta * scale).clamp(0, 1)
    return adv
