"""Detection training data: the shapes scenes as a dataset, train/val splits of any source,
COCO ground truth for evaluation, the augmenting torch Dataset and the batch collate.

Pipeline per item (ultralytics order): load -> [Mosaic of 4 | letterbox] -> random affine ->
[MixUp with a second item built the same way] -> HSV -> flips. Every random choice comes
from the item's generator ``default_rng([seed, epoch, index])`` (the extra Mosaic/MixUp
indices too), so batches depend only on (seed, epoch, index), not on workers or a resume.

Evaluation letterboxes to ``imgsz`` (``transforms.letterbox`` keeps ``scale``, ``pad`` and
``orig_size`` in ``meta["letterbox"]``): predictions are mapped back to the original image
and scored against the original annotations (the COCO dict from ``coco_ground_truth``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.detection import DetectionData, DetectionImage, read_dataset
from cvcraft.data.shapes import SHAPE_CLASSES, render_scene, split_code
from cvcraft.data.webdataset import (
    ShardDetectionData,
    is_shard_folder,
    shard_splits,
)
from cvcraft.errors import DataError
from cvcraft.ops.masks import rle_encode
from cvcraft.structures import Sample, xyxy_to_xywh
from cvcraft.transforms.item_pipeline import DetectAugment, DetectionPipeline, ItemPipeline
from cvcraft.transforms.letterbox import Letterbox
from cvcraft.transforms.pipelines import sized_spec, split_pipeline

PAD_VALUE = 114  # letterbox / mosaic border grey (the YOLO convention)


# ----------------------------------------------------------------------------- sources
@dataclass
class ArrayDetectionData(DetectionData):
    """A ``DetectionData`` whose images live in memory (``arrays[i]`` uint8 HWC RGB).

    Records keep a descriptive pseudo path (``shapes://val/17``) so messages and the COCO
    ground truth read the same as for files.
    """

    arrays: list[np.ndarray] = field(default_factory=list)

    def sample(self, i: int, masks: bool = False, **_: Any) -> Sample:
        """Image ``i`` with boxes/box_labels and the meta ``DetectionData.sample`` gives;
        ``masks=True`` adds the instance masks (from the RLE segments of shapes scenes)."""
        rec = self.images[i]
        meta = {
            "image_id": rec.image_id,
            "path": rec.path,
            "orig_size": (rec.height, rec.width),
            "iscrowd": rec.iscrowd.copy(),
            "difficult": rec.difficult.copy(),
            "index": i,
        }
        return Sample(
            image=self.arrays[i],
            boxes=rec.boxes.copy(),
            box_labels=rec.labels.copy(),
            masks=self.instance_masks(i) if masks else None,
            meta=meta,
        )


def make_shapes_detection(
    n: int,
    imgsz: int = 128,
    seed: int = 0,
    split: str = "train",
    *,
    n_objects: tuple[int, int] = (1, 4),
    size_range: tuple[float, float] = (0.12, 0.3),
    min_visible: float = 0.7,
    masks: bool = False,
) -> ArrayDetectionData:
    """``n`` multi-object shapes scenes (6 classes) with tight boxes, for detection.

    Scene ``i`` is ``render_scene(default_rng([seed, split_code(split), i]))``: a pure
    function of (seed, split, i), so "train" and "val" never share a scene and any prefix of
    a larger set is the same images (as ``make_shapes``). An object less than 70% visible is
    left out (its class would be guesswork under heavier occlusion). ``masks=True`` keeps each
    object's visible mask as a COCO RLE segment (instance segmentation).
    """
    code = split_code(split)
    arrays, records = [], []
    for i in range(n):  # one scene per image; each scene is vectorized inside
        s = render_scene(
            np.random.default_rng([seed, code, i]),
            imgsz,
            n_objects,
            size_range=size_range,
            min_visible=min_visible,
        )
        arrays.append(s.image)
        segs = [rle_encode(m, compress=False) for m in s.masks] if masks else None
        records.append(
            DetectionImage(
                f"shapes://{split}/{i}", imgsz, imgsz, i + 1, s.boxes, s.box_labels, segments=segs
            )
        )
    return ArrayDetectionData(
        classes=list(SHAPE_CLASSES),
        images=records,
        source=f"shapes(n={n}, imgsz={imgsz}, seed={seed}, split={split})",
        arrays=arrays,
    )


def subset(data: DetectionData, indices: Sequence[int]) -> DetectionData:
    """The images at ``indices`` (same classes, category ids and root)."""
    idx = [int(i) for i in indices]
    if isinstance(data, ShardDetectionData):  # its own __init__ reads a folder: no replace()
        return data.take(idx)
    changes: dict[str, Any] = {"images": [data.images[i] for i in idx]}
    if isinstance(data, ArrayDetectionData):
        changes["arrays"] = [data.arrays[i] for i in idx]
    return replace(data, **changes)


@dataclass
class DetectionSplits:
    """Train and val data of one source; ``notes`` say how the val split was made."""

    train: DetectionData
    val: DetectionData
    classes: list[str]
    category_ids: list[int]
    notes: list[str] = field(default_factory=list)


def _same_images(a: DetectionData, b: DetectionData) -> bool:
    return sorted(r.path for r in a.images) == sorted(r.path for r in b.images)


def load_detection_splits(
    spec: str,
    *,
    imgsz: int = 128,
    val_fraction: float = 0.1,
    seed: int = 0,
    fraction: float = 1.0,
    skip_bad: bool = False,
    masks: bool = False,
) -> DetectionSplits:
    """Train/val ``DetectionData`` from ``"shapes[:N]"``, a COCO JSON, a YOLO YAML/folder, a
    VOC folder or a tar-shard folder written by ``cvcraft pack task=detect``.

    ``shapes:N`` renders N train scenes at ``imgsz`` plus a held-out ``max(1, N // 5)`` val
    scenes from their own stream. A file dataset's "val" split is used when it exists and
    differs from "train"; otherwise ``val_fraction`` of the train images (a seeded
    permutation) is held out and a note says so. ``fraction`` keeps a seeded share of train.
    ``skip_bad``: images a reader cannot open are left out, each listed in the notes.
    ``masks``: shapes scenes keep their instance masks (file formats always keep segments).
    """
    notes: list[str] = []
    m = re.fullmatch(r"shapes(?::(\d+))?", spec.strip())
    if m:
        n = int(m.group(1)) if m.group(1) else 2000
        if n < 1:
            raise DataError(f"data={spec}: need at least one shapes image")
        train: DetectionData = make_shapes_detection(n, imgsz, seed, "train", masks=masks)
        val: DetectionData = make_shapes_detection(max(1, n // 5), imgsz, seed, "val", masks=masks)
    elif is_shard_folder(spec) or is_shard_folder(os.path.join(spec, "train")):
        train, shard_val = shard_splits(spec)  # tar shards written by `cvcraft pack`
        if not isinstance(train, DetectionData):
            raise DataError(f"data={spec}: these shards hold {train.meta['task']} data, not detect")
        if shard_val is None:
            raise DataError(
                f"data={spec}: a detection shard folder needs train/ and val/ shard folders; "
                "write them with `cvcraft pack task=detect data=... out=...`"
            )
        val = shard_val
    else:
        train = read_dataset(spec, split="train", skip_unreadable=skip_bad)
        try:
            val = read_dataset(spec, split="val", skip_unreadable=skip_bad)
        except DataError:
            val = train
        if len(val) == 0 or _same_images(train, val):
            if len(train) < 2:
                raise DataError(f"data={spec}: {len(train)} image(s); cannot hold out a val split")
            order = np.random.default_rng([seed, 5]).permutation(len(train))
            k = min(len(train) - 1, max(1, round(len(train) * val_fraction)))
            val, train = subset(train, np.sort(order[:k])), subset(train, np.sort(order[k:]))
            notes.append(
                f"no separate val split in {spec}: held out {k} of {len(order)} images "
                f"(val_fraction={val_fraction})"
            )
        for w in train.warnings + val.warnings:
            notes.append(str(w))
    if fraction < 1.0:
        k = max(1, int(len(train) * fraction))
        keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(train))[:k])
        train = subset(train, keep)
        notes.append(f"fraction={fraction}: training on {k} images")
    if len(train) == 0:
        raise DataError(f"data={spec}: the training split has no images")
    cat_ids = train.category_ids or list(range(1, len(train.classes) + 1))
    return DetectionSplits(train, val, list(train.classes), [int(c) for c in cat_ids], notes)


def coco_ground_truth(data: DetectionData, category_ids: Sequence[int] | None = None) -> dict:
    """The COCO instances dict of ``data`` (what ``COCOEvaluator`` scores against).

    ``area`` is the reader's stored area (COCO's segment area) when present, else the box
    area; crowd flags carry over. Category ``k`` gets ``category_ids[k]`` (default k + 1).
    Annotation ids start at 1 (pycocotools treats id 0 as "no match").
    """
    cats = list(category_ids or data.category_ids or range(1, len(data.classes) + 1))
    images, anns = [], []
    for rec in data.images:  # one record per image; the boxes of an image are vectorized
        images.append({"id": int(rec.image_id), "width": rec.width, "height": rec.height})
        if not len(rec):
            continue
        xywh = xyxy_to_xywh(rec.boxes.astype(np.float64))
        area = rec.areas if rec.areas is not None else xywh[:, 2] * xywh[:, 3]
        for k in range(len(rec)):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(rec.image_id),
                    "category_id": int(cats[int(rec.labels[k])]),
                    "bbox": [float(v) for v in xywh[k]],
                    "area": float(area[k]),
                    "iscrowd": int(rec.iscrowd[k]),
                }
            )
    categories = [{"id": int(c), "name": n} for c, n in zip(cats, data.classes)]
    return {"images": images, "annotations": anns, "categories": categories}


# ----------------------------------------------------------------------------- dataset
def detection_dataset(
    data: DetectionData,
    imgsz: int,
    augment: DetectAugment | None = None,
    seed: int = 0,
    *,
    mosaic_until: int | None = None,
    pipeline: Sequence[Any] | None = None,
) -> AugmentedDataset:
    """Items ``(epoch, index)`` -> augmented (train) or letterboxed (eval) ``Sample``.

    ``augment=None`` and no ``pipeline`` is the eval path: letterbox only,
    ``meta["letterbox"]`` set. With a ``DetectAugment`` the train path is the knob recipe
    (``DetectionPipeline``: Mosaic until epoch ``mosaic_until``, else letterbox, then affine,
    MixUp, HSV and flips). ``pipeline`` (the config's ``augment:`` list) replaces the knobs:
    its multi-sample steps (mosaic, mixup, copy_paste) first, also off from ``mosaic_until``
    on, then the per-image transforms, then a letterbox to ``imgsz`` (a no-op when the
    pipeline already produced that size). The epoch comes with each item's key, so
    persistent workers follow ``mosaic_until`` without messages.
    """
    letterbox = Letterbox(int(imgsz), fill=PAD_VALUE)
    if pipeline:
        multi, per_item = split_pipeline(sized_spec(pipeline, int(imgsz)))
        item: Any = ItemPipeline(
            lambda x, r: letterbox(per_item(x, r), r),
            [(t, 1.0) for t in multi],
            draw=False,
            until=mosaic_until,
        )
    elif augment is not None:
        item = DetectionPipeline(int(imgsz), augment, PAD_VALUE, mosaic_until)
    else:
        item = ItemPipeline(letterbox)
    return AugmentedDataset(data, item, seed)


def batch_targets(
    batch: dict[str, Any], device: torch.device | str | None = None
) -> list[dict[str, torch.Tensor]]:
    """Per-image ``{"boxes": (M_i, 4), "labels": (M_i,)}`` of a ``collate_detect`` batch (views
    of the packed tensors, moved to ``device`` first when given); with instance masks in the
    batch (``collate_instance``) also ``"masks"`` (M_i, H, W) bool."""
    boxes, labels = batch["boxes"], batch["labels"]
    if device is not None:
        boxes = boxes.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
    counts = batch["counts"].tolist()
    out = [{"boxes": b, "labels": lab} for b, lab in zip(boxes.split(counts), labels.split(counts))]
    if "instance_masks" in batch:
        masks = batch["instance_masks"]
        masks = masks.to(device, non_blocking=True) if device is not None else masks
        for t, m in zip(out, masks.split(counts)):
            t["masks"] = m
    return out


__all__ = [
    "PAD_VALUE",
    "ArrayDetectionData",
    "DetectAugment",
    "detection_dataset",
    "DetectionSplits",
    "batch_targets",
    "coco_ground_truth",
    "load_detection_splits",
    "make_shapes_detection",
    "subset",
]
