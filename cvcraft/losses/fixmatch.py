"""FixMatch's unlabelled term (Sohn et al. 2020): the weak view's confident prediction is
the hard pseudo-label the strong view must predict.

    q = softmax(z_weak) (no gradient),  mask = max(q) >= tau,  y_hat = argmax(q)
    L_u = (1 / (mu B)) * sum_b mask_b * CE(z_strong_b, y_hat_b)

The sum is divided by every unlabelled item (not only the confident ones), as in the paper:
early in training few items pass the threshold and the term stays small. ``tau`` itself
counts as confident (``>=``), compared in the probabilities' dtype (float32, or float64 for
float64 logits), so ``tau`` is rounded to that dtype first.
Shapes: logits (M, C) with M = mu * B; ``probs`` (M, C).

The baselines the FixMatch paper compares with:
- Pseudo-Label (Lee 2013): the same view is both target and input,
  L_u = (1/M) Σ mask · CE(z, argmax softmax(z)) with the target detached;
- Mean Teacher (Tarvainen & Valpola 2017): a consistency cost between the student's class
  probabilities on one view and an EMA teacher's on another,
  L_u = (1/M) Σ ‖softmax(z_student) − softmax(z_teacher)‖², the teacher detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError


def pseudo_labels(probs: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(hard pseudo-labels int64 (M,), confidence mask float (M,): 1 where max(p) >= tau,
    in ``probs``' dtype)."""
    if probs.ndim != 2:
        raise ConfigError(f"pseudo_labels: probabilities must be (M, C), got {tuple(probs.shape)}")
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"tau={tau} must be in [0, 1]")
    conf, labels = probs.max(dim=1)
    return labels, (conf >= tau).to(probs.dtype)


def fixmatch_unlabeled_loss(
    logits_weak: torch.Tensor, logits_strong: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_u, mask)``: the masked pseudo-label cross-entropy of the strong view, averaged
    over all M unlabelled items; the weak view's logits are detached (a target, not trained)."""
    if logits_weak.shape != logits_strong.shape or logits_weak.ndim != 2:
        raise ConfigError(
            f"FixMatch: weak and strong logits must both be (M, C), got "
            f"{tuple(logits_weak.shape)} and {tuple(logits_strong.shape)}"
        )
    if logits_weak.shape[0] == 0:
        raise ConfigError("FixMatch: the unlabelled batch is empty")
    z = logits_weak.detach()
    z = z if z.dtype == torch.float64 else z.float()  # half precision would blur the threshold
    with torch.no_grad():
        labels, mask = pseudo_labels(z.softmax(1), tau)
    ce = F.cross_entropy(logits_strong.float(), labels, reduction="none")
    return (ce * mask).mean(), mask


def pseudo_label_loss(logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_u, mask)`` of Pseudo-Label: each unlabelled item's own confident prediction is its
    target (detached), averaged over all M items."""
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ConfigError(
            f"Pseudo-Label: logits must be a non-empty (M, C), got {tuple(logits.shape)}"
        )
    z = logits.float()
    with torch.no_grad():
        labels, mask = pseudo_labels(z.detach().softmax(1), tau)
    return (F.cross_entropy(z, labels, reduction="none") * mask).mean(), mask


def mean_teacher_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean Teacher's consistency: mean over items of the squared distance between the
    student's and the (detached) teacher's class probabilities."""
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ConfigError(
            f"Mean Teacher: student and teacher logits must both be (M, C), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    p_s = student_logits.float().softmax(1)
    p_t = teacher_logits.detach().float().softmax(1)
    return (p_s - p_t).pow(2).sum(1).mean()
