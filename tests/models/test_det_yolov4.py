"""YOLOv4: parameter count of the released yolov4.cfg, backbone equal to timm's cspdarknet53
(weights converted, outputs compared), the options (DropBlock, SAM, CmBN, DIoU-NMS)."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.yolov4 import CSPDarknet53, convert_timm_cspdarknet53
from cvcraft.nn.cmbn import CmBN
from cvcraft.nn.dropblock import DropBlock
from cvcraft.nn.sam import SpatialAttention
from cvcraft.ops.nms import postprocess_nms


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_is_yolov4_cfg():
    # yolov4.cfg at 80 classes: 64,363,101 parameters (Darknet's and its PyTorch ports')
    m = create_model("yolov4", num_classes=80)
    assert count(m) == 64_363_101
    assert m.anchors.shape == (9, 2) and m.stride == 32


def test_backbone_equals_timm_cspdarknet53():
    timm = pytest.importorskip("timm")
    t = timm.create_model("cspdarknet53", num_classes=0).eval()
    x = torch.rand(1, 3, 96, 96)
    for m in t.modules():  # Darknet's slope, and batch statistics so activations stay O(1)
        if isinstance(m, torch.nn.LeakyReLU):
            m.negative_slope = 0.1
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    t.train()
    with torch.no_grad():
        t(x)
    t.eval()
    ours = CSPDarknet53(act="leaky_relu").eval()
    assert count(ours) == count(t)
    ours.load_state_dict(convert_timm_cspdarknet53(t.state_dict()))
    with torch.no_grad():
        ref = t.forward_features(x)
        got = ours(x)[-1]
    assert ref.std() > 0.1
    assert torch.allclose(got, ref, atol=1e-4)


def test_options_build_the_layers():
    m = create_model("yolov4_small", num_classes=2, drop_block=0.1, sam=True, norm="cmbn",
                     cmbn_window=2)  # fmt: skip
    assert isinstance(m.backbone.drop, DropBlock)
    assert sum(isinstance(x, SpatialAttention) for x in m.modules()) == 3
    assert all(not isinstance(x, torch.nn.BatchNorm2d) or isinstance(x, CmBN)
               for x in m.modules())  # fmt: skip
    out = m(torch.rand(2, 3, 64, 64))
    t = [{"boxes": torch.tensor([[4.0, 4, 30, 40]]), "labels": torch.tensor([1])}] * 2
    loss, _ = m.loss(out, t)
    loss.backward()
    with pytest.raises(ConfigError, match="norm"):
        create_model("yolov4_small", norm="layernorm")


def test_diou_nms_by_default_and_task_nms_wins():
    torch.manual_seed(0)
    m = create_model("yolov4_small", num_classes=1).eval()
    out = m(torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        for o in out:  # every prediction confident, boxes near the image centre
            o[..., 4:] = 5.0
            o[..., :2] = 0.0
    default = m.postprocess(out, conf=0.1, iou=0.5)[0]
    with postprocess_nms("diou"):
        diou = m.postprocess(out, conf=0.1, iou=0.5)[0]
    with postprocess_nms("fast"):
        fast = m.postprocess(out, conf=0.1, iou=0.5)[0]
    assert torch.equal(default["boxes"], diou["boxes"])
    assert len(fast["boxes"]) != len(diou["boxes"])


def test_multiple_anchors_per_gt():
    from cvcraft.models.detection.yolo_anchor_loss import build_anchor_targets

    m = create_model("yolov4_small", num_classes=1)
    anchors = m.level_anchors()
    box = torch.tensor([[100.0, 100, 100 + 30, 100 + 60]])  # shape near two small anchors
    t = [{"boxes": box, "labels": torch.tensor([0])}]
    lv = build_anchor_targets(t, anchors, m.strides, [(40, 40), (20, 20), (10, 10)], "iou")
    from cvcraft.ops.anchors import wh_iou

    iou = wh_iou(torch.tensor([[30.0, 60.0]]), torch.cat(anchors))[0]
    expected = int(((iou > 0.213) | (iou == iou.max())).sum())
    assert sum(len(x["img"]) for x in lv) == expected >= 2


def test_scaled_yolov4_assignment_option():
    from cvcraft.models.detection.yolo_anchor_loss import build_anchor_targets

    paper = create_model("yolov4_small", num_classes=1)
    scaled = create_model("yolov4_small", num_classes=1, coding="v5", match="ratio")
    assert (paper.param, paper.criterion.match) == ("v4", "iou")
    assert (scaled.param, scaled.criterion.match) == ("v5", "ratio")
    box = torch.tensor([[100.0, 100, 130, 160]])  # centre (115, 130): off every cell centre
    t = [{"boxes": box, "labels": torch.tensor([0])}]
    grids = [(40, 40), (20, 20), (10, 10)]
    n = {}
    for m in (paper, scaled):
        lv = build_anchor_targets(t, m.level_anchors(), m.strides, grids, m.criterion.match)
        n[m.criterion.match] = sum(len(x["img"]) for x in lv)
    assert n["ratio"] >= 3 * n["iou"]  # neighbour cells and looser shapes: many more positives
    out = scaled(torch.rand(1, 3, 64, 64))
    loss, items = scaled.loss(out, [{"boxes": torch.tensor([[4.0, 4, 30, 40]]),
                                     "labels": torch.tensor([0])}])  # fmt: skip
    assert torch.isfinite(loss) and items["box"] > 0
    with pytest.raises(ConfigError, match="only coding=v5"):
        create_model("yolov4_small", match="ratio")
    with pytest.raises(ConfigError, match="coding="):
        create_model("yolov4_small", coding="v2")
