"""Panoptic quality (PQ = SQ x RQ) per class and overall, as panopticapi's ``pq_compute``.

Kirillov et al., "Panoptic Segmentation" (2019). A predicted and a ground-truth segment of
the same category *match* when their IoU > 0.5 (so a match is unique). Per category,

    PQ = sum_{TP} IoU / (TP + FP/2 + FN/2),   SQ = sum_{TP} IoU / TP,   RQ = TP / (TP + FP/2 + FN/2)

and the overall numbers are means over the categories that have any TP, FP or FN ("All",
and split into "Things" / "Stuff"). panopticapi's details, kept exactly:

- id 0 is VOID. The IoU's union leaves out the prediction's pixels on VOID:
  ``union = area_pred + area_gt - inter - |pred on VOID|``; gt area is its ``area`` field.
- Crowd gts (``iscrowd``) are never matched and never false negatives.
- An unmatched prediction is not a false positive when more than half of it lies on VOID
  plus the crowd region of its own category (the image's last crowd segment of it).

Inputs per image: ``gt`` and ``pred`` segment-id maps (H, W) int (``rgb_to_id`` turns a
panoptic PNG into one), and their segments: dicts ``id``, ``category_id``, ``iscrowd``
(gt), ``area`` (gt, optional: the pixel count by default). One image is handled with a
single ``np.unique`` over ``gt * 2**24 + pred`` (the (gt, pred) intersection table).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.coco import _load_json

VOID = 0
OFFSET = 1 << 24  # ids are < 2**24 (three 8-bit PNG channels)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Panoptic PNG (H, W, 3) uint8 -> segment ids (H, W) int64: ``R + 256 G + 256^2 B``."""
    c = np.asarray(rgb).astype(np.int64)
    if c.ndim != 3 or c.shape[2] != 3:
        raise DataError(f"a panoptic PNG must be (H, W, 3) RGB, got shape {c.shape}")
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def _segments(segments: Sequence[dict], what: str, image: str) -> dict[str, np.ndarray]:
    try:
        ids = np.array([int(s["id"]) for s in segments], np.int64)
        cats = np.array([int(s["category_id"]) for s in segments], np.int64)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{image}: every {what} segment needs 'id' and 'category_id' ({e})"
        ) from None
    crowd = np.array([bool(s.get("iscrowd", 0)) for s in segments], bool)
    area = np.array([float(s.get("area", -1)) for s in segments], np.float64)
    if (ids == VOID).any() or (ids < 0).any() or (ids >= OFFSET).any():
        raise DataError(f"{image}: {what} segment ids must be in [1, 2**24) (0 is VOID)")
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{image}: {what} segment ids repeat; each segment needs its own id")
    return {"id": ids, "cat": cats, "crowd": crowd, "area": area}


