"""Every family of the zoo trains through the same Trainer from the classify config."""

import math

import pytest

from cvcraft.engine.trainer import Trainer
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask

CASES = [
    ("mlp", 28, {}),
    ("nin", 32, {}),
    ("mobilenet_v2", 32, {}),
    ("repvgg_a0", 32, {}),
    ("googlenet", 64, {}),  # auxiliary heads add 0.3 x their CE in train mode
    ("vit_tiny_patch4_32", 32, {"optimizer": "adamw", "lr": 1e-3, "label_smoothing": 0.1}),
    ("swin_nano_patch2_window4_32", 32, {"optimizer": "adamw", "lr": 1e-3, "label_smoothing": 0.1}),
]


@pytest.mark.parametrize("name, imgsz, extra", CASES, ids=[c[0] for c in CASES])
def test_model_trains_from_config(tmp_path, name, imgsz, extra):
    cfg = task_config(
        "classify",
        {
            "data": "shapes:64",
            "model": name,
            "imgsz": imgsz,
            "batch": 16,
            "epochs": 1,
            "workers": 0,
            "progress": False,
            "plots": False,
            "warmup_epochs": 0.5,
            "schedule": "cosine",
            "out": str(tmp_path / name),
            **extra,
        },
    )
    metrics = Trainer(ClassifyTask(cfg), cfg).fit()
    assert math.isfinite(metrics["val_loss"]) and 0.0 <= metrics["top1"] <= 1.0
