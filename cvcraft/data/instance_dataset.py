"""Instance-segmentation data: detection data read with its instance masks, kept aligned with
the boxes through augmentation, and COCO ground truth with segmentations for segm AP.

``InstanceSource`` wraps any ``DetectionData`` (COCO polygons/RLE, YOLO-seg polygons, shapes
scenes with RLE masks, shards) so ``sample(i)`` carries ``masks`` bool (N, H, W); every
augmentation (letterbox, Mosaic, affine, MixUp, Copy-Paste, flips) moves them with the
boxes. ``tighten_to_masks`` then re-derives each box from its mask (a rotated or cropped
mask's box is its tight box, not the moved corners' hull) and drops objects whose mask
vanished, so boxes and masks never disagree when they reach the collate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.data.detection import DetectionData, DetectionImage
from cvcraft.errors import DataError
from cvcraft.ops.masks import masks_to_boxes, rle_counts
from cvcraft.structures import Sample, xyxy_to_xywh


def annotation_names(rec: DetectionImage) -> str:
    """How an image's objects are named in its annotation file (COCO ids, YOLO lines)."""
    if (rec.ann_ids >= 0).any():
        return f"annotation ids {rec.ann_ids.tolist()[:20]}"
    if (rec.ann_lines >= 0).any():
        return f"annotation lines {rec.ann_lines.tolist()[:20]}"
    return f"{len(rec)} objects"


def check_aligned(sample: Sample, where: str) -> None:
    """DataError unless ``sample`` has one (H, W) instance mask per box."""
    n_boxes = 0 if sample.boxes is None else len(sample.boxes)
    if sample.masks is None:
        raise DataError(f"{where}: no instance masks for its {n_boxes} boxes")
    masks = np.asarray(sample.masks)
    if masks.ndim != 3 or len(masks) != n_boxes or masks.shape[1:] != sample.image.shape[:2]:
        raise DataError(
            f"{where}: {n_boxes} boxes but instance masks of shape {masks.shape} (expected "
            f"({n_boxes}, {sample.height}, {sample.width}), one mask per box at the image's "
            "size); fix the annotation so every object has one segmentation"
        )


class InstanceSource:
    """``data.sample(i)`` with instance masks, checked to match the boxes one to one."""

    def __init__(self, data: DetectionData) -> None:
        self.data = data
        self.classes = data.classes

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name: str) -> Any:  # images, category_ids, shard ids, ...
        if name == "data":
            raise AttributeError(name)
        return getattr(self.data, name)

    def sample(self, i: int) -> Sample:
        rec = self.data.images[i]
        where = f"{rec.ann_file or rec.path} ({rec.path}, {annotation_names(rec)})"
        try:
            s = self.data.sample(i, masks=True)
        except ValueError as e:  # Sample refuses masks that do not match the boxes
            raise DataError(f"{where}: {e}; fix the annotation's segmentations") from None
        check_aligned(s, where)
        return s

    def subset(self, indices: Sequence[int] | np.ndarray) -> InstanceSource:
        from cvcraft.data.detection_dataset import subset

        return InstanceSource(subset(self.data, indices))


def tighten_to_masks(sample: Sample, min_pixels: int = 1) -> Sample:
    """Boxes = the tight boxes of the masks; objects with fewer than ``min_pixels`` mask
    pixels left (moved out of the image, cropped away) are dropped with their masks."""
    check_aligned(sample, str(sample.meta.get("path", "an augmented sample")))
    masks = np.asarray(sample.masks, bool)
    keep = masks.sum((1, 2)) >= min_pixels
    return sample.replace(
        boxes=masks_to_boxes(masks[keep]).astype(np.float32).reshape(-1, 4),
        box_labels=np.asarray(sample.box_labels)[keep],
        masks=masks[keep],
    )


class TightenAfter:
    """An item pipeline followed by ``tighten_to_masks`` (picklable for loader workers)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def __call__(self, get: Any, index: int, n_items: int, rng: Any, epoch: int) -> Sample:
        return tighten_to_masks(self.pipeline(get, index, n_items, rng, epoch))


def instance_dataset(data: DetectionData, imgsz: int, augment: Any = None, seed: int = 0,
                     **kw: Any) -> Any:  # fmt: skip
    """``detection_dataset`` over ``InstanceSource(data)`` (masks read and checked), each
    item's boxes re-derived from its augmented masks (``tighten_to_masks``). ``augment`` and
    ``kw`` (``mosaic_until``, ``pipeline``) as ``detection_dataset`` takes them."""
    from cvcraft.data.detection_dataset import detection_dataset

    ds = detection_dataset(InstanceSource(data), imgsz, augment, seed, **kw)  # type: ignore[arg-type]
    ds.pipeline = TightenAfter(ds.pipeline)
    return ds


def segment_area(seg: Any) -> float | None:
    """A COCO segmentation's pixel area (RLE ones; None for polygons, which keep theirs)."""
    if isinstance(seg, dict):
        counts, _, _ = rle_counts(seg)
        return float(counts[1::2].sum())
    return None


def instance_ground_truth(data: DetectionData, category_ids: Sequence[int] | None = None) -> dict:
    """COCO instances dict of ``data`` with a ``segmentation`` per annotation (the reader's
    polygons or RLE; an object without one gets its box as a polygon) and ``area`` = the
    stored area, else the RLE's pixel count, else the box's (COCO's segment area)."""
    from cvcraft.data.detection_dataset import coco_ground_truth
    from cvcraft.ops.masks import polygon_area

    gt = coco_ground_truth(data, category_ids)
    k = 0
    for rec in data.images:  # annotations are in record order, one per object
        xywh = xyxy_to_xywh(rec.boxes.astype(np.float64))
        for j in range(len(rec)):
            ann = gt["annotations"][k]
            seg = rec.segments[j] if rec.segments is not None else None
            if not seg:
                x, y, w, h = (float(v) for v in xywh[j])
                seg = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            ann["segmentation"] = seg
            if rec.areas is None or not np.isfinite(rec.areas[j]):
                area = segment_area(seg)
                ann["area"] = area if area is not None else sum(polygon_area(p) for p in seg)
            k += 1
    return gt


__all__ = [
    "InstanceSource",
    "TightenAfter",
    "instance_dataset",
    "annotation_names",
    "check_aligned",
    "instance_ground_truth",
    "segment_area",
    "tighten_to_masks",
]
