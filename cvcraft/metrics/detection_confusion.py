"""Detection confusion matrix: which class each gt was detected as, with a background row
and column for misses and false alarms (the matrix ultralytics plots after validation).

Per image: detections with confidence > ``conf_threshold`` are matched to gts regardless of
class by IoU > ``iou_threshold``; each detection keeps its highest-IoU gt, then each gt keeps
its highest-IoU detection among those (ties by lower index). A matched pair adds 1 at
``[gt class, det class]``; an unmatched gt adds 1 at ``[gt class, background]`` (missed); an
unmatched detection at ``[background, det class]`` (false alarm).

Shape (C + 1, C + 1), rows = true class, columns = predicted class, index C = background.
(ultralytics stores the transpose: rows predicted.) Plot it with
``cvcraft.viz.plots.plot_confusion_matrix`` and ``class_names + ["background"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.errors import DataError
from cvcraft.metrics.coco import box_iou_coco


def _flat(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


class DetectionConfusionMatrix:
    """Accumulate the (C+1, C+1) detection confusion matrix image by image."""

    def __init__(
        self, num_classes: int, conf_threshold: float = 0.25, iou_threshold: float = 0.45
    ) -> None:
        self.num_classes = num_classes
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix[:] = 0

    def update(
        self, pred_boxes: Any, pred_scores: Any, pred_labels: Any, gt_boxes: Any, gt_labels: Any
    ) -> None:
        """Add one image: predictions xyxy (D, 4), scores (D,), labels (D,); gts (G, 4), (G,)."""
        c = self.num_classes
        pb = _flat(pred_boxes, np.float64).reshape(-1, 4)
        gb = _flat(gt_boxes, np.float64).reshape(-1, 4)
        ps, pl, gl = (
            _flat(pred_scores, np.float64),
            _flat(pred_labels, np.int64),
            _flat(gt_labels, np.int64),
        )
        for name, lab in (("pred_labels", pl), ("gt_labels", gl)):
            if lab.size and (lab.min() < 0 or lab.max() >= c):
                raise DataError(f"DetectionConfusionMatrix.update: {name} outside [0, {c})")
        keep = ps > self.conf_threshold
        pb, pl = pb[keep], pl[keep]
        gt_match = np.full(len(gb), -1)
        if len(pb) and len(gb):
            to_xywh = lambda b: np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)  # noqa: E731
            iou = box_iou_coco(to_xywh(gb), to_xywh(pb), np.zeros(len(pb), bool))  # (G, D)
            gi, di = np.nonzero(iou > self.iou_threshold)
            order = np.argsort(-iou[gi, di], kind="stable")
            gi, di = gi[order], di[order]
            _, first = np.unique(di, return_index=True)  # each detection: its best gt
            first = np.sort(first)  # back to IoU order
            gi, di = gi[first], di[first]
            _, first = np.unique(gi, return_index=True)  # each gt: its best remaining detection
            gt_match[gi[first]] = di[first]
        hit = gt_match >= 0
        np.add.at(self.matrix, (gl[hit], pl[gt_match[hit]]), 1)
        np.add.at(self.matrix, (gl[~hit], c), 1)
        det_used = np.zeros(len(pb), bool)
        det_used[gt_match[hit]] = True
        np.add.at(self.matrix, (c, pl[~det_used]), 1)

    def compute(self) -> np.ndarray:
        """A copy of the (C+1, C+1) counts, rows true, columns predicted, last = background."""
        return self.matrix.copy()


__all__ = ["DetectionConfusionMatrix"]
