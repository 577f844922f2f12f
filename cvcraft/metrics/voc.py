"""PASCAL VOC detection AP: per-class AP at one IoU threshold (0.5), with "difficult" gts
ignored, and the mean over classes (mAP).

Matching (VOC devkit rule, vectorized per image): each detection is compared with the gts of
its class in its image and takes the one of highest IoU (first on ties). If that IoU >=
``iou_threshold`` (the devkit uses ``>``; ``>=`` here, as COCO) the detection is a TP when it
is the highest-scored detection to take that gt, a FP when a higher-scored one already did,
and ignored (neither) when the gt is difficult. Otherwise it is a FP. Unlike COCO, a
detection whose best gt is taken is not offered its second-best gt.

AP from the precision/recall curve (detections sorted by score, stable):

- ``"area"`` (VOC2010+): area under the precision envelope, ``sum (r_i - r_{i-1}) p_env(r_i)``.
- ``"11point"`` (VOC2007): mean over r in {0, 0.1, ..., 1} of ``max(p | recall >= r)``.
- ``"101point"``: the same at 101 points, COCO's interpolation. VOC matching + 101 points
  equals pycocotools' AP50 when no crowd gt exists, no detection has IoU >= 0.5 with two gts
  of its class, and no image has over 100 detections of a class (the test checks this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.coco import box_iou_coco

AP_METHODS = ("area", "11point", "101point")


def interpolated_ap(recall: np.ndarray, precision: np.ndarray, points: int) -> float:
    """Mean over ``points`` evenly spaced recall levels r of ``max(precision[recall >= r])``
    (0 when recall never reaches r). ``recall`` (N,) must be non-decreasing."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.size == 0:
        return 0.0
    env = np.maximum.accumulate(precision[::-1])[::-1]  # max over the suffix
    levels = np.linspace(0.0, 1.0, points)
    idx = np.searchsorted(recall, levels, side="left")  # first index with recall >= r
    return float(np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0).mean())


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07: bool = False) -> float:
    """VOC AP of a precision/recall curve (N,), (N,): 11-point (VOC2007) when ``use_07``,
    else the area under the monotone precision envelope (VOC2010+)."""
    if use_07:
        return interpolated_ap(recall, precision, 11)
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def match_voc(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_difficult: np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """VOC TP/FP flags of one image's detections (see module docstring).

    Boxes xyxy (D, 4) and (G, 4). Returns ``tp``, ``fp`` bool (D,); both False = ignored.
    """
    pb = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    gb = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    d, g = len(pb), len(gb)
    difficult = (
        np.zeros(g, bool) if gt_difficult is None else np.asarray(gt_difficult, bool).reshape(-1)
    )
    if g == 0 or d == 0:
        return np.zeros(d, bool), np.ones(d, bool)
    to_xywh = lambda b: np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)  # noqa: E731
    iou = box_iou_coco(to_xywh(pb), to_xywh(gb), np.zeros(g, bool))  # (D, G)
    same = np.asarray(pred_labels).reshape(-1, 1) == np.asarray(gt_labels).reshape(1, -1)
    ov = np.where(same, iou, -1.0)
    best = np.argmax(ov, axis=1)  # first on ties, as the devkit
    hit = ov[np.arange(d), best] >= iou_threshold
    order = np.argsort(-np.asarray(pred_scores, np.float64), kind="stable")
    # Among hits on a non-difficult gt, the first in score order takes it.
    takes = hit & ~difficult[best]
    ranked = np.flatnonzero(takes[order])
    _, first = np.unique(best[order][ranked], return_index=True)
    tp = np.zeros(d, bool)
    tp[order[ranked[first]]] = True
    fp = ~hit | (takes & ~tp)
    return tp, fp


class VOCEvaluator:
    """Accumulate VOC detections image by image; ``compute()`` -> per-class AP and mAP.

    ``update(pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, gt_difficult)`` per
    image, boxes xyxy, labels in [0, num_classes). Classes without a non-difficult gt have
    AP NaN and are left out of the mean.
    """

    def __init__(
        self,
        num_classes: int,
        iou_threshold: float = 0.5,
        method: str = "area",
        class_names: Sequence[str] | None = None,
    ) -> None:
        if method not in AP_METHODS:
            raise ConfigError(f"VOCEvaluator method={method!r}; use one of {AP_METHODS}")
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.method = method
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        self.reset()

    def reset(self) -> None:
        """Forget all images."""
        self._labels: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._tp: list[np.ndarray] = []
        self._fp: list[np.ndarray] = []
        self._npos = np.zeros(self.num_classes, np.int64)

    def update(
        self,
        pred_boxes: Any,
        pred_scores: Any,
        pred_labels: Any,
        gt_boxes: Any,
        gt_labels: Any,
        gt_difficult: Any = None,
    ) -> None:
        """Add one image (numpy arrays or tensors)."""
        pl = _np(pred_labels, np.int64)
        gl = _np(gt_labels, np.int64)
        for name, lab in (("pred_labels", pl), ("gt_labels", gl)):
            if lab.size and (lab.min() < 0 or lab.max() >= self.num_classes):
                raise DataError(f"VOCEvaluator.update: {name} outside [0, {self.num_classes})")
        diff = None if gt_difficult is None else _np(gt_difficult, bool)
        ps = _np(pred_scores, np.float64)
        pb, gb = (
            _np(pred_boxes, np.float64).reshape(-1, 4),
            _np(gt_boxes, np.float64).reshape(-1, 4),
        )
        tp, fp = match_voc(pb, ps, pl, gb, gl, diff, self.iou_threshold)
        keep = tp | fp  # detections on difficult gts count for nothing
        self._labels.append(pl[keep])
        self._scores.append(ps[keep])
        self._tp.append(tp[keep])
        self._fp.append(fp[keep])
        counted = gl if diff is None else gl[~diff]
        self._npos += np.bincount(counted, minlength=self.num_classes)

    def compute(self) -> dict[str, Any]:
        """``{"mAP", "AP" (C,) array, "per_class": [{"name", "AP", "num_gt"}], "curves"}``;
        ``curves[c]`` is (recall, precision) of class c."""
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
        labels, scores = cat(self._labels, np.int64), cat(self._scores, np.float64)
        tp, fp = cat(self._tp, bool), cat(self._fp, bool)
        order = np.lexsort((-scores, labels))  # by class, then score desc (stable)
        labels, tp, fp = labels[order], tp[order], fp[order]
        bounds = np.searchsorted(labels, np.arange(self.num_classes + 1))
        ap = np.full(self.num_classes, np.nan)
        curves = []
        for c in range(self.num_classes):  # one curve per class
            s = slice(bounds[c], bounds[c + 1])
            tps, fps = np.cumsum(tp[s]), np.cumsum(fp[s])
            rec = tps / max(self._npos[c], 1)
            prec = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
            curves.append((rec, prec))
            if self._npos[c] == 0:
                continue
            if self.method == "area":
                ap[c] = voc_ap(rec, prec)
            else:
                ap[c] = interpolated_ap(rec, prec, 11 if self.method == "11point" else 101)
        valid = ~np.isnan(ap)
        return {
            "mAP": float(ap[valid].mean()) if valid.any() else float("nan"),
            "AP": ap,
            "per_class": [
                {"name": n, "AP": float(a), "num_gt": int(k)}
                for n, a, k in zip(self.class_names, ap, self._npos)
            ],
            "curves": curves,
        }


def _np(x: Any, dtype: Any) -> np.ndarray:
    """Tensor or array-like -> flat numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


__all__ = ["AP_METHODS", "VOCEvaluator", "interpolated_ap", "match_voc", "voc_ap"]
