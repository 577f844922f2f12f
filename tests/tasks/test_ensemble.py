"""Ensembles: the averaged probabilities equal the mean of each member's saved val
predictions, and the metrics are scikit-learn's on that mean."""

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score

from cvcraft.cli import _module_tool, run
from cvcraft.errors import ConfigError
from cvcraft.tasks.ensemble import run_ensemble, vote

TINY = ["imgsz=32", "model=lenet5", "epochs=1", "batch=16", "workers=0", "progress=false",
        "plots=false", "lr=0.01", "optimizer=adam", "warmup_epochs=0"]  # fmt: skip


def test_multilabel_ensemble_is_the_mean_of_members(tmp_path):
    runs = []
    for k, lr in enumerate(("0.01", "0.003")):  # one data seed (the val split), two models
        out = tmp_path / f"r{k}"
        run(["train", "multilabel", "data=shapes:48", *TINY, f"lr={lr}", f"out={out}"])
        runs.append(out)
    w = ",".join(str(r / "best.pt") for r in runs)
    res = run_ensemble({"task": "multilabel", "weights": w, "out": str(tmp_path / "ens")})
    saved = [np.load(r / "val_predictions.npz") for r in runs]
    t = saved[0]["targets"]
    avg = (saved[0]["scores"] + saved[1]["scores"]) / 2
    got = np.load(tmp_path / "ens" / "ensemble_predictions.npz")
    np.testing.assert_allclose(got["scores"], avg, rtol=1e-5, atol=1e-6)
    has = t.sum(0) > 0
    assert res["ensemble"]["map"] == pytest.approx(
        average_precision_score(t[:, has], avg[:, has]), rel=1e-5
    )
    for m, r in zip(res["members"], runs):
        assert m["map"] == pytest.approx(json.loads((r / "metrics.json").read_text())["map"])
    assert res["gain"] == pytest.approx(
        res["ensemble"]["map"] - max(m["map"] for m in res["members"])
    )
    wres = run_ensemble({"task": "multilabel", "weights": w, "mode": "weighted",
                         "ensemble_weights": "3,1", "out": str(tmp_path / "ens2")})  # fmt: skip
    wavg = np.load(tmp_path / "ens2" / "ensemble_predictions.npz")["scores"]
    np.testing.assert_allclose(wavg, 0.75 * saved[0]["scores"] + 0.25 * saved[1]["scores"],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert wres["member_weights"] == [0.75, 0.25]
    # the CLI wiring proposed for `cvcraft ensemble multilabel weights=... mode=...`
    cmd = _module_tool("ensemble", "cvcraft.tasks.ensemble", "ENSEMBLE_KEYS", "run_ensemble",
                       ("weights",), "task")  # fmt: skip
    cres = cmd("multilabel", [f"weights={w}", "mode=weighted", "ensemble_weights=3,1",
                              f"out={tmp_path / 'ens3'}"], False)  # fmt: skip
    assert cres["ensemble"]["map"] == pytest.approx(wres["ensemble"]["map"])
    with pytest.raises(ConfigError, match="two or more checkpoints"):
        run_ensemble({"task": "multilabel", "weights": str(runs[0] / "best.pt")})
    with pytest.raises(ConfigError, match="ensemble_weights"):
        run_ensemble({"task": "multilabel", "weights": w, "mode": "weighted",
                      "ensemble_weights": "1"})  # fmt: skip


def test_classify_ensemble_top1(tmp_path):
    runs = []
    for k, lr in enumerate(("0.01", "0.003")):
        out = tmp_path / f"c{k}"
        run(["train", "classify", "data=shapes:64", *TINY, f"lr={lr}", f"out={out}"])
        runs.append(out)
    res = run_ensemble({"task": "classify", "weights": ",".join(str(r / "best.pt") for r in runs),
                        "out": str(tmp_path / "e")})  # fmt: skip
    probs = np.load(tmp_path / "e" / "ensemble_predictions.npz")
    assert res["ensemble"]["top1"] == pytest.approx(
        accuracy_score(probs["targets"], probs["scores"].argmax(1))
    )
    for m, r in zip(res["members"], runs):
        assert m["top1"] == pytest.approx(json.loads((r / "metrics.json").read_text())["top1"])


def test_vote_is_the_majority_with_probability_tie_break():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(3, 50))  # 3 members, 50 items, 4 classes
    got = vote(probs).argmax(1)
    top = probs.argmax(2)  # (3, 50)
    for i in range(50):  # oracle: count votes, break ties by mean probability
        counts = np.bincount(top[:, i], minlength=4)
        best = np.flatnonzero(counts == counts.max())
        assert got[i] == best[np.argmax(probs[:, i, best].mean(0))]
    with pytest.raises(ConfigError, match="mode=vote is for classify"):
        run_ensemble({"task": "multilabel", "weights": __file__ + "," + __file__, "mode": "vote"})
