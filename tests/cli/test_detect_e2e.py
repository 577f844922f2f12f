"""End to end through the CLI on tiny detection shapes: train, val, predict, demo preset."""

import json

import cv2
import numpy as np
import pytest

from cvcraft.cli import main, run
from cvcraft.tasks import task_config
from cvcraft.tasks.detect import DEMO_PRESET

TINY = ["data=shapes:32", "model=yolo_p", "imgsz=64", "batch=8", "workers=0", "progress=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "run"
    metrics = run(["train", "detect", *TINY, f"out={out}", "epochs=1", "close_mosaic=0"])
    return out, metrics


def test_train_writes_run_folder(trained):
    out, metrics = trained
    for f in ("config.yaml", "metrics.csv", "metrics.json", "best.pt", "last.pt", "classes.json"):
        assert (out / f).exists(), f
    saved = json.loads((out / "metrics.json").read_text())
    for k in ("map", "map50", "map75", "val_loss", "best_epoch"):
        assert k in saved, k
    assert 0.0 <= saved["map"] <= saved["map50"] <= 1.0
    assert np.isfinite(saved["val_loss"])
    assert len(saved["confusion_matrix"]) == 7  # 6 shapes + background
    names = ("labels.png", "loss.png", "map.png", "pr_curve.png", "confusion_matrix.png",
             "predictions.png")  # fmt: skip
    for f in names:
        img = cv2.imread(str(out / "plots" / f))
        assert img is not None and img.size > 0, f


def test_val_reproduces_training_metrics(trained, tmp_path):
    out, metrics = trained
    val = run(["val", "detect", *TINY, f"weights={out / 'best.pt'}", f"out={tmp_path / 'v'}"])
    assert val["map"] == pytest.approx(metrics["map"], abs=1e-9)
    assert val["map50"] == pytest.approx(metrics["map50"], abs=1e-9)
    assert (tmp_path / "v" / "metrics.json").exists()


def test_predict_saves_drawings_and_coco_results(trained, tmp_path):
    out, _ = trained
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (48, 80)), ("b", (90, 60))):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(src / f"{name}.png"), img)
    dst = tmp_path / "p"
    results = run(
        ["predict", "detect", f"weights={out / 'best.pt'}", f"source={src}", f"out={dst}",
         "conf=0.0001", "tta=true"]
    )  # fmt: skip
    assert [r["path"].endswith(n) for r, n in zip(results, ("a.png", "b.png"))] == [True, True]
    assert cv2.imread(str(dst / "a.jpg")).shape == (48, 80, 3)
    assert cv2.imread(str(dst / "b.jpg")).shape == (90, 60, 3)
    coco = json.loads((dst / "predictions.json").read_text())
    for r in coco:  # boxes are in each original image's pixels
        h, w = (48, 80) if r["image_id"] == 0 else (90, 60)
        x, y, bw, bh = r["bbox"]
        assert 0 <= x and 0 <= y and x + bw <= w + 1e-3 and y + bh <= h + 1e-3
        assert 1 <= r["category_id"] <= 6


# 20 epochs of 4 steps on the easy squares (tests/conftest.py: one big coloured square an
# image, 3 classes, 32 train / 8 val at 64 px), colour jitter off (the class is the colour)
EASY_KEYS = ["model=yolo_p", "imgsz=64", "batch=8", "epochs=20", "mosaic=0", "close_mosaic=0",
             "warmup_epochs=0", "lr=0.01", "hsv_h=0", "hsv_s=0", "hsv_v=0", "workers=0",
             "progress=false", "plots=false"]  # fmt: skip


@pytest.mark.slow
def test_yolo_learns_easy_squares(tmp_path, easy_detection):
    """The one-epoch run above ends at mAP 0 (plumbing only); this one must learn: measured
    map50 over seeds 0-2 (data and run) 0.81, 0.67, 0.58 (map 0.50, 0.37, 0.25) in 16-21 s on
    a loaded 2-core machine; lr=0: map50 0.0 for each seed."""
    metrics = run(["train", "detect", f"data={easy_detection}", *EASY_KEYS,
                   f"out={tmp_path / 'run'}"])  # fmt: skip
    assert metrics["map50"] >= 0.3, metrics["map50"]


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    code = main(["train", "detect", "data=shapes:4", "mosaic=2", f"out={tmp_path / 'x'}"])
    assert code == 2
    assert "mosaic=2.0 must be in [0, 1]" in capsys.readouterr().err


def test_demo_preset_is_a_valid_config():
    cfg = task_config("detect", {}, defaults=DEMO_PRESET)
    assert cfg.data.startswith("shapes") and cfg.imgsz % 32 == 0
