"""COCO box and mask evaluation (the 12 numbers of ``COCOeval.summarize``), vectorized.

Why our own: pycocotools matches detections in a Python triple loop (threshold x detection x
ground truth) per image, category and area range. Here the greedy matching runs once per
*detection rank*, for all (image, category) groups, area ranges and IoU thresholds at once,
and accumulation is a handful of segmented array operations. The numbers equal pycocotools'
``COCOeval(iouType="bbox")`` (tests check 1e-4; in practice ~1e-12), and with
``iou_type="segm"`` those of ``COCOeval(iouType="segm")``: IoU of masks (``mask_iou``, on
run-length intervals; polygons rasterized pixel-identically to pycocotools), a detection's
area = its mask's pixel count, a gt's area = its ``area`` field, as pycocotools.

COCO's semantics, replicated exactly:

- IoU = inter / union (boxes xywh, or masks) in float64; for a crowd gt, IoU = inter /
  detection area.
- A gt is *ignored* when it is a crowd or its ``area`` field is outside the area range
  (inclusive bounds). Detections are taken per image and category in descending score (stable
  sort, ties keep input order), at most ``maxDets`` of them.
- Greedy matching, per IoU threshold t: a detection takes the unmatched non-ignored gt of
  highest IoU >= t (ties -> the later gt); failing that, an ignored gt the same way. Crowd gts
  may be matched any number of times. A detection matched to an ignored gt, or unmatched and
  outside the area range (by its box area), is ignored: neither TP nor FP.
- Per category: detections of all images sorted by score (ties: image id, then rank),
  precision envelope (running max from the right), precision sampled at 101 recall points
  (the first detection reaching recall r; 0 if never reached). Recall = final recall.
- -1 marks an undefined entry (a category without non-ignored gt); means average the others.
- pycocotools treats a match with a gt whose ``id`` is 0 as no match (it stores matched ids
  and tests them for truth); that quirk is kept so the numbers agree on such files too.

Shapes: ``precision`` (T=10, R=101, K, A=4, M=3), ``recall`` (T, K, A, M), with A = (all,
small, medium, large) and M = maxDets (1, 10, 100), as pycocotools' ``eval`` dict.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.mask_iou import MaskRuns, mask_iou_pairs

# The same constructions as pycocotools' Params so float comparisons see identical values.
IOU_TYPES = ("bbox", "segm")
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = np.array([[0, 1e5**2], [0, 32**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=float)
AREA_NAMES = ("all", "small", "medium", "large")
SUMMARY_KEYS = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
# The same 12 numbers under the names train/val write to metrics.json (and eval prints).
METRIC_NAMES = dict(zip(SUMMARY_KEYS, ("map", "map50", "map75", "map_small", "map_medium",
                                       "map_large", "mar1", "mar10", "mar100", "mar_small",
                                       "mar_medium", "mar_large")))  # fmt: skip


def _fail(source: str, section: str, index: int, problem: str) -> DataError:
    return DataError(
        f"{source}: {section}[{index}] {problem}; fix that entry (COCO bbox format: "
        "'bbox' = [x, y, width, height] in pixels)"
    )


def _column(entries: list[Any], key: str, source: str, section: str, dtype: Any) -> np.ndarray:
    """``entries[i][key]`` for all i as an array; on any problem, name the first bad entry."""
    try:
        out = np.array([e[key] for e in entries], dtype=dtype)
        if out.ndim == 1 and (dtype is not float or np.isfinite(out).all()):
            return out
    except (KeyError, TypeError, ValueError, OverflowError):
        pass
    for i, e in enumerate(entries):  # slow path, only to build the error message
        if not isinstance(e, dict):
            raise _fail(source, section, i, f"is a {type(e).__name__}, not an object")
        if key not in e:
            raise _fail(source, section, i, f"has no {key!r} key")
        try:
            v = np.array(e[key], dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            raise _fail(source, section, i, f"has {key}={e[key]!r}, not a number") from None
        if v.ndim != 0 or (dtype is float and not np.isfinite(v)):
            raise _fail(source, section, i, f"has {key}={e[key]!r}, not a finite number")
    raise DataError(f"{source}: cannot read {section}[*][{key!r}]")  # pragma: no cover


def _bboxes(entries: list[Any], source: str, section: str) -> np.ndarray:
    """(N, 4) float64 xywh from ``entries[i]["bbox"]``, checked finite with w, h >= 0."""
    if not entries:  # a split without objects (background-only images) is valid
        return np.zeros((0, 4), np.float64)
    try:
        out = np.array([e["bbox"] for e in entries], dtype=np.float64).reshape(len(entries), -1)
    except (KeyError, TypeError, ValueError):
        out = None
    if out is not None and out.shape[1] == 4 and np.isfinite(out).all() and (out[:, 2:] >= 0).all():
        return out
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "bbox" not in e:
            raise _fail(source, section, i, "has no 'bbox' key")
        try:
            b = np.array(e["bbox"], dtype=np.float64)
        except (TypeError, ValueError):
            b = np.zeros(0)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise _fail(source, section, i, f"has bbox={e['bbox']!r}, not 4 finite numbers")
        if (b[2:] < 0).any():
            raise _fail(source, section, i, f"has bbox={e['bbox']!r} with negative width/height")
    raise DataError(f"{source}: cannot read {section}[*]['bbox']")  # pragma: no cover


def _load_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist; pass the path of a COCO JSON file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} file {path} is not valid JSON: {e}") from None


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rank of each id in ``sorted_ids``, -1 where absent."""
    pos = np.searchsorted(sorted_ids, ids).clip(max=max(len(sorted_ids) - 1, 0))
    found = (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    return np.where(found, pos, -1)


def box_iou_coco(det: np.ndarray, gt: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """COCO's box IoU: xywh float64, ``(..., 4)`` detections vs ``(..., G, 4)`` gts.

    ``iou = inter / (area_d + area_g - inter)``, or ``inter / area_d`` for crowd gts; the
    operations run in pycocotools' order so results are bit-identical. det ``(..., 4)`` is
    broadcast against gt ``(..., G, 4)`` -> ``(..., G)``.
    """
    d = det[..., None, :]
    w = np.minimum(d[..., 2] + d[..., 0], gt[..., 2] + gt[..., 0]) - np.maximum(
        d[..., 0], gt[..., 0]
    )
    h = np.minimum(d[..., 3] + d[..., 1], gt[..., 3] + gt[..., 1]) - np.maximum(
        d[..., 1], gt[..., 1]
    )
    inter = w * h
    area_d = d[..., 2] * d[..., 3]
    union = np.where(gt_crowd, area_d, (area_d + gt[..., 2] * gt[..., 3]) - inter)
    ok = (w > 0) & (h > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


class COCOEvaluator:
    """Accumulate detections batch by batch, then ``compute()`` COCO's 12 bbox/segm numbers.

    ``gt`` is a COCO instances dict or the path of its JSON. ``update`` takes COCO result
    dicts (``image_id``, ``category_id``, ``bbox`` xywh, ``score``; for ``iou_type="segm"``
    ``segmentation`` RLE instead of ``bbox``) or per-image dicts ``{"image_id", "boxes"
    (N,4) xyxy | "masks" (N,H,W) bool (segm; H, W = the image's), "scores" (N,), "labels"
    (N,)}`` (numpy or torch); ``labels`` index the gt categories sorted by id
    (``contiguous_labels=True``) or are category ids. ``state_dict()``/``merge()`` gather
    detections across processes.
    Detections whose category is not in the gt are dropped (as pycocotools) and counted in
    ``compute()["unknown_category_detections"]``.
    """

    def __init__(
        self, gt: dict | str | Path, *, contiguous_labels: bool = True, iou_type: str = "bbox"
    ) -> None:
        if iou_type not in IOU_TYPES:
            raise ConfigError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        self.iou_type = iou_type
        source = str(gt) if isinstance(gt, (str, Path)) else "ground-truth dict"
        data = _load_json(gt, "ground-truth") if isinstance(gt, (str, Path)) else gt
        if not isinstance(data, dict):
            raise DataError(f"{source}: expected a COCO object with 'images', 'annotations'")
        if "annotations" not in data:  # pycocotools reads such a file as having no objects
            data = {**data, "annotations": []}
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(f"{source}: missing the {key!r} list of a COCO instances file")
        self.source = source
        self.contiguous_labels = contiguous_labels
        self.image_ids = np.unique(_column(data["images"], "id", source, "images", np.int64))
        cats = data["categories"]
        cat_ids = _column(cats, "id", source, "categories", np.int64)
        order = np.argsort(cat_ids, kind="stable")
        self.category_ids = cat_ids[order]
        self.category_names = [str(cats[i].get("name", cats[i]["id"])) for i in order]
        anns = data["annotations"]
        self._gt_img = _lookup(
            self.image_ids, _column(anns, "image_id", source, "annotations", np.int64)
        )
        self._gt_cat = _lookup(
            self.category_ids, _column(anns, "category_id", source, "annotations", np.int64)
        )
        for arr, what in ((self._gt_img, "image_id"), (self._gt_cat, "category_id")):
            if (arr < 0).any():
                i = int(np.argmax(arr < 0))
                raise _fail(source, "annotations", i, f"has a {what} missing from the file's list")
        self._gt_box = _bboxes(anns, source, "annotations")
        self._gt_area = _column(anns, "area", source, "annotations", float)
        self._gt_id = _column(anns, "id", source, "annotations", np.int64)
        self._gt_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        if iou_type == "segm":
            from cvcraft.metrics.coco_segm import gt_mask_runs  # reads masks via cvcraft.ops

            self._sizes = self._image_sizes(data["images"], source)
            self._gt_masks = gt_mask_runs(anns, self._sizes, self._gt_img, source)
        self.reset()

    def _image_sizes(self, images: list[Any], source: str) -> np.ndarray:
        """(I, 2) (height, width) per image rank; segm needs them to read masks."""
        ids = _column(images, "id", source, "images", np.int64)
        h = _column(images, "height", source, "images", np.int64)
        w = _column(images, "width", source, "images", np.int64)
        sizes = np.zeros((len(self.image_ids), 2), np.int64)
        sizes[_lookup(self.image_ids, ids)] = np.stack([h, w], 1)
        return sizes

    # -- accumulation ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all detections (keep the ground truth)."""
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._masks: list[MaskRuns] = []  # segm: aligned with _chunks
        self._unknown_category = 0

    def _image_ranks(self, img_ids: np.ndarray, source: str) -> np.ndarray:
        img = _lookup(self.image_ids, img_ids)
        if (img < 0).any():
            i = int(np.argmax(img < 0))
            raise DataError(
                f"{source}: entry {i} has image_id {int(img_ids[i])}, which is not in the ground "
                f"truth {self.source}; evaluate predictions against the annotation file "
                "they were made for"
            )
        return img

    def _add(
        self,
        img_ids: np.ndarray,
        cat_ids: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        source: str,
        masks: MaskRuns | None = None,
    ) -> None:
        """``boxes`` xywh; for segm ``masks`` and ``boxes`` = ``[0, 0, mask area, 1]``."""
        img = self._image_ranks(img_ids, source)
        cat = _lookup(self.category_ids, cat_ids)
        known = cat >= 0
        self._unknown_category += int((~known).sum())
        self._chunks.append((img[known], cat[known], boxes[known], scores[known]))
        if self.iou_type == "segm":
            assert masks is not None and len(masks) == len(img)
            self._masks.append(masks.select(known))

    def _area_boxes(self, masks: MaskRuns) -> np.ndarray:
        """Segm stand-in for xywh boxes: ``[0, 0, area, 1]``, so w * h is the mask area."""
        out = np.zeros((len(masks), 4))
        out[:, 2], out[:, 3] = masks.areas(), 1.0
        return out

    def update(self, predictions: Sequence[dict], source: str = "predictions") -> None:
        """Add a batch: COCO result dicts, or per-image ``boxes``/``scores``/``labels`` dicts."""
        predictions = list(predictions)
        if not predictions:
            return
        segm = self.iou_type == "segm"
        if "boxes" not in predictions[0] and "masks" not in predictions[0]:
            img = _column(predictions, "image_id", source, "results", np.int64)
            cat = _column(predictions, "category_id", source, "results", np.int64)
            score = _column(predictions, "score", source, "results", float)
            if segm:
                from cvcraft.metrics.coco_segm import result_mask_runs

                ranks = self._image_ranks(img, source)
                runs = result_mask_runs(predictions, self._sizes, ranks, source)
                self._add(img, cat, self._area_boxes(runs), score, source, runs)
            else:
                self._add(img, cat, _bboxes(predictions, source, "results"), score, source)
            return
        if segm:
            self._update_masks(predictions, source)
            return
        for i, p in enumerate(predictions):  # one entry per image
            try:
                boxes = np.asarray(_to_numpy(p["boxes"]), dtype=np.float64).reshape(-1, 4)
                scores = np.asarray(_to_numpy(p["scores"]), dtype=np.float64).reshape(-1)
                labels = np.asarray(_to_numpy(p["labels"]), dtype=np.int64).reshape(-1)
                image_id = int(p["image_id"])
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(
                    f"{source}: entry {i} needs image_id, boxes (N,4 xyxy), scores (N,), "
                    f"labels (N,): {e}"
                ) from None
            if not (len(boxes) == len(scores) == len(labels)):
                raise DataError(
                    f"{source}: entry {i} has {len(boxes)} boxes, {len(scores)} scores, "
                    f"{len(labels)} labels"
                )
            if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
                raise DataError(
                    f"{source}: entry {i} (image_id {image_id}) has non-finite boxes or scores"
                )
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
            if (xywh[:, 2:] < 0).any():
                raise DataError(
                    f"{source}: entry {i} (image_id {image_id}) has boxes with x2 < x1 or y2 < y1"
                )
            cat_ids = self._category_ids_of(labels, source, i)
            self._add(np.full(len(boxes), image_id, np.int64), cat_ids, xywh, scores, source)

    def _update_masks(self, predictions: list[dict], source: str) -> None:
        """Per-image ``masks`` (N, H, W) (bool, or probabilities thresholded at 0.5)."""
        for i, p in enumerate(predictions):
            try:
                image_id = int(p["image_id"])
                masks = np.asarray(_to_numpy(p["masks"]))
                scores = np.asarray(_to_numpy(p["scores"]), dtype=np.float64).reshape(-1)
                labels = np.asarray(_to_numpy(p["labels"]), dtype=np.int64).reshape(-1)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(
                    f"{source}: entry {i} needs image_id, masks (N,H,W), scores (N,), "
                    f"labels (N,): {e}"
                ) from None
            rank = self._image_ranks(np.array([image_id]), source)[0]
            h, w = (int(v) for v in self._sizes[rank])
            if masks.ndim == 2 and masks.size == 0:
                masks = masks.reshape(0, h, w)
            if masks.ndim != 3 or masks.shape[1:] != (h, w):
                raise DataError(
                    f"{source}: entry {i} (image_id {image_id}) has masks of shape "
                    f"{masks.shape}; expected (N, {h}, {w}), the image's size"
                )
            if not (len(masks) == len(scores) == len(labels)):
                raise DataError(
                    f"{source}: entry {i} (image_id {image_id}) has {len(masks)} masks, "
                    f"{len(scores)} scores, {len(labels)} labels"
                )
            if masks.dtype != bool:
                masks = masks > 0.5
            cat_ids = self._category_ids_of(labels, source, i)
            runs = MaskRuns.from_masks(masks)
            img = np.full(len(masks), image_id, np.int64)
            self._add(img, cat_ids, self._area_boxes(runs), scores, source, runs)

    def _category_ids_of(self, labels: np.ndarray, source: str, i: int) -> np.ndarray:
        if not self.contiguous_labels:
            return labels
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.category_ids)):
            raise DataError(
                f"{source}: entry {i} has labels outside [0, {len(self.category_ids)}); "
                "pass contiguous_labels=False if labels are COCO category ids"
            )
        return self.category_ids[labels]

    def state_dict(self) -> dict[str, np.ndarray]:
        """All detections so far as numpy arrays (ids, xywh boxes, scores; segm: the masks'
        runs ``mask_starts``/``mask_ends``/``mask_lengths`` and ``bbox`` = [0, 0, area, 1]),
        for gathering."""
        img, cat, box, score = self._detections()
        out = {
            "image_id": self.image_ids[img],
            "category_id": self.category_ids[cat],
            "bbox": box,
            "score": score,
            "unknown_category": np.array(self._unknown_category),
        }
        if self.iou_type == "segm":
            runs = self._mask_runs()
            out.update(
                mask_starts=runs.starts, mask_ends=runs.ends, mask_lengths=np.diff(runs.offsets)
            )
        return out

    def merge(self, other: COCOEvaluator | dict[str, np.ndarray]) -> None:
        """Append another evaluator's (or a ``state_dict``'s) detections after ours."""
        state = other.state_dict() if isinstance(other, COCOEvaluator) else other
        runs = None
        if self.iou_type == "segm":
            if "mask_lengths" not in state:
                raise DataError("merge: a segm evaluator needs a segm state (mask runs), got bbox")
            lengths = np.asarray(state["mask_lengths"], np.int64)
            runs = MaskRuns(
                np.asarray(state["mask_starts"], np.int64),
                np.asarray(state["mask_ends"], np.int64),
                np.concatenate([[0], np.cumsum(lengths)]),
            )
        self._add(
            np.asarray(state["image_id"], np.int64),
            np.asarray(state["category_id"], np.int64),
            np.asarray(state["bbox"], np.float64).reshape(-1, 4),
            np.asarray(state["score"], np.float64),
            "merged state",
            runs,
        )
        self._unknown_category += int(state.get("unknown_category", 0))

    def _detections(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._chunks:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
        if len(self._chunks) > 1:  # keep one chunk so repeated compute() calls stay cheap
            self._chunks = [tuple(np.concatenate(c) for c in zip(*self._chunks))]  # type: ignore[list-item]
        return self._chunks[0]

    def _mask_runs(self) -> MaskRuns:
        if len(self._masks) != 1:
            self._masks = [MaskRuns.concat(self._masks)]
        return self._masks[0]

    # -- evaluation ------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        """The 12 summary numbers plus per-class AP and the raw precision/recall arrays."""
        img, cat, box, score = self._detections()
        similarity = None
        if self.iou_type == "segm":
            dets, gts, crowd = self._mask_runs(), self._gt_masks, self._gt_crowd

            def similarity(d: np.ndarray, g: np.ndarray) -> np.ndarray:  # (n,), (n, Gp)
                ia = np.repeat(d, g.shape[1])
                return mask_iou_pairs(dets, gts, ia, g, crowd[g]).reshape(g.shape)

        precision, recall = evaluate_arrays(
            self._gt_img, self._gt_cat, self._gt_box, self._gt_area, self._gt_crowd, self._gt_id,
            img, cat, box, score, num_categories=len(self.category_ids), similarity=similarity,
        )  # fmt: skip
        out: dict[str, Any] = summarize(precision, recall)
        p = precision[:, :, :, 0, -1]  # (T, R, K); a class is all -1 or all defined
        defined = (p > -1).all((0, 1))
        ap = np.where(defined, p.mean((0, 1)), -1.0)
        ap50 = np.where(defined, p[0].mean(0), -1.0)
        ap75 = np.where(defined, p[5].mean(0), -1.0)
        num_gt = np.bincount(self._gt_cat[~self._gt_crowd], minlength=len(self.category_ids))
        names = self.category_names
        per_class = [
            {"category_id": int(c), "name": n, "AP": float(a), "AP50": float(a50),
             "AP75": float(a75), "num_gt": int(g)}
            for c, n, a, a50, a75, g in zip(self.category_ids, names, ap, ap50, ap75, num_gt)
        ]  # fmt: skip
        out.update(
            per_class=per_class,
            precision=precision,
            recall=recall,
            iou_thresholds=IOU_THRESHOLDS.copy(),
            rec_thresholds=REC_THRESHOLDS.copy(),
            category_names=list(self.category_names),
            unknown_category_detections=self._unknown_category,
        )
        return out


def _to_numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _mean_valid(x: np.ndarray) -> float:
    v = x[x > -1]
    return float(np.mean(v)) if v.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """COCO's 12 numbers from (T, R, K, A, M) precision and (T, K, A, M) recall."""
    m100 = len(MAX_DETS) - 1
    return {
        "AP": _mean_valid(precision[:, :, :, 0, m100]),
        "AP50": _mean_valid(precision[0, :, :, 0, m100]),
        "AP75": _mean_valid(precision[5, :, :, 0, m100]),
        "APs": _mean_valid(precision[:, :, :, 1, m100]),
        "APm": _mean_valid(precision[:, :, :, 2, m100]),
        "APl": _mean_valid(precision[:, :, :, 3, m100]),
        "AR1": _mean_valid(recall[:, :, 0, 0]),
        "AR10": _mean_valid(recall[:, :, 0, 1]),
        "AR100": _mean_valid(recall[:, :, 0, m100]),
        "ARs": _mean_valid(recall[:, :, 1, m100]),
        "ARm": _mean_valid(recall[:, :, 2, m100]),
        "ARl": _mean_valid(recall[:, :, 3, m100]),
    }


def _match(
    det_box: np.ndarray,
    det_start: np.ndarray,
    det_count: np.ndarray,
    gt_start: np.ndarray,
    gt_count: np.ndarray,
    gt_box: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    gt_counts: np.ndarray,
    similarity: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching for all (image, category) groups at once.

    Detections of group i are ``det_box[det_start[i] : det_start[i] + det_count[i]]`` in
    score order; its gts are ``gt_start[i] + arange(gt_count[i])`` in file order.
    ``gt_ignore`` is (num_gt, A); ``gt_counts`` (num_gt,) is False for gts whose match
    pycocotools does not count (id 0). ``similarity(det (n,), gt (n, Gp), valid (n, Gp))``
    -> (n, Gp) replaces box IoU (keypoints: OKS); indices are into these sorted arrays.
    Returns two (num_det, A, T) bool arrays: matched a counted gt, and matched an ignored gt.

    The loop runs over detection *rank* (< maxDets): matching a detection depends only on
    which gts the higher-scored ones took, so each step handles every group that has a
    detection at that rank, for all area ranges and thresholds together.
    """
    n_area, n_thr = gt_ignore.shape[1], len(IOU_THRESHOLDS)
    hit = np.zeros((len(det_box), n_area, n_thr), dtype=bool)
    hit_ign = np.zeros_like(hit)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # as pycocotools
    thr4 = thr[None, None, :, None]
    # Bucket groups by gt count (padded to a power of two) to keep padding small.
    pad = 1 << np.ceil(np.log2(np.maximum(gt_count, 1))).astype(np.int64)
    for gp in np.unique(pad[gt_count > 0]):
        sel = np.flatnonzero((pad == gp) & (gt_count > 0))
        sel = sel[np.argsort(-det_count[sel], kind="stable")]  # active groups form a prefix
        cnt = det_count[sel]
        slot = np.arange(gp)
        valid = slot[None, :] < gt_count[sel, None]  # (n, Gp)
        gidx = np.where(valid, gt_start[sel, None] + slot, 0)  # (n, Gp)
        gbox, crowd, counts = gt_box[gidx], gt_crowd[gidx] & valid, gt_counts[gidx]
        ign = gt_ignore[gidx].transpose(0, 2, 1)[:, :, None, :]  # (n, A, 1, Gp)
        avail = np.broadcast_to(valid[:, None, None, :], (len(sel), n_area, n_thr, gp)).copy()
        for d in range(int(cnt[0])):
            n = int(np.searchsorted(-cnt, -d, side="left"))  # groups with count > d
            if similarity is None:
                iou = box_iou_coco(det_box[det_start[sel[:n]] + d], gbox[:n], crowd[:n])  # (n, Gp)
            else:
                iou = similarity(det_start[sel[:n]] + d, gidx[:n], valid[:n])
            # Only rows with some IoU >= the lowest threshold can match at all.
            live = np.flatnonzero(((iou >= thr[0]) & valid[:n]).any(-1))
            if not len(live):
                continue
            di = det_start[sel[live]] + d
            iou = iou[live]  # (L, Gp)
            # Rank gts by (IoU, index): the max key is the highest IoU, ties -> the later gt;
            # adding Gp for non-ignored gts makes them win over any ignored one.
            order = np.argsort(iou, axis=-1, kind="stable")  # (L, Gp)
            key = np.empty_like(order)
            np.put_along_axis(key, order, slot[None, :].repeat(len(live), 0), -1)
            key = key[:, None, None, :] + gp * ~ign[live]  # (L, A, 1, Gp)
            cand = avail[live] & (iou[:, None, None, :] >= thr4)  # (L, A, T, Gp)
            best = np.where(cand, key, -1).max(-1)  # (L, A, T)
            found = best >= 0
            row = np.arange(len(live))[:, None, None]
            m = order[row, best % gp]  # the chosen gt's slot
            hit[di] = found & counts[live][row, m]
            hit_ign[di] = found & (best < gp)
            r, a, t = np.nonzero(found & ~crowd[live][row, m])
            avail[live[r], a, t, m[r, a, t]] = False
    return hit, hit_ign


def evaluate_arrays(
    gt_img: np.ndarray,
    gt_cat: np.ndarray,
    gt_box: np.ndarray,
    gt_area: np.ndarray,
    gt_crowd: np.ndarray,
    gt_id: np.ndarray,
    det_img: np.ndarray,
    det_cat: np.ndarray,
    det_box: np.ndarray,
    det_score: np.ndarray,
    *,
    num_categories: int,
    similarity: Any = None,
    area_ranges: np.ndarray = AREA_RANGES,
    max_dets: Sequence[int] = MAX_DETS,
    gt_flagged: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """COCO precision (T, R, K, A, M) and recall (T, K, A, M) from flat arrays.

    Images and categories are 0-based ranks (image ids / category ids sorted); boxes xywh
    float64; gts in file order, detections in input order (both orders break ties).
    ``similarity(det, gt) -> (n, Gp)`` with indices into the *input* det and gt arrays
    replaces box IoU (OKS for keypoints; ``det_box`` then gives only the detection's area);
    ``area_ranges`` (A, 2) and ``max_dets`` default to the bbox ones; ``gt_flagged`` (G,)
    marks further ignored gts (keypoints: none labelled) that, unlike crowds, match once.
    """
    n_thr, n_rec, n_cat, n_area, n_m = (
        len(IOU_THRESHOLDS),
        len(REC_THRESHOLDS),
        num_categories,
        len(area_ranges),
        len(max_dets),
    )
    lo, hi = area_ranges[:, 0], area_ranges[:, 1]
    flagged = gt_crowd if gt_flagged is None else gt_crowd | gt_flagged
    gt_ignore = flagged[:, None] | (gt_area[:, None] < lo) | (gt_area[:, None] > hi)  # (G, A)

    # Groups are (image, category) pairs, keyed image-major so keys sort like pycocotools' loops.
    gkey = gt_img * n_cat + gt_cat
    gorder = np.argsort(gkey, kind="stable")
    gkey_sorted = gkey[gorder]
    dkey = det_img * n_cat + det_cat
    dorder = np.lexsort((-det_score, dkey))  # stable: ties keep input order
    dkey, dbox, dscore, dcat, dimg = (
        dkey[dorder],
        det_box[dorder],
        det_score[dorder],
        det_cat[dorder],
        det_img[dorder],
    )
    first = np.searchsorted(dkey, dkey, side="left")
    rank = np.arange(len(dkey)) - first
    keep = rank < max_dets[-1]
    dkey, dbox, dscore, dcat, dimg, rank = (x[keep] for x in (dkey, dbox, dscore, dcat, dimg, rank))
    sorted_similarity = None
    if similarity is not None:  # the matcher indexes sorted arrays; the caller's are unsorted
        det_orig = dorder[keep]

        def sorted_similarity(d: np.ndarray, g: np.ndarray, valid: np.ndarray) -> np.ndarray:
            return np.where(valid, similarity(det_orig[d], gorder[g]), 0.0)

    groups, det_start, det_count = np.unique(dkey, return_index=True, return_counts=True)
    gt_start = np.searchsorted(gkey_sorted, groups, side="left")
    gt_count = np.searchsorted(gkey_sorted, groups, side="right") - gt_start

    hit, hit_ign = _match(
        dbox, det_start, det_count, gt_start, gt_count,
        gt_box[gorder], gt_ignore[gorder], gt_crowd[gorder], gt_id[gorder] != 0,
        sorted_similarity,
    )  # fmt: skip  # (D, A, T) each
    darea = dbox[:, 2] * dbox[:, 3]
    out_of_range = ((darea[:, None] < lo) | (darea[:, None] > hi))[:, :, None]  # (D, A, 1)
    # Ignored: matched an ignored gt, or unmatched and outside the area range.
    tp_all = hit & ~hit_ign
    fp_all = ~hit & ~hit_ign & ~out_of_range

    npig = np.zeros((n_cat, n_area), np.int64)
    np.add.at(npig, gt_cat, (~gt_ignore).astype(np.int64))
    tau = _recall_steps(npig)
    precision = np.empty((n_thr, n_rec, n_cat, n_area, n_m))
    recall = np.empty((n_thr, n_cat, n_area, n_m))
    # Accumulation order: category, score desc, image, rank (pycocotools' concatenate + sort).
    acc = np.lexsort((rank, dimg, -dscore, dcat))
    undefined = (npig == 0).T  # (A, K): no non-ignored gt -> -1
    for mi, max_det in enumerate(max_dets):
        sel = acc[rank[acc] < max_det]
        tp_flag = np.ascontiguousarray(tp_all[sel].transpose(1, 2, 0))  # (A, T, N)
        fp_flag = np.ascontiguousarray(fp_all[sel].transpose(1, 2, 0))
        p, r = _accumulate(tp_flag, fp_flag, dcat[sel], npig, tau)
        p[undefined[:, None, :, None].repeat(n_thr, 1).repeat(n_rec, 3)] = -1.0
        r[undefined[:, None, :].repeat(n_thr, 1)] = -1.0
        precision[..., mi] = p.transpose(1, 3, 2, 0)  # (A, T, K, R) -> (T, R, K, A)
        recall[..., mi] = r.transpose(1, 2, 0)  # (A, T, K) -> (T, K, A)
    return precision, recall


def _recall_steps(npig: np.ndarray) -> np.ndarray:
    """(K, A, R) int: the fewest true positives whose recall ``tp / npig`` reaches each
    recall threshold, with the same float division pycocotools compares (``rc >= r``)."""
    npig_f = np.maximum(npig, 1).astype(np.float64)[:, :, None, None]
    base = np.ceil(REC_THRESHOLDS[:, None] * npig_f).astype(np.int64)  # (K, A, R, 1)
    cand = np.maximum(base + np.arange(-2, 3), 0)  # the answer is within +-1 of base
    ok = cand / npig_f >= REC_THRESHOLDS[:, None]
    return np.take_along_axis(cand, np.argmax(ok, -1)[..., None], -1)[..., 0]


def _accumulate(
    tp_flag: np.ndarray, fp_flag: np.ndarray, cat: np.ndarray, npig: np.ndarray, tau: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision (A, T, K, R) and final recall (A, T, K) for one maxDets value.

    ``tp_flag``/``fp_flag`` (A, T, N) mark detections sorted by (category, score desc, ...);
    ``cat`` (N,) is their category, ``tau`` from ``_recall_steps``. Each (area, threshold,
    category) is a segment. Only true positives need visiting: precision rises only at a TP,
    so the envelope (max over the suffix) and every sampled value are taken at TPs; the
    precision at the j-th TP is ``j / (j + FPs before it)``, which needs only its rank among
    the counted (non-ignored) detections of its segment.
    """
    n_area, n_thr, n = tp_flag.shape
    n_cat = len(npig)
    n_seg = n_area * n_thr * n_cat
    seg_start = np.searchsorted(cat, np.arange(n_cat), side="left")  # (K,) within a block
    flat_start = (np.arange(n_area * n_thr)[:, None] * n + seg_start).reshape(-1)  # (S,)
    counted_pos = np.flatnonzero((tp_flag | fp_flag).reshape(-1))  # non-ignored detections
    tp_pos = np.flatnonzero(tp_flag.reshape(-1))
    tp_seg = (tp_pos // n) * n_cat + cat[tp_pos % n]
    # Rank of each TP among the counted detections of its segment.
    tp_rank = (
        np.searchsorted(counted_pos, tp_pos) - np.searchsorted(counted_pos, flat_start)[tp_seg]
    )
    seg_tp = np.bincount(tp_seg, minlength=n_seg)
    seg_tp_off = _offsets(seg_tp)
    j = (np.arange(len(tp_seg)) - seg_tp_off[tp_seg] + 1).astype(np.float64)  # TPs so far
    fp = tp_rank - (j - 1)  # counted detections before it that are not TPs
    pr = j / ((fp + j) + np.spacing(1))  # pycocotools' expression, same operands

    # Envelope within each segment: offset the segments so one reversed running max cannot
    # leak across them (precision is in [0, 1], an offset of 2 per segment separates them;
    # the rounding this adds is below 1e-12).
    offset = 2.0 * (n_seg - 1 - tp_seg)
    env = np.maximum.accumulate((pr + offset)[::-1])[::-1] - offset

    # Recall threshold r is first reached at the tau-th TP; tau = 0 samples the segment's
    # first detection, whose envelope is that of its first TP (0 when there is none).
    t = np.maximum(tau, 1).transpose(1, 0, 2)[:, None]  # (A, 1, K, R)
    seg_ids = np.arange(n_seg).reshape(n_area, n_thr, n_cat, 1)
    reached = t <= seg_tp[seg_ids]
    idx = np.where(reached, seg_tp_off[seg_ids] + t - 1, 0)
    prec = np.where(reached, env[idx] if len(env) else 0.0, 0.0)  # (A, T, K, R)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = seg_tp.reshape(n_area, n_thr, n_cat) / npig.T[:, None, :]
    return prec, rec


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Start of each segment in a concatenation of segments of the given lengths."""
    return np.cumsum(counts) - counts


def evaluate_coco_files(
    gt_json: str | Path, results_json: str | Path, iou_type: str = "bbox"
) -> dict[str, Any]:
    """Evaluate a COCO results JSON (list of ``image_id, category_id, bbox | segmentation,
    score``) against a COCO instances JSON; returns ``COCOEvaluator.compute()``'s dict."""
    ev = COCOEvaluator(gt_json, iou_type=iou_type)
    results = _load_json(results_json, "results")
    if not isinstance(results, list):
        field = "bbox" if iou_type == "bbox" else "segmentation"
        raise DataError(
            f"results file {results_json}: expected a JSON list of detections "
            f"({{'image_id', 'category_id', '{field}', 'score'}}), got a " + type(results).__name__
        )
    ev.update(results, source=str(results_json))
    return ev.compute()


__all__ = [
    "AREA_NAMES",
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "IOU_TYPES",
    "MAX_DETS",
    "REC_THRESHOLDS",
    "SUMMARY_KEYS",
    "METRIC_NAMES",
    "COCOEvaluator",
    "box_iou_coco",
    "evaluate_arrays",
    "evaluate_coco_files",
    "summarize",
]
