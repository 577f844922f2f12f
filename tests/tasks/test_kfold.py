"""k-fold runner: folds partition the pooled data, per-fold / mean / std metrics agree with the
fold runs, out-of-fold predictions are each fold's own val predictions."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cvcraft.errors import ConfigError
from cvcraft.tasks.kfold import run_kfold

KEYS = ("{data: 'shapes:20', imgsz: 32, model: lenet5, epochs: 1, batch: 8, workers: 0, "
        "progress: false, plots: false, optimizer: adam, lr: 0.01, warmup_epochs: 0}")  # fmt: skip


def test_kfold_multilabel_oof_and_summary(tmp_path):
    out = tmp_path / "kf"
    summary = run_kfold({"task": "multilabel", "folds": "2", "out": str(out), "set": KEYS})
    assert json.loads((out / "kfold.json").read_text()) == summary
    oof = np.load(out / "oof_predictions.npz")
    assert len(oof["fold"]) == 24 and set(oof["fold"].tolist()) == {0, 1}  # 20 + 4 val
    assert len(set(oof["paths"].tolist())) == 24  # every pooled image exactly once
    maps = []
    for f in range(2):
        run = json.loads((out / f"fold{f}" / "metrics.json").read_text())
        assert summary["per_fold"][f]["map"] == run["map"]
        val = np.load(out / f"fold{f}" / "val_predictions.npz")
        rows = oof["fold"] == f
        np.testing.assert_array_equal(oof["scores"][rows], val["scores"])
        np.testing.assert_array_equal(oof["paths"][rows], val["paths"])
        maps.append(run["map"])
        t, s = val["targets"], val["scores"]
        has = t.sum(0) > 0
        assert run["map"] == pytest.approx(average_precision_score(t[:, has], s[:, has]), rel=1e-6)
    assert summary["mean"]["map"] == pytest.approx(np.mean(maps))
    assert summary["std"]["map"] == pytest.approx(np.std(maps))
    with pytest.raises(ConfigError, match="no fold support"):
        run_kfold({"task": "segment", "out": str(tmp_path / "x")})


def test_kfold_classify_stratified_oof(tmp_path):
    out = tmp_path / "kc"
    keys = KEYS.replace("shapes:20", "shapes:30")
    summary = run_kfold({"task": "classify", "folds": "2", "out": str(out), "set": keys})
    oof = np.load(out / "oof_predictions.npz")
    assert len(oof["fold"]) == 36 and len(set(oof["paths"].tolist())) == 36  # 30 + 6 val
    for f in range(2):
        rows = oof["fold"] == f
        run = json.loads((out / f"fold{f}" / "metrics.json").read_text())
        top1 = float((oof["scores"][rows].argmax(1) == oof["targets"][rows]).mean())
        assert run["top1"] == pytest.approx(top1)  # the OOF scores are the fold model's
    # stratified: each class's count differs by at most one between the folds
    counts = [np.bincount(oof["targets"][oof["fold"] == f], minlength=6) for f in range(2)]
    assert np.abs(counts[0] - counts[1]).max() <= 1
    tops = [m["top1"] for m in summary["per_fold"]]
    assert summary["mean"]["top1"] == pytest.approx(np.mean(tops))
