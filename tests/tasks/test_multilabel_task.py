"""End to end: `cvcraft train multilabel` on tiny shapes, metrics.json recomputed from the saved
val predictions with scikit-learn, then `cvcraft val multilabel` and `predict` on the run."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss

from cvcraft.cli import run
from cvcraft.data.io import write_image
from cvcraft.data.multilabel import make_multilabel_shapes
from cvcraft.errors import ConfigError
from cvcraft.tasks import task_config
from cvcraft.tasks.multilabel.task import MultilabelTask, build_criterion, positive_weights

TINY = ["data=shapes:64", "imgsz=32", "model=lenet5", "epochs=2", "batch=16", "workers=0",
        "progress=false", "lr=0.01", "optimizer=adam", "warmup_epochs=0"]  # fmt: skip


def test_train_metrics_equal_sklearn_on_saved_predictions_then_val_and_predict(tmp_path):
    out = tmp_path / "run"
    run(["train", "multilabel", *TINY, "loss=asl", "pos_weight=auto", f"out={out}"])
    m = json.loads((out / "metrics.json").read_text())
    saved = np.load(out / "val_predictions.npz")
    s, t = saved["scores"].astype(np.float64), saved["targets"]
    assert s.shape == (12, 6) and len(saved["paths"]) == 12
    has = t.sum(0) > 0
    assert m["map"] == pytest.approx(average_precision_score(t[:, has], s[:, has]), rel=1e-6)
    pred = (s >= 0.5).astype(int)
    assert m["f1_micro"] == pytest.approx(f1_score(t, pred, average="micro", zero_division=0))
    assert m["f1_macro"] == pytest.approx(f1_score(t, pred, average="macro", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(t, pred))
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(t, pred))
    tuned = (s >= np.asarray(m["thresholds"])).astype(int)
    assert m["f1_macro_tuned"] == pytest.approx(
        f1_score(t, tuned, average="macro", zero_division=0)
    )
    assert m["monitor"] == "map" and m["monitor_mode"] == "max"
    assert (out / "plots" / "pr_curves.png").stat().st_size > 0
    assert (out / "ap_per_class.csv").read_text().startswith("class,ap,positives,threshold")
    # the scores are the best checkpoint's sigmoid outputs on the val images
    state = torch.load(out / "best.pt", weights_only=True)
    assert state["thresholds"] == pytest.approx(m["thresholds"])

    vm = run(["val", "multilabel", "data=shapes:64", "workers=0", "progress=false",
              f"weights={out / 'best.pt'}", f"out={tmp_path / 'val'}"])  # fmt: skip
    assert vm["map"] == pytest.approx(m["map"], rel=1e-5)
    assert vm["hamming_loss"] == pytest.approx(m["hamming_loss"])
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["map"] == vm["map"]

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    data = make_multilabel_shapes(3, 32, seed=0, split="val")
    for i in range(3):
        write_image(imgs / f"{i}.png", data.load_image(i))
    res = run(["predict", "multilabel", f"weights={out / 'best.pt'}", f"source={imgs}",
               f"out={tmp_path / 'pred'}"])  # fmt: skip
    assert len(res) == 3
    # predict applies the tuned thresholds to the probabilities of the same images
    for r, i in zip(res, range(3)):
        p = np.array([r["scores"][c] for c in ["circle", "square", "triangle", "star", "cross",
                                               "ring"]])  # fmt: skip
        np.testing.assert_allclose(p, s[i], rtol=1e-4, atol=1e-5)
        chosen = [c for c, v, th in zip(r["scores"], p, m["thresholds"]) if v >= th]
        assert r["labels"] == chosen


def test_pos_weight_and_criterion_follow_the_config():
    d = make_multilabel_shapes(40, 32, seed=1)
    pos, neg = (d.targets == 1).sum(0), (d.targets == 0).sum(0)
    np.testing.assert_allclose(positive_weights(d, "auto"), neg / pos, rtol=1e-6)
    np.testing.assert_allclose(positive_weights(d, "sqrt"), np.sqrt(neg / pos), rtol=1e-6)
    assert positive_weights(d, "none") is None
    cfg = task_config("multilabel", {"loss": "focal", "focal_gamma": 1.0, "focal_alpha": 0.25})
    crit = build_criterion(cfg, None)
    assert crit.kind == "focal" and crit.options == {"gamma": 1.0, "alpha": 0.25}
    with pytest.raises(ConfigError, match="clip=1.5 must be in"):
        task_config("multilabel", {"clip": 1.5})
    assert MultilabelTask.name == "multilabel"
