"""Trainer features through the real classify task on tiny synthetic data."""

import numpy as np
import pytest
import torch

from cvcraft.data import ClassifyDataset, build_loader, make_shapes
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.engine.trainer import Trainer, set_loader_epoch
from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.nn.init import init_weights
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask

BASE = {"data": "shapes:256", "imgsz": 32, "workers": 0, "progress": False, "plots": False}


def fit(tmp_path, name, **kw):
    cfg = task_config("classify", {**BASE, "out": str(tmp_path / name), **kw})
    trainer = Trainer(ClassifyTask(cfg), cfg)
    return trainer, trainer.fit()


def test_epoch_changes_order_and_augmentation():
    data = make_shapes(64, 32, seed=0)

    def jitter(sample, rng):
        return sample.replace(image=(sample.image + rng.integers(0, 3)).astype(np.uint8))

    loader = build_loader(ClassifyDataset(data, jitter), 16, shuffle=True, workers=0, seed=0)
    first = [b["index"].clone() for b in loader]
    set_loader_epoch(loader, 1)
    second = [b["index"].clone() for b in loader]
    assert not torch.equal(torch.cat(first), torch.cat(second))
    set_loader_epoch(loader, 0)
    again = [b["index"].clone() for b in loader]
    assert torch.equal(torch.cat(first), torch.cat(again))


def test_gradient_accumulation_equals_big_batch(tmp_path):
    # LeNet has no BatchNorm, so two half-batches accumulate to the same gradient as one
    # full batch; with a constant LR the weights after an epoch must agree.
    common = {
        "model": "lenet5",
        "schedule": "constant",
        "warmup_epochs": 0,
        "epochs": 1,
        "weight_decay": 0.0,
        "lr": 0.01,
        "hflip": 0.0,
    }
    a, _ = fit(tmp_path, "big", batch=32, **common)
    b, _ = fit(tmp_path, "acc", batch=16, accumulate=2, **common)
    assert a.global_step == b.global_step == 8
    for (k, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=k)


def test_early_stopping(tmp_path):
    trainer, metrics = fit(tmp_path, "es", model="lenet5", lr=0.0, epochs=5, patience=1)
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] == 1


def test_freeze_keeps_weights(tmp_path):
    trainer, _ = fit(
        tmp_path,
        "fr",
        model="resnet20",
        epochs=1,
        init="kaiming",
        freeze=["conv1", "bn1", "layer1"],
        lr_mults={"fc": 2.0},
    )
    ref = create_model("resnet20", num_classes=6)
    torch.manual_seed(0)
    init_weights(ref, scheme="kaiming")
    got, want = trainer.model.state_dict(), ref.state_dict()
    for k in want:
        if k.startswith(("conv1.", "bn1.", "layer1.")):
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(got["layer2.0.conv1.weight"], want["layer2.0.conv1.weight"])
    lrs = {g.get("name", ""): g["lr"] for g in trainer.optimizer.param_groups}
    assert any(g["lr_mult"] == 2.0 for g in trainer.optimizer.param_groups), lrs


def test_ema_is_evaluated_alongside_raw(tmp_path):
    trainer, metrics = fit(tmp_path, "ema", model="resnet20", epochs=2, ema=True, ema_tau=5.0)
    assert "raw_top1" in metrics and 0 <= metrics["top1"] <= 1
    state = load_checkpoint(tmp_path / "ema" / "last.pt")
    assert state["ema"] is not None
    assert not torch.equal(state["ema"]["fc.weight"], state["model"]["fc.weight"])


def test_val_interval_evaluates_every_kth_and_last_epoch(tmp_path):
    calls = []

    class Counting(ClassifyTask):
        def evaluate(self, model):
            calls.append(1)
            return super().evaluate(model)

    cfg = task_config(
        "classify", {**BASE, "out": str(tmp_path / "vi"), "model": "lenet5", "epochs": 5,
                     "val_interval": 2, "ema": True, "val_raw": False}
    )  # fmt: skip
    trainer = Trainer(Counting(cfg), cfg)
    metrics = trainer.fit()
    # epochs 2, 4 and 5 (the last) are evaluated, EMA only; then best.pt once more at the end
    assert len(calls) == 3 + 1
    rows = trainer.history
    assert [("top1" in r) for r in rows] == [False, True, False, True, True]
    assert metrics["best_epoch"] in (2, 4, 5) and "raw_top1" not in metrics
    csv_text = (tmp_path / "vi" / "metrics.csv").read_text().splitlines()
    assert len(csv_text) == 6 and csv_text[1].split(",")[-1] == ""  # blank metric cells
    with pytest.raises(ConfigError, match="val_interval=0"):
        fit(tmp_path, "vi0", model="lenet5", epochs=1, val_interval=0)


@pytest.mark.parametrize("opt", ["sgd", "adamw", "rmsprop"])
def test_amp_and_regularizers_run(tmp_path, opt):
    _, metrics = fit(
        tmp_path,
        opt,
        model="resnet20",
        epochs=1,
        amp=True,
        optimizer=opt,
        lr=0.001 if opt != "sgd" else 0.05,
        l1=1e-6,
        l2=1e-5,
        grad_clip=5.0,
        channels_last=True,
    )
    assert np.isfinite(metrics["val_loss"]) and 0 <= metrics["top1"] <= 1
