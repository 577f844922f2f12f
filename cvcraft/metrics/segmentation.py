"""Semantic-segmentation metrics from one streaming confusion matrix.

Every number is a function of the (K, K) pixel confusion matrix ``M`` (rows = true class,
columns = predicted), accumulated batch by batch with one ``bincount``; pixels whose target
is ``ignore_index`` are left out entirely. With ``t_i = sum_j M_ij`` (true pixels of class i),
``p_i = sum_j M_ji`` (predicted pixels) and ``n_ii`` the diagonal (Long et al. 2015, FCN):

- pixel accuracy ``PA = sum_i n_ii / sum_i t_i``;
- class pixel accuracy ``CPA_i = n_ii / t_i`` (per-class recall) and its mean ``MPA``;
- ``IoU_i = n_ii / (t_i + p_i - n_ii)``, ``mIoU`` their mean;
- frequency-weighted IoU ``fwIoU = sum_i t_i IoU_i / sum_i t_i``;
- ``Dice_i = F1_i = 2 n_ii / (t_i + p_i)``, ``mDice`` their mean.

A class with a zero denominator (never in the target for CPA; in neither target nor
prediction for IoU/Dice) has no value (NaN in the per-class list) and is left out of the
mean, as scikit-learn's macro averages over the labels present do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cvcraft.errors import DataError

IGNORE_INDEX = 255


def segmentation_confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """(K, K) int64 pixel counts, rows = true class, columns = predicted class.

    ``pred``: labels (N, H, W) or logits (N, K, H, W) (argmax taken); ``target`` (N, H, W)
    with ``ignore_index`` pixels dropped. A target outside [0, K) that is not ignored raises.
    """
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(1)
    if pred.shape != target.shape:
        raise DataError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        bad = t[(t < 0) | (t >= num_classes)][0].item()
        raise DataError(
            f"mask value {bad} is outside [0, {num_classes}) and is not ignore_index="
            f"{ignore_index}; check the masks' class ids and the model's num_classes"
        )
    flat = t * num_classes + p.clamp(0, num_classes - 1)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _mean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else 0.0


def metrics_from_confusion(cm: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """Every metric of this module from a (K, K) confusion matrix (see the module docstring).

    Returns floats ``pixel_acc``, ``mean_acc``, ``miou``, ``fwiou``, ``mdice`` and per-class
    lists ``class_acc``, ``iou``, ``dice`` (NaN where undefined), plus ``confusion_matrix``.
    """
    m = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    diag = np.diag(m)
    t = m.sum(1)  # true pixels per class
    p = m.sum(0)  # predicted pixels per class
    total = t.sum()
    iou = _ratio(diag, t + p - diag)
    class_acc = _ratio(diag, t)
    dice = _ratio(2 * diag, t + p)
    fw = float((t[t > 0] * iou[t > 0]).sum() / total) if total > 0 else 0.0
    return {
        "pixel_acc": float(diag.sum() / total) if total > 0 else 0.0,
        "mean_acc": _mean(class_acc),
        "miou": _mean(iou),
        "fwiou": fw,
        "mdice": _mean(dice),
        "class_acc": class_acc.tolist(),
        "iou": iou.tolist(),
        "dice": dice.tolist(),
        "confusion_matrix": m.astype(np.int64).tolist(),
    }


class SegmentationMetrics:
    """Streaming accumulator: ``update(logits_or_labels, target)`` per batch, ``compute()``.

    The matrix lives on the device of the first update, so accumulation costs one bincount
    per batch and no host transfer until ``compute``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.cm: torch.Tensor | None = None

    def reset(self) -> None:
        self.cm = None

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        c = segmentation_confusion(
            pred, target.to(pred.device), self.num_classes, self.ignore_index
        )
        self.cm = c if self.cm is None else self.cm + c

    def state_dict(self) -> dict[str, Any]:
        """The confusion matrix on the CPU (what another process needs to merge)."""
        k = self.num_classes
        cm = self.cm if self.cm is not None else torch.zeros(k, k, dtype=torch.int64)
        return {"cm": cm.detach().cpu()}

    def merge(self, state: dict[str, Any]) -> None:
        """Add another accumulator's counts (another rank's shard of the data)."""
        cm = state["cm"]
        self.cm = cm.clone() if self.cm is None else self.cm + cm.to(self.cm.device)

    def compute(self) -> dict[str, Any]:
        k = self.num_classes
        cm = self.cm if self.cm is not None else torch.zeros(k, k, dtype=torch.int64)
        return metrics_from_confusion(cm)
