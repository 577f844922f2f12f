"""Text recognition metrics: edit distance, character error rate, sequence accuracy.

- Levenshtein distance: the fewest single-symbol insertions, deletions and substitutions
  turning one sequence into the other, by the DP ``D[i, j] = min(D[i-1, j] + 1,
  D[i, j-1] + 1, D[i-1, j-1] + [a_i != b_j])``.
- CER = sum of edit distances / sum of reference lengths (over the whole set, as
  torchmetrics' ``CharErrorRate``); it can exceed 1 when predictions are too long.
- Sequence accuracy: the share of predictions equal to their reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.errors import DataError


def edit_distance(pred: Sequence[Any], ref: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (strings or lists of labels).

    One DP row at a time, each row vectorised: substitutions and deletions come from the
    row above; insertions chain along the row, ``D[i, j] = min_k (a[k] + (j - k))``, which
    is ``j + cummin(a[k] - k)``.
    """
    a = np.asarray(list(pred), dtype=object)
    b = np.asarray(list(ref), dtype=object)
    if len(a) == 0 or len(b) == 0:
        return max(len(a), len(b))
    cols = np.arange(len(b) + 1)
    row = cols.copy()  # D[0, j] = j
    for i in range(1, len(a) + 1):
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (b != a[i - 1]))  # deletion, substitution
        row = cols + np.minimum.accumulate(best - cols)  # insertions along the row
    return int(row[-1])


def _check_pairs(preds: Sequence[Any], refs: Sequence[Any]) -> None:
    if len(preds) != len(refs):
        raise DataError(f"{len(preds)} predictions but {len(refs)} references; pair them up")


def char_error_rate(preds: Sequence[Any], refs: Sequence[Any]) -> float:
    """Sum of edit distances over sum of reference lengths (0 = perfect)."""
    _check_pairs(preds, refs)
    total = sum(len(r) for r in refs)
    if total == 0:
        raise DataError("char_error_rate: every reference is empty; the rate is undefined")
    return sum(edit_distance(p, r) for p, r in zip(preds, refs)) / total


def sequence_accuracy(preds: Sequence[Any], refs: Sequence[Any]) -> float:
    """Share of predictions exactly equal to their reference."""
    _check_pairs(preds, refs)
    if not refs:
        raise DataError("sequence_accuracy of no sequences is undefined")
    return sum(list(p) == list(r) for p, r in zip(preds, refs)) / len(refs)


class TextEvaluator:
    """Evaluator (reset/update/state_dict/merge/compute) of ``seq_acc`` and ``cer``.

    ``update(batch, outputs)`` reads ``outputs["texts"]`` (decoded predictions) and
    ``outputs["targets"]`` (references), lists of strings; sums merge by addition.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct = self.count = self.edits = self.chars = 0

    def update(self, batch: Any, outputs: dict[str, Any]) -> None:
        preds, refs = outputs["texts"], outputs["targets"]
        _check_pairs(preds, refs)
        for p, r in zip(preds, refs):
            self.correct += int(p == r)
            self.edits += edit_distance(p, r)
            self.chars += len(r)
        self.count += len(refs)

    def state_dict(self) -> dict[str, int]:
        return {"correct": self.correct, "count": self.count, "edits": self.edits,
                "chars": self.chars}  # fmt: skip

    def merge(self, state: dict[str, int]) -> None:
        for k, v in state.items():
            setattr(self, k, getattr(self, k) + v)

    def compute(self) -> dict[str, float]:
        return {
            "seq_acc": self.correct / max(self.count, 1),
            "cer": self.edits / max(self.chars, 1),
        }
