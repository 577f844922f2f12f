"""Metric learning: an embedding per image, evaluated as retrieval (rank-1, mAP)."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.embed.config import EmbedConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# The embedded default: the 6 synthetic shapes as identities, batch-hard triplet loss on a
# small ResNet; about a minute on 2 cores.
DEMO_PRESET: dict[str, Any] = {
    "data": "shapes:2000",
    "model": "resnet20",
    "imgsz": 32,
    "epochs": 4,
    "p": 6,
    "k": 8,
    "lr": 0.05,
    "optimizer": "sgd",
    "schedule": "cosine",
    "warmup_epochs": 0.0,
    "workers": 1,
    "name": "demo",
}

register_task(
    TaskSpec(
        name="embed",
        config=EmbedConfig,
        task_class="cvcraft.tasks.embed.task:EmbedTask",
        help="metric learning: embeddings evaluated as retrieval (rank-1, mAP)",
        monitor="map",
        monitor_mode="max",
        summary_keys=("map", "rank1", "rank5", "best_epoch", "train_seconds"),
        val_keys=("map", "rank1", "rank5", "rank10", "mrr"),
        demo_preset=DEMO_PRESET,
        target_kind="label",
        default_imgsz=32,
    )
)
