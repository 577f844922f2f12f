"""Instance segmentation: a mask, a box and a class per object, scored with COCO mask AP."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.detect import DEMO_PRESET as DETECT_DEMO_PRESET
from cvcraft.tasks.instance.config import InstanceConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# The embedded default: YOLO-seg pico on 64 px multi-object shapes, the detect demo's recipe
# (Mosaic off, scale jitter 0.25, AdamW 0.004, EMA) with masks, 15 epochs on one compute
# thread: this model's convolutions at 64 px are too small to split, and two threads spent
# 29 s per epoch waiting on each other where one spends 12.7 s (the data worker has the
# second core). The measured mask AP50 and time are in BENCHMARKS.md.
DEMO_PRESET: dict[str, Any] = {
    **DETECT_DEMO_PRESET,
    "model": "yolo_seg_p",
    "epochs": 15,
    "threads": 1,
}

MODELS = (
    "yolo_seg_p",
    "yolo_seg_n",
    "yolo_seg_s",
    "maskrcnn_resnet18_fpn",
    "maskrcnn_resnet50_fpn",
)

register_task(
    TaskSpec(
        name="instance",
        config=InstanceConfig,
        task_class="cvcraft.tasks.instance.task:InstanceTask",
        help="instance masks with classes (COCO mask AP)",
        models=MODELS,
        monitor="mask_map",
        summary_keys=("mask_map", "mask_map50", "map", "map50", "best_epoch", "train_seconds"),
        val_keys=("mask_map", "mask_map50", "mask_map75", "map", "map50", "val_loss"),
        demo_preset=DEMO_PRESET,
        data_sources="cvcraft.tasks.instance.task:data_sources",
        train_preview="cvcraft.tasks.instance.task:train_preview",
        target_kind="boxes",
        default_imgsz=256,
    )
)
