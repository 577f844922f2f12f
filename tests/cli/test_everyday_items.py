"""More everyday workflows through the CLI (issue 26, items 8-14): each test reproduces a
reported surprise first. The numbers in the test names are the issue's items."""

import pytest

from cvcraft.cli import main
from cvcraft.engine.trainer import Trainer

FAST = ["imgsz=32", "workers=0", "progress=false", "plots=false"]


def _no_epochs(monkeypatch):
    def refuse(self, epoch):
        raise AssertionError("an epoch ran before the config error")

    monkeypatch.setattr(Trainer, "train_one_epoch", refuse)


# ----------------------------------------------------------------------------- item 12
@pytest.mark.parametrize("task", ["classify", "segment", "detect"])
def test_12_unknown_monitor_is_rejected_before_the_first_epoch(task, tmp_path, capsys, monkeypatch):
    _no_epochs(monkeypatch)
    code = main(["train", task, "data=shapes:64", "batch=16", "epochs=1", "monitor=val_los", *FAST,
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"monitor='val_los' is not a metric of task {task}" in err
    assert 'Did you mean "val_loss"' in err


@pytest.mark.parametrize("task", ["classify", "segment", "detect"])
def test_12_the_early_check_knows_every_column_an_epoch_writes(task, tmp_path, monkeypatch):
    """The probe must not reject a real metric: each metrics.csv column passes the check."""
    seen: list[set[str]] = []
    check = Trainer._check_monitor

    def spy(self):
        seen.append(set(self.task.metric_names()))
        check(self)

    monkeypatch.setattr(Trainer, "_check_monitor", spy)
    out = tmp_path / "r"
    assert main(["train", task, "data=shapes:64", "batch=16", "epochs=1", "ema=true",
                 *FAST, f"out={out}"]) == 0  # fmt: skip
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in header:
        if column == "epoch":
            continue
        monkeypatch.setattr(Trainer, "_check_monitor", check)
        trainer = Trainer.__new__(Trainer)
        trainer.task = type("T", (), {"name": task, "metric_names": lambda s: set(seen[0])})()
        trainer.monitor = column
        trainer.cfg = type("C", (), {"ema": True})()
        trainer._check_monitor()  # raises ConfigError if the probe missed the column


# ----------------------------------------------------------------------------- item 8
def test_08_validation_shows_a_progress_bar(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "classify", "data=shapes:64", "batch=16", "epochs=1", "imgsz=32",
                 "workers=0", "plots=false", "progress=true", f"out={out}"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "val:" in err and "epoch 1/1:" in err
    capsys.readouterr()
    assert (
        main(
            [
                "val",
                "classify",
                "data=shapes:64",
                f"weights={out / 'best.pt'}",
                "workers=0",
                "plots=false",
                "progress=true",
                f"out={tmp_path / 'v'}",
            ]
        )
        == 0
    )
    assert "val:" in capsys.readouterr().err
    assert (
        main(
            [
                "val",
                "classify",
                "data=shapes:64",
                f"weights={out / 'best.pt'}",
                "workers=0",
                "plots=false",
                "progress=false",
                f"out={tmp_path / 'v2'}",
            ]
        )
        == 0
    )
    assert "val:" not in capsys.readouterr().err


def test_08_many_sliding_windows_get_a_warning():
    import torch
    from torch import nn

    from cvcraft.tasks.segment.task import MANY_WINDOWS, sliding_window_logits, window_starts

    model = nn.Conv2d(3, 2, 1)
    # 4 x 4 = 16 windows of 32 px (stride 24) cover 104 px: at the limit, no warning
    assert len(window_starts(104, 32, 24)) ** 2 == MANY_WINDOWS
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sliding_window_logits(model, torch.rand(1, 3, 104, 104), 32, overlap=0.25)
    # one more window row and column: 25 windows, warned with the advice
    with pytest.warns(UserWarning, match=r"25 windows of 32x32 px on each 128x128 image.*imgsz="):
        sliding_window_logits(model, torch.rand(1, 3, 128, 128), 32, overlap=0.25)