class PanopticEvaluator:
    """Accumulate per-category TP, FP, FN and matched-IoU sums image by image; ``compute()``
    gives PQ/SQ/RQ for All, Things and Stuff plus per class.

    ``categories``: dicts ``id`` and ``isthing`` (COCO panoptic's ``categories`` list).
    """

    def __init__(self, categories: Sequence[dict]) -> None:
        try:
            self.category_ids = np.array([int(c["id"]) for c in categories], np.int64)
            self.isthing = np.array([bool(c.get("isthing", 0)) for c in categories], bool)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"panoptic categories need 'id' (and 'isthing'): {e}") from None
        self.names = [str(c.get("name", c["id"])) for c in categories]
        self._order = np.argsort(self.category_ids, kind="stable")
        self.reset()

    def reset(self) -> None:
        k = len(self.category_ids)
        self.tp, self.fp, self.fn = (np.zeros(k, np.int64) for _ in range(3))
        self.iou = np.zeros(k, np.float64)

    def _cat_index(self, cats: np.ndarray, image: str, what: str) -> np.ndarray:
        sorted_ids = self.category_ids[self._order]
        pos = np.searchsorted(sorted_ids, cats).clip(max=max(len(sorted_ids) - 1, 0))
        bad = sorted_ids[pos] != cats if len(sorted_ids) else np.ones(len(cats), bool)
        if bad.any():
            raise DataError(
                f"{image}: {what} segment has category_id {int(cats[np.argmax(bad)])}, which is "
                "not in the categories list"
            )
        return self._order[pos]

    def update(
        self,
        gt: np.ndarray,
        gt_segments: Sequence[dict],
        pred: np.ndarray,
        pred_segments: Sequence[dict],
        image: str = "image",
    ) -> None:
        """Add one image: id maps (H, W) and their segments (see the module docstring)."""
        gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
        if gt.shape != pred.shape or gt.ndim != 2:
            raise DataError(
                f"{image}: gt and prediction id maps must be (H, W) of one size, got "
                f"{gt.shape} and {pred.shape}"
            )
        g, p = _segments(gt_segments, "gt", image), _segments(pred_segments, "predicted", image)
        g_cat = self._cat_index(g["cat"], image, "a gt")
        p_cat = self._cat_index(p["cat"], image, "a predicted")
        ng, npred = len(g["id"]), len(p["id"])

        # Prediction areas from the map; every labelled pixel must belong to a listed segment.
        labels, counts = np.unique(pred, return_counts=True)
        p_sort = np.argsort(p["id"])
        at = np.searchsorted(p["id"][p_sort], labels).clip(max=max(npred - 1, 0))
        known = (p["id"][p_sort][at] == labels) if npred else np.zeros(len(labels), bool)
        stray = ~known & (labels != VOID)
        if stray.any():
            raise DataError(
                f"{image}: segment id {int(labels[np.argmax(stray)])} is in the predicted map "
                "but not in its segments list"
            )
        p_area = np.zeros(npred, np.float64)
        p_area[p_sort[at[known]]] = counts[known]
        if (p_area == 0).any():
            raise DataError(
                f"{image}: predicted segment id {int(p['id'][np.argmax(p_area == 0)])} is listed "
                "but has no pixel in the predicted map"
            )

        # The (gt, pred) intersection table; index -1 = VOID or an id not listed.
        pairs, inter = np.unique(gt * OFFSET + pred, return_counts=True)
        gi = _index_of(g["id"], pairs // OFFSET)
        pi = _index_of(p["id"], pairs % OFFSET)
        inter = inter.astype(np.float64)
        void_inter = np.zeros(npred, np.float64)  # prediction pixels on gt VOID
        on_void = (pairs // OFFSET == VOID) & (pi >= 0)
        void_inter[pi[on_void]] = inter[on_void]
        g_area = np.where(g["area"] >= 0, g["area"], 0.0)
        if (g["area"] < 0).any():  # no 'area' field: count the pixels
            g_ids, g_counts = np.unique(gt, return_counts=True)
            idx = _index_of(g["id"], g_ids)
            px = np.zeros(ng, np.float64)
            px[idx[idx >= 0]] = g_counts[idx >= 0]
            g_area = np.where(g["area"] >= 0, g["area"], px)

        # Matches: same category, non-crowd gt, IoU > 0.5.
        cand = (gi >= 0) & (pi >= 0)
        gi_c, pi_c, in_c = gi[cand], pi[cand], inter[cand]
        ok = ~g["crowd"][gi_c] & (g_cat[gi_c] == p_cat[pi_c])
        gi_c, pi_c, in_c = gi_c[ok], pi_c[ok], in_c[ok]
        union = p_area[pi_c] + g_area[gi_c] - in_c - void_inter[pi_c]
        iou = in_c / union
        hit = iou > 0.5
        k = len(self.category_ids)
        self.tp += np.bincount(g_cat[gi_c[hit]], minlength=k)
        self.iou += np.bincount(g_cat[gi_c[hit]], weights=iou[hit], minlength=k)
        g_matched = np.zeros(ng, bool)
        g_matched[gi_c[hit]] = True
        p_matched = np.zeros(npred, bool)
        p_matched[pi_c[hit]] = True

        # False negatives: unmatched non-crowd gts.
        self.fn += np.bincount(g_cat[~g_matched & ~g["crowd"]], minlength=k)

        # False positives: unmatched predictions not mostly on VOID + their category's crowd.
        crowd_of_cat = np.full(k, -1, np.int64)  # the last unmatched crowd gt of each category
        crowd_idx = np.flatnonzero(g["crowd"] & ~g_matched)
        np.maximum.at(crowd_of_cat, g_cat[crowd_idx], crowd_idx)
        on_crowd = np.zeros(npred, np.float64)
        both = (gi >= 0) & (pi >= 0)
        gb, pb = gi[both], pi[both]
        own_crowd = crowd_of_cat[p_cat[pb]] == gb
        on_crowd[pb[own_crowd]] = inter[both][own_crowd]
        ignored = (void_inter + on_crowd) / p_area > 0.5
        self.fp += np.bincount(p_cat[~p_matched & ~ignored], minlength=k)

    def compute(self) -> dict[str, Any]:
        """``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": [...]}``; a
        category without TP, FP or FN is left out of the means (and reports 0)."""
        tp, fp, fn, iou = (x.astype(np.float64) for x in (self.tp, self.fp, self.fn, self.iou))
        denom = tp + 0.5 * fp + 0.5 * fn
        present = denom > 0
        safe = np.where(present, denom, 1.0)
        pq = np.where(present, iou / safe, 0.0)
        sq = np.where(tp > 0, iou / np.where(tp > 0, tp, 1.0), 0.0)
        rq = np.where(present, tp / safe, 0.0)
        out: dict[str, Any] = {}
        for name, sel in (("All", None), ("Things", self.isthing), ("Stuff", ~self.isthing)):
            use = present if sel is None else present & sel
            n = int(use.sum())
            out[name] = {
                "pq": float(pq[use].sum() / n) if n else 0.0,
                "sq": float(sq[use].sum() / n) if n else 0.0,
                "rq": float(rq[use].sum() / n) if n else 0.0,
                "n": n,
            }
        out["per_class"] = [
            {"category_id": int(c), "name": nm, "isthing": bool(t), "pq": float(a),
             "sq": float(b), "rq": float(r), "tp": int(x), "fp": int(y), "fn": int(z)}
            for c, nm, t, a, b, r, x, y, z in zip(
                self.category_ids, self.names, self.isthing, pq, sq, rq,
                self.tp, self.fp, self.fn,
            )
        ]  # fmt: skip
        return out


def _read_png_ids(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DataError(f"panoptic PNG {path} does not exist (named by 'file_name' in the JSON)")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return rgb_to_id(rgb)


def evaluate_panoptic_files(
    gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path
) -> dict[str, Any]:
    """PQ of COCO panoptic predictions: JSONs with ``annotations`` (``image_id``,
    ``file_name`` of the PNG, ``segments_info``) and ``categories``, PNGs in the folders.
    Every gt image needs a prediction (as panopticapi)."""
    gt = _load_json(gt_json, "panoptic ground-truth")
    pred = _load_json(pred_json, "panoptic prediction")
    for data, src in ((gt, gt_json), (pred, pred_json)):
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise DataError(f"{src}: expected a COCO panoptic object with an 'annotations' list")
    if not isinstance(gt.get("categories"), list):
        raise DataError(f"{gt_json}: missing the 'categories' list of a COCO panoptic file")
    ev = PanopticEvaluator(gt["categories"])
    preds = {a.get("image_id"): a for a in pred["annotations"] if isinstance(a, dict)}
    for g in gt["annotations"]:
        image_id = g.get("image_id")
        if image_id not in preds:
            raise DataError(f"{pred_json}: no prediction for image_id {image_id!r}")
        p = preds[image_id]
        for ann, src in ((g, gt_json), (p, pred_json)):
            if "file_name" not in ann or not isinstance(ann.get("segments_info"), list):
                raise DataError(
                    f"{src}: annotation of image_id {image_id!r} needs 'file_name' and a "
                    "'segments_info' list"
                )
        ev.update(
            _read_png_ids(Path(gt_dir) / g["file_name"]),
            g["segments_info"],
            _read_png_ids(Path(pred_dir) / p["file_name"]),
            p["segments_info"],
            image=f"{pred_json}: image_id {image_id}",
        )
    return ev.compute()


PANOPTIC_KEYS = {
    "gt": "COCO panoptic ground-truth JSON",
    "gt_dir": "folder of the ground-truth panoptic PNGs",
    "pred": "COCO panoptic prediction JSON",
    "pred_dir": "folder of the predicted panoptic PNGs",
}


def run_panoptic_eval(args: dict[str, Any]) -> dict[str, Any]:
    """``cvcraft eval panoptic gt= gt_dir= pred= pred_dir=``: prints PQ/SQ/RQ (All, Things,
    Stuff) as JSON and returns the full result."""
    missing = [k for k in PANOPTIC_KEYS if not args.get(k)]
    if missing:
        raise ConfigError(f"eval panoptic needs {', '.join(k + '=' for k in missing)}")
    res = evaluate_panoptic_files(args["gt"], args["gt_dir"], args["pred"], args["pred_dir"])
    print(json.dumps({k: res[k] for k in ("All", "Things", "Stuff")}))
    return res


def _index_of(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``ids`` (unsorted, unique), -1 where absent."""
    if len(ids) == 0:
        return np.full(len(values), -1, np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], values).clip(max=len(ids) - 1)
    return np.where(ids[order][pos] == values, order[pos], -1)


__all__ = [
    "OFFSET",
    "PANOPTIC_KEYS",
    "VOID",
    "PanopticEvaluator",
    "evaluate_panoptic_files",
    "rgb_to_id",
    "run_panoptic_eval",
]
