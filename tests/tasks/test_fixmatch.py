"""FixMatch in the classify task: the labelled/unlabelled split, the two streams (the
unlabelled one reads images only; weak and strong views come from the same image), the
batch loss against CE + lambda_u x a by-hand masked term, and a short end-to-end run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.data.classification import ArrayData
from cvcraft.engine.trainer import Trainer
from cvcraft.errors import ConfigError, DataError
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.semi import (
    FixMatchDataset,
    FixMatchStats,
    ImagesOnly,
    collate_fixmatch,
    fixmatch_loss,
    select_labeled,
    split_labeled,
)
from cvcraft.tasks.classify.task import ClassifyTask
from cvcraft.transforms import Compose, HorizontalFlip

BASE = {"data": "shapes:64", "imgsz": "16", "batch": "8", "workers": "0", "epochs": "1",
        "progress": "false", "plots": "false", "lr": "0.01"}  # fmt: skip


def toy_data(n: int = 30, classes: int = 3, seed: int = 0) -> ArrayData:
    """Images whose pixels encode their index (pixel [0, 0, 0] = index), so a view can be
    traced back to its source image."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    imgs[:, 0, 0, 0] = np.arange(n)
    labels = np.arange(n) % classes
    return ArrayData(imgs, labels, [f"c{i}" for i in range(classes)], "toy")


class NoLabels(ArrayData):
    """Data whose labels and samples explode when touched: an unlabelled stream that reads
    them fails loudly."""

    armed = False

    def __len__(self) -> int:
        return len(self.images)

    def __getattribute__(self, name):
        if name in ("labels", "sample", "class_counts") and object.__getattribute__(self, "armed"):
            raise AssertionError(f"the unlabelled stream touched .{name}")
        return super().__getattribute__(name)


def test_select_labeled_balanced_and_fraction():
    y = np.repeat(np.arange(4), [50, 30, 20, 10])
    idx = select_labeled(y, 10, 4, seed=0)
    assert sorted(np.bincount(y[idx], minlength=4).tolist()) == [2, 2, 3, 3]
    assert len(idx) == 10 and len(np.unique(idx)) == 10
    idx = select_labeled(y, 0.1, 4, seed=0)
    assert np.bincount(y[idx], minlength=4).tolist() == [5, 3, 2, 1]
    # seeded: same seed same pick, other seed another pick
    np.testing.assert_array_equal(idx, select_labeled(y, 0.1, 4, seed=0))
    assert not np.array_equal(select_labeled(y, 40, 4, 0), select_labeled(y, 40, 4, 1))
    with pytest.raises(DataError, match="class 3 has 10"):
        select_labeled(y, 80, 4, seed=0)  # 20 per class, class 3 has 10
    with pytest.raises(ConfigError, match="fewer than the 4 classes"):
        select_labeled(y, 3, 4, seed=0)


def test_split_keeps_labels_apart_from_the_pool():
    data = toy_data(30)
    cfg = task_config("classify", {"semi": "fixmatch", "labeled": "6"})
    labeled, pool = split_labeled(cfg, data)
    assert len(labeled) == 6 and len(pool) == 24
    lab_ids = {int(labeled.load_image(i)[0, 0, 0]) for i in range(6)}
    pool_ids = {int(pool.load_image(i)[0, 0, 0]) for i in range(24)}
    assert lab_ids.isdisjoint(pool_ids) and lab_ids | pool_ids == set(range(30))
    assert not hasattr(pool, "labels") and not hasattr(pool.parts[0], "labels")


def test_unlabelled_stream_never_sees_labels():
    labeled = toy_data(6)
    unlabeled = NoLabels(toy_data(20, seed=1).images, np.zeros(20, np.int64), ["c0"], "u")
    unlabeled.armed = True
    ident = Compose([])
    ds = FixMatchDataset(labeled, ImagesOnly(unlabeled), ident, ident, mu=3, seed=0)
    batch = collate_fixmatch([ds[(0, k)] for k in range(len(ds))])
    # the only labels in the batch are the labelled items'
    assert [k for k in batch if "label" in k] == ["labels"]
    assert batch["labels"].tolist() == labeled.labels[batch["index"].numpy()].tolist()
    assert batch["u_weak"].shape == (3 * len(ds), 3, 8, 8)
    # every unlabelled image is visited in an epoch, each view is its own source image
    assert set(batch["u_index"].tolist()) == set(range(20))
    src = torch.from_numpy(unlabeled.images).permute(0, 3, 1, 2)
    torch.testing.assert_close(batch["u_weak"], src[batch["u_index"]])


