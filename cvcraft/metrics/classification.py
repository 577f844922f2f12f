"""Classification metrics, accumulated batch by batch: top-k accuracy, precision / recall /
F1 (macro, micro, weighted), the confusion matrix and one-vs-rest ROC AUC.

Conventions (chosen to match scikit-learn, which the tests use as the oracle):

- Predictions are the argmax of the scores; ties go to the lowest class index (as
  ``torch.argmax``). Top-k breaks ties the same way, so ``top1`` always equals accuracy.
- A ratio with a zero denominator is 0 (sklearn's ``zero_division=0``).
- Macro and weighted averages run over the classes that occur in the targets *or* the
  predictions (sklearn's default ``labels=None``); per-class arrays always have
  ``num_classes`` entries.
- ``roc_auc_ovr`` is the unweighted mean over classes of the exact (Mann-Whitney, tie-aware)
  AUC of "class c vs rest". Classes absent from the targets (no positives) or making up all
  of them (no negatives) have no AUC and are skipped; ``roc_auc_classes`` counts the rest.
  It needs every sample's probabilities, kept as float32 (N*C*4 bytes; pass
  ``roc_auc=False`` to skip it on very large label sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cvcraft.errors import ConfigError, CvcraftError, DataError


def _as_labels(target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """(N,) int labels, or (N, C) soft targets -> their argmax, as int64 (N,)."""
    if target.ndim == 2:
        target = target.argmax(1)
    target = target.long().reshape(-1)
    if (
        num_classes is not None
        and target.numel()
        and (target.min() < 0 or target.max() >= num_classes)
    ):
        bad = target[(target < 0) | (target >= num_classes)][0].item()
        raise DataError(
            f"target label {bad} is outside [0, {num_classes}); check the dataset's labels "
            "and the model's num_classes"
        )
    return target


def _target_rank(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each sample's true class when classes are sorted by score, best first.

    rank = #classes scoring higher + #classes tying with a lower index, i.e. a stable
    descending sort, computed in O(N*C) without sorting. (N, C), (N,) -> (N,)
    """
    s_true = scores.gather(1, target[:, None])  # (N, 1)
    lower_index = torch.arange(scores.shape[1], device=scores.device)[None, :] < target[:, None]
    return (scores > s_true).sum(1) + ((scores == s_true) & lower_index).sum(1)


