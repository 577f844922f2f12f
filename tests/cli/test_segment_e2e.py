"""End to end through the CLI: train -> val -> predict on tiny synthetic shapes."""

import json

import numpy as np
from PIL import Image

from cvcraft.cli import main
from cvcraft.data.io import write_image
from cvcraft.data.segmentation import make_shapes_segmentation


def test_train_val_predict_segment(tmp_path, capsys, easy_segmentation):
    run = tmp_path / "run"
    # the easy mask set (tests/conftest.py: class = the pixel's colour; 24 train / 8 val)
    common = [f"data={easy_segmentation}", "imgsz=32", "workers=0", "progress=false"]
    assert main(["train", "segment", *common, "epochs=6", "batch=4", "optimizer=adamw",
                 "lr=0.01", "warmup_epochs=0", "model_kwargs={base: 4, depth: 2}",
                 f"out={run}"]) == 0  # fmt: skip
    for f in ("best.pt", "last.pt", "metrics.json", "metrics.csv", "config.yaml",
              "plots/predictions.png", "plots/confusion_matrix.png"):  # fmt: skip
        assert (run / f).exists(), f
    trained = json.loads((run / "metrics.json").read_text())
    assert len(trained["iou"]) == 5
    # learned: mIoU 0.42, 0.38, 0.44 over seeds 0-2 (data and run); lr=0 0.02-0.08; the
    # all-background prediction scores 0.13-0.14
    assert trained["miou"] >= 0.25, trained["miou"]

    val = tmp_path / "val"
    assert main(["val", "segment", *common, f"weights={run / 'best.pt'}", f"out={val}"]) == 0
    metrics = json.loads((val / "metrics.json").read_text())
    assert {"miou", "pixel_acc", "mean_acc", "fwiou", "val_loss"} <= set(metrics)
    # same weights, same val split, same inference -> the training run's final numbers
    assert abs(metrics["miou"] - trained["miou"]) < 1e-9

    src = tmp_path / "src"
    data = make_shapes_segmentation(2, 32, seed=9, split="test")
    write_image(src / "a.png", data.sample(0).image)
    big = np.concatenate([np.concatenate([data.sample(1).image] * 3, 1)] * 2, 0)  # 64 x 96
    write_image(src / "sub" / "b.png", big)  # larger than imgsz: sliding windows
    pred = tmp_path / "pred"
    assert main(["predict", "segment", f"weights={run / 'best.pt'}", f"source={src}",
                 f"out={pred}", "workers=0"]) == 0  # fmt: skip
    results = json.loads((pred / "predictions.json").read_text())
    assert len(results) == 2 and all(r["summary"] for r in results)
    mask_b = np.asarray(Image.open(pred / "masks" / "sub" / "b.png"))
    assert mask_b.shape == (64, 96) and mask_b.max() < 5
    overlay = np.asarray(Image.open(pred / "overlays" / "a.png"))
    assert overlay.shape == (32, 32, 3)
    assert "miou" in capsys.readouterr().out
