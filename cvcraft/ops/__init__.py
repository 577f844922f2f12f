"""Detection and box operations (floor 2): IoU family, NMS family, anchors, coders,
assigners, RoI ops and mask encodings.

What we take from torchvision rather than rewrite: the greedy NMS kernel
(``torchvision.ops.nms``), RoIAlign/RoIPool and deformable convolution. What we wrote: the
IoU family (one implementation of the intersection/enclosing/centre terms shared by the
pairwise and elementwise forms, plus SIoU), the other NMS methods, anchors and k-means,
coders, assigners, COCO RLE and polygon rasterization.

Names are re-exported lazily: the mask encodings are numpy alone, and ``cvcraft check`` /
``convert`` read them without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AnchorFit": "anchors",
    "generate_anchors": "anchors",
    "grid_anchors": "anchors",
    "kmeans_anchors": "anchors",
    "wh_iou": "anchors",
    "AssignResult": "assigners",
    "TaskAlignedAssignment": "assigners",
    "atss_assign": "assigners",
    "batched_task_aligned_assign": "assigners",
    "hungarian_match": "assigners",
    "max_iou_assign": "assigners",
    "simota_assign": "assigners",
    "task_aligned_assign": "assigners",
    "box_area": "boxes",
    "box_iou": "boxes",
    "clip_boxes": "boxes",
    "complete_box_iou": "boxes",
    "convert_boxes": "boxes",
    "distance_box_iou": "boxes",
    "elementwise_iou": "boxes",
    "generalized_box_iou": "boxes",
    "pairwise_iou": "boxes",
    "siou": "boxes",
    "DeltaCoder": "coders",
    "YoloGridCoder": "coders",
    "masks_to_boxes": "masks",
    "polygons_to_mask": "masks",
    "rle_decode": "masks",
    "rle_encode": "masks",
    "NMS_METHODS": "nms",
    "NMSResult": "nms",
    "batched_nms": "nms",
    "multiclass_nms": "nms",
    "nms": "nms",
    "fpn_level": "roi",
    "multiscale_roi_align": "roi",
    "roi_align": "roi",
    "roi_pool": "roi",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"cvcraft.ops.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cvcraft.ops' has no attribute {name!r}")
