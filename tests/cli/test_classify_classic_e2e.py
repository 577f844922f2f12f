"""`cvcraft train classify model=hog_svm` end to end on a tiny synthetic ImageFolder: the
same run folder and metrics keys as a CNN run, val/predict from its best.pt, and the
reloaded model's probabilities equal to the fitted scikit-learn pipeline's (the oracle)."""

import json

import cv2
import numpy as np
import pytest

from cvcraft.classic.ml import create_classic_model
from cvcraft.cli import main, run
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.tasks.classify.task import ClassifyTask

COMMON = ["imgsz=32", "batch=16", "workers=0", "val_fraction=0.25"]


def stripes(rng, n, k):
    """(n, 32, 32, 3) uint8: horizontal (k=0), vertical (1) or diagonal (2) stripes on noise."""
    yy, xx = np.mgrid[0:32, 0:32]
    mask = [yy % 6 < 2, xx % 6 < 2, (xx + yy) % 8 < 2][k]
    x = rng.integers(0, 90, (n, 32, 32, 3)).astype(np.uint8)
    x[:, mask] += rng.integers(90, 160, (n, 1, 3)).astype(np.uint8)
    return x


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("horizontal", "vertical", "diagonal")):
        (root / name).mkdir()
        for i, im in enumerate(stripes(rng, 24, k)):
            cv2.imwrite(str(root / name / f"{i:02d}.png"), im[..., ::-1])
    return root


@pytest.fixture(scope="module")
def runs(folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    # with the progress bar (it reads the running loss after every step)
    classic = run(["train", "classify", f"data={folder}", "model=hog_svm", *COMMON,
                   "progress=true", f"out={base / 'hog'}"])  # fmt: skip
    cnn = run(["train", "classify", f"data={folder}", "model=lenet5", "epochs=1", *COMMON,
               "progress=false", f"out={base / 'cnn'}"])  # fmt: skip
    return base, classic, cnn


def test_run_folder_and_metrics_like_a_cnn_run(runs):
    base, classic, cnn = runs
    hog, ref = base / "hog", base / "cnn"
    expected = sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file())
    written = sorted(p.relative_to(hog).as_posix() for p in hog.rglob("*") if p.is_file())
    # a CNN run also writes its normalisation statistics; the features take raw pixels
    assert written == [f for f in expected if f != "norm_stats.json"]
    m_hog = json.loads((hog / "metrics.json").read_text())
    m_cnn = json.loads((ref / "metrics.json").read_text())
    assert sorted(m_hog) == sorted(m_cnn)
    assert m_hog["top1"] == pytest.approx(classic["top1"]) and m_hog["top1"] > 0.9
    assert json.loads((hog / "classes.json").read_text()) == [
        "diagonal", "horizontal", "vertical"]  # fmt: skip
    assert "epochs: 1" in (hog / "config.yaml").read_text()
    rows = (hog / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[0].split(",")[:2] == ["epoch", "train_loss"]


def test_checkpoint_holds_arrays_and_reloads_to_the_sklearn_oracle(runs, folder):
    base, _, _ = runs
    state = load_checkpoint(base / "hog" / "best.pt")  # weights_only=True inside
    assert state["classic"]["spec"]["kind"] == "calibrated"
    model, _ = ClassifyTask.load_model(base / "hog" / "best.pt", "cpu")
    # the same pipeline fitted by scikit-learn directly on the same training images
    from cvcraft.data import load_classification

    splits = load_classification(str(folder), val_fraction=0.25, seed=0)
    xtr = np.stack([splits.train.load_image(i) for i in range(len(splits.train))])
    xva = np.stack([splits.val.load_image(i) for i in range(len(splits.val))])
    oracle = create_classic_model("hog_svm").fit(xtr, splits.train.labels)
    np.testing.assert_allclose(model.predict_proba(xva), oracle.predict_proba(xva), atol=1e-6)
    # metrics.csv's train_loss is the training log-loss of the fitted pipeline
    p_train = oracle.predict_proba(xtr)[np.arange(len(xtr)), splits.train.labels]
    row = (base / "hog" / "metrics.csv").read_text().splitlines()[1].split(",")
    assert float(row[1]) == pytest.approx(-np.log(p_train).mean(), rel=1e-5)


def test_val_and_predict_with_the_run_weights(runs, folder, tmp_path):
    base, classic, _ = runs
    weights = base / "hog" / "best.pt"
    metrics = run(["val", "classify", f"data={folder}", f"weights={weights}", *COMMON,
                   f"out={tmp_path / 'val'}"])  # fmt: skip
    assert metrics["top1"] == pytest.approx(classic["top1"])
    assert metrics["val_loss"] == pytest.approx(classic["val_loss"])
    results = run(["predict", "classify", f"source={folder / 'vertical'}", f"weights={weights}",
                   "workers=0", f"out={tmp_path / 'pred'}"])  # fmt: skip
    assert len(results) == 24
    assert sum(r["class"] == "vertical" for r in results) >= 22


@pytest.mark.parametrize(
    "extra, match",
    [
        (["model=hog_adaboost"], "cannot be stored without pickle"),
        (["model=hog_svm", "adv=pgd"], "adversarial training"),
        (["model=hog_svm", "model_kwargs={features: {cells: 4}}"], "cells"),
    ],
)
def test_classic_config_errors(folder, tmp_path, capsys, extra, match):
    code = main(["train", "classify", f"data={folder}", *COMMON, f"out={tmp_path / 'x'}", *extra])
    assert code == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("command", ["export", "explain", "attack", "prune", "quantize"])
def test_gradient_and_graph_tools_refuse_a_classic_model(runs, folder, tmp_path, capsys, command):
    base, _, _ = runs
    keys = {"explain": [f"source={folder / 'vertical' / '00.png'}"],
            "attack": [f"data={folder}"], "quantize": [f"data={folder}"]}  # fmt: skip
    argv = [command, f"weights={base / 'hog' / 'best.pt'}", *keys.get(command, [])]
    assert main([*argv, f"out={tmp_path / 'o'}"]) == 2
    assert "classic (scikit-learn) model" in capsys.readouterr().err
