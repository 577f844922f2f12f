"""Infrared-visible image fusion: one fused image per aligned pair (EN, SD, SF, AG, MI,
SSIM, Q^{AB/F})."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.fuse.config import FuseConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# `cvcraft demo fuse`: DenseFuse (width 8) on generated 64x64 pairs, a minute on 2 cores.
DEMO_PRESET: dict[str, Any] = {
    "data": "synthetic:400",
    "model": "densefuse",
    "model_kwargs": {"width": 8},
    "imgsz": 64,
    "epochs": 4,
    "batch": 16,
    "lr": 0.002,
    "workers": 1,
    "name": "demo",
}

register_task(
    TaskSpec(
        name="fuse",
        config=FuseConfig,
        task_class="cvcraft.tasks.fuse.task:FuseTask",
        help="infrared-visible image fusion (EN, SD, SF, AG, MI, SSIM, Qabf)",
        model_packages=("fusion",),
        monitor="val_loss",
        monitor_mode="min",
        lower_is_better=("mse",),
        summary_keys=(
            "en",
            "sd",
            "sf",
            "ag",
            "mi",
            "ssim",
            "qabf",
            "val_loss",
            "best_epoch",
            "train_seconds",
        ),
        val_keys=("en", "sd", "sf", "ag", "mi", "ssim", "qabf", "psnr", "val_loss"),
        demo_preset=DEMO_PRESET,
        data_sources="cvcraft.tasks.fuse.task:data_sources",
        train_preview="cvcraft.tasks.fuse.task:train_preview",
        target_kind="image",
        default_imgsz=96,
    )
)
