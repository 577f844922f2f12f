"""Instance segmentation as a Trainer task: detection with a mask per object.

It is the detect task with three things changed: the data is read with instance masks
(``data/instance_dataset.py``: every augmentation moves them with the boxes, boxes are
re-derived from the augmented masks, the collate packs them aligned with the boxes), the
models predict masks (YOLO-seg, Mask R-CNN), and evaluation scores both boxes and masks.

Evaluation letterboxes each val image to ``imgsz``; predicted masks are mapped back to the
original image (padding cut, bilinear resize, ``> mask_threshold``) and scored with the
vectorised COCO evaluator at ``iou_type="segm"`` (pycocotools' numbers) against the original
annotations' polygons/RLE: ``mask_map`` = mask AP@[.5:.95], ``mask_map50``...; the box
numbers (``map``, ``map50``, ...) come alongside. ``predict`` writes overlays and COCO
results with an RLE ``segmentation`` per detection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvcraft.data.collate import collate_instance
from cvcraft.data.detection_dataset import load_detection_splits
from cvcraft.data.instance_dataset import instance_dataset, instance_ground_truth
from cvcraft.metrics.coco import METRIC_NAMES, COCOEvaluator
from cvcraft.metrics.coco import SUMMARY_KEYS as COCO_KEYS
from cvcraft.ops.masks import rle_encode
from cvcraft.tasks.detect.task import (
    DetectionEvaluator,
    DetectTask,
    augment_from_config,
    predict_detector,
)
from cvcraft.tasks.instance.config import InstanceConfig
from cvcraft.transforms.letterbox import unletterbox_masks
from cvcraft.viz.instances import draw_instances

MASK_CHUNK = 32  # masks resized to the original image at a time (memory stays flat)


class InstanceTask(DetectTask):
    """Detection with instance masks (see the module docstring)."""

    name = "instance"
    collate = collate_instance
    masks = True

    def __init__(self, cfg: InstanceConfig) -> None:
        super().__init__(cfg)
        self.cfg: InstanceConfig = cfg

    def make_dataset(self, data: Any, imgsz: int, augment: Any = None, **kw: Any) -> Any:
        return instance_dataset(data, imgsz, augment, **kw)

    def ground_truth(self, data: Any, category_ids: list[int]) -> dict:
        return instance_ground_truth(data, category_ids)

    def build_evaluators(self) -> dict[str, Any]:
        return {
            "coco": InstanceEvaluator(
                self.gt, self.val_data, len(self.classes), self.cfg.conf, self.cfg.mask_threshold
            )
        }


def original_masks(det: dict[str, torch.Tensor], meta: dict, threshold: float) -> np.ndarray:
    """A detection dict's ``masks`` (K, S, S) probabilities on the letterboxed input -> bool
    (K, h, w) on the original image (chunks of ``MASK_CHUNK``)."""
    probs = det["masks"]
    h, w = meta["letterbox"]["orig_size"]
    out = np.zeros((len(probs), int(h), int(w)), bool)
    for i in range(0, len(probs), MASK_CHUNK):  # a few chunks; each is one interpolate
        m = unletterbox_masks(probs[i : i + MASK_CHUNK].float(), meta)
        out[i : i + MASK_CHUNK] = (m > threshold).cpu().numpy()
    return out


class InstanceEvaluator:
    """COCO box numbers, confusion matrix and val loss (``DetectionEvaluator``) plus COCO
    mask numbers (``mask_map``, ``mask_map50``, ... and ``mask_per_class``) of the
    detections' masks mapped back to the original images."""

    def __init__(self, gt: dict, data: Any, num_classes: int, conf: float, threshold: float):
        self.boxes = DetectionEvaluator(gt, data, num_classes, conf)
        self.segm = COCOEvaluator(gt, iou_type="segm")
        self.threshold = threshold

    def reset(self) -> None:
        self.boxes.reset()
        self.segm.reset()

    def update(self, batch: dict[str, Any], outputs: dict[str, Any]) -> None:
        self.boxes.update(batch, outputs)
        for d, meta in zip(outputs["dets"], batch["meta"]):
            self.segm.update(
                [{"image_id": meta["image_id"], "masks": original_masks(d, meta, self.threshold),
                  "scores": d["scores"].float().cpu(), "labels": d["labels"].cpu()}]
            )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"boxes": self.boxes.state_dict(), "segm": self.segm.state_dict()}

    def merge(self, state: dict[str, Any]) -> None:
        self.boxes.merge(state["boxes"])
        self.segm.merge(state["segm"])

    def compute(self) -> dict[str, Any]:
        out = self.boxes.compute()
        res = self.segm.compute()
        out.update({f"mask_{METRIC_NAMES[k]}": float(res[k]) for k in COCO_KEYS})
        out["mask_per_class"] = res["per_class"]
        return out


def annotate_instances(cfg: InstanceConfig) -> Any:
    """``predict_detector``'s hook: masks on the original image, drawn, and RLE-encoded."""

    def annotate(image: np.ndarray, det: dict, meta: dict, boxes: np.ndarray, classes: list):
        masks = original_masks(det, meta, cfg.mask_threshold)
        scores, labels = det["scores"].float().cpu().numpy(), det["labels"].cpu().numpy()
        drawn = draw_instances(image, masks, boxes, scores, labels, classes)
        return drawn, [{"segmentation": rle_encode(m)} for m in masks]

    return annotate


def predict_instance(cfg: InstanceConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict instance``: ``predict detect``'s outputs (overlays in ``out``,
    ``predictions.json``, ``images.json``) with each mask tinted on the overlay and a COCO
    RLE ``segmentation`` in each result (``cvcraft eval segm`` / pycocotools read it)."""
    return predict_detector(cfg, out, task=InstanceTask, annotate=annotate_instances(cfg))


InstanceTask.predict = staticmethod(predict_instance)  # type: ignore[attr-defined]


def data_sources(data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) of ``data`` read with instance masks (for pack and augment)."""
    from cvcraft.data.instance_dataset import InstanceSource

    kw = {"imgsz": imgsz} if imgsz else {}
    splits = load_detection_splits(data, seed=seed, masks=True, **kw)
    return InstanceSource(splits.train), InstanceSource(splits.val)


def train_preview(source: Any, imgsz: int, seed: int) -> Any:
    """The training dataset ``cvcraft train instance`` builds with default keys."""
    cfg = InstanceConfig(imgsz=imgsz, seed=seed)
    aug = augment_from_config(cfg)
    data = getattr(source, "data", source)
    return instance_dataset(data, imgsz, aug, seed=seed)
