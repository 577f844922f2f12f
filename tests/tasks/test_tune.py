"""`cvcraft tune`: Optuna over ordinary training runs, pruned by the per-epoch metric,
resumable after a kill from its journal file; clear errors for bad spaces and metrics."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from cvcraft.errors import ConfigError
from cvcraft.tasks.tune import run_tune

FIXED = ["data=shapes:64", "model=mlp", "imgsz=16", "batch=16", "workers=0", "epochs=3",
         "progress=false", "warmup_epochs=0"]  # fmt: skip


def write_space(path, space):
    path.write_text(yaml.safe_dump(space))
    return str(path)


def tune_cli(tmp_path, out, trials, **env):
    space = {
        "lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    }
    space = write_space(tmp_path / "space.yaml", space)
    e = dict(os.environ, OMP_NUM_THREADS="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "cvcraft.cli", "tune", "classify", f"space={space}",
         f"trials={trials}", f"out={out}", *FIXED],
        env=e, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def load(out):
    storage = JournalStorage(JournalFileBackend(str(out / "study.log")))
    return optuna.load_study(study_name="cvcraft-classify", storage=storage)


def test_tune_resumes_after_a_kill_with_the_same_study(tmp_path):
    out = tmp_path / "study"
    killed = tune_cli(tmp_path, out, 3, CVCRAFT_FAULT_KILL_AFTER_EPOCH="2")
    assert killed.returncode != 0  # SIGKILL inside the first trial
    assert [t.state.name for t in load(out).trials] == ["RUNNING"]
    resumed = tune_cli(tmp_path, out, 3)
    assert resumed.returncode == 0, resumed.stderr
    study = load(out)
    states = [t.state.name for t in study.trials]
    assert states[0] == "RUNNING"  # the killed trial stays as it was; three more finished
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and [t.number for t in finished] == [1, 2, 3]
    for t in finished:  # every epoch's top1 reached the pruner
        assert len(t.intermediate_values) >= 1
        assert 0 <= max(t.intermediate_values.values()) <= 1
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["lr"] == pytest.approx(study.best_trial.params["lr"])
    assert best["optimizer"] == study.best_trial.params["optimizer"] and "out" not in best
    assert (out / "plots" / "history.png").is_file()


def test_tune_refuses_bad_spaces_and_metrics(tmp_path):
    empty = write_space(tmp_path / "e.yaml", {})
    with pytest.raises(ConfigError, match="search space is empty"):
        run_tune({"task": "classify", "space": empty})
    typo = write_space(tmp_path / "t.yaml", {"lrr": {"type": "float", "low": 0.1, "high": 1}})
    with pytest.raises(ConfigError, match="'lrr' is not a config key.*lr"):
        run_tune({"task": "classify", "space": typo})
    ok = write_space(tmp_path / "o.yaml", {"lr": {"type": "float", "low": 0.01, "high": 0.1}})
    args = dict(a.split("=", 1) for a in FIXED)
    with pytest.raises(ConfigError, match="metric='map' is not a metric"):
        run_tune({"task": "classify", "space": ok, "metric": "map", "trials": "1",
                  "out": str(tmp_path / "m"), **args, "epochs": "1"})  # fmt: skip
