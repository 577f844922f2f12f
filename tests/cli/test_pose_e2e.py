"""End to end through the CLI: train -> val -> predict pose on tiny stick figures, and the
crop-to-image map the evaluator uses (oracle: numpy's inverse of the affine map)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvcraft.cli import main
from cvcraft.data.io import write_image
from cvcraft.data.pose import crop_matrix, shapes_pose
from cvcraft.tasks.pose.task import to_image


def test_train_val_predict_pose(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["data=shapes:48", "imgsz=32", "workers=0", "progress=false",
              "model_kwargs={deconv_channels: 8}"]  # fmt: skip
    assert main(["train", "pose", *common, "epochs=1", "batch=16", f"out={run}"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert {"map", "map50", "AP75", "AR", "val_loss"} <= set(trained)
    assert 0 <= trained["map"] <= 1 and trained["val_people"] == 9
    val = tmp_path / "val"
    assert main(["val", "pose", *common, f"weights={run / 'best.pt'}", f"out={val}"]) == 0
    metrics = json.loads((val / "metrics.json").read_text())
    for k in ("map", "map50", "AR", "val_loss"):
        assert abs(metrics[k] - trained[k]) < 1e-9, k
    dark = tmp_path / "dark"
    assert main(["val", "pose", *common, f"weights={run / 'best.pt'}", f"out={dark}",
                 "decode=dark"]) == 0  # fmt: skip
    d = json.loads((dark / "metrics.json").read_text())
    assert 0 <= d["map"] <= 1 and d["val_loss"] == metrics["val_loss"]  # same heatmaps

    src = tmp_path / "src"
    write_image(src / "a.png", shapes_pose(1, 64, seed=9).sample(0).image)
    pred = tmp_path / "pred"
    assert main(["predict", "pose", f"weights={run / 'best.pt'}", f"source={src}",
                 f"out={pred}"]) == 0  # fmt: skip
    res = json.loads((pred / "keypoints.json").read_text())
    assert len(res) == 1 and len(res[0]["keypoints"]) == 51
    assert np.asarray(Image.open(pred / "images" / "a.png")).shape == (64, 64, 3)
    assert "map" in capsys.readouterr().out


def test_crop_coordinates_map_back_to_the_image():
    rng = np.random.default_rng(0)
    m = np.stack([crop_matrix(np.r_[rng.uniform(0, 50, 2), rng.uniform(60, 120, 2)], 64)
                  for _ in range(3)])  # fmt: skip
    xy = rng.uniform(0, 64, (3, 17, 2))
    got = to_image(torch.from_numpy(xy), torch.from_numpy(m)).numpy()
    for n in range(3):
        full = np.vstack([m[n], [0, 0, 1]])
        want = (np.linalg.inv(full) @ np.c_[xy[n], np.ones(17)].T).T[:, :2]
        np.testing.assert_allclose(got[n], want, rtol=1e-10)


@pytest.mark.slow
def test_simplebaseline_learns_stick_figures(tmp_path):
    """A learning threshold for top-down pose (issue 25, class 8): 6 epochs on 256 stick
    figures reach OKS map 0.28, 0.30, 0.30 over seeds 0-2 (data and run); lr=0 0.0 x 3. A
    network trained on the next image's keypoints scores ~0.29 too (the person crops align
    every figure, so a mean figure already fits), so the misalignment this test guards is
    the joints' order: each heatmap trained on another joint (tests/MUTATIONS.md, fifth and
    seventh rounds)."""
    run = tmp_path / "run"
    assert main(["train", "pose", "data=shapes:256", "imgsz=64", "epochs=6", "batch=16",
                 "lr=0.005", "workers=0", "progress=false", "plots=false",
                 "model_kwargs={deconv_channels: 16}", f"out={run}"]) == 0  # fmt: skip
    m = json.loads((run / "metrics.json").read_text())
    assert m["map"] >= 0.15, m["map"]
