import csv

import cv2
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from cvcraft.viz.plots import (
    normalize_confusion,
    plot_confusion_matrix,
    plot_curves,
    plot_prediction_grid,
)


def _valid_png(path):
    assert path.exists() and path.stat().st_size > 0
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 50 and img.shape[1] > 50
    return img


def test_normalize_confusion_matches_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, 300)
    y_true[y_true == 4] = 0  # class 4 never occurs: its row must be zeros, not NaN
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 6, 300))
    labels = np.arange(6)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    ref = confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
    np.testing.assert_allclose(normalize_confusion(cm), ref, rtol=1e-12, atol=0)
    assert np.all(normalize_confusion(cm)[4] == 0)


def test_curves_from_csv_rows(tmp_path):
    rows = [
        {
            "epoch": e,
            "train_loss": 2 / (e + 1),
            "val_loss": 2.2 / (e + 1),
            "top1": 0.1 * e,
            "top5": 0.15 * e,
            "ema_top1": 0.09 * e,
            "lr": 0.1 * 0.9**e,
        }
        for e in range(6)
    ]
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(tmp_path / "metrics.csv") as f:
        str_rows = list(csv.DictReader(f))  # values as strings, as the trainer reads them back
    written = plot_curves(str_rows, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["accuracy.png", "loss.png", "lr.png"]
    for p in written:
        _valid_png(p)
    # keys that are absent skip their plot
    only_loss = plot_curves(
        [{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": ""}], tmp_path / "p2"
    )
    assert [p.name for p in only_loss] == ["loss.png"]
    assert plot_curves([], tmp_path / "p3") == []


@pytest.mark.parametrize("num_classes", [5, 100])
def test_confusion_plot_written(tmp_path, num_classes):
    rng = np.random.default_rng(1)
    cm = rng.integers(0, 20, (num_classes, num_classes))
    names = [f"class_{i}" for i in range(num_classes)]
    p = plot_confusion_matrix(cm, names, tmp_path / "cm.png")
    img = _valid_png(p)
    if num_classes == 100:
        assert img.shape[0] > 1000  # figure grows with the class count
    with pytest.raises(ValueError, match="len\\(class_names\\)"):
        plot_confusion_matrix(cm, names[:-1], tmp_path / "bad.png")


def test_prediction_grid_colors(tmp_path):
    rng = np.random.default_rng(2)
    # gray images, so any pure green/red pixel comes from a title
    images = np.repeat(rng.integers(0, 256, (40, 24, 24, 1), dtype=np.uint8), 3, axis=-1)
    true = rng.integers(0, 3, 40)
    pred = true.copy()
    pred[::2] = (pred[::2] + 1) % 3
    probs = rng.dirichlet(np.ones(3), 40)
    p = plot_prediction_grid(images, true, pred, probs, ["a", "b", "c"], tmp_path / "g.png")
    img = _valid_png(p)
    b, g, r = (img[..., c].astype(int) for c in range(3))
    # matplotlib "green" is (0,128,0), "red" (255,0,0): both title colours are present
    assert ((g > 100) & (r < 40) & (b < 40)).sum() > 10
    assert ((r > 200) & (g < 40) & (b < 40)).sum() > 10
    # grayscale images and per-image confidences work too
    p2 = plot_prediction_grid(
        images[:3, ..., 0], true[:3], true[:3], probs[:3, 0], "abc", tmp_path / "g2.png"
    )
    img2 = _valid_png(p2)
    b, g, r = (img2[..., c].astype(int) for c in range(3))
    assert ((g > 100) & (r < 40) & (b < 40)).sum() > 10  # all right: green only
    assert ((r > 200) & (g < 40) & (b < 40)).sum() == 0
