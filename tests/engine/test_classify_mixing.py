"""Classification wiring: mixup/cutmix keyed by (seed, epoch, step), class-weighted / focal
losses, imbalance samplers, the augment: spec, and the train top-1 with soft targets."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from cvcraft.cli import run
from cvcraft.structures import Sample
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import (
    ClassifyTask,
    Preprocess,
    build_criterion,
    build_transforms,
    uses_soft_targets,
)
from cvcraft.transforms.mix import MixupCutmix

LABELS = np.array([0] * 30 + [1] * 10 + [2] * 5)


def test_class_weighted_ce_matches_torch_with_sklearn_weights():
    cfg = task_config("classify", {"class_weights": "inverse", "label_smoothing": 0.1})
    crit = build_criterion(cfg, LABELS, 3)
    w = torch.tensor(compute_class_weight("balanced", classes=np.arange(3), y=LABELS)).float()
    logits = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 3
    ref = F.cross_entropy(logits, y, weight=w, label_smoothing=0.1)
    torch.testing.assert_close(crit(logits, y), ref)


def test_focal_with_sqrt_alpha_and_soft_switch():
    cfg = task_config("classify", {"loss": "focal", "class_weights": "sqrt"})
    crit = build_criterion(cfg, LABELS, 3)
    counts = np.bincount(LABELS)
    alpha = 1 / np.sqrt(counts)
    alpha *= len(LABELS) / (alpha * counts).sum()
    np.testing.assert_allclose(crit.alpha.numpy(), alpha, rtol=1e-6)
    assert not uses_soft_targets(cfg)
    # focal has no smoothing option: smoothing (like mixing) switches to soft targets
    assert uses_soft_targets(task_config("classify", {"loss": "focal", "label_smoothing": 0.1}))
    assert uses_soft_targets(task_config("classify", {"cutmix_alpha": 1.0}))
    assert not uses_soft_targets(task_config("classify", {"cutmix_alpha": 1.0, "mix_prob": 0.0}))


class _Record(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k, self.inputs = k, []
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        # logits that predict class 0 for every image
        return torch.zeros(x.shape[0], self.k) + torch.tensor([5.0] + [0.0] * (self.k - 1)) + self.w


def _task(**over):
    cfg = task_config("classify", {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "seed": 7, **over})
    task = ClassifyTask(cfg)
    task.device = torch.device("cpu")
    task.pre = Preprocess(None, "none", 3)
    task.channels_last = False
    task.classes = list("abcd")
    task.criterion = build_criterion(cfg, np.arange(4), 4)
    task.soft_targets = uses_soft_targets(cfg)
    task.mix = MixupCutmix(4, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob, cfg.mix_switch,
                           cfg.label_smoothing)  # fmt: skip
    return task


def test_train_loss_mixes_with_epoch_step_rng_and_counts_top1():
    task = _task(label_smoothing=0.1)
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.randint(0, 255, (6, 3, 8, 8), generator=g, dtype=torch.uint8),
             "labels": torch.tensor([0, 1, 2, 3, 0, 1])}  # fmt: skip
    model = _Record(4)
    task.on_epoch_start(None, 3)
    loss0, n = task.train_loss(model, batch)
    loss1, _ = task.train_loss(model, batch)
    assert n == 6 and task.step == 2
    for step, (seen, loss) in enumerate(zip(model.inputs, (loss0, loss1))):
        x, y = task.mix(batch["images"].float() / 255.0, batch["labels"],
                        np.random.default_rng([7, 3, step, 1]))  # fmt: skip
        torch.testing.assert_close(seen, x)
        logits = torch.zeros(6, 4) + torch.tensor([5.0, 0, 0, 0])
        ref = -(y * logits.log_softmax(1)).sum(1).mean()  # smoothing already inside y
        torch.testing.assert_close(loss.detach(), ref)
        assert not torch.equal(seen, batch["images"].float() / 255.0)
    # top-1 counts predictions (all class 0) against each soft target's argmax
    hard = [
        task.mix(batch["images"].float(), batch["labels"], np.random.default_rng([7, 3, s, 1]))[1]
        for s in range(2)
    ]
    hard = [h.argmax(1) for h in hard]
    expect = sum(int((h == 0).sum()) for h in hard) / 12
    assert float(task.train_correct) / task.train_seen == pytest.approx(expect)
    task.on_epoch_start(None, 4)
    assert task.step == 0 and task.train_seen == 0


def test_augment_spec_replaces_default_train_pipeline():
    cfg = task_config("classify", {"augment": [{"name": "hflip", "p": 1.0}]})
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = build_transforms(cfg, True)(Sample(img), np.random.default_rng(0))
    np.testing.assert_array_equal(out.image, img[:, ::-1])
    # validation keeps the default pipeline
    assert (
        build_transforms(cfg, False)(Sample(np.zeros((40, 40, 3), np.uint8))).image.shape[0] == 32
    )


def test_end_to_end_mixing_sampler_weights(tmp_path, easy_folder):
    out = tmp_path / "run"
    args = [f"data={easy_folder}", "val_fraction=0.25", "model=lenet5", "imgsz=32", "batch=8",
            "workers=0", "progress=false", "epochs=3", "warmup_epochs=0", "optimizer=adamw",
            "lr=0.003", "plots=false", "mixup=0.2", "cutmix=1.0", "label_smoothing=0.1",
            "sampler=balanced", "class_weights=inverse"]  # fmt: skip
    metrics = run(["train", "classify", *args, f"cache_dir={tmp_path / 'cache'}", f"out={out}"])
    # learns through mixed targets: measured val top1 1.0 (seeds 0-2), lr=0 0.06-0.25
    assert metrics["top1"] >= 0.75, metrics["top1"]
    row = (out / "metrics.csv").read_text().splitlines()
    header = row[0].split(",")
    assert "train_top1" in header
    values = dict(zip(header, row[-1].split(",")))
    assert 0.0 <= float(values["train_top1"]) <= 1.0 and np.isfinite(float(values["train_loss"]))
    stats = json.loads((out / "norm_stats.json").read_text())
    assert (tmp_path / "cache" / "stats").is_dir() and stats["samples"] == 48


def test_policy_and_erasing_keys_reach_the_train_pipeline():
    from cvcraft.tasks import task_config
    from cvcraft.tasks.classify.task import build_transforms
    from cvcraft.transforms import RandAugment, RandomErasing

    cfg = task_config("classify", {"policy": "randaugment", "erasing": "0.25", "imgsz": "32"})
    steps = list(build_transforms(cfg, train=True))
    assert any(isinstance(t, RandAugment) for t in steps)
    assert any(isinstance(getattr(t, "transform", t), RandomErasing) for t in steps)
    val_steps = list(build_transforms(cfg, train=False))
    assert not any(isinstance(t, RandAugment) for t in val_steps)
