"""Pixel-wise distillation in the segment task: (1 - a) * label loss + a * T^2 KL to a frozen
teacher's logits, ignored pixels left out."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.engine.trainer import Trainer
from cvcraft.tasks import task_config
from cvcraft.tasks.segment.task import SegmentTask

BASE = {"data": "shapes:24", "model": "unet", "model_kwargs": "{base: 4}", "imgsz": "32",
        "size_divisor": "16", "batch": "4", "workers": "0", "epochs": "1", "progress": "false",
        "plots": "false"}  # fmt: skip


def test_segment_distillation_loss_by_hand(tmp_path):
    cfg = task_config("segment", {**BASE, "out": str(tmp_path / "teacher")})
    Trainer(SegmentTask(cfg), cfg).fit()
    teacher = str(tmp_path / "teacher" / "best.pt")
    over = {"out": str(tmp_path / "student"), "kd_alpha": "0.6", "kd_t": "2", "teacher": teacher}
    cfg = task_config("segment", {**BASE, **over})
    trainer = Trainer(SegmentTask(cfg), cfg)
    trainer._setup()
    task = trainer.task
    batch = next(iter(trainer.train_loader))
    student = copy.deepcopy(trainer.model)
    loss, _ = task.train_loss(trainer.model, batch)
    x, y = task.pre(batch["images"]), batch["masks"]
    out = student(x)
    main = out[0] if isinstance(out, tuple) else out
    with torch.no_grad():
        t = task.teacher(batch["images"])
    keep = y != 255
    s2 = main.permute(0, 2, 3, 1)[keep].double() / 2
    t2 = t.permute(0, 2, 3, 1)[keep].double() / 2
    kl = (F.softmax(t2, 1) * (F.log_softmax(t2, 1) - F.log_softmax(s2, 1))).sum(1).mean() * 4
    expect = 0.4 * task.criterion(out, y) + 0.6 * kl
    assert float(loss) == pytest.approx(float(expect), rel=1e-4)
    assert np.isfinite(float(loss)) and not trainer.extra_parts["teacher"].train
