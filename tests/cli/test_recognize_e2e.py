"""End to end through the CLI: train -> val -> predict recognize on MNIST digit strings
(skipped only where ../shared/data is absent)."""

import json

import numpy as np

from cvcraft.cli import main
from cvcraft.data.io import write_image
from cvcraft.tasks.recognize.data import load_digit_images

TINY = ["workers=0", "progress=false", "train_strings=64", "val_strings=24", "batch=16",
        "min_len=2", "max_len=3", "line_width=64",
        "model_kwargs={width: 4, hidden: 8}"]  # fmt: skip


def test_train_val_predict_recognize(tmp_path, shared_data):
    data = f"data={shared_data / 'mnist'}"
    run = tmp_path / "run"
    assert main(["train", "recognize", data, *TINY, "epochs=1", f"out={run}"]) == 0
    for f in ("best.pt", "last.pt", "metrics.json", "plots/predictions.png"):
        assert (run / f).exists(), f
    trained = json.loads((run / "metrics.json").read_text())
    assert 0 <= trained["seq_acc"] <= 1 and trained["cer"] >= 0 and trained["val_loss"] > 0

    val = tmp_path / "val"
    assert main(["val", "recognize", data, *TINY, f"weights={run / 'best.pt'}",
                 f"out={val}", "plots=false"]) == 0  # fmt: skip
    metrics = json.loads((val / "metrics.json").read_text())
    for k in ("seq_acc", "cer", "val_loss"):  # same weights, same held-out lines
        assert abs(metrics[k] - trained[k]) < 1e-6, k

    # predict: dark digits on a light background, any size (inverted and resized)
    x, _ = load_digit_images(shared_data / "mnist")
    src = tmp_path / "src"
    line = 255 - np.concatenate([x[0], x[1], x[2]], axis=1)
    write_image(src / "a.png", np.repeat(line[..., None], 3, 2))
    write_image(src / "b.png", np.repeat(np.kron(line, np.ones((2, 2), np.uint8))[..., None], 3, 2))
    pred = tmp_path / "pred"
    assert main(["predict", "recognize", f"weights={run / 'best.pt'}", f"source={src}",
                 f"out={pred}", "decode=beam", "beam=4"]) == 0  # fmt: skip
    results = json.loads((pred / "predictions.json").read_text())
    assert [r["path"].endswith(n) for r, n in zip(results, ("a.png", "b.png"))] == [True, True]
    assert all(set(r["text"]) <= set("0123456789") for r in results)
