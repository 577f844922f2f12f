"""Every family of the zoo trains through the same Trainer from the classify config, and
learns: on the easy colour folder (4 classes, chance 0.25) each reaches a val top-1 far above
chance, so a broken optimizer, loss or label pipeline fails here (tests/MUTATIONS.md)."""

import math

import pytest
from torch.optim.swa_utils import update_bn

from cvcraft.engine.trainer import Trainer
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask

ADAMW = {"optimizer": "adamw", "lr": 1e-3, "label_smoothing": 0.1}
# (model, imgsz, extra keys); the first three learn the colours in one epoch of 6 steps
FAST = [
    ("mlp", 28, {}),
    ("vit_tiny_patch4_32", 32, ADAMW),
    ("swin_nano_patch2_window4_32", 32, ADAMW),
]
# BatchNorm CNNs need ~24 steps and fresh BN statistics (below): learning checked in slow
BN_CNNS = [
    ("nin", 32, {}),
    ("mobilenet_v2", 32, {}),
    ("repvgg_a0", 32, {}),
    ("googlenet", 64, {}),  # auxiliary heads add 0.3 x their CE in train mode
]


def _fit(tmp_path, easy_folder, name, imgsz, extra):
    cfg = task_config(
        "classify",
        {
            "data": str(easy_folder),
            "val_fraction": 0.25,
            "model": name,
            "imgsz": imgsz,
            "batch": 8,
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
    trainer = Trainer(ClassifyTask(cfg), cfg)
    return trainer, trainer.fit()


@pytest.mark.parametrize("name, imgsz, extra", FAST, ids=[c[0] for c in FAST])
def test_model_trains_from_config(tmp_path, easy_folder, name, imgsz, extra):
    _, metrics = _fit(tmp_path, easy_folder, name, imgsz, extra)
    # measured top1 1.0 on 16 val images (seeds 0-2); never stepping or shuffled labels: ~0.25
    assert math.isfinite(metrics["val_loss"]) and metrics["top1"] >= 0.75


@pytest.mark.parametrize("name, imgsz, extra", BN_CNNS, ids=[c[0] for c in BN_CNNS])
def test_batchnorm_cnn_trains_from_config(tmp_path, easy_folder, name, imgsz, extra):
    # one epoch of 3 steps: that the BN models run through the classify config at all
    _, metrics = _fit(tmp_path, easy_folder, name, imgsz, {**extra, "batch": 16})
    assert math.isfinite(metrics["val_loss"]) and 0.0 <= metrics["top1"] <= 1.0


# (model, lr, epochs, imgsz or None for BN_CNNS's) for the slow learning check, AdamW, batch
# 8 (6 steps an epoch). MobileNetV2 at 32 px learns these colours slowly however built
# (torchvision's own, in a plain AdamW loop on the same kind of data: loss 1.39 -> 0.94 in 40
# steps, as ours 1.47 -> 0.97; 8 epochs at lr 1e-2: top1 0.25, 0.375 after update_bn); at
# 64 px and 16 epochs it reaches top1 1.0 for seeds 0-2 (17-20 s on one thread).
BN_LEARN = [
    ("nin", 3e-3, 4, None),
    ("repvgg_a0", 3e-3, 4, None),
    ("googlenet", 1e-3, 4, None),
    ("mobilenet_v2", 3e-3, 16, 64),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, lr, epochs, size", BN_LEARN, ids=[c[0] for c in BN_LEARN])
def test_batchnorm_cnn_learns(tmp_path, easy_folder, name, lr, epochs, size):
    """After a few steps eval-mode BN's running statistics still lag the weights (momentum
    0.1: after n updates a weight of 0.9^n stays on the initial mean 0 / var 1): a deep plain
    stack like RepVGG-A0 then amplifies activations block after block (measured: val loss 2e6
    after 3 steps, per-block activation sd growing ~1.8x a block, back to ~1 and the loss to
    34 once the statistics are recomputed). So the statistics are recomputed over the
    training set (torch's ``update_bn``) before the learning check. Measured top1 (seeds 0-2):
    nin 0.75-1.0, repvgg_a0 0.69-1.0, googlenet 0.88-1.0, mobilenet_v2 1.0 x 3 (lr=0:
    0.125-0.25); chance 0.25."""
    imgsz, extra = next((s, e) for n, s, e in BN_CNNS if n == name)
    imgsz = size or imgsz
    keys = {**extra, "epochs": epochs, "optimizer": "adamw", "lr": lr, "warmup_epochs": 0}
    trainer, _ = _fit(tmp_path, easy_folder, name, imgsz, keys)
    task = trainer.task
    update_bn((task._inputs(b) for b in trainer.train_loader), trainer.module)
    metrics = task.evaluate(trainer.module)
    assert metrics["top1"] >= 0.5, metrics["top1"]
