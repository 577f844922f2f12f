"""``cvcraft explain``: overlays written, equal to the library's maps drawn directly."""

import json

import numpy as np
import pytest
import torch

from cvcraft.data import load_classification
from cvcraft.data.io import read_image
from cvcraft.errors import ConfigError
from cvcraft.explain import attention_rollout, class_activation_map
from cvcraft.models import create_model
from cvcraft.tasks.explain_tool import run_explain
from cvcraft.tasks.model_tools import load_classifier_any, preprocess_of
from cvcraft.viz.heatmap import overlay_heatmap

DATA = "shapes:60"  # the conftest checkpoint's data: 60 train / 12 val, 6 classes


def test_explain_writes_the_cam_overlays(ckpt, images, tmp_path):
    res = run_explain({"weights": str(ckpt), "source": str(images), "method": "gradcam",
                       "layer": "layer3", "out": str(tmp_path)})  # fmt: skip
    assert len(res) == 3 and (tmp_path / "explain_grid.png").exists()
    assert json.loads((tmp_path / "explain.json").read_text())[0]["layer"] == "layer3"
    # the right half of the written overlay is the CAM computed directly, drawn over the image
    model, meta = load_classifier_any(ckpt, torch.device("cpu"))
    img = read_image(images / "img0.png")
    x = preprocess_of(meta, torch.device("cpu"))(torch.from_numpy(img).permute(2, 0, 1)[None])
    heat = class_activation_map(model, x, "layer3", "gradcam").maps[0].numpy()
    big = np.repeat(np.repeat(img, 8, 0), 8, 1)
    expected = overlay_heatmap(big, np.kron(heat, np.ones((8, 8), np.float32)))
    written = read_image(tmp_path / "img0_gradcam.png")
    assert written.shape == (256, 512, 3)
    assert np.abs(written[:, 256:].astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(written[:, :256], big)


def test_explain_rollout_for_a_vit(images, tmp_path, save_ckpt):
    torch.manual_seed(0)
    classes = load_classification(DATA, imgsz_hint=32).classes
    vit = create_model("vit_tiny_patch4_32", num_classes=len(classes))
    path = save_ckpt(tmp_path / "vit.pt", "vit_tiny_patch4_32", vit, classes)
    res = run_explain({"weights": str(path), "source": str(images / "img1.png"),
                       "method": "rollout", "out": str(tmp_path / "out")})  # fmt: skip
    assert len(res) == 1 and res[0]["layer"] == "attention"
    model, meta = load_classifier_any(path, torch.device("cpu"))
    img = read_image(images / "img1.png")
    x = preprocess_of(meta, torch.device("cpu"))(torch.from_numpy(img).permute(2, 0, 1)[None])
    heat = attention_rollout(model, x)[0][0].numpy()
    big = np.repeat(np.repeat(img, 8, 0), 8, 1)
    expected = overlay_heatmap(big, np.kron(heat, np.ones((8, 8), np.float32)))
    written = read_image(tmp_path / "out" / "img1_rollout.png")
    assert np.abs(written[:, 256:].astype(int) - expected.astype(int)).max() <= 1


def test_explain_bad_inputs(ckpt, images, tmp_path):
    base = {"weights": str(ckpt), "source": str(images), "out": str(tmp_path)}
    with pytest.raises(ConfigError, match="did you mean.*layer3"):
        run_explain({**base, "layer": "layer4"})
    with pytest.raises(ConfigError, match="method='gradcam3'"):
        run_explain({**base, "method": "gradcam3"})
    with pytest.raises(ConfigError, match="class='dog' is neither"):
        run_explain({**base, "class": "dog"})
