"""TRADES loss (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness
and Accuracy"), ready for adversarial training.

``L = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x'))``, where ``x'`` maximises the
KL term inside the L-inf eps-ball by PGD, started at ``x + 0.001 * N(0, 1)``. The inner
maximisation runs in eval mode (BN statistics frozen, as in the authors' code) and the
model's mode is restored for the outer loss. KL is summed over classes and averaged over
the batch. Shapes: x (B, C, H, W) in [0, 1], y (B,) -> scalar loss, x' like x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.attacks.checks import check_budget, check_pixels

START_STD = 0.001


def _kl(logits_adv: torch.Tensor, logits_nat: torch.Tensor) -> torch.Tensor:
    """``sum_b KL(p_nat || p_adv)`` (batch sum; divide by B for the mean)."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_nat, 1), reduction="sum")


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    beta: float = 6.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TRADES objective on (x, y) and the adversarial batch x' it used."""
    check_budget(eps, alpha, steps)
    check_pixels(x)
    x = x.detach()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            target = model(x)
        adv = x + START_STD * torch.randn(x.shape, generator=generator, device=x.device)
        for _ in range(int(steps)):
            adv = adv.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(_kl(model(adv), target), adv)
            adv = adv.detach() + alpha * g.sign()
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
        adv = adv.detach().clamp(0, 1)
    finally:
        model.train(was_training)
    logits = model(x)
    natural = F.cross_entropy(logits, y)
    robust = _kl(model(adv), logits) / x.shape[0]
    return natural + beta * robust, adv
