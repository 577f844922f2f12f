"""Metric learning: an embedding per image, evaluated as retrieval (rank-1, mAP)."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.embed.config import EmbedConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# The embedded default: the 6 synthetic shapes as identities, batch-hard triplet loss plus
# BNNeck's identity cross-entropy (id_weight=1) on a small ResNet with classify's demo recipe
# and sample budget (5,000 images x 5 epochs, one-cycle SGD). Triplet alone reached map 0.25
# (its hardest-pair gradient starts late from scratch); with the ID term map 0.98.
DEMO_PRESET: dict[str, Any] = {
    "data": "shapes:5000",
    "model": "resnet20",
    "imgsz": 32,
    "epochs": 5,
    "p": 6,
    "k": 10,
    "id_weight": 1.0,
    "lr": 0.1,
    "optimizer": "sgd",
    "schedule": "one_cycle",
    "warmup_epochs": 0.0,
    "weight_decay": 5e-4,
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
