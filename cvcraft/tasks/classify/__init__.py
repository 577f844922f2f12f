"""Image classification: one label per image (top-1/top-5, confusion matrix, AUC)."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.classify.config import ClassifyConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# The embedded default: a small ResNet on 32x32 synthetic shapes, sized so the whole run
# (data generation, training, evaluation, plots) fits in about two minutes on 2 CPU cores.
DEMO_PRESET: dict[str, Any] = {
    "data": "shapes:5000",
    "model": "resnet20",
    "imgsz": 32,
    "epochs": 5,
    "batch": 64,
    "lr": 0.1,
    "optimizer": "sgd",
    "schedule": "one_cycle",
    "warmup_epochs": 0.0,
    "weight_decay": 5e-4,
    "workers": 1,
    "degrees": 0.0,
    "hflip": 0.5,
    "name": "demo",
}

register_task(
    TaskSpec(
        name="classify",
        config=ClassifyConfig,
        task_class="cvcraft.tasks.classify.task:ClassifyTask",
        help="one label per image",
        model_packages=("classification",),
        monitor="top1",
        summary_keys=("top1", "top5", "best_epoch", "train_seconds"),
        val_keys=("top1", "top5", "val_loss"),
        demo_preset=DEMO_PRESET,
        data_sources="cvcraft.tasks.classify.task:data_sources",
        train_preview="cvcraft.tasks.classify.task:train_preview",
        target_kind="label",
        default_imgsz=32,
    )
)
