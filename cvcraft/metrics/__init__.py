"""Evaluation metrics (floor 2): classification, COCO/VOC detection, detection confusion,
segmentation (one streaming confusion matrix).

Names are re-exported lazily: ``cvcraft eval detect`` reads ``metrics.coco`` (numpy only)
and must not pay for importing torch through the classification metrics.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClassificationMetrics": "classification",
    "accuracy_topk": "classification",
    "confusion_matrix": "classification",
    "roc_auc_ovr": "classification",
    "SUMMARY_KEYS": "coco",
    "COCOEvaluator": "coco",
    "evaluate_coco_files": "coco",
    "DetectionConfusionMatrix": "detection_confusion",
    "SegmentationMetrics": "segmentation",
    "metrics_from_confusion": "segmentation",
    "segmentation_confusion": "segmentation",
    "VOCEvaluator": "voc",
    "voc_ap": "voc",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"cvcraft.metrics.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cvcraft.metrics' has no attribute {name!r}")
