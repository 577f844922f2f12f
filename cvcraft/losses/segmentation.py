"""Semantic-segmentation losses: soft Dice, Dice + CE, Lovasz-softmax, deep supervision.

All take logits (N, K, H, W) and an int target (N, H, W) whose ``ignore_index`` pixels
(255 by the house convention) contribute nothing: not to a numerator, a denominator or a
mean. Cross-entropy and focal loss for dense targets are the classification ones (``"ce"``,
``"focal"``), which already take (N, K, ...) logits and an ``ignore_index``;
``build_segmentation_loss`` picks any of them by name with the segmentation defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.classification import CrossEntropyLoss, FocalLoss
from cvcraft.losses.registry import LOSSES
from cvcraft.registry import Registry

IGNORE_INDEX = 255
# Segmentation losses by name: factory(weight, ignore_index, focal_gamma) -> criterion. The
# config's ``loss=`` choices are read from here, so a new loss is one registration.
SEGMENTATION_LOSSES: Registry[Any] = Registry("segmentation loss")


def _full(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (AMP) -> float32; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _valid_one_hot(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """softmax probs, one-hot target and the valid-pixel mask, all zero on ignored pixels.

    (N, K, H, W), (N, H, W) -> probs (N, K, H, W), onehot (N, K, H, W), valid (N, 1, H, W).
    """
    logits = _full(logits)
    k = logits.shape[1]
    target = target.long()
    valid = target != ignore_index  # (N, H, W)
    bad = valid & ((target < 0) | (target >= k))
    if bad.any():
        raise ConfigError(
            f"segmentation target has class {int(target[bad][0])} outside [0, {k}) that is not "
            f"ignore_index={ignore_index}; check the masks and num_classes"
        )
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, k).movedim(-1, 1).to(logits.dtype)  # (N, K, H, W)
    v = valid.unsqueeze(1).to(logits.dtype)  # (N, 1, H, W)
    probs = logits.softmax(1) * v
    return probs, onehot * v, v


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 0.0,
    eps: float = 1e-7,
    class_weights: torch.Tensor | None = None,
    present_only: bool = True,
) -> torch.Tensor:
    """Soft multi-class Dice loss (Milletari et al. 2016, V-Net), batch-aggregated.

    ``dice_c = (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)`` over every valid pixel
    of the batch, p = softmax(logits), g = one-hot target; loss = 1 - (weighted) mean of
    dice_c. With ``present_only`` the mean runs over the classes present in the target
    (an absent class has no overlap to learn and would only push its probability to 0,
    which CE already does). logits (N, K, H, W), target (N, H, W) -> scalar.
    """
    probs, onehot, _ = _valid_one_hot(logits, target, ignore_index)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)  # (K,)
    card = probs.sum(dims) + onehot.sum(dims)  # (K,)
    dice = (2 * inter + smooth) / (card + smooth).clamp(min=eps)
    loss = 1.0 - dice  # (K,)
    w = torch.ones_like(loss) if class_weights is None else class_weights.to(loss)
    if present_only:
        w = w * (onehot.sum(dims) > 0)
    return (loss * w).sum() / w.sum().clamp(min=eps)


class DiceLoss(nn.Module):
    """Module form of :func:`dice_loss`; registered as ``"dice"``."""

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        smooth: float = 0.0,
        weight: Sequence[float] | torch.Tensor | None = None,
        present_only: bool = True,
    ) -> None:
        super().__init__()
        self.ignore_index, self.smooth, self.present_only = ignore_index, smooth, present_only
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(
            logits,
            target,
            ignore_index=self.ignore_index,
            smooth=self.smooth,
            class_weights=self.weight,
            present_only=self.present_only,
        )


class DiceCELoss(nn.Module):
    """``ce_weight * CE + dice_weight * Dice``: CE gives well-scaled per-pixel gradients
    from the start, Dice optimises the overlap the metric measures and resists class
    imbalance (the nnU-Net default). Registered as ``"dice_ce"``."""

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        weight: Sequence[float] | torch.Tensor | None = None,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 0.0,
    ) -> None:
        super().__init__()
        self.ce = CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        self.dice = DiceLoss(ignore_index=ignore_index, smooth=smooth, weight=weight)
        self.ce_weight, self.dice_weight = float(ce_weight), float(dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * self.ce(logits, target) + self.dice_weight * self.dice(
            logits, target
        )


def lovasz_softmax(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    present_only: bool = True,
) -> torch.Tensor:
    """Lovasz-softmax loss (Berman et al. 2018): a convex surrogate of 1 - IoU per class.

    Per class c over all valid pixels of the batch: errors ``e = |g_c - p_c|`` sorted
    descending with the ground truth ``g`` in the same order; the Jaccard loss after the first
    i errors is ``J_i = 1 - (G - cumsum(g)_i) / (G + cumsum(1 - g)_i)`` and the Lovasz
    extension is ``loss_c = sum_i e_i (J_i - J_{i-1})`` (eq. 8). Mean over classes (present in
    the target when ``present_only``). logits (N, K, H, W), target (N, H, W) -> scalar.
    """
    k = logits.shape[1]
    probs = _full(logits).softmax(1).movedim(1, -1).reshape(-1, k)  # (P, K)
    tgt = target.reshape(-1).long()
    keep = tgt != ignore_index
    probs, tgt = probs[keep], tgt[keep]
    if tgt.numel() == 0:
        return logits.sum() * 0.0
    fg = F.one_hot(tgt, k).to(probs.dtype)  # (P, K)
    errors = (fg - probs).abs()
    # one sort per class, done for all classes at once along dim 0
    err_sorted, order = errors.sort(0, descending=True)  # (P, K)
    fg_sorted = fg.gather(0, order)
    total = fg_sorted.sum(0)  # (K,)
    inter = total - fg_sorted.cumsum(0)
    union = total + (1.0 - fg_sorted).cumsum(0)
    jac = 1.0 - inter / union  # (P, K)
    grad = torch.cat([jac[:1], jac[1:] - jac[:-1]], 0)
    losses = (err_sorted * grad).sum(0)  # (K,)
    if present_only:
        present = total > 0
        if not present.any():
            return logits.sum() * 0.0
        return losses[present].mean()
    return losses.mean()


class LovaszSoftmaxLoss(nn.Module):
    """Module form of :func:`lovasz_softmax`; registered as ``"lovasz"``."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, present_only: bool = True) -> None:
        super().__init__()
        self.ignore_index, self.present_only = ignore_index, present_only

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lovasz_softmax(
            logits, target, ignore_index=self.ignore_index, present_only=self.present_only
        )


