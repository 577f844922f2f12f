"""Online hard example mining (Shrivastava, Gupta & Girshick 2016): train the RoI head on the
RoIs it currently gets most wrong instead of a random, class-balanced sample.

Key idea: score every candidate RoI with the head (read-only, no gradients), rank them by
their loss, drop near-duplicates by NMS with the loss as the score (overlapping RoIs share
features and would count one mistake twice), and keep the ``num`` hardest. No positive
fraction is imposed: the losses decide the foreground/background mix.

- ``roi_losses``: per-RoI cross-entropy + smooth-L1 of the true class's deltas (positives).
- ``ohem_sample``: (N, 4) boxes + (N,) losses -> indices of the kept RoIs, hardest first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.losses.box import smooth_l1_loss

__all__ = ["ohem_sample", "roi_losses"]


def roi_losses(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 1 / 9,
) -> torch.Tensor:
    """Each RoI's own loss, ``CE(logits, label) + sum_4 smoothL1(d_label - t)`` (the box term
    only where label > 0). logits (R, C+1), deltas (R, 4 (C+1)) or (R, 4), labels (R,),
    targets (R, 4) -> (R,)."""
    if len(logits) != len(labels) or len(deltas) != len(labels) or len(targets) != len(labels):
        raise ConfigError(
            f"roi_losses: logits {tuple(logits.shape)}, deltas {tuple(deltas.shape)}, labels "
            f"{tuple(labels.shape)} and targets {tuple(targets.shape)} need the same R"
        )
    cls = F.cross_entropy(logits, labels, reduction="none")
    d = deltas.view(len(deltas), -1, 4)
    d = d[torch.arange(len(d), device=d.device), labels if d.shape[1] > 1 else 0]  # (R, 4)
    box = smooth_l1_loss(d, targets, beta=beta, reduction="none").sum(1)
    return cls + torch.where(labels > 0, box, torch.zeros_like(box))


def ohem_sample(
    boxes: torch.Tensor, losses: torch.Tensor, num: int, nms_iou: float = 0.7
) -> torch.Tensor:
    """Indices (K,) of the ``num`` hardest RoIs after greedy NMS at ``nms_iou`` on the loss.

    Order: loss descending, equal losses by index (the earlier RoI is harder); a RoI is
    suppressed by a kept, harder one with IoU > ``nms_iou``. boxes (N, 4) xyxy, losses (N,).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or losses.shape != boxes.shape[:1]:
        raise ConfigError(
            f"ohem_sample: boxes must be (N, 4) and losses (N,), got {tuple(boxes.shape)} and "
            f"{tuple(losses.shape)}"
        )
    if num < 0 or not 0.0 <= nms_iou <= 1.0:
        raise ConfigError(f"ohem_sample: num={num} must be >= 0 and nms_iou={nms_iou} in [0, 1]")
    order = torch.sort(losses, descending=True, stable=True).indices  # ties: lower index first
    # distinct scores by rank, so the NMS cannot reorder equal losses
    rank_score = torch.arange(len(order), 0, -1, dtype=torch.float32, device=boxes.device)
    keep = torchvision.ops.nms(boxes[order].float(), rank_score, nms_iou)
    return order[keep[:num]]
