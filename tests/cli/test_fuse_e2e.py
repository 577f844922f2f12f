"""End to end through the CLI: train -> val -> predict fuse, on generated pairs (always)
and on a few RoadScene pairs from ../shared/data (skipped only where that folder is absent)."""

import json

import numpy as np
from PIL import Image

from cvcraft.cli import main
from cvcraft.data.fusion import INFRARED, SyntheticPairs
from cvcraft.data.io import write_image

KEYS = {"en", "sd", "sf", "ag", "mi", "ssim", "qabf"}
TINY = ["workers=0", "progress=false", "model_kwargs={width: 4}"]


def test_train_val_predict_fuse_synthetic(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["data=synthetic:16", "imgsz=32", *TINY]
    assert main(["train", "fuse", *common, "epochs=2", "batch=4", f"out={run}"]) == 0
    for f in ("best.pt", "last.pt", "metrics.json", "metrics.csv", "plots/predictions.png"):
        assert (run / f).exists(), f
    trained = json.loads((run / "metrics.json").read_text())
    assert KEYS <= set(trained) and trained["val_images"] == 3
    assert 0 <= trained["qabf"] <= 1 and 0 < trained["en"] <= 8

    val = tmp_path / "val"
    assert main(["val", "fuse", *common, f"weights={run / 'best.pt'}", f"out={val}"]) == 0
    metrics = json.loads((val / "metrics.json").read_text())
    for k in KEYS | {"val_loss"}:  # same weights, same held-out pairs -> the same numbers
        assert abs(metrics[k] - trained[k]) < 1e-9, k

    src = tmp_path / "src"
    pairs = SyntheticPairs(2, 40, seed=5)
    for i in range(2):
        s = pairs.sample(i)
        write_image(src / "visible" / f"p{i}.png", s.image)
        write_image(src / "infrared" / f"p{i}.jpg", s.extras[INFRARED])
    pred = tmp_path / "pred"
    assert main(["predict", "fuse", f"weights={run / 'best.pt'}", f"source={src}",
                 f"out={pred}", "workers=0"]) == 0  # fmt: skip
    results = json.loads((pred / "predictions.json").read_text())
    assert len(results) == 2 and KEYS <= set(results[0]["metrics"])
    fused = np.asarray(Image.open(pred / "fused" / "p1.png"))
    assert fused.shape == (40, 40, 3)
    assert "qabf" in capsys.readouterr().out


def test_fuse_learns_synthetic_pairs(tmp_path):
    """The run above is plumbing only; this one must learn: the held-out fusion loss
    (``val_loss``) after 8 epochs (batch 4) over seeds 0-2 (data and run) 0.97, 1.02, 1.00,
    with lr=0 1.45, 1.29, 1.29 (tests/MUTATIONS.md, fifth round)."""
    run = tmp_path / "run"
    assert main(["train", "fuse", "data=synthetic:32", "imgsz=32", *TINY, "epochs=8",
                 "batch=4", "lr=0.01", "plots=false", f"out={run}"]) == 0  # fmt: skip
    val_loss = json.loads((run / "metrics.json").read_text())["val_loss"]
    assert val_loss <= 1.15, val_loss


def test_train_and_val_fuse_on_roadscene(tmp_path, shared_data):
    data = shared_data / "roadscene"
    run = tmp_path / "run"
    # a few pairs: 5 % of the 199 training pairs, 5 % held out, evaluated at 64 px
    common = [f"data={data}", "imgsz=48", "resize=64", "val_fraction=0.05", *TINY]
    assert main(["train", "fuse", *common, "fraction=0.05", "epochs=1", "batch=4",
                 "plots=false", f"out={run}"]) == 0  # fmt: skip
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["val_images"] == 11 and KEYS <= set(trained)
    val = tmp_path / "val"
    assert main(["val", "fuse", f"data={data}", "val_fraction=0.05", "workers=0",
                 f"weights={run / 'best.pt'}", f"out={val}", "plots=false"]) == 0  # fmt: skip
    metrics = json.loads((val / "metrics.json").read_text())
    assert abs(metrics["mi"] - trained["mi"]) < 1e-9 and metrics["images"] == 11
