"""CenterNet's penalty-reduced pixel-wise focal loss (Law & Deng 2018; Zhou et al. 2019).

Focal loss over a Gaussian-splatted target heatmap Y: cells with Y = 1 are positives, the
rest negatives whose loss is scaled down by (1 - Y)^beta near a centre, so cells next to a
peak are not punished as hard as far background:

    L = -1/N sum { (1 - p)^a log p            if Y = 1
                 { (1 - Y)^b p^a log(1 - p)   otherwise,      N = number of Y = 1 cells

a = 2, b = 4. Logits and targets (B, C, h, w) -> scalar (N clamped to >= 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvcraft.errors import DataError

__all__ = ["heatmap_focal_loss"]


def heatmap_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """Penalty-reduced focal loss (formula above), computed from logits for stability."""
    if logits.shape != target.shape:
        raise DataError(
            f"heatmap_focal_loss: logits {tuple(logits.shape)} and target "
            f"{tuple(target.shape)} differ"
        )
    p = logits.sigmoid()
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)  # log p, log(1 - p)
    pos = target.eq(1).to(logits.dtype)
    pos_loss = (1 - p) ** alpha * log_p * pos
    neg_loss = (1 - target) ** beta * p**alpha * log_1mp * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)
