"""Evaluation metrics (floor 2)."""

from cvcraft.metrics.classification import (
    ClassificationMetrics,
    accuracy_topk,
    confusion_matrix,
    roc_auc_ovr,
)

__all__ = ["ClassificationMetrics", "accuracy_topk", "confusion_matrix", "roc_auc_ovr"]
