"""The detect task's choice keys: nms= reaches every detector's post-processing (equal to
ops.nms with that method on the same candidates), assigner= / label_smoothing= reach the
YOLO loss, autoanchor=true fits yolov3's anchors at train start (equal to
ops.anchors.autoanchor on the letterboxed train boxes), and a run with all of them trains,
validates and predicts."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cvcraft.cli import main
from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.ops.anchors import autoanchor
from cvcraft.ops.nms import POSTPROCESS_NMS, batched_nms, multiclass_nms, postprocess_nms
from cvcraft.tasks import task_config
from cvcraft.tasks.detect.task import detector_forward, fit_model_anchors


class ScoreTableDetector(nn.Module):
    """Fixed candidate boxes and per-class scores, post-processed by multiclass_nms."""

    stride = 32

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(60, 2, generator=g) * 40
        self.boxes = torch.cat([xy, xy + 8 + torch.rand(60, 2, generator=g) * 16], 1)
        self.scores = torch.rand(60, 3, generator=g)
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        return {"n": images.shape[0]}

    def loss(self, outputs, targets):
        return self.w.sum(), {}

    def postprocess(self, outputs, conf=0.25, iou=0.7, max_det=300):
        return [multiclass_nms(self.boxes, self.scores, conf, iou, max_det)
                for _ in range(outputs["n"])]  # fmt: skip


@pytest.mark.parametrize("name", list(POSTPROCESS_NMS))
def test_nms_key_reaches_postprocess(name):
    model = ScoreTableDetector()
    cfg = task_config("detect", {"nms": name, "val_conf": "0.2", "iou": "0.4", "max_det": "300"})
    batch = {"images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
             "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "counts": torch.zeros(2, dtype=torch.int64)}  # fmt: skip
    got = detector_forward(cfg, torch.device("cpu"))(model, batch)["dets"][0]
    # the same candidates through ops.nms with that method, by hand
    idx, cls = torch.nonzero(model.scores > 0.2, as_tuple=True)
    s = model.scores[idx, cls]
    method = POSTPROCESS_NMS[name]
    res = batched_nms(model.boxes[idx], s, cls, 0.4, method, max_det=300, top_k=10_000)
    keep = res.scores > 0.2 if method in ("soft_gaussian", "soft_linear", "matrix") else ...
    torch.testing.assert_close(got["scores"], res.scores[keep])
    torch.testing.assert_close(got["boxes"], res.boxes[keep])
    torch.testing.assert_close(got["labels"], cls[res.keep][keep])
    # outside the task's block the detector is back to greedy
    plain = model.postprocess({"n": 1}, 0.2, 0.4, 300)[0]
    greedy = batched_nms(model.boxes[idx], s, cls, 0.4, max_det=300)
    torch.testing.assert_close(plain["scores"], greedy.scores)
    same = len(got["scores"]) == len(greedy.scores) and torch.equal(got["boxes"], greedy.boxes)
    assert same == (name == "greedy")  # every other method changes something here


def test_choice_keys_are_checked():
    with pytest.raises(ConfigError, match="nms='nope'"):
        task_config("detect", {"nms": "nope"})
    with pytest.raises(ConfigError, match="assigner='ota'"):
        task_config("detect", {"assigner": "ota"})
    with pytest.raises(ConfigError, match="label_smoothing=1.0"):
        task_config("detect", {"label_smoothing": "1.0"})
    with pytest.raises(ConfigError, match="nms="):
        with postprocess_nms("nope"):
            pass


def _records(rng, n=40, size=(480, 640)):
    h, w = size
    out = []
    for _ in range(n):
        xy = rng.uniform(0, 200, (3, 2))
        wh = np.array([[20, 120], [150, 30], [260, 240]]) * rng.uniform(0.8, 1.2, (3, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        out.append(SimpleNamespace(boxes=boxes, width=w, height=h))
    return out


def test_autoanchor_fits_yolov3_anchors_like_ops_autoanchor():
    rng = np.random.default_rng(0)
    data = SimpleNamespace(images=_records(rng))
    bad = np.full((9, 2), 300.0) + np.arange(9)[:, None]  # all far too large for 160 px
    model = create_model("yolov3_tiny", num_classes=2, input_size=160, anchors=bad)
    before = model.anchors.clone()
    fit_model_anchors(model, data, 160, seed=3)
    wh = np.concatenate([(r.boxes[:, 2:] - r.boxes[:, :2]) * (160 / 640) for r in data.images])
    want = autoanchor(wh, before.numpy(), seed=3)
    assert want.replaced and want.bpr_after > want.bpr_before
    np.testing.assert_allclose(model.anchors.numpy(), want.anchors)
    # already good anchors are kept
    fit_model_anchors(model, data, 160, seed=3)
    np.testing.assert_allclose(model.anchors.numpy(), want.anchors)
    with pytest.raises(ConfigError, match="autoanchor=true is for detectors with fitted"):
        fit_model_anchors(create_model("yolo_p", num_classes=2), data, 160, seed=0)
    with pytest.raises(ConfigError, match="has none to read"):
        fit_model_anchors(model, SimpleNamespace(), 160, seed=0)


def test_train_val_predict_with_the_choice_keys(tmp_path):
    keys = ["data=shapes:24", "model=yolo_p", "imgsz=64", "batch=8", "workers=0", "epochs=1",
            "progress=false", "plots=false", "mosaic=0", "assigner=simota",
            "label_smoothing=0.1", "nms=soft"]  # fmt: skip
    assert main(["train", "detect", *keys, f"out={tmp_path / 'run'}"]) == 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.isfinite(saved["val_loss"])
    weights = tmp_path / "run" / "best.pt"
    val = ["val", "detect", f"weights={weights}", "data=shapes:24", "imgsz=64", "workers=0",
           "plots=false", "nms=diou", f"out={tmp_path / 'val'}"]  # fmt: skip
    assert main(val) == 0
    with pytest.raises(ConfigError, match="assigner"):
        from cvcraft.tasks.detect.task import build_detector

        build_detector("yolov3_tiny", 2, {"assigner": "simota"})
