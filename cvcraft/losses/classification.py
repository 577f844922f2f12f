"""Classification losses: cross-entropy (hard or soft targets, label smoothing) and focal loss.

All take logits (N, C) — or (N, C, d1, ...) for dense prediction — with the class axis at 1.
Targets are int class indices (N, ...) or probabilities of the logits' shape (soft targets,
as mixup/cutmix and distillation produce).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.registry import LOSSES

REDUCTIONS = ("mean", "sum", "none")


def _is_soft(logits: torch.Tensor, target: torch.Tensor) -> bool:
    return target.is_floating_point() and target.shape == logits.shape


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy ``-sum_c p_c log softmax(z)_c`` with optional label smoothing.

    Int targets (N,) use PyTorch's fused kernel (``weight``-normalised mean, ``ignore_index``
    honoured). Soft targets (N, C) compute ``-(w * p * log_softmax(z)).sum(1)`` averaged over
    N; smoothing turns p into ``(1 - eps) p + eps / C`` for both kinds, so a one-hot soft
    target gives exactly the hard-label loss.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if not _is_soft(logits, target):
        return F.cross_entropy(
            logits, target.long(), weight=weight, ignore_index=ignore_index,
            reduction=reduction, label_smoothing=label_smoothing,
        )  # fmt: skip
    num_classes = logits.shape[1]
    p = target.to(logits.dtype)
    if label_smoothing > 0:
        p = p * (1.0 - label_smoothing) + label_smoothing / num_classes
    logq = F.log_softmax(logits, dim=1)  # (N, C, ...)
    if weight is not None:  # class weights broadcast along axis 1
        logq = logq * weight.to(logq).reshape(1, -1, *([1] * (logits.ndim - 2)))
    return _reduce(-(p * logq).sum(1), reduction)  # (N, ...) before reduction


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy` (hard or soft targets); registered as ``"ce"``."""

    def __init__(
        self,
        label_smoothing: float = 0.0,
        weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.reduction = reduction
        # A buffer so .to(device) moves it; None stays None.
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            logits, target, self.label_smoothing, self.weight, self.ignore_index, self.reduction
        )


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against probability targets only: ``-(p * log_softmax(z)).sum(1).mean()``.

    The loss to pair with mixup/cutmix, whose targets are always soft; registered as
    ``"soft_ce"``.
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not _is_soft(logits, target):
            raise ConfigError(
                f"SoftTargetCrossEntropy needs float targets shaped like the logits "
                f"{tuple(logits.shape)}, got {target.dtype} {tuple(target.shape)}; use 'ce' "
                "for class-index targets"
            )
        return cross_entropy(
            logits, target, label_smoothing=self.label_smoothing, reduction=self.reduction
        )


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017): ``FL = -alpha_t (1 - p_t)^gamma log p_t``.

    ``(1 - p_t)^gamma`` down-weights easy, well-classified samples so training focuses on
    hard ones; gamma = 0 and no alpha is plain cross-entropy. ``alpha`` is a float (global
    factor) or a per-class sequence (alpha_t = alpha[target]). The mean is over the
    non-ignored samples (not normalised by alpha). Soft targets (N, C) give
    ``-sum_c alpha_c p_c (1 - q_c)^gamma log q_c``. logits (N, C, ...) -> scalar.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        if gamma < 0:
            raise ConfigError(f"FocalLoss gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.register_buffer(
            "alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logq = F.log_softmax(logits, dim=1)  # (N, C, ...)
        if _is_soft(logits, target):
            focal = (1.0 - logq.exp()).clamp(min=0).pow(self.gamma) * logq  # (N, C, ...)
            if self.alpha is not None:
                a = self.alpha.to(logq)
                focal = focal * (a.reshape(1, -1, *([1] * (logits.ndim - 2))) if a.ndim else a)
            return _reduce(-(target.to(logq) * focal).sum(1), self.reduction)
        target = target.long()
        keep = target != self.ignore_index
        safe = torch.where(keep, target, torch.zeros_like(target))  # gather needs valid indices
        logp_t = logq.gather(1, safe.unsqueeze(1)).squeeze(1)  # (N, ...)
        loss = -(1.0 - logp_t.exp()).clamp(min=0).pow(self.gamma) * logp_t
        if self.alpha is not None:
            a = self.alpha.to(logq)
            loss = loss * (a[safe] if a.ndim else a)
        loss = loss * keep
        if self.reduction == "mean":
            return loss.sum() / keep.sum().clamp(min=1)
        return _reduce(loss, self.reduction)


LOSSES.register("ce", CrossEntropyLoss)
LOSSES.register("soft_ce", SoftTargetCrossEntropy)
LOSSES.register("focal", FocalLoss)


def deep_supervision_loss(
    outputs: torch.Tensor | tuple[torch.Tensor | None, ...],
    target: torch.Tensor,
    criterion: Any,
    aux_weight: float,
) -> torch.Tensor:
    """``criterion(main) + aux_weight * sum(criterion(aux_k))`` for a model that returns
    ``(main, *aux)`` in training (GoogLeNet's two auxiliary heads, weighted 0.3 in Szegedy
    et al. 2015); ``None`` heads are skipped and a plain tensor is just ``criterion(main)``.
    Heads are cast to float so the loss is computed in fp32 under autocast."""
    if isinstance(outputs, torch.Tensor):
        return criterion(outputs.float(), target)
    main, *aux = outputs
    loss = criterion(main.float(), target)
    for a in aux:
        if a is not None:
            loss = loss + aux_weight * criterion(a.float(), target)
    return loss
