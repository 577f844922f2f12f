"""Box overlap (IoU, GIoU, DIoU, CIoU), greedy and Soft-NMS, and VOC average precision.

Boxes are xyxy. With A, B two boxes and C the smallest box enclosing both:
``IoU = |A n B| / |A u B|``; ``GIoU = IoU - |C \\ (A u B)| / |C|`` (Rezatofighi 2019);
``DIoU = IoU - rho^2 / c^2``, rho the distance of the centres, c the diagonal of C;
``CIoU = DIoU - alpha v``, ``v = 4/pi^2 (atan(w_B/h_B) - atan(w_A/h_A))^2``,
``alpha = v / (1 - IoU + v)`` (Zheng 2020).

NMS: repeatedly keep the best-scored box and remove every box overlapping it by IoU > t;
Soft-NMS (Bodla 2017) decays their scores instead, ``s *= 1 - IoU`` (if IoU >= t) or
``s *= exp(-IoU^2 / sigma)``.

AP: rank detections by score; a detection is a true positive if it overlaps an unclaimed
ground truth by IoU >= t (VOC: its best-overlapping one). Precision and recall after each
rank give the curve; ``p_interp(r) = max_{r' >= r} p(r')`` removes its zigzag. All-point
AP (VOC2010+) is ``sum_i (r_i - r_{i-1}) p_interp(r_i)``; n-point AP averages
``p_interp`` at n evenly spaced recalls (11 for VOC2007, 101 for COCO).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cvcraft.errors import ConfigError

IOU_KINDS = ("iou", "giou", "diou", "ciou")


def _check(name: str, boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be (N, 4) xyxy boxes, got shape {boxes.shape}")
    return boxes


def pairwise_iou(a: np.ndarray, b: np.ndarray, kind: str = "iou") -> np.ndarray:
    """IoU-family matrix of boxes a (N, 4) against b (M, 4): (N, M)."""
    if kind not in IOU_KINDS:
        raise ConfigError(f"unknown IoU kind {kind!r}; use one of {IOU_KINDS}")
    a, b = _check("a", a)[:, None], _check("b", b)[None]  # (N, 1, 4), (1, M, 4)
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = wa * ha + wb * hb - inter
    iou = inter / union
    if kind == "iou":
        return iou
    cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])  # enclosing box
    ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    if kind == "giou":
        return iou - (cw * ch - union) / (cw * ch)
    rho2 = ((a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) / 2) ** 2 + (
        (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) / 2
    ) ** 2
    diou = iou - rho2 / (cw**2 + ch**2)
    if kind == "diou":
        return diou
    v = 4 / math.pi**2 * (np.arctan(wb / hb) - np.arctan(wa / ha)) ** 2
    # v = 0 (same aspect ratio) needs no weight; it also avoids 0/0 for identical boxes
    alpha = np.divide(v, 1 - iou + v, out=np.zeros_like(v), where=v > 0)
    return diou - alpha * v


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes that survive greedy NMS, best first (ties: lower index first)."""
    boxes = _check("boxes", boxes)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        overlap = pairwise_iou(boxes[best : best + 1], boxes[rest])[0]
        order = rest[overlap <= iou_threshold]  # drop what the kept box covers
    return np.array(keep, dtype=np.int64)


