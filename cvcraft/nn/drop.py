"""Regularisers that drop activations at training time: DropPath and (re-exported) Dropout.

- ``Dropout`` (Srivastava et al. 2014) zeroes single activations; ``Dropout2d`` zeroes
  whole channels (better for conv maps, whose neighbours are correlated).
- ``DropPath`` / stochastic depth (Huang et al. 2016) zeroes a residual *branch* for a
  whole sample, so the block reduces to its shortcut: ``x + drop_path(f(x))``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import Dropout, Dropout2d

from cvcraft.errors import ConfigError


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = True) -> torch.Tensor:
    """Zero each sample of ``x`` (dim 0) with probability ``p``; scale survivors by
    ``1/(1-p)`` so ``E[out] = x``. Identity when not training or ``p == 0``. Any shape
    (B, ...). One Bernoulli draw per sample, from torch's global RNG."""
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"drop path probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)  # (B, 1, ...)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    """Stochastic depth as a module: ``drop_path(x, p, self.training)``; identity in eval."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"DropPath probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


__all__ = ["DropPath", "Dropout", "Dropout2d", "drop_path"]
