"""Detection and box operations (floor 2): IoU family, NMS family, anchors, coders,
assigners, RoI ops and mask encodings.

What we take from torchvision rather than rewrite: the greedy NMS kernel
(``torchvision.ops.nms``), RoIAlign/RoIPool and deformable convolution. What we wrote: the
IoU family (one implementation of the intersection/enclosing/centre terms shared by the
pairwise and elementwise forms, plus SIoU), the other NMS methods, anchors and k-means,
coders, assigners, COCO RLE and polygon rasterization.
"""

from cvcraft.ops.anchors import AnchorFit, generate_anchors, grid_anchors, kmeans_anchors, wh_iou
from cvcraft.ops.assigners import (
    AssignResult,
    TaskAlignedAssignment,
    atss_assign,
    batched_task_aligned_assign,
    hungarian_match,
    max_iou_assign,
    simota_assign,
    task_aligned_assign,
)
from cvcraft.ops.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    complete_box_iou,
    convert_boxes,
    distance_box_iou,
    elementwise_iou,
    generalized_box_iou,
    pairwise_iou,
    siou,
)
from cvcraft.ops.coders import DeltaCoder, YoloGridCoder
from cvcraft.ops.masks import masks_to_boxes, polygons_to_mask, rle_decode, rle_encode
from cvcraft.ops.nms import NMS_METHODS, NMSResult, batched_nms, multiclass_nms, nms
from cvcraft.ops.roi import fpn_level, multiscale_roi_align, roi_align, roi_pool

__all__ = [
    "NMS_METHODS",
    "AnchorFit",
    "AssignResult",
    "TaskAlignedAssignment",
    "DeltaCoder",
    "NMSResult",
    "YoloGridCoder",
    "atss_assign",
    "batched_nms",
    "batched_task_aligned_assign",
    "box_area",
    "box_iou",
    "clip_boxes",
    "complete_box_iou",
    "convert_boxes",
    "distance_box_iou",
    "elementwise_iou",
    "fpn_level",
    "generalized_box_iou",
    "generate_anchors",
    "grid_anchors",
    "hungarian_match",
    "kmeans_anchors",
    "masks_to_boxes",
    "multiclass_nms",
    "max_iou_assign",
    "multiscale_roi_align",
    "nms",
    "pairwise_iou",
    "polygons_to_mask",
    "rle_decode",
    "rle_encode",
    "roi_align",
    "roi_pool",
    "simota_assign",
    "siou",
    "task_aligned_assign",
    "wh_iou",
]
