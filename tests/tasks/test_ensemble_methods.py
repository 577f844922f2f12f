"""Snapshot ensembles (a checkpoint per cosine cycle), bagging (bootstrap members) and
stacking (meta-learner equal to scikit-learn's StackingClassifier on the same member
outputs); k-fold through `cvcraft train ... folds=k`."""

import json

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import StackingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from cvcraft.cli import run
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.engine.trainer import Trainer
from cvcraft.errors import ConfigError, DataError
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask
from cvcraft.tasks.ensemble import (
    bootstrap_indices,
    fit_meta,
    run_ensemble,
    stack_features,
    stacking_oof,
)

TINY = ["imgsz=32", "model=lenet5", "batch=16", "workers=0", "progress=false", "plots=false",
        "lr=0.01", "optimizer=adam", "warmup_epochs=0"]  # fmt: skip


class Lookup(BaseEstimator, ClassifierMixin):
    """A "trained" member for scikit-learn: row i of X holds item index i; predict_proba
    returns the member's stored probabilities of those items."""

    def __init__(self, probs=None):
        self.probs = probs

    def fit(self, x, y):
        self.classes_ = np.arange(self.probs.shape[1])
        return self

    def predict_proba(self, x):
        return self.probs[x[:, 0].astype(int)]

    def predict(self, x):
        return self.predict_proba(x).argmax(1)


@pytest.mark.parametrize("c", [2, 4])
def test_stacking_meta_equals_sklearn_stacking_classifier(c):
    rng = np.random.default_rng(c)
    n, m = 120, 3
    y = rng.integers(0, c, n)
    # members: noisy but informative probabilities
    logits = rng.normal(size=(m, n, c)) + 2.0 * np.eye(c)[y][None]
    probs = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
    tr, te = np.arange(80), np.arange(80, 120)
    members = [(f"m{i}", FrozenEstimator(Lookup(probs[i]).fit(None, None))) for i in range(m)]
    sk = StackingClassifier(members, final_estimator=LogisticRegression(), cv=5)
    x = np.arange(n)[:, None].astype(float)
    sk.fit(x[tr], y[tr])
    # frozen members: their cross-validated outputs are their outputs, so the meta-learner
    # sees exactly stack_features(probs[:, tr])
    np.testing.assert_allclose(sk.transform(x[te]), stack_features(probs[:, te]), rtol=1e-12)
    ours = fit_meta(stack_features(probs[:, tr]), y[tr])
    np.testing.assert_allclose(
        ours.predict_proba(stack_features(probs[:, te])), sk.predict_proba(x[te]), rtol=1e-6,
        atol=1e-9,
    )  # fmt: skip
    # the out-of-fold score: every item predicted by a meta-learner that did not see it
    oof, meta = stacking_oof(probs, y, folds=4)
    assert oof.shape == (n, c) and np.allclose(oof.sum(1), 1.0)
    assert (oof.argmax(1) == y).mean() >= (probs.mean(0).argmax(1) == y).mean() - 0.1
    np.testing.assert_allclose(meta.coef_, fit_meta(stack_features(probs), y).coef_)


def test_stacking_refuses_too_few_val_items():
    probs = np.full((2, 5, 3), 1 / 3)
    with pytest.raises(DataError, match="two per class"):
        stacking_oof(probs, np.array([0, 0, 1, 1, 2]), folds=5)
    with pytest.raises(DataError, match="one class"):
        stacking_oof(probs, np.zeros(5, np.int64), folds=5)


def test_bootstrap_members_train_on_their_resample(tmp_path):
    idx = bootstrap_indices(100, 0, 3)
    want = np.sort(np.random.default_rng([0, 59, 3]).integers(0, 100, 100))
    np.testing.assert_array_equal(idx, want)
    assert 50 < len(np.unique(idx)) < 80  # about 63 % distinct
    assert not np.array_equal(idx, bootstrap_indices(100, 0, 4))
    # the task's setup takes exactly this resample (checked through its train_data)
    keys = {**dict(a.split("=") for a in TINY), "data": "shapes:40", "bag": "1", "epochs": "1"}
    cfg = task_config("classify", {**keys, "out": str(tmp_path / "b")})
    task = ClassifyTask(cfg)
    Trainer(task, cfg).fit()
    splits = ClassifyTask(cfg).load_splits()
    rows = bootstrap_indices(len(splits.train), 0, 1)
    np.testing.assert_array_equal(task.train_data.labels, splits.train.labels[rows])


