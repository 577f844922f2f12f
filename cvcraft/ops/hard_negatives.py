"""Hard-negative mining (SSD, Liu et al. 2016, 2.2): keep only the worst-classified negatives.

Key idea: after matching, background priors outnumber positives ~100:1, so the classification
loss takes, per image, only the ``ratio x (number of positives)`` negatives with the highest
loss (SSD's 3:1), which trains faster and more stably than all of them.
"""

from __future__ import annotations

import torch

from cvcraft.errors import ConfigError

__all__ = ["hard_negative_mask"]


def hard_negative_mask(
    loss: torch.Tensor, positive: torch.Tensor, ratio: float = 3.0
) -> torch.Tensor:
    """Per row, the non-positive entries whose ``loss`` ranks among the top
    ``ratio * positives-in-the-row`` of the non-positives.

    loss (B, N) float, positive (B, N) bool -> (B, N) bool, disjoint from ``positive``. An
    image without positives gets no negatives (torchvision's SSD loss does the same).
    """
    if loss.shape != positive.shape or loss.ndim != 2:
        raise ConfigError(
            f"hard_negative_mask: loss {tuple(loss.shape)} and positive "
            f"{tuple(positive.shape)} must be the same (B, N)"
        )
    if ratio < 0:
        raise ConfigError(f"hard_negative_mask: ratio must be >= 0, got {ratio}")
    neg_loss = loss.detach().masked_fill(positive, -float("inf"))  # positives rank last
    rank = neg_loss.argsort(1, descending=True).argsort(1)  # (B, N): 0 = hardest
    num_neg = ratio * positive.sum(1, keepdim=True)  # (B, 1)
    return (rank < num_neg) & ~positive
