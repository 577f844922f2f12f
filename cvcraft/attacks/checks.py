"""Argument checks shared by the attacks: budgets, steps and the [0, 1] input range."""

from __future__ import annotations

import torch

from cvcraft.errors import ConfigError

ATTACKS = ("fgsm", "pgd", "pgd_l2")


def check_budget(eps: float, alpha: float | None = None, steps: int | None = None) -> None:
    """``eps >= 0``, ``alpha > 0``, ``steps >= 0`` or a ConfigError naming the key."""
    if not eps >= 0:  # also catches NaN
        raise ConfigError(f"eps={eps} must be >= 0 (the perturbation budget, e.g. 8/255)")
    if alpha is not None and not alpha > 0:
        raise ConfigError(f"alpha={alpha} must be > 0 (the step size, e.g. 2/255)")
    if steps is not None and (int(steps) != steps or steps < 0):
        raise ConfigError(f"steps={steps} must be an integer >= 0")


def check_pixels(x: torch.Tensor) -> None:
    """Attacks clip to the image domain, so inputs must be float pixels in [0, 1]."""
    if not x.is_floating_point() or x.ndim < 2:
        raise ConfigError(f"attack input must be a float batch, got {x.dtype} {tuple(x.shape)}")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ConfigError(
            f"attack input must be in [0, 1] (got [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
            "attack pixels and put the normalisation inside the model"
        )