class DeepSupervisionLoss(nn.Module):
    """Main loss plus weighted auxiliary-head losses (PSPNet aux head, U-Net++ / U^2-Net
    deep supervision): ``L = L(main) + sum_i w_i L(aux_i)``.

    ``outputs`` is logits (N, K, H, W) or ``(main, [aux, ...])`` as segmentation models return
    in train mode; an auxiliary map at a lower resolution is upsampled (bilinear) to the
    target's size first. ``aux_weight`` is one weight for every head or one per head.
    """

    def __init__(self, criterion: nn.Module, aux_weight: float | Sequence[float] = 0.4) -> None:
        super().__init__()
        self.criterion = criterion
        self.aux_weight = aux_weight

    def _weights(self, n: int) -> list[float]:
        if isinstance(self.aux_weight, (int, float)):
            return [float(self.aux_weight)] * n
        w = [float(x) for x in self.aux_weight]
        if len(w) != n:
            raise ConfigError(f"aux_weight has {len(w)} values but the model has {n} aux heads")
        return w

    def _one(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(
                logits, size=target.shape[-2:], mode="bilinear", align_corners=False
            )
        return self.criterion(_full(logits), target)

    def forward(self, outputs: Any, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self._one(outputs, target)
        main, aux = outputs
        aux = [a for a in (aux if isinstance(aux, (list, tuple)) else [aux]) if a is not None]
        loss = self._one(main, target)
        for w, a in zip(self._weights(len(aux)), aux):
            if w:
                loss = loss + w * self._one(a, target)
        return loss


def build_segmentation_loss(
    name: str,
    *,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Sequence[float] | None = None,
    aux_weight: float | Sequence[float] = 0.4,
    focal_gamma: float = 2.0,
) -> DeepSupervisionLoss:
    """The named loss with the segmentation ignore index and optional per-class weights,
    wrapped so models with auxiliary outputs are handled. (``focal`` takes the class weights
    as its per-class alpha; ``lovasz`` has no class weighting.)"""
    if name not in SEGMENTATION_LOSSES:
        raise ConfigError(
            f"unknown segmentation loss {name!r}; choose one of "
            f"{', '.join(SEGMENTATION_LOSSES.names())}"
        )
    w = None if not class_weights else [float(x) for x in class_weights]
    crit = SEGMENTATION_LOSSES.get(name)(w, ignore_index, focal_gamma)
    return DeepSupervisionLoss(crit, aux_weight)


LOSSES.register("dice", DiceLoss)
LOSSES.register("dice_ce", DiceCELoss)
LOSSES.register("lovasz", LovaszSoftmaxLoss)


@SEGMENTATION_LOSSES.register("ce")
def _ce(w: list[float] | None, ignore_index: int, gamma: float) -> nn.Module:
    return CrossEntropyLoss(weight=w, ignore_index=ignore_index)


@SEGMENTATION_LOSSES.register("focal")
def _focal(w: list[float] | None, ignore_index: int, gamma: float) -> nn.Module:
    return FocalLoss(gamma=gamma, alpha=w, ignore_index=ignore_index)


@SEGMENTATION_LOSSES.register("dice")
def _dice(w: list[float] | None, ignore_index: int, gamma: float) -> nn.Module:
    return DiceLoss(ignore_index=ignore_index, weight=w)


@SEGMENTATION_LOSSES.register("dice_ce")
def _dice_ce(w: list[float] | None, ignore_index: int, gamma: float) -> nn.Module:
    return DiceCELoss(ignore_index=ignore_index, weight=w)


@SEGMENTATION_LOSSES.register("lovasz")
def _lovasz(w: list[float] | None, ignore_index: int, gamma: float) -> nn.Module:
    if w is not None:
        raise ConfigError("loss=lovasz takes no class_weights; use dice_ce or ce")
    return LovaszSoftmaxLoss(ignore_index=ignore_index)