def test_weak_and_strong_views_are_of_the_same_image():
    labeled, unlabeled = toy_data(6), toy_data(12, seed=1)
    ds = FixMatchDataset(labeled, ImagesOnly(unlabeled), Compose([]), HorizontalFlip(1.0), mu=2)
    batch = collate_fixmatch([ds[(1, k)] for k in range(len(ds))])
    torch.testing.assert_close(batch["u_strong"], batch["u_weak"].flip(3))
    # the default strong view (RandAugment + Cutout on the weak pipeline) differs from the weak
    # one but keeps its source, and an item is the same on a second read (resume replays it)
    cfg = task_config("classify", {"semi": "fixmatch", "labeled": "6", "mu": "2"})
    from cvcraft.tasks.classify.semi import fixmatch_dataset

    ds2, kw = fixmatch_dataset(cfg, labeled, ImagesOnly(unlabeled), Compose([]))
    a, b = ds2[(2, 1)], ds2[(2, 1)]
    np.testing.assert_array_equal(a.strong, b.strong)
    assert not np.array_equal(a.strong, a.weak)
    np.testing.assert_array_equal(a.weak, unlabeled.images[a.u_index])
    assert kw["collate_fn"] is collate_fixmatch


def test_batch_loss_is_ce_plus_masked_term():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    with torch.no_grad():
        model[1].weight.mul_(20)  # confident enough that some rows pass tau
    labeled, unlabeled = toy_data(6), toy_data(20, seed=1)
    ds = FixMatchDataset(labeled, ImagesOnly(unlabeled), Compose([]), HorizontalFlip(1.0), mu=3)
    batch = collate_fixmatch([ds[(0, k)] for k in range(4)])
    inputs = lambda t: t.float() / 255.0  # noqa: E731
    tau, lam = 0.8, 0.7
    stats = FixMatchStats()
    loss, logits_x = fixmatch_loss(model, batch, inputs, torch.nn.CrossEntropyLoss(), tau, lam,
                                   stats)  # fmt: skip
    with torch.no_grad():
        zx = model(inputs(batch["images"]))
        zw = model(inputs(batch["u_weak"])).double()
        zs = model(inputs(batch["u_strong"])).double()
    q = zw.softmax(1)
    mask = (q.max(1).values >= tau).double()
    assert 0 < mask.sum() < len(mask)
    lu = (F.cross_entropy(zs, q.argmax(1), reduction="none") * mask).sum() / len(mask)
    want = F.cross_entropy(zx.double(), batch["labels"]) + lam * lu
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    torch.testing.assert_close(logits_x.detach(), zx)
    assert stats.compute()["mask_rate"] == pytest.approx(float(mask.mean()))


def test_fixmatch_trains_end_to_end(tmp_path, easy_folder):
    keys = {**BASE, "semi": "fixmatch", "labeled": "8", "mu": "2", "tau": "0", "ema": "true",
            "data": str(easy_folder), "val_fraction": "0.25", "imgsz": "32", "model": "lenet5",
            "epochs": "4", "warmup_epochs": "0", "optimizer": "adamw", "lr": "0.003",
            "out": str(tmp_path / "run")}  # fmt: skip
    cfg = task_config("classify", keys)
    metrics = Trainer(ClassifyTask(cfg), cfg).fit()
    assert metrics["mask_rate"] == 1.0  # tau = 0: every pseudo-label is used
    # 8 labels (2 a class) of the easy colour folder: measured raw top1 0.94-1.0
    # (seeds 0-2), lr=0 0.06-0.25; chance 0.25
    assert metrics["loss_u"] > 0 and metrics["raw_top1"] >= 0.75, metrics["raw_top1"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["mask_rate"]) == 1.0
    # 8 labelled of 48, mu = 2: an epoch is max(8, ceil(40 / 2)) = 20 items -> 2 full batches of 8
    assert float(rows[-1]["train_ips"]) > 0


def test_config_errors():
    with pytest.raises(ConfigError, match="semi='mixmatch'"):
        task_config("classify", {"semi": "mixmatch"})
    with pytest.raises(ConfigError, match="add semi=fixmatch"):
        task_config("classify", {"labeled": "100"})
    with pytest.raises(ConfigError, match="needs labeled"):
        task_config("classify", {"semi": "fixmatch"})
    with pytest.raises(ConfigError, match="mixup"):
        task_config("classify", {"semi": "fixmatch", "labeled": "10", "mixup_alpha": "0.2"})
    with pytest.raises(ConfigError, match="tau"):
        task_config("classify", {"semi": "fixmatch", "labeled": "10", "tau": "1.5"})
    with pytest.raises(ConfigError, match="labeled=10.5"):
        task_config("classify", {"semi": "fixmatch", "labeled": "10.5"})
