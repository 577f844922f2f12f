"""COCO keypoint evaluation: object keypoint similarity (OKS) and OKS AP/AR (the 10 numbers of
``COCOeval(iouType="keypoints").summarize``), on the vectorised COCO matcher of
``cvcraft.metrics.coco`` with OKS in place of box IoU.

OKS between a detection d and a ground truth g with area s and per-keypoint sigmas k_i:
    OKS = mean over g's labelled keypoints (v_i > 0) of exp(-d_i^2 / (2 s (2 k_i)^2)),
d_i the distance of keypoint i. A gt with no labelled keypoint measures each detected point's
distance to the gt box enlarged by its size on every side (pycocotools' rule), averaged over
all K. The rest follows pycocotools: a gt with ``num_keypoints == 0`` or ``iscrowd`` is ignored,
area ranges are all / medium / large on the gt ``area``, a detection's area is that of its
keypoints' extent, at most 20 detections per image, OKS thresholds 0.50:0.05:0.95.

Shapes: keypoints (N, K, 3) as (x, y, v); ``oks`` (D, K, 3) x (G, K, 3) -> (D, G).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.errors import DataError
from cvcraft.metrics.coco import IOU_THRESHOLDS, _load_json, _lookup, evaluate_arrays

# COCO's 17 keypoint sigmas (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
                        1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10.0  # fmt: skip
KPT_AREA_RANGES = np.array([[0, 1e5**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=float)
KPT_MAX_DETS = (20,)
KPT_SUMMARY_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _oks(dk: np.ndarray, gk: np.ndarray, area: np.ndarray, box: np.ndarray, sigmas: np.ndarray
         ) -> np.ndarray:  # fmt: skip
    """OKS of broadcastable pairs: dk (..., K, 2+), gk (..., K, 3), area (...), box (..., 4)
    xywh -> (...)."""
    var = (2 * sigmas) ** 2  # (K,)
    xd, yd = dk[..., 0], dk[..., 1]
    dx, dy = xd - gk[..., 0], yd - gk[..., 1]  # (..., K)
    labelled = gk[..., 2] > 0
    none = (labelled.sum(-1) == 0)[..., None]  # gts without labelled keypoints: box distance
    x0, x1 = box[..., 0] - box[..., 2], box[..., 0] + 2 * box[..., 2]
    y0, y1 = box[..., 1] - box[..., 3], box[..., 1] + 2 * box[..., 3]
    ox = np.maximum(0, x0[..., None] - xd) + np.maximum(0, xd - x1[..., None])
    oy = np.maximum(0, y0[..., None] - yd) + np.maximum(0, yd - y1[..., None])
    dx, dy = np.where(none, ox, dx), np.where(none, oy, dy)
    e = (dx**2 + dy**2) / var / (area[..., None] + np.spacing(1)) / 2
    use = none | labelled
    return np.where(use, np.exp(-e), 0.0).sum(-1) / use.sum(-1)


def oks(
    det: np.ndarray,
    gt: np.ndarray,
    gt_area: np.ndarray,
    gt_box: np.ndarray | None = None,
    sigmas: np.ndarray = COCO_SIGMAS,
) -> np.ndarray:
    """Object keypoint similarity of every detection with every gt. (D, K, 2+) x (G, K, 3)
    -> (D, G). ``gt_box`` (G, 4) xywh matters only for gts without labelled keypoints."""
    det, gt = np.asarray(det, np.float64), np.asarray(gt, np.float64)
    sig = np.asarray(sigmas, np.float64)
    if det.ndim != 3 or gt.ndim != 3 or det.shape[1] != gt.shape[1] or gt.shape[1] != len(sig):
        raise DataError(
            f"oks needs det (D, K, 2+) and gt (G, K, 3) with K = {len(sig)} sigmas, got "
            f"{det.shape} and {gt.shape}"
        )
    box = np.zeros((len(gt), 4)) if gt_box is None else np.asarray(gt_box, np.float64)
    area = np.asarray(gt_area, np.float64)
    return _oks(det[:, None], gt[None], area[None], box[None], sig)


def keypoint_extent(kpts: np.ndarray) -> np.ndarray:
    """The xywh box spanned by every keypoint (all K, as pycocotools' loadRes). (N, K, 2+)
    -> (N, 4)."""
    x, y = kpts[..., 0], kpts[..., 1]
    x0, y0 = x.min(-1), y.min(-1)
    return np.stack([x0, y0, x.max(-1) - x0, y.max(-1) - y0], -1)


def summarize_keypoints(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 10 keypoint numbers from (T, R, K, A=3, M=1) precision and (T, K, A, M) recall."""

    def mean(x: np.ndarray) -> float:
        v = x[x > -1]
        return float(v.mean()) if v.size else -1.0

    return {
        "AP": mean(precision[..., 0, 0]),
        "AP50": mean(precision[0, ..., 0, 0]),
        "AP75": mean(precision[5, ..., 0, 0]),
        "APm": mean(precision[..., 1, 0]),
        "APl": mean(precision[..., 2, 0]),
        "AR": mean(recall[..., 0, 0]),
        "AR50": mean(recall[0, :, 0, 0]),
        "AR75": mean(recall[5, :, 0, 0]),
        "ARm": mean(recall[..., 1, 0]),
        "ARl": mean(recall[..., 2, 0]),
    }


class COCOKeypointEvaluator:
    """Accumulate keypoint detections, then ``compute()`` COCO's 10 keypoint numbers (plus
    ``map`` = AP and ``map50`` = AP50).

    ``gt``: a COCO person-keypoints dict or JSON path (annotations with ``keypoints``
    [x, y, v] * K, ``num_keypoints``, ``area``, ``bbox``, ``iscrowd``). ``update`` takes COCO
    result dicts (``image_id``, ``category_id``, ``keypoints``, ``score``) or per-image dicts
    ``{"image_id", "keypoints" (N, K, 2+), "scores" (N,)[, "labels" (N,) category ranks]}``.
    State: the detections (``state_dict``/``merge`` gather them across processes).
    """

    def __init__(self, gt: dict | str | Path, sigmas: np.ndarray | None = None) -> None:
        source = str(gt) if isinstance(gt, (str, Path)) else "ground-truth dict"
        data = _load_json(gt, "ground-truth") if isinstance(gt, (str, Path)) else gt
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
                raise DataError(f"{source}: missing the {key!r} list of a COCO keypoints file")
        self.source = source
        self.image_ids = np.unique([int(im["id"]) for im in data["images"]]).astype(np.int64)
        self.category_ids = np.sort([int(c["id"]) for c in data["categories"]]).astype(np.int64)
        anns = data["annotations"]
        k = len(sigmas) if sigmas is not None else None
        rows = []
        for i, a in enumerate(anns):
            kp = np.asarray(a.get("keypoints", []), np.float64)
            if k is None:
                k = len(kp) // 3
            if kp.size != 3 * k or k == 0:
                raise DataError(
                    f"{source}: annotation {i} (id {a.get('id')}) has {kp.size // 3} keypoints "
                    f"where the skeleton has {k}; every annotation needs [x, y, v] * {k}"
                )
            rows.append(kp.reshape(k, 3))
        self.num_keypoints = int(k or 0)
        self.sigmas = np.asarray(sigmas if sigmas is not None else COCO_SIGMAS, np.float64)
        if len(self.sigmas) != self.num_keypoints and anns:
            raise DataError(
                f"{source}: {self.num_keypoints} keypoints per person but {len(self.sigmas)} "
                "OKS sigmas; pass sigmas= for a non-COCO skeleton"
            )
        self._gt_kpts = np.stack(rows) if rows else np.zeros((0, self.num_keypoints, 3))
        self._gt_img = _lookup(self.image_ids, np.array([a["image_id"] for a in anns], np.int64))
        self._gt_cat = _lookup(
            self.category_ids, np.array([a["category_id"] for a in anns], np.int64)
        )
        if (self._gt_img < 0).any() or (self._gt_cat < 0).any():
            raise DataError(f"{source}: an annotation names an image or category not listed")
        self._gt_area = np.array([float(a["area"]) for a in anns], np.float64)
        self._gt_box = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        self._gt_id = np.array([int(a["id"]) for a in anns], np.int64)
        # pycocotools: crowd or no labelled keypoint (num_keypoints == 0) -> ignored
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        self._gt_crowd = crowd
        self._gt_ignore_flag = crowd | np.array(
            [int(a.get("num_keypoints", 1)) == 0 for a in anns], dtype=bool
        )
        self.reset()

    def reset(self) -> None:
        self._img: list[np.ndarray] = []
        self._cat: list[np.ndarray] = []
        self._kpts: list[np.ndarray] = []
        self._score: list[np.ndarray] = []

    def _add(self, img_ids, cat_ids, kpts, scores, source: str) -> None:
        img = _lookup(self.image_ids, np.asarray(img_ids, np.int64))
        if (img < 0).any():
            raise DataError(
                f"{source}: image_id {int(np.asarray(img_ids)[np.argmax(img < 0)])} is not in "
                f"the ground truth {self.source}"
            )
        cat = _lookup(self.category_ids, np.asarray(cat_ids, np.int64))
        kp = np.asarray(kpts, np.float64)
        if kp.ndim != 3 or kp.shape[1] != self.num_keypoints:
            raise DataError(
                f"{source}: detections have keypoints of shape {kp.shape}; the skeleton has "
                f"{self.num_keypoints} keypoints (N, {self.num_keypoints}, 3)"
            )
        known = cat >= 0
        self._img.append(img[known])
        self._cat.append(cat[known])
        self._kpts.append(kp[known, :, :2])
        self._score.append(np.asarray(scores, np.float64)[known])

    def update(self, predictions: Sequence[dict], source: str = "predictions") -> None:
        """Add COCO keypoint results, or per-image ``keypoints``/``scores`` dicts."""
        predictions = list(predictions)
        if not predictions:
            return
        if "scores" not in predictions[0]:  # COCO results: one dict per detection
            kp = [np.asarray(p["keypoints"], np.float64) for p in predictions]
            if any(k.size != 3 * self.num_keypoints for k in kp):
                raise DataError(
                    f"{source}: a result has a keypoint list whose length is not "
                    f"3 x {self.num_keypoints}"
                )
            self._add([p["image_id"] for p in predictions],
                      [p["category_id"] for p in predictions],
                      np.stack(kp).reshape(len(kp), -1, 3),
                      [p["score"] for p in predictions], source)  # fmt: skip
            return
        for p in predictions:
            kp = np.asarray(p["keypoints"], np.float64)
            n = len(kp)
            labels = np.asarray(p.get("labels", np.zeros(n, np.int64)), np.int64).reshape(-1)
            self._add(np.full(n, int(p["image_id"])), self.category_ids[labels],
                      kp.reshape(n, self.num_keypoints, -1), p["scores"], source)  # fmt: skip

    def state_dict(self) -> dict[str, np.ndarray]:
        img, cat, kp, score = self._detections()
        return {"image_id": self.image_ids[img], "category_id": self.category_ids[cat],
                "keypoints": kp, "score": score}  # fmt: skip

    def merge(self, state: dict[str, np.ndarray]) -> None:
        kp = np.asarray(state["keypoints"], np.float64).reshape(-1, self.num_keypoints, 2)
        self._add(state["image_id"], state["category_id"], kp, state["score"], "merged state")

    def _detections(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._img:
            k = self.num_keypoints
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, k, 2)), np.zeros(0)
        return (np.concatenate(self._img), np.concatenate(self._cat),
                np.concatenate(self._kpts), np.concatenate(self._score))  # fmt: skip

    def compute(self) -> dict[str, Any]:
        img, cat, kp, score = self._detections()
        gt_kpts, gt_area, gt_box = self._gt_kpts, self._gt_area, self._gt_box

        def similarity(d: np.ndarray, g: np.ndarray) -> np.ndarray:
            # d (n,), g (n, Gp): each detection against the gts of its (image, category)
            return _oks(kp[d][:, None], gt_kpts[g], gt_area[g], gt_box[g], self.sigmas)

        extent = keypoint_extent(kp) if len(kp) else np.zeros((0, 4))
        precision, recall = evaluate_arrays(
            self._gt_img, self._gt_cat, gt_box, gt_area, self._gt_crowd, self._gt_id,
            img, cat, extent, score, num_categories=len(self.category_ids),
            similarity=similarity, area_ranges=KPT_AREA_RANGES, max_dets=KPT_MAX_DETS,
            gt_flagged=self._gt_ignore_flag,
        )  # fmt: skip
        out: dict[str, Any] = summarize_keypoints(precision, recall)
        out["map"], out["map50"] = out["AP"], out["AP50"]
        out["iou_thresholds"] = IOU_THRESHOLDS.copy()
        return out


def pck_hits(
    pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, alpha: float = 0.2
) -> tuple[int, int]:
    """Percentage of correct keypoints, as (hits, labelled): a labelled keypoint (v > 0) is
    correct when |pred - gt| <= alpha * norm of its person (PCK@0.2 with the torso diameter
    as norm, PCKh@0.5 with the head size). People with norm <= 0 are left out.
    (N, K, 2+) x (N, K, 3) x (N,) -> two counts; PCK = hits / labelled."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    norm = np.asarray(norm, np.float64)
    if pred.shape[:2] != gt.shape[:2] or len(norm) != len(gt):
        raise DataError(f"pck: pred {pred.shape}, gt {gt.shape} and norm {norm.shape} disagree")
    lab = (gt[..., 2] > 0) & (norm[:, None] > 0)
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    return int((lab & (dist <= alpha * norm[:, None])).sum()), int(lab.sum())