def soft_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "gaussian",
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (Bodla et al. 2017, Algorithm 1): ``(keep, final_scores)``, best first.

    Pick the highest remaining score, then decay every other remaining box by its overlap
    with the pick (``linear``: ``1 - IoU`` when IoU >= ``iou_threshold``; ``gaussian``:
    ``exp(-IoU^2 / sigma)``); boxes whose score falls below ``score_threshold`` leave.
    """
    if method not in ("linear", "gaussian"):
        raise ConfigError(f"soft_nms method {method!r}; use 'linear' or 'gaussian'")
    boxes = _check("boxes", boxes)
    s = np.asarray(scores, dtype=np.float64).copy()
    remaining = np.flatnonzero(s >= score_threshold)
    keep, kept_scores = [], []
    while remaining.size:
        pick = remaining[np.argmax(s[remaining])]
        keep.append(pick)
        kept_scores.append(s[pick])
        remaining = remaining[remaining != pick]
        overlap = pairwise_iou(boxes[pick : pick + 1], boxes[remaining])[0]
        if method == "linear":
            s[remaining] *= np.where(overlap >= iou_threshold, 1 - overlap, 1.0)
        else:
            s[remaining] *= np.exp(-(overlap**2) / sigma)
        remaining = remaining[s[remaining] >= score_threshold]
    return np.array(keep, dtype=np.int64), np.array(kept_scores)


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = 0.5,
    rule: str = "voc",
) -> np.ndarray:
    """True-positive flags (D,) of one image's detections of one class, greedy by score.

    ``voc``: a detection looks at its best-overlapping gt; TP if IoU >= t and no
    higher-scored detection claimed it, else FP. ``coco``: it claims the best-overlapping
    gt among those still unclaimed with IoU >= t.
    """
    if rule not in ("voc", "coco"):
        raise ConfigError(f"match rule {rule!r}; use 'voc' or 'coco'")
    det_boxes, gt_boxes = _check("det_boxes", det_boxes), _check("gt_boxes", gt_boxes)
    tp = np.zeros(len(det_boxes), dtype=bool)
    if len(gt_boxes) == 0:
        return tp
    iou = pairwise_iou(det_boxes, gt_boxes)  # (D, G)
    claimed = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(det_scores), kind="stable"):
        if rule == "voc":
            g = int(np.argmax(iou[d]))
            ok = iou[d, g] >= iou_threshold and not claimed[g]
        else:
            free = np.where(claimed, -1.0, iou[d])
            g = int(np.argmax(free))
            ok = free[g] >= iou_threshold
        if ok:
            tp[d] = claimed[g] = True
    return tp


def precision_recall(
    tp: np.ndarray, scores: np.ndarray, num_gt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each rank, detections sorted by score (stable)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.cumsum(np.asarray(tp, dtype=np.float64)[order])
    ranks = np.arange(1, len(order) + 1)
    return hits / max(num_gt, 1), hits / ranks


def ap_all_points(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point AP: ``sum_i (r_i - r_{i-1}) max_{j >= i} p_j`` with ``r_0 = 0`` — the area
    under the interpolated (monotone) precision curve, one rectangle per recall step."""
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if recall.size == 0:
        return 0.0
    p_interp = np.maximum.accumulate(precision[::-1])[::-1]  # max over j >= i
    steps = np.diff(recall, prepend=0.0)
    return float((steps * p_interp).sum())


def ap_n_points(recall: np.ndarray, precision: np.ndarray, n: int = 11) -> float:
    """n-point interpolated AP: the mean over r in {0, 1/(n-1), ..., 1} of
    ``max(p_j : r_j >= r)``, 0 where recall never reaches r (11: VOC2007, 101: COCO)."""
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    levels = np.linspace(0.0, 1.0, n)
    reached = recall[None, :] >= levels[:, None]  # (n, D)
    best = np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0)
    return float(best.mean())


def average_precision(
    images: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
    method: str = "all",
    rule: str = "voc",
) -> float:
    """AP of one class over images given as ``(det_boxes, det_scores, gt_boxes)`` each:
    match per image, pool the detections, rank by score. ``method`` is ``"all"`` or the
    number of interpolation points (11, 101)."""
    tps, scores, num_gt = [], [], 0
    for det_boxes, det_scores, gt_boxes in images:
        tps.append(match_detections(det_boxes, det_scores, gt_boxes, iou_threshold, rule))
        scores.append(np.asarray(det_scores, dtype=np.float64))
        num_gt += len(gt_boxes)
    recall, precision = precision_recall(np.concatenate(tps), np.concatenate(scores), num_gt)
    if method == "all":
        return ap_all_points(recall, precision)
    return ap_n_points(recall, precision, int(method))
