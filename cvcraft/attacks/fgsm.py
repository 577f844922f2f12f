"""Fast Gradient Sign Method (Goodfellow et al. 2015, "Explaining and Harnessing
Adversarial Examples").

One step up the loss along the gradient's sign, the steepest ascent under an L-inf budget:
``x' = clip_[0,1](x + eps * sign(grad_x CE(f(x), y)))``. Shapes: x (B, C, H, W) in [0, 1],
y (B,) -> x' like x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.attacks.checks import check_budget, check_pixels


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM adversarial batch with L-inf budget ``eps`` (the model's mode is left as is)."""
    check_budget(eps)
    check_pixels(x)
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x.detach() + eps * grad.sign()).clamp(0, 1)
