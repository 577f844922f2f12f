"""The detect task's numeric paths on contract-keeping fake detectors: predictions mapped back
through a known letterbox, COCO evaluation equal to pycocotools on the same detections,
test-time augmentation's flip/scale inversion, multi-scale sizes and config checks."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import cvcraft.tasks.detect.task as det
from cvcraft.data import build_loader
from cvcraft.data.collate import collate_detect
from cvcraft.data.detection_dataset import (
    coco_ground_truth,
    detection_dataset,
    make_shapes_detection,
)
from cvcraft.engine.checkpoint import save_checkpoint
from cvcraft.errors import ConfigError
from cvcraft.tasks import task_config


class FixedBoxDetector(nn.Module):
    """Always reports one box (input pixels) of class 1 with score 0.9."""

    stride = 32

    def __init__(self, box):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.box = torch.tensor([box], dtype=torch.float32)

    def forward(self, images, targets=None):
        return {"n": images.shape[0]}

    def loss(self, outputs, targets):
        return self.w.sum(), {}

    def postprocess(self, outputs, conf=0.25, iou=0.7, max_det=300):
        return [
            {"boxes": self.box.clone(), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
            for _ in range(outputs["n"])
        ]


def test_predict_maps_boxes_back_through_a_known_letterbox(tmp_path, monkeypatch):
    import cv2

    # a 100 x 200 (h x w) image letterboxed to 64: scale 0.32, pad top 16 (left 0). The box
    # [16, 24, 48, 40] in input pixels is x = 16/0.32 .. 48/0.32, y = (24-16)/0.32 .. (40-16)/0.32
    model = FixedBoxDetector([16, 24, 48, 40])
    monkeypatch.setattr(det, "build_detector", lambda name, nc, kw, in_chans=3: model)
    ckpt = tmp_path / "w.pt"
    state = {"task": "detect", "model_name": "fixed", "num_classes": 2, "classes": ["a", "b"],
             "category_ids": [5, 8], "imgsz": 64, "model": model.state_dict()}  # fmt: skip
    save_checkpoint(ckpt, state)
    img = np.full((100, 200, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / "pic.png"), img)
    cfg = task_config("detect", {"weights": str(ckpt), "source": str(tmp_path / "pic.png")})
    out = tmp_path / "pred"
    results = det.predict_detector(cfg, out)
    assert results[0]["summary"] == "1 b"
    np.testing.assert_allclose(results[0]["detections"][0]["box"], [50, 25, 150, 75], atol=1e-4)
    coco = json.loads((out / "predictions.json").read_text())
    assert coco[0]["category_id"] == 8 and coco[0]["image_id"] == 0
    np.testing.assert_allclose(coco[0]["bbox"], [50, 25, 100, 50], atol=1e-3)
    drawn = cv2.imread(str(out / "pic.jpg"))
    assert drawn.shape == (100, 200, 3)
    assert not np.allclose(drawn, 40, atol=8)  # the box was drawn


class ReplayDetector(nn.Module):
    """Returns stored detections (input pixels) in loader order: a scripted detector."""

    stride = 32

    def __init__(self, dets):
        super().__init__()
        self.dets, self.i = dets, 0
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        n = images.shape[0]
        out = self.dets[self.i : self.i + n]
        self.i += n
        return out

    def loss(self, outputs, targets):
        return self.w.sum() + 1.5, {}

    def postprocess(self, outputs, conf=0.25, iou=0.7, max_det=300):
        return [{k: v.clone() for k, v in d.items()} for d in outputs]


def _noisy_dets(data, seed=0):
    rng = np.random.default_rng(seed)
    dets = []
    for rec in data.images:
        n = len(rec)
        boxes = rec.boxes + rng.normal(0, 2.0, (n, 4)).astype(np.float32)
        labels = rec.labels.copy()
        flip = rng.random(n) < 0.2  # some wrong classes
        labels[flip] = (labels[flip] + 1) % 6
        extra = rng.uniform(0, 40, (2, 2)).astype(np.float32)
        fp = np.concatenate([extra, extra + 20], 1)  # two false positives per image
        dets.append({
            "boxes": torch.from_numpy(np.concatenate([boxes, fp])),
            "scores": torch.from_numpy(rng.uniform(0.05, 1, n + 2).astype(np.float32)),
            "labels": torch.from_numpy(np.concatenate([labels, rng.integers(0, 6, 2)])),
        })  # fmt: skip
    return dets


def test_evaluate_detector_equals_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = make_shapes_detection(12, 64, seed=2, split="val")
    dets = _noisy_dets(data)
    loader = build_loader(detection_dataset(data, 64), 5, shuffle=False, collate_fn=collate_detect)
    gt = coco_ground_truth(data)
    cfg = task_config("detect", {"imgsz": 64})
    m = det.evaluate_detector(
        ReplayDetector(dets), loader, gt, data, torch.device("cpu"), cfg, num_classes=6
    )
    results = [
        {"image_id": rec.image_id, "category_id": int(c) + 1,
         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
         "score": float(s)}
        for rec, d in zip(data.images, dets)
        for b, s, c in zip(d["boxes"].clamp(0, 64).numpy(), d["scores"], d["labels"])
    ]  # fmt: skip
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert m["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert m["map50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert m["mar100"] == pytest.approx(ev.stats[8], abs=1e-6)
    assert m["val_loss"] == pytest.approx(1.5)
    cm = m["confusion_matrix"]
    assert cm.shape == (7, 7) and cm[:6].sum() == sum(len(r) for r in data.images)


def test_perfect_detections_give_map_one():
    data = make_shapes_detection(6, 64, seed=4)
    dets = [
        {"boxes": torch.from_numpy(r.boxes), "scores": torch.ones(len(r)),
         "labels": torch.from_numpy(r.labels)}
        for r in data.images
    ]  # fmt: skip
    loader = build_loader(detection_dataset(data, 64), 4, shuffle=False, collate_fn=collate_detect)
    cfg = task_config("detect", {"imgsz": 64})
    m = det.evaluate_detector(
        ReplayDetector(dets), loader, coco_ground_truth(data), data, torch.device("cpu"), cfg,
        num_classes=6,
    )  # fmt: skip
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)


class BrightBoxDetector(nn.Module):
    """Reports the bounding box of pixels brighter than 0.5 (a content-following detector)."""

    stride = 32

    def forward(self, images, targets=None):
        return images

    def postprocess(self, outputs, conf=0.25, iou=0.7, max_det=300):
        res = []
        for im in outputs:
            on = im.mean(0) > 0.5
            ys, xs = torch.nonzero(on, as_tuple=True)
            box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()[None]
            res.append({"boxes": box, "scores": torch.tensor([0.8]), "labels": torch.tensor([2])})
        return res


def test_tta_inverts_flip_and_scales():
    x = torch.zeros(1, 3, 160, 160)
    x[..., 40:100, 20:80] = 1.0  # -> box [20, 40, 80, 100]; passes at 160, 128 (flipped), 96
    dets = det.tta_detect(BrightBoxDetector(), x, conf=0.1, iou=1.0, max_det=10)
    boxes = dets[0]["boxes"]
    assert len(boxes) == 3  # one per pass: iou=1.0 suppresses nothing
    np.testing.assert_allclose(boxes.numpy(), [[20, 40, 80, 100]] * 3, atol=2.0)
    merged = det.tta_detect(BrightBoxDetector(), x, conf=0.1, iou=0.5, max_det=10)
    assert len(merged[0]["boxes"]) == 1 and merged[0]["labels"].tolist() == [2]


def test_multi_scale_size_is_stride_multiple_in_range():
    rng = np.random.default_rng(0)
    sizes = {det.multi_scale_size(128, 32, rng) for _ in range(200)}
    assert sizes <= {64, 96, 128, 160, 192} and len(sizes) >= 4


@pytest.mark.parametrize(
    "kv", [{"mosaic": 1.5}, {"scale": 1.0}, {"hsv_h": 0.7}, {"max_det": 0}, {"iou": -0.1}]
)
def test_config_rejects_out_of_range(kv):
    with pytest.raises(ConfigError, match=next(iter(kv))):
        task_config("detect", kv)


def test_backbone_weights_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="backbone_weights"):
        task_config("detect", {"backbone_weights": str(tmp_path / "nope.pt")})


def test_backbone_weights_reach_load_backbone_state(tmp_path, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("cvcraft.models.detection.backbone_init")
    fake.load_backbone_state = lambda model, sd: calls.append((model, sd))
    monkeypatch.setitem(sys.modules, "cvcraft.models.detection.backbone_init", fake)
    ckpt = tmp_path / "cls.pt"
    raw, ema = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    save_checkpoint(ckpt, {"task": "classify", "model": raw, "ema": ema})
    model = nn.Linear(2, 2)
    det.init_backbone(model, str(ckpt))
    assert calls[0][0] is model
    assert torch.equal(calls[0][1]["w"], torch.ones(2))  # the EMA weights, as weights_of picks
