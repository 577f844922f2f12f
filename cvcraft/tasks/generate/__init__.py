"""Image generation: GANs trained with two networks and two optimizers (`cvcraft train
generate`), sampled by `cvcraft predict generate n=64 class=3`."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.generate.config import GenerateConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# `cvcraft demo generate`: a class-conditional DCGAN on synthetic shapes at 32 px.
DEMO_PRESET: dict[str, Any] = {
    "data": "shapes:3000",
    "model": "cgan",
    "imgsz": 32,
    "epochs": 6,
    "batch": 64,
    "progress": False,
    "name": "demo",
}

register_task(
    TaskSpec(
        name="generate",
        config=GenerateConfig,
        task_class="cvcraft.tasks.generate.task:GenerateTask",
        help="image generation: GANs (DCGAN, cGAN, WGAN-GP, hinge + spectral norm)",
        model_packages=("generative",),
        monitor="moment_dist",
        monitor_mode="min",
        lower_is_better=("moment_dist",),
        summary_keys=("moment_dist", "d_loss", "g_loss", "best_epoch", "train_seconds"),
        val_keys=("moment_dist", "val_images"),
        demo_preset=DEMO_PRESET,
        predict_needs_source=False,
    )
)
