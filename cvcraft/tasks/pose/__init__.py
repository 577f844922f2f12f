"""Human pose estimation: K keypoints per person from heatmaps (OKS AP)."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.pose.config import PoseConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# `cvcraft demo pose`: SimpleBaseline (ResNet-18, 64-channel deconvs) on 64x64 stick figures.
DEMO_PRESET: dict[str, Any] = {
    "data": "shapes:2000",
    "model": "simple_baseline",
    "model_kwargs": {"backbone": "resnet18", "deconv_channels": 64},
    "imgsz": 64,
    "epochs": 3,
    "batch": 32,
    "lr": 0.002,
    "workers": 1,
    "name": "demo",
}

register_task(
    TaskSpec(
        name="pose",
        config=PoseConfig,
        task_class="cvcraft.tasks.pose.task:PoseTask",
        help="human keypoints from heatmaps (OKS AP)",
        model_packages=("pose",),
        monitor="map",
        summary_keys=("map", "map50", "AR", "best_epoch", "train_seconds"),
        val_keys=("map", "map50", "AP75", "AR", "val_loss"),
        demo_preset=DEMO_PRESET,
        data_sources="cvcraft.tasks.pose.task:data_sources",
        train_preview="cvcraft.tasks.pose.task:train_preview",
        target_kind="keypoints",
        default_imgsz=64,
    )
)
