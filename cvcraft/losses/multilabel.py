"""Multi-label losses: every class is its own binary problem on a sigmoid output.

Targets are (N, C) with 1 = present, 0 = absent and -1 = unknown (a label nobody checked);
unknown entries are masked out of the loss, and ``reduction="mean"`` averages over the known
entries only. ``pos_weight`` (C,) multiplies each class's positive term (torch's
``BCEWithLogitsLoss`` meaning: about #negatives / #positives for a rare class).

- BCE: ``-[w t log p + (1 - t) log(1 - p)]``, p = sigmoid(z).
- Focal BCE (Lin et al. 2017): BCE times ``(1 - p_t)^gamma``, times ``alpha_t`` if given.
- ASL (Ridnik et al. 2021, asymmetric loss): ``L+ = (1 - p)^g+ log p`` and
  ``L- = p_m^g- log(1 - p_m)`` with the shifted probability ``p_m = max(p - m, 0)``: negatives
  are focused harder (g- > g+) and the easiest ones (p < m) are dropped entirely.
logits (N, C), target (N, C) -> scalar (or (N, C) with ``reduction="none"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import sigmoid_focal_loss
from cvcraft.losses.registry import LOSSES

REDUCTIONS = ("mean", "sum", "none")


def _check(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if logits.shape != target.shape:
        raise ValueError(
            f"multi-label loss: logits {tuple(logits.shape)} and targets "
            f"{tuple(target.shape)} must have the same (N, C) shape"
        )


def _masked(loss: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    """Zero the unknown (-1) entries, then reduce: the mean is over known entries only."""
    known = target >= 0
    loss = torch.where(known, loss, torch.zeros_like(loss))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / known.sum().clamp(min=1)


def _positive_weight(
    target: torch.Tensor, pos_weight: torch.Tensor | Sequence[float] | None
) -> torch.Tensor | None:
    """(N, C) factor: pos_weight[c] on positives, 1 elsewhere (None when no weighting)."""
    if pos_weight is None:
        return None
    w = torch.as_tensor(pos_weight, dtype=torch.float32, device=target.device)
    return torch.where(target > 0, w.to(torch.float32).expand_as(target), 1.0)


def bce_multilabel(
    logits: torch.Tensor,
    target: torch.Tensor,
    pos_weight: torch.Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy on logits with unknown (-1) targets masked out."""
    _check(logits, target, reduction)
    t = target.clamp(min=0).to(logits.dtype)
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, t, pos_weight=pw, reduction="none")
    return _masked(loss, target, reduction)


def focal_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    pos_weight: torch.Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` with unknowns masked out."""
    _check(logits, target, reduction)
    if gamma < 0:
        raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
    loss = sigmoid_focal_loss(logits, target.clamp(min=0), alpha=alpha, gamma=gamma)
    w = _positive_weight(target, pos_weight)
    return _masked(loss if w is None else loss * w, target, reduction)


def asymmetric_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    pos_weight: torch.Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """ASL: ``-[t (1-p)^g+ log p + (1-t) p_m^g- log(1-p_m)]``, ``p_m = max(p - clip, 0)``."""
    _check(logits, target, reduction)
    if gamma_pos < 0 or gamma_neg < 0 or not 0.0 <= clip < 1.0:
        raise ConfigError(
            f"asl needs gamma_pos, gamma_neg >= 0 and 0 <= clip < 1, "
            f"got {gamma_pos}, {gamma_neg}, {clip}"
        )
    t = target.clamp(min=0).to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)  # stable log p
    if clip > 0:
        # 1 - p_m = min(1 - p + m, 1); the sum stays >= m, so the log never sees 0
        log_1m_pm = torch.log((torch.sigmoid(-logits) + clip).clamp(max=1.0))
        p_m = (p - clip).clamp(min=0.0)
    else:
        log_1m_pm, p_m = F.logsigmoid(-logits), p
    pos = (1 - p).pow(gamma_pos) * log_p if gamma_pos else log_p
    neg = p_m.pow(gamma_neg) * log_1m_pm if gamma_neg else log_1m_pm
    w = _positive_weight(target, pos_weight)
    if w is not None:
        pos = pos * w
    return _masked(-(t * pos + (1 - t) * neg), target, reduction)


class MultiLabelLoss(nn.Module):
    """Module form of one of the losses above with its options fixed (a criterion)."""

    def __init__(
        self,
        kind: str = "bce",
        pos_weight: Sequence[float] | None = None,
        reduction: str = "mean",
        **options: float | None,
    ) -> None:
        super().__init__()
        if kind not in _FUNCTIONS:
            raise ConfigError(f"multi-label loss {kind!r} unknown; use one of {list(_FUNCTIONS)}")
        self.kind, self.reduction, self.options = kind, reduction, options
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        self.register_buffer("pos_weight", pw)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fn = _FUNCTIONS[self.kind]
        return fn(logits, target, pos_weight=self.pos_weight, reduction=self.reduction,
                  **self.options)  # fmt: skip


_FUNCTIONS = {"bce": bce_multilabel, "focal": focal_bce, "asl": asymmetric_loss}


@LOSSES.register("bce_multilabel")
def _bce(pos_weight: Sequence[float] | None = None, reduction: str = "mean") -> nn.Module:
    return MultiLabelLoss("bce", pos_weight, reduction)


@LOSSES.register("focal_bce")
def _focal(
    gamma: float = 2.0,
    alpha: float | None = None,
    pos_weight: Sequence[float] | None = None,
    reduction: str = "mean",
) -> nn.Module:
    return MultiLabelLoss("focal", pos_weight, reduction, gamma=gamma, alpha=alpha)


@LOSSES.register("asl")
def _asl(
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    pos_weight: Sequence[float] | None = None,
    reduction: str = "mean",
) -> nn.Module:
    return MultiLabelLoss(
        "asl", pos_weight, reduction, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip
    )
