"""The task platform: registry-driven CLI, a two-model task with exact resume and DDP,
the monitor's direction, and evaluators that merge across processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.engine.evaluation import run_evaluation
from cvcraft.engine.trainer import Trainer
from cvcraft.metrics.segmentation import SegmentationMetrics
from cvcraft.tasks import get_task, list_tasks, task_config
from cvcraft.tasks.classify.task import ClassifyTask

HERE = Path(__file__).parent


def cli(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, CVCRAFT_TASKS="toy_gan_task", OMP_NUM_THREADS="1", **env)
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "cvcraft.cli", *args], cwd=tmp, env=e, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    st = load_checkpoint(path)
    out = {f"g.{k}": v for k, v in st["model"].items()}
    out.update({f"ema.{k}": v for k, v in st["ema"].items()})
    out.update({f"d.{k}": v for k, v in st["parts"]["disc"]["model"].items()})
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_registry_lists_the_builtin_tasks_and_their_directions():
    assert list_tasks()[:3] == ["classify", "detect", "segment"]
    assert get_task("detect").monitor == "map" and get_task("detect").metric_mode("map") == "max"
    assert get_task("classify").metric_mode("val_loss") == "min"
    assert get_task("classify").metric_mode("raw_val_loss") == "min"


def test_two_model_task_resumes_exactly_after_a_kill(tmp_path):
    full = cli(["train", "toygan", "epochs=3", "out=full", "deterministic=true"], tmp_path)
    assert full.returncode == 0, full.stderr
    killed = cli(
        ["train", "toygan", "epochs=3", "out=part", "deterministic=true"], tmp_path,
        CVCRAFT_FAULT_KILL_AFTER_EPOCH="2",
    )  # fmt: skip
    assert killed.returncode != 0  # SIGKILL after epoch 2's checkpoint
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 1
    resumed = cli(["train", "toygan", "out=part", "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "full" / "last.pt"), weights(tmp_path / "part" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert rows(tmp_path / "full" / "metrics.csv") == rows(tmp_path / "part" / "metrics.csv")
    st = load_checkpoint(tmp_path / "full" / "last.pt")
    # EMA on the generator only; both optimizers and schedules saved
    assert st["ema"] is not None and st["parts"]["disc"]["ema"] is None
    assert st["parts"]["disc"]["optimizer"]["param_groups"][0]["initial_lr"] == 0.002
    assert st["optimizer"]["param_groups"][0]["initial_lr"] == 0.001
    assert len(rows(tmp_path / "full" / "metrics.csv")) == 3


@pytest.mark.slow
def test_two_model_task_under_two_process_ddp_equals_one_process(tmp_path):
    one = cli(["train", "toygan", "epochs=2", "out=one", "deterministic=true"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = cli(["train", "toygan", "epochs=2", "out=two", "devices=2"], tmp_path)
    assert two.returncode == 0, two.stderr + two.stdout
    a, b = weights(tmp_path / "one" / "last.pt"), weights(tmp_path / "two" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=k)
    ra, rb = rows(tmp_path / "one" / "metrics.csv"), rows(tmp_path / "two" / "metrics.csv")
    for x, y in zip(ra, rb):
        assert float(x["ring_error"]) == pytest.approx(float(y["ring_error"]), rel=1e-4)


class LossOnly(ClassifyTask):
    """Classification whose val_loss follows a fixed script per epoch (top1 constant)."""

    script = [0.9, 0.5, 0.7, 0.8, 0.95, 0.3]

    def evaluate(self, model, loader=None):
        k = self._calls = getattr(self, "_calls", -1) + 1
        return {"val_loss": self.script[min(k, 5)], "top1": 0.5}  # the 7th: final re-eval


def test_monitor_val_loss_keeps_the_lowest_and_stops_on_it(tmp_path):
    cfg = task_config(
        "classify",
        {"data": "shapes:64", "model": "mlp", "imgsz": "16", "epochs": "6", "batch": "16",
         "workers": "0", "progress": "false", "plots": "false", "monitor": "val_loss",
         "patience": "3", "out": str(tmp_path / "run")},
    )  # fmt: skip
    trainer = Trainer(LossOnly(cfg), cfg)
    final = trainer.fit()
    # epoch 2 (0.5) is the best; 3, 4, 5 are worse -> stop after epoch 5 (patience 3)
    assert final["best_epoch"] == 2 and final["epochs_run"] == 5
    assert final["monitor_mode"] == "min"
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    # a higher-is-better monitor on the same script keeps the highest
    cfg.monitor_mode, cfg.out, cfg.patience = "max", str(tmp_path / "run2"), 0
    final = Trainer(LossOnly(cfg), cfg).fit()
    assert final["best_epoch"] == 5


def test_segmentation_evaluator_merge_equals_one_pass():
    """Two halves accumulated apart and merged = the whole set in one accumulator (what
    run_evaluation does across DDP ranks)."""
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(6, 4, 9, 7)).astype(np.float32))
    target = torch.from_numpy(rng.integers(0, 4, size=(6, 9, 7)))
    target[0, :2] = 255
    whole = SegmentationMetrics(4)
    whole.update(logits, target)
    a, b = SegmentationMetrics(4), SegmentationMetrics(4)
    a.update(logits[:4], target[:4])
    b.update(logits[4:], target[4:])
    merged = SegmentationMetrics(4)
    merged.merge(a.state_dict())
    merged.merge(b.state_dict())
    assert torch.equal(merged.cm, whole.cm)
    assert merged.compute()["miou"] == whole.compute()["miou"]


class Sum:
    def reset(self):
        self.s = 0.0

    def update(self, batch, outputs):
        self.s += float(outputs.sum())

    def state_dict(self):
        return {"s": self.s}

    def merge(self, st):
        self.s += st["s"]

    def compute(self):
        return {"sum": self.s}


def test_run_evaluation_restores_train_mode_and_uses_no_grad():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5)).train()
    batches = [torch.ones(4, 3), torch.ones(2, 3)]

    def forward(m, b):
        assert not torch.is_grad_enabled() and not m.training
        return m(b)

    out = run_evaluation(model, batches, forward, [Sum()], device=torch.device("cpu"))
    assert model.training
    with torch.no_grad():
        expect = float(model.eval()(torch.ones(6, 3)).sum())
    assert out["sum"] == pytest.approx(expect, rel=1e-6)


def test_detect_flip_knobs_share_the_other_tasks_names_old_spelling_works(capsys):
    from cvcraft.errors import ConfigError

    cfg = task_config("detect", {"fliplr": "0.25", "flipud": "0.1"})
    assert (cfg.hflip, cfg.vflip) == (0.25, 0.1)
    assert "fliplr= is deprecated; it is now hflip=" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="give only hflip="):
        task_config("detect", {"fliplr": "0.25", "hflip": "0.5"})
    for task in ("classify", "segment"):
        assert task_config(task, {"hflip": "0.25"}).hflip == 0.25


def test_classify_mixup_alphas_have_their_own_names_old_spelling_works(capsys):
    cfg = task_config("classify", {"mixup": "0.2", "cutmix": "1.0"})
    assert (cfg.mixup_alpha, cfg.cutmix_alpha) == (0.2, 1.0)
    assert "mixup= is deprecated; it is now mixup_alpha=" in capsys.readouterr().out
    # in detection, mixup is a probability (ultralytics): bounded by 1
    from cvcraft.errors import ConfigError

    with pytest.raises(ConfigError, match=r"mixup=1.5 must be in \[0, 1\]"):
        task_config("detect", {"mixup": "1.5"})


def test_class_weights_is_one_knob_in_classify_and_segment():
    from cvcraft.data.sampling import class_weights, weights_from_spec
    from cvcraft.errors import ConfigError
    from cvcraft.tasks.segment.task import mask_pixel_labels

    for task in ("classify", "segment"):
        assert task_config(task, {"class_weights": "inverse"}).class_weights == ["inverse"]
        assert task_config(task, {"class_weights": "[0.5, 2]"}).class_weights == [0.5, 2]
        with pytest.raises(ConfigError, match="class_weights='inversee'"):
            task_config(task, {"class_weights": "inversee"})
    labels = np.array([0, 0, 0, 1, 2, 2])
    w = weights_from_spec(["sqrt"], lambda: labels, 3)
    np.testing.assert_allclose(w, class_weights(labels, "sqrt", 3).astype(np.float32))
    assert weights_from_spec(["none"], lambda: 1 / 0, 3) is None  # counts never read
    with pytest.raises(ConfigError, match="2 values but the data has 3 classes"):
        weights_from_spec([1.0, 2.0], lambda: labels, 3)

    class Masks:
        def __len__(self):
            return 2

        def sample(self, i):
            from cvcraft.structures import Sample

            m = np.array([[0, 1, 255], [1, 1, 7]], np.uint8) if i == 0 else np.zeros((2, 3))
            return Sample(np.zeros((2, 3, 3), np.uint8), semantic_mask=m.astype(np.uint8))

    pix = mask_pixel_labels(Masks(), 3, seed=0)
    assert sorted(pix.tolist()) == sorted([0, 1, 1, 1] + [0] * 6)


def test_detect_has_in_chans_like_the_other_tasks(tmp_path):
    """A grey (1-channel) detector trains, validates and predicts through the CLI."""
    import json

    from cvcraft.cli import main
    from cvcraft.tasks.detect.task import DetectTask

    keys = ["data=shapes:24", "model=yolo_p", "imgsz=64", "batch=8", "workers=0", "epochs=1",
            "progress=false", "plots=false", "mosaic=0", "in_chans=1"]  # fmt: skip
    assert main(["train", "detect", *keys, f"out={tmp_path / 'run'}"]) == 0
    weights = tmp_path / "run" / "best.pt"
    model, state = DetectTask.load_model(weights, torch.device("cpu"))
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1 and state["in_chans"] == 1
    val = ["val", "detect", f"weights={weights}", "data=shapes:24", "imgsz=64", "workers=0",
           "plots=false", f"out={tmp_path / 'val'}"]  # fmt: skip
    assert main(val) == 0
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    again = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert again["map"] == pytest.approx(trained["map"], abs=1e-9)
    from cvcraft.errors import ConfigError

    with pytest.raises(ConfigError, match="in_chans=2"):
        task_config("detect", {"in_chans": "2"})