def test_snapshot_and_bagging_ensembles(tmp_path):
    out = tmp_path / "snap"
    run(["train", "classify", "data=shapes:48", *TINY, "epochs=4", "schedule=cosine_restarts",
         "cycles=2", f"out={out}"])  # fmt: skip
    snaps = sorted(out.glob("snapshot*.pt"))
    assert [p.name for p in snaps] == ["snapshot0.pt", "snapshot1.pt"]
    s0, s1 = load_checkpoint(snaps[0]), load_checkpoint(snaps[1])
    assert (s0["epoch"], s1["epoch"]) == (1, 3)
    last = load_checkpoint(out / "last.pt")
    for k, v in s1["model"].items():  # the last cycle's snapshot is the final weights
        torch.testing.assert_close(v, last["model"][k])
    res = run_ensemble({"task": "classify", "snapshots": str(out), "out": str(tmp_path / "se")})
    assert [m["weights"] for m in res["members"]] == [str(p) for p in snaps]
    got = np.load(tmp_path / "se" / "ensemble_predictions.npz")
    top1 = float((got["scores"].argmax(1) == got["targets"]).mean())
    assert res["ensemble"]["top1"] == pytest.approx(top1)
    # stacking over the same snapshots: out-of-fold meta probabilities
    st = run_ensemble({"task": "classify", "snapshots": str(out), "mode": "stacking",
                       "stack_folds": "2", "out": str(tmp_path / "st")})  # fmt: skip
    val_classes = sorted(set(np.load(tmp_path / "st" / "ensemble_predictions.npz")["targets"]))
    assert st["meta"]["classes"] == val_classes  # one coefficient row per val class (C > 2)
    assert len(st["meta"]["coef"]) == len(val_classes)
    # bagging: two bootstrap members trained first, then averaged
    keys = (
        "{data: 'shapes:48', imgsz: 32, model: lenet5, epochs: 1, batch: 16, workers: 0, "
        "progress: false, plots: false, optimizer: adam, lr: 0.01, warmup_epochs: 0}"
    )
    bag = run_ensemble({"task": "classify", "bagging": "2", "set": keys,
                        "out": str(tmp_path / "bag")})  # fmt: skip
    assert len(bag["members"]) == 2
    for i in range(2):
        state = load_checkpoint(tmp_path / "bag" / f"bag{i}" / "best.pt")
        assert state["config"]["bag"] == i
    with pytest.raises(ConfigError, match="snapshot<k>.pt"):
        run_ensemble({"task": "classify", "snapshots": str(tmp_path)})
    with pytest.raises(ConfigError, match="one of weights"):
        run_ensemble({"task": "classify", "snapshots": str(out), "bagging": "2"})


def test_train_with_folds_runs_every_fold(tmp_path):
    out = tmp_path / "kf"
    summary = run(["train", "classify", "data=shapes:30", *TINY, "epochs=1", "folds=2",
                   f"out={out}"])  # fmt: skip
    assert json.loads((out / "kfold.json").read_text()) == summary
    assert [m["top1"] for m in summary["per_fold"]] == [
        json.loads((out / f"fold{f}" / "metrics.json").read_text())["top1"] for f in range(2)
    ]
    oof = np.load(out / "oof_predictions.npz")
    assert len(oof["fold"]) == 36 and set(oof["fold"].tolist()) == {0, 1}
    # fold=i trains only that fold
    one = run(["train", "classify", "data=shapes:30", *TINY, "epochs=1", "folds=2", "fold=1",
               f"out={tmp_path / 'one'}"])  # fmt: skip
    assert "top1" in one and not (tmp_path / "one" / "kfold.json").exists()
    with pytest.raises(DataError, match="folds=9 is larger than class"):
        run(["train", "classify", "data=shapes:30", *TINY, "epochs=1", "folds=9",
             f"out={tmp_path / 'bad'}"])  # fmt: skip
