"""``cvcraft explain``: overlays written, equal to the library's maps drawn directly."""

import json

import numpy as np
import pytest
import torch

from cvcraft.data import load_classification
from cvcraft.data.io import read_image
from cvcraft.errors import ConfigError
from cvcraft.explain import (
    attention_rollout,
    class_activation_map,
    detection_score,
    segmentation_score,
)
from cvcraft.models import create_model
from cvcraft.structures import Sample
from cvcraft.tasks.explain_tool import run_explain
from cvcraft.tasks.model_tools import load_classifier_any, preprocess_of
from cvcraft.transforms.letterbox import Letterbox
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


def _x4(a):
    return np.repeat(np.repeat(a, 4, 0), 4, 1)


def _mostly_equal(a, b, frac=0.97):
    """Overlays agree up to rounding except where boxes/captions are drawn on top."""
    return np.mean(np.abs(a.astype(int) - b.astype(int)).max(-1) <= 1) >= frac


def test_explain_detector_boxes(images, tmp_path, save_task_ckpt):
    torch.manual_seed(0)
    classes = ["a", "b", "c", "d"]
    det = create_model("yolo_p", num_classes=4)
    path = save_task_ckpt(tmp_path / "det.pt", "detect", "yolo_p", det, classes, 64)
    res = run_explain({"weights": str(path), "source": str(images / "img0.png"), "conf": "0",
                       "top": "2", "layer": "neck.td3", "out": str(tmp_path / "out")})  # fmt: skip
    assert [r["panel"] for r in res] == [1, 2] and res[0]["layer"] == "neck.td3"
    written = read_image(tmp_path / "out" / "img0_gradcam.png")
    assert written.shape == (256, 3 * 256, 3)  # the image x4, then one panel per box
    # panel 2 is the Grad-CAM of the second box's own score, computed here directly
    model = det.eval()
    img = Letterbox(64)(Sample(read_image(images / "img0.png"))).image
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    box, label = torch.tensor([res[1]["box"]]), torch.tensor([classes.index(res[1]["class"])])
    heat = class_activation_map(
        model, x, "neck.td3", "gradcam", score_fn=detection_score(model.decode, box, label)
    ).maps[0]
    assert _mostly_equal(written[24:, 512:], overlay_heatmap(_x4(img), _x4(heat.numpy()))[24:])


def test_explain_segmenter_classes(images, tmp_path, save_task_ckpt):
    torch.manual_seed(0)
    classes = ["background", "thing", "stuff"]
    seg = create_model("deeplabv3_resnet18", num_classes=3)
    path = save_task_ckpt(tmp_path / "seg.pt", "segment", "deeplabv3_resnet18", seg, classes, 64)
    res = run_explain({"weights": str(path), "source": str(images / "img2.png"), "top": "2",
                       "out": str(tmp_path / "out")})  # fmt: skip
    model, state = load_checkpoint_model(path)
    img = Letterbox(64)(Sample(read_image(images / "img2.png"))).image
    x = preprocess_of(state, torch.device("cpu"))(torch.from_numpy(img).permute(2, 0, 1)[None])
    with torch.no_grad():
        area = torch.bincount(model(x).argmax(1).flatten(), minlength=3)
    order = [classes[int(c)] for c in area.argsort(descending=True) if area[c] > 0][:2]
    assert [r["class"] for r in res] == order  # the largest predicted classes, in order
    c = classes.index(res[0]["class"])
    heat = class_activation_map(
        model, x, res[0]["layer"], "gradcam", score_fn=segmentation_score(c)
    ).maps[0]
    assert float(heat.max()) == pytest.approx(1.0, abs=1e-5)  # a real map, not all zeros
    written = read_image(tmp_path / "out" / "img2_gradcam.png")
    assert written.shape == (256, 256 * (1 + len(res)), 3)
    # below the caption strip, panel 1 is that map over the image (both drawn 4x larger)
    expected = overlay_heatmap(_x4(img), _x4(heat.numpy()))
    assert _mostly_equal(written[24:, 256:512], expected[24:])
    with pytest.raises(ConfigError, match="method=scorecam explains classifiers"):
        run_explain({"weights": str(path), "source": str(images), "method": "scorecam"})


def load_checkpoint_model(path):
    from cvcraft.tasks.registry import get_task

    return get_task("segment").load_class().load_model(path, torch.device("cpu"))
