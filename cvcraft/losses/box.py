"""Detection losses: the IoU family for box regression, smooth L1, and the dense-head
classification/regression losses (sigmoid focal, varifocal, distribution focal).

Box losses take aligned predicted and target boxes, (..., 4) absolute xyxy, and return
``1 - metric`` per box before reduction; the metric itself comes from
:func:`cvcraft.ops.boxes.elementwise_iou`, so the formulas live in one place. Registered in
``LOSSES`` as "iou", "giou", "diou", "ciou", "siou", "smooth_l1", "sigmoid_focal",
"varifocal" and "dfl".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.losses.classification import _check_reduction, _reduce
from cvcraft.losses.registry import LOSSES
from cvcraft.ops.boxes import elementwise_iou

__all__ = [
    "CIoULoss",
    "DIoULoss",
    "DistributionFocalLoss",
    "GIoULoss",
    "IoULoss",
    "SIoULoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "VarifocalLoss",
    "distribution_focal_loss",
    "iou_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "varifocal_loss",
]


def _reduce_boxes(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    # An image without objects gives zero boxes; its mean loss is 0 (with a graph), not NaN.
    if reduction == "mean" and loss.numel() == 0:
        return loss.sum()
    return _reduce(loss, reduction)


def iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    kind: str = "iou",
    reduction: str = "mean",
    eps: float = 1e-7,
    *,
    ciou_alpha_grad: bool = False,
) -> torch.Tensor:
    """``1 - metric(pred, target)`` for an IoU-family ``kind``; (..., 4), (..., 4) -> (...).

    IoU loss lies in [0, 1]; GIoU/DIoU/CIoU/SIoU in [0, 2] and still pull disjoint boxes
    together. With ``reduction="mean"`` an empty batch gives 0.
    """
    _check_reduction(reduction)
    metric = elementwise_iou(pred, target, kind, eps, ciou_alpha_grad=ciou_alpha_grad)
    return _reduce_boxes(1 - metric, reduction)


class IoULoss(nn.Module):
    """Module form of :func:`iou_loss` with ``kind="iou"``: 1 - |A ∩ B| / |A ∪ B|."""

    kind = "iou"

    def __init__(self, reduction: str = "mean", eps: float = 1e-7) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return iou_loss(pred, target, self.kind, self.reduction, self.eps)


class GIoULoss(IoULoss):
    """1 - GIoU: adds the empty fraction of the enclosing box, so disjoint boxes get a gradient."""

    kind = "giou"


class DIoULoss(IoULoss):
    """1 - DIoU: adds the squared centre distance over the enclosing diagonal (Zheng 2020)."""

    kind = "diou"


class CIoULoss(IoULoss):
    """1 - CIoU: DIoU plus the aspect-ratio term alpha v (Zheng 2020).

    ``alpha_grad=False`` (the authors' and torchvision's choice) treats alpha as a constant
    weight in backprop; ``True`` differentiates the formula exactly.
    """

    kind = "ciou"

    def __init__(self, reduction: str = "mean", eps: float = 1e-7, alpha_grad: bool = False):
        super().__init__(reduction, eps)
        self.alpha_grad = alpha_grad

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return iou_loss(
            pred, target, self.kind, self.reduction, self.eps, ciou_alpha_grad=self.alpha_grad
        )


class SIoULoss(IoULoss):
    """1 - SIoU: IoU plus angle-aware distance cost and shape cost (Gevorgyan 2022)."""

    kind = "siou"


def smooth_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Huber-like box regression loss (Fast R-CNN): 0.5 x^2 / beta if |x| < beta else
    |x| - 0.5 beta, x = pred - target; beta = 0 is plain L1. Any shape -> same shape."""
    _check_reduction(reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss beta must be >= 0, got {beta}")
    diff = (pred - target).abs()
    if beta == 0:
        return _reduce(diff, reduction)
    loss = torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


class SmoothL1Loss(nn.Module):
    """Module form of :func:`smooth_l1_loss`."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.beta = beta
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return smooth_l1_loss(pred, target, self.beta, self.reduction)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Binary focal loss on logits (RetinaNet, Lin et al. 2017), any shape -> same shape.

    FL = -alpha_t (1 - p_t)^gamma log p_t with p = sigmoid(z), p_t = p if t = 1 else 1 - p,
    alpha_t = alpha if t = 1 else 1 - alpha. ``alpha=None`` turns the class weighting off.
    Each class is an independent binary problem, so targets are {0, 1} (soft values work).
    """
    _check_reduction(reduction)
    target = target.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return _reduce(loss, reduction)


class SigmoidFocalLoss(nn.Module):
    """Module form of :func:`sigmoid_focal_loss` (default reduction "mean" for training)."""

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sigmoid_focal_loss(logits, target, self.alpha, self.gamma, self.reduction)


def varifocal_loss(
    logits: torch.Tensor,
    target_score: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Varifocal loss (VarifocalNet, Zhang et al. 2021) on logits; any shape -> same shape.

    The target is the IoU-aware classification score q (IoU with the matched box for its
    class, 0 elsewhere). Positives (q > 0) get BCE weighted by q, so high-quality examples
    count most; negatives (q = 0) get the focal down-weighting alpha p^gamma:
    VFL = -q (q log p + (1 - q) log(1 - p)) if q > 0 else -alpha p^gamma log(1 - p).
    """
    _check_reduction(reduction)
    q = target_score.to(logits.dtype)
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, q, reduction="none")  # q = 0: -log(1-p)
    weight = torch.where(q > 0, q, alpha * p**gamma)
    return _reduce(bce * weight, reduction)


class VarifocalLoss(nn.Module):
    """Module form of :func:`varifocal_loss`."""

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
        return varifocal_loss(logits, target_score, self.alpha, self.gamma, self.reduction)


def distribution_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Distribution focal loss (Generalized Focal Loss, Li et al. 2020).

    A box edge distance is predicted as a softmax over the integer bins 0..n; the target
    distance y in [0, n] lies between bins y_l = floor(y) and y_r = y_l + 1, and
    DFL = -((y_r - y) log S_{y_l} + (y - y_l) log S_{y_r}): cross-entropy against the
    two-bin distribution whose expectation is exactly y, so the loss is minimal when the
    softmax puts mass (y_r - y, y - y_l) on those bins. logits (..., n + 1), target (...).
    """
    _check_reduction(reduction)
    n = logits.shape[-1] - 1
    if n < 1:
        raise ValueError(f"DFL needs at least 2 bins on the last axis, got {tuple(logits.shape)}")
    if target.shape != logits.shape[:-1]:
        raise ValueError(
            f"DFL target shape {tuple(target.shape)} must be the logits' shape without the "
            f"bin axis, {tuple(logits.shape[:-1])}"
        )
    target = target.to(logits.dtype)
    if target.numel() and (target.min() < 0 or target.max() > n):
        raise ValueError(
            f"DFL targets must lie in [0, {n}] (the bin range); got [{target.min().item():.4g}, "
            f"{target.max().item():.4g}]. Clamp the encoded distances to the number of bins."
        )
    left = target.floor().long().clamp(max=n - 1)  # y = n falls in the last interval
    w_left = (left + 1) - target
    logp = F.log_softmax(logits, dim=-1)
    logp_l = logp.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    logp_r = logp.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return _reduce(-(w_left * logp_l + (1 - w_left) * logp_r), reduction)


class DistributionFocalLoss(nn.Module):
    """Module form of :func:`distribution_focal_loss`."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return distribution_focal_loss(logits, target, self.reduction)


LOSSES.register("iou", IoULoss)
LOSSES.register("giou", GIoULoss)
LOSSES.register("diou", DIoULoss)
LOSSES.register("ciou", CIoULoss)
LOSSES.register("siou", SIoULoss)
LOSSES.register("smooth_l1", SmoothL1Loss)
LOSSES.register("sigmoid_focal", SigmoidFocalLoss)
LOSSES.register("varifocal", VarifocalLoss)
LOSSES.register("dfl", DistributionFocalLoss)