def accuracy_topk(
    logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1,)
) -> list[float]:
    """Fraction of samples whose true class is among the k best scores, for each k in ``ks``.

    logits (N, C) scores or probabilities; targets (N,) int or (N, C) soft. k is capped at C.
    """
    target = _as_labels(targets, logits.shape[1])
    rank = _target_rank(logits.detach(), target)
    n = max(target.numel(), 1)
    return [(rank < min(k, logits.shape[1])).sum().item() / n for k in ks]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class.

    ``pred`` is (N,) labels or (N, C) scores (argmax taken); one ``bincount`` of
    ``true * C + pred`` fills the whole matrix.
    """
    pred = _as_labels(pred, num_classes)
    target = _as_labels(target, num_classes)
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))


def roc_auc_ovr(probs: torch.Tensor, target: torch.Tensor) -> tuple[float | None, int]:
    """Macro one-vs-rest ROC AUC and the number of classes it averages.

    Per class: AUC = (R+ - n+(n+ + 1)/2) / (n+ n-), R+ = sum of the positives' ranks where
    tied scores share their average rank. Average ranks come from two ``searchsorted``
    calls on each column's sorted scores: rank(x) = (#(< x) + #(<= x) + 1) / 2.
    probs (N, C), target (N,) -> (mean AUC or None if no class qualifies, classes used).
    """
    n, c = probs.shape
    cols = probs.T.contiguous().double()  # (C, N)
    sorted_cols = cols.sort(dim=1).values
    below = torch.searchsorted(sorted_cols, cols, side="left")
    upto = torch.searchsorted(sorted_cols, cols, side="right")
    ranks = (below + upto + 1).double() / 2  # (C, N), 1-based average ranks
    pos = torch.nn.functional.one_hot(target, c).T.bool()  # (C, N)
    n_pos = pos.sum(1).double()
    n_neg = n - n_pos
    rank_sum = (ranks * pos).sum(1)
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        return None, 0
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp(min=1)
    return auc[valid].mean().item(), int(valid.sum())


class ClassificationMetrics:
    """Streaming classification metrics: ``update()`` per batch, ``compute()`` at the end.

    Holds a (C, C) confusion matrix, top-k hit counts, an optional running loss and (for ROC
    AUC) the float32 probabilities. ``state_dict()``/``merge()`` combine the accumulators of
    several processes. Inputs whose rows are probabilities (in [0, 1], summing to 1) are
    used as they are; anything else is treated as logits and soft-maxed for the AUC.
    """

    def __init__(
        self, num_classes: int, topk: Sequence[int] = (1, 5), roc_auc: bool = True
    ) -> None:
        if num_classes < 1:
            raise ConfigError(f"ClassificationMetrics: num_classes must be >= 1, got {num_classes}")
        if any(k < 1 for k in topk):
            raise ConfigError(f"ClassificationMetrics: topk values must be >= 1, got {tuple(topk)}")
        self.num_classes = num_classes
        self.topk = tuple(topk)
        self.roc_auc = roc_auc
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        c = self.num_classes
        self.confmat = torch.zeros(c, c, dtype=torch.int64)
        self.topk_hits = torch.zeros(len(self.topk), dtype=torch.int64)
        self.count = 0
        self.loss_sum = 0.0
        self.loss_count = 0
        self._probs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    @torch.no_grad()
    def update(
        self,
        logits_or_probs: torch.Tensor,
        targets: torch.Tensor,
        loss: float | torch.Tensor | None = None,
    ) -> None:
        """Add one batch. scores (N, C); targets (N,) int or (N, C) soft (argmax taken).

        ``loss`` is the batch's mean loss; it is averaged weighted by batch size.
        """
        scores = logits_or_probs.detach().float().cpu()
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ConfigError(
                f"ClassificationMetrics expects scores of shape (N, {self.num_classes}), got "
                f"{tuple(scores.shape)}; make the model's num_classes match the dataset's"
            )
        target = _as_labels(targets.detach().cpu(), self.num_classes)
        if target.numel() != scores.shape[0]:
            raise ConfigError(f"{scores.shape[0]} score rows but {target.numel()} targets")
        n = target.numel()
        self.confmat += confusion_matrix(scores.argmax(1), target, self.num_classes)
        rank = _target_rank(scores, target)
        caps = torch.tensor([min(k, self.num_classes) for k in self.topk])
        self.topk_hits += (rank[None, :] < caps[:, None]).sum(1)
        self.count += n
        if loss is not None:
            self.loss_sum += float(loss) * n
            self.loss_count += n
        if self.roc_auc:
            is_prob = (
                scores.min() >= 0 and scores.max() <= 1
                and torch.allclose(scores.sum(1), torch.ones(n), atol=1e-3)
            )  # fmt: skip
            self._probs.append(scores if is_prob else scores.softmax(1))
            self._targets.append(target)

    def compute(self) -> dict[str, Any]:
        """All metrics as plain Python numbers/lists (JSON-ready). See the module docstring."""
        if self.count == 0:
            raise CvcraftError("ClassificationMetrics.compute() called before any update()")
        cm = self.confmat.double()
        tp = cm.diagonal()
        support = cm.sum(1)  # true count per class
        predicted = cm.sum(0)
        precision = _safe_div(tp, predicted)
        recall = _safe_div(tp, support)
        f1 = _safe_div(2 * tp, support + predicted)  # = 2PR/(P+R), 0 when undefined
        present = (support + predicted) > 0  # sklearn's labels=None: seen in y_true or y_pred
        weights = support / support.sum()
        out: dict[str, Any] = {"num_samples": self.count}
        for k, hits in zip(self.topk, self.topk_hits.tolist()):
            out[f"top{k}"] = hits / self.count
        micro = tp.sum().item() / self.count  # single-label: micro P = R = F1 = accuracy
        for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
            out[f"{name}_macro"] = per_class[present].mean().item()
            out[f"{name}_micro"] = micro
            out[f"{name}_weighted"] = (per_class * weights).sum().item()
        out["per_class_precision"] = precision.tolist()
        out["per_class_recall"] = recall.tolist()
        out["per_class_f1"] = f1.tolist()
        out["support"] = self.confmat.sum(1).tolist()
        out["confusion_matrix"] = self.confmat.tolist()
        if self.roc_auc:
            auc, used = roc_auc_ovr(torch.cat(self._probs), torch.cat(self._targets))
            out["roc_auc_ovr"] = auc
            out["roc_auc_classes"] = used
        if self.loss_count:
            out["loss"] = self.loss_sum / self.loss_count
        return out

    def state_dict(self) -> dict[str, Any]:
        """The accumulators as tensors/numbers (picklable, all-gather friendly)."""
        return {
            "num_classes": self.num_classes,
            "topk": self.topk,
            "confmat": self.confmat.clone(),
            "topk_hits": self.topk_hits.clone(),
            "count": self.count,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "probs": torch.cat(self._probs) if self._probs else None,
            "targets": torch.cat(self._targets) if self._targets else None,
        }

    def merge(self, other: ClassificationMetrics | dict[str, Any]) -> ClassificationMetrics:
        """Add another accumulator (or its ``state_dict()``) into this one; returns self."""
        state = other.state_dict() if isinstance(other, ClassificationMetrics) else other
        if state["num_classes"] != self.num_classes or tuple(state["topk"]) != self.topk:
            raise ConfigError(
                f"cannot merge metrics for {state['num_classes']} classes / topk "
                f"{tuple(state['topk'])} into {self.num_classes} classes / topk {self.topk}"
            )
        self.confmat += state["confmat"]
        self.topk_hits += state["topk_hits"]
        self.count += state["count"]
        self.loss_sum += state["loss_sum"]
        self.loss_count += state["loss_count"]
        if self.roc_auc:
            if state["probs"] is None and state["count"]:
                raise ConfigError(
                    "cannot merge: the other metrics object was built with roc_auc=False"
                )
            if state["probs"] is not None:
                self._probs.append(state["probs"])
                self._targets.append(state["targets"])
        return self
