"""Image generation: GANs trained with two networks and two optimizers (`cvcraft train
generate`), sampled by `cvcraft predict generate n=64 class=3`."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.generate.config import GenerateConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# `cvcraft demo generate`: a class-conditional DCGAN (width 32, ~0.3M params) on the 10,000
# MNIST digits of the project's shared data (run from the project root), trained with the
# SN-GAN recipe: hinge loss, spectral norm in D (no BN there), TTUR (D's lr 2x G's). The
# synthetic shapes (`data=shapes:N`, the embedded default) need far longer than a demo.
DEMO_PRESET: dict[str, Any] = {
    "data": "../shared/data/mnist",
    "model": "cgan",
    "model_kwargs": {"width": 32},
    "imgsz": 28,
    "epochs": 8,
    "batch": 64,
    "loss": "hinge",
    "spectral_norm": True,
    "d_lr": 4e-4,
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
        summary_keys=(
            "fid",
            "kid",
            "cond_acc",
            "min_class_share",
            "moment_dist",
            "best_epoch",
            "train_seconds",
        ),  # fmt: skip
        val_keys=(
            "fid",
            "kid",
            "cond_acc",
            "min_class_share",
            "moment_dist",
            "val_neg_elbo",
            "val_eps_mse",
            "val_bpd",
            "val_images",
        ),  # fmt: skip
        demo_preset=DEMO_PRESET,
        predict_needs_source=False,
    )
)
