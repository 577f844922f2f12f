"""Evaluation metrics (floor 2): classification, COCO/VOC detection, detection confusion,
segmentation (one streaming confusion matrix)."""

from cvcraft.metrics.classification import (
    ClassificationMetrics,
    accuracy_topk,
    confusion_matrix,
    roc_auc_ovr,
)
from cvcraft.metrics.coco import SUMMARY_KEYS, COCOEvaluator, evaluate_coco_files
from cvcraft.metrics.detection_confusion import DetectionConfusionMatrix
from cvcraft.metrics.segmentation import (
    SegmentationMetrics,
    metrics_from_confusion,
    segmentation_confusion,
)
from cvcraft.metrics.voc import VOCEvaluator, voc_ap

__all__ = [
    "SegmentationMetrics",
    "metrics_from_confusion",
    "segmentation_confusion",
    "SUMMARY_KEYS",
    "COCOEvaluator",
    "ClassificationMetrics",
    "DetectionConfusionMatrix",
    "VOCEvaluator",
    "accuracy_topk",
    "confusion_matrix",
    "evaluate_coco_files",
    "roc_auc_ovr",
    "voc_ap",
]
