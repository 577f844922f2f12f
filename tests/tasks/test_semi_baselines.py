"""The FixMatch paper's baselines (issue 19): Pseudo-Label and Mean Teacher, their unlabelled
terms by hand (values and where gradients flow), and both trained through the classify task."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.data.classification import ArrayData
from cvcraft.engine.trainer import Trainer
from cvcraft.errors import ConfigError
from cvcraft.losses.fixmatch import mean_teacher_loss, pseudo_label_loss
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.semi import (
    FixMatchDataset,
    ImagesOnly,
    collate_fixmatch,
    mean_teacher_step,
    pseudo_label_step,
)
from cvcraft.tasks.classify.task import ClassifyTask
from cvcraft.transforms import Compose, HorizontalFlip

BASE = {
    "data": "shapes:64",
    "imgsz": "16",
    "batch": "8",
    "workers": "0",
    "epochs": "1",
    "progress": "false",
    "plots": "false",
    "lr": "0.01",
    "labeled": "10",
    "mu": "2",
}


def test_pseudo_label_loss_by_hand_with_a_detached_target():
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(10, 4, generator=g) * 3).requires_grad_(True)
    tau = 0.6
    loss, mask = pseudo_label_loss(z, tau)
    with torch.no_grad():
        p = z.softmax(1)
        want_mask = (p.max(1).values >= tau).float()
        target = p.argmax(1)
    assert 0 < want_mask.sum() < 10 and torch.equal(mask, want_mask)
    z2 = z.detach().clone().requires_grad_(True)  # the same loss with constant targets
    want = (F.cross_entropy(z2, target, reduction="none") * want_mask).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward()
    want.backward()
    torch.testing.assert_close(z.grad, z2.grad)  # no gradient through the pseudo-label


def test_mean_teacher_consistency_by_hand_and_teacher_gets_no_gradient():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 3, generator=g).requires_grad_(True)
    t = torch.randn(6, 3, generator=g).requires_grad_(True)
    loss = mean_teacher_loss(s, t)
    want = ((s.softmax(1) - t.softmax(1)) ** 2).sum(1).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ConfigError, match="both be"):
        mean_teacher_loss(s, t[:3])


def _batch():
    rng = np.random.default_rng(0)
    lab = ArrayData(rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), np.arange(6) % 3,
                    ["a", "b", "c"], "toy")  # fmt: skip
    unl = ArrayData(rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), np.zeros(20, int),
                    ["a", "b", "c"], "toy")  # fmt: skip
    ds = FixMatchDataset(lab, ImagesOnly(unl), Compose([]), HorizontalFlip(1.0), mu=3)
    return collate_fixmatch([ds[(0, k)] for k in range(4)])


def test_step_losses_are_ce_plus_the_unlabelled_term():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    batch = _batch()
    inputs = lambda t: t.float() / 255.0  # noqa: E731
    ce = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        zx = model(inputs(batch["images"]))
        zw, zs = model(inputs(batch["u_weak"])), model(inputs(batch["u_strong"]))
        tw = teacher(inputs(batch["u_weak"]))
    sup = ce(zx, batch["labels"])
    loss, _ = pseudo_label_step(model, batch, inputs, ce, 0.0, 0.5)
    lu = F.cross_entropy(zw, zw.argmax(1))  # tau = 0: every item counts
    assert loss.item() == pytest.approx((sup + 0.5 * lu).item(), rel=1e-5)
    loss, _ = mean_teacher_step(model, teacher, batch, inputs, ce, 2.0)
    mt = ((zs.softmax(1) - tw.softmax(1)) ** 2).sum(1).mean()
    assert loss.item() == pytest.approx((sup + 2.0 * mt).item(), rel=1e-5)


@pytest.mark.parametrize("semi", ["pseudolabel", "meanteacher"])
def test_baselines_train_end_to_end(semi, tmp_path):
    cfg = task_config("classify", {**BASE, "semi": semi, "tau": "0", "ema": "true",
                                   "out": str(tmp_path / semi)})  # fmt: skip
    metrics = Trainer(ClassifyTask(cfg), cfg).fit()
    assert metrics["loss_u"] > 0 and metrics["mask_rate"] == 1.0
    rows = list(csv.DictReader(open(tmp_path / semi / "metrics.csv")))
    assert float(rows[-1]["loss_u"]) > 0
    with pytest.raises(ConfigError, match="add ema=true"):
        task_config("classify", {**BASE, "semi": "meanteacher"})


def test_labels_per_class_keeps_n_of_every_class(tmp_path, capsys):
    from cvcraft.tasks.classify.semi import split_labeled

    cfg = task_config("classify", {**BASE, "labeled": "0", "labels_per_class": "3",
                                   "semi": "fixmatch"})  # fmt: skip
    from cvcraft.data.datasets import load_classification

    train = load_classification("shapes:64", seed=0).train
    kept, pool = split_labeled(cfg, train)
    counts = np.bincount(kept.labels, minlength=len(train.classes))
    assert (counts == 3).all() and len(pool) == len(train) - 3 * len(train.classes)
    with pytest.raises(ConfigError, match="not together with labeled="):
        task_config("classify", {**BASE, "semi": "fixmatch", "labels_per_class": "3"})
