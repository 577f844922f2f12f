"""LR-batch scaling, TensorBoard logging and training diagnostics."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cvcraft.engine.diagnostics import Diagnostics
from cvcraft.engine.trainer import Trainer
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask

BASE = {"data": "shapes:64", "model": "mlp", "imgsz": "16", "batch": "16", "workers": "0",
        "epochs": "2", "progress": "false", "plots": "false", "lr": "0.1",
        "warmup_epochs": "0", "schedule": "constant"}  # fmt: skip


@pytest.mark.parametrize("mode,factor", [("none", 1.0), ("linear", 0.25), ("sqrt", 0.5)])
def test_lr_scales_with_the_batch(tmp_path, mode, factor):
    cfg = task_config("classify", {**BASE, "lr_scale": mode, "base_batch": "64",
                                   "out": str(tmp_path / mode)})  # fmt: skip
    trainer = Trainer(ClassifyTask(cfg), cfg)
    trainer._setup()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * factor)
    cfg.accumulate = 4  # 16 x 4 = 64 images per step: the base batch, no scaling
    from cvcraft.engine.trainer import scaled_lr

    assert scaled_lr(0.1, cfg) == pytest.approx(0.1)


def test_tensorboard_events_hold_the_metrics_csv_values(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = task_config("classify", {**BASE, "tensorboard": "true", "out": str(tmp_path / "r")})
    Trainer(ClassifyTask(cfg), cfg).fit()
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    with open(tmp_path / "r" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    for key in ("train_loss", "top1", "val_loss", "lr"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == [1, 2]
        for e, r in zip(events, rows):
            assert e.value == pytest.approx(float(r[key]), rel=1e-5)
    hist = acc.Tags()["histograms"]
    assert any(t.startswith("weights/") for t in hist) and any(t.startswith("grads/") for t in hist)


def test_diagnostics_flag_a_dead_relu_and_a_vanishing_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).train()
    with torch.no_grad():  # all-negative pre-activations: every ReLU output is 0
        model[0].weight.zero_()
        model[0].bias.fill_(-1.0)
    diag = Diagnostics(model)
    logs: list[str] = []
    trainer = SimpleNamespace(model=model, log=logs.append)
    loss = nn.functional.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
    loss.backward()
    diag.before_optimizer_step(trainer, "model")
    row: dict = {}
    diag.on_epoch_end(trainer, 0, row)
    assert row["dead_relu"] == 1.0
    # the first layer gets no gradient through the dead ReLU; the last one does
    expect = math.sqrt(float(model[2].weight.grad.pow(2).sum() + model[2].bias.grad.pow(2).sum()))
    assert row["grad_norm"] == pytest.approx(expect, rel=1e-6)
    assert any("gradient vanishes in 0" in w for w in logs)
    assert any("100% of 1's outputs are dead" in w for w in logs)


def test_diagnose_key_adds_columns_and_a_report(tmp_path):
    cfg = task_config("classify", {**BASE, "diagnose": "true", "epochs": "1", "plots": "true",
                                   "out": str(tmp_path / "d")})  # fmt: skip
    Trainer(ClassifyTask(cfg), cfg).fit()
    with open(tmp_path / "d" / "metrics.csv") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["grad_norm"]) > 0 and 0 <= float(row["dead_relu"]) <= 1
    report = json.loads((tmp_path / "d" / "diagnostics.json").read_text())
    assert report["layers"] and (tmp_path / "d" / "plots" / "gradient_flow.png").is_file()


@pytest.mark.parametrize("batch,lr", [("16", "0.1"), ("64", "0.4")])
def test_decoupled_wd_keeps_the_per_step_decay(tmp_path, batch, lr):
    # weight_decay=0.002 with decouple_wd: every run decays a weight by lr*wd_eff = 0.002 per
    # step at the peak lr, whatever lr= or lr_scale make of the lr (airbench's decoupling)
    cfg = task_config("classify", {**BASE, "lr": lr, "batch": batch, "lr_scale": "linear",
                                   "base_batch": "32", "weight_decay": "0.002",
                                   "decouple_wd": "true", "momentum": "0", "nesterov": "false",
                                   "warmup_epochs": "0", "out": str(tmp_path / "r")})  # fmt: skip
    trainer = Trainer(ClassifyTask(cfg), cfg)
    trainer._setup()
    peak = float(lr) * int(batch) / 32
    groups = [g for g in trainer.optimizer.param_groups if g["weight_decay"] > 0]
    assert groups and all(g["lr"] == pytest.approx(peak) for g in groups)
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(0.002) for g in groups)
    p = groups[0]["params"][0]
    before = p.detach().clone()
    for g in groups:  # zero gradients: only the decay moves the weights
        for q in g["params"]:
            q.grad = torch.zeros_like(q)
    trainer.optimizer.step()
    torch.testing.assert_close(p.detach(), before * (1 - 0.002), rtol=1e-6, atol=1e-8)
    plain = task_config("classify", {**BASE, "weight_decay": "0.002", "out": str(tmp_path / "p")})
    t2 = Trainer(ClassifyTask(plain), plain)
    t2._setup()
    assert max(g["weight_decay"] for g in t2.optimizer.param_groups) == 0.002  # torch's meaning
