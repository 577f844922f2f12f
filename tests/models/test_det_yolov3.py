"""YOLOv3: size against the reference implementation, assignment + encode/decode round trip,
loss terms against a hand computation, ignore rule, postprocess in pixels, overfitting."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.yolov3 import COCO_ANCHORS, assign_yolov3
from cvcraft.ops.anchors import kmeans_anchors

TINY = {"width_mult": 0.125, "depth_mult": 0.2}


def _model(num_classes=3, **kw):
    torch.manual_seed(0)
    return create_model("yolov3", num_classes=num_classes, **{**TINY, "input_size": 128, **kw})


def _targets():
    return [
        {
            "boxes": torch.tensor([[10.0, 12, 30, 40], [40, 20, 120, 110]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.tensor([[60.0, 70, 75, 82]]), "labels": torch.tensor([1])},
    ]


def test_yolov3_size_matches_darknet_reference():
    # Darknet yolov3.cfg / ultralytics yolov3.yaml at 80 classes: 61,949,149 parameters.
    m = create_model("yolov3", num_classes=80)
    assert sum(p.numel() for p in m.parameters()) == 61_949_149


def test_forward_shapes_and_anchor_split():
    m = _model()
    out = m(torch.rand(2, 3, 128, 96))
    assert [tuple(o.shape) for o in out] == [(2, 3, 16, 12, 8), (2, 3, 8, 6, 8), (2, 3, 4, 3, 8)]
    a = torch.tensor(COCO_ANCHORS, dtype=torch.float32) * 128 / 416
    torch.testing.assert_close(m.anchors, a)  # already sorted by area: smallest to stride 8


def test_kmeans_anchors_are_accepted_and_sorted():
    rng = np.random.default_rng(0)
    wh = rng.uniform(4, 120, size=(200, 2))
    fit = kmeans_anchors(wh, k=9, seed=0)
    m = _model(anchors=fit.anchors[::-1].copy())
    area = m.anchors.prod(1)
    assert (area[1:] >= area[:-1]).all()
    torch.testing.assert_close(m.anchors, torch.as_tensor(fit.anchors))
    with pytest.raises(
        ConfigError, match=r"anchors: need a positive \(3k, 2\) array .* got \(4, 2\)"
    ):
        _model(anchors=[[10, 10]] * 4)


def test_assignment_picks_best_shape_anchor():
    m = _model()
    # Each box has exactly one anchor's shape, so the best wh-IoU anchor is that one (IoU 1).
    pick = [0, 4, 8]
    boxes = torch.stack(
        [
            torch.cat([torch.tensor([50.0, 40]), torch.tensor([50.0, 40]) + m.anchors[k]])
            for k in pick
        ]
    )
    targets = [{"boxes": boxes, "labels": torch.tensor([0, 1, 2])}]
    asg = assign_yolov3(targets, m.anchors, 3, m.strides, [(16, 16), (8, 8), (4, 4)])
    for lvl, k in enumerate(pick):
        assert asg[lvl]["anchor"].tolist() == [k % 3]
        centre = (boxes[lvl, :2] + boxes[lvl, 2:]) / 2 / m.strides[lvl]
        assert asg[lvl]["gx"].tolist() == [int(centre[0])] and asg[lvl]["gy"].tolist() == [
            int(centre[1])
        ]


def test_assign_encode_decode_round_trip():
    m = _model()
    targets = _targets()
    outs = [torch.zeros(2, 3, h, w, 8) for h, w in [(16, 16), (8, 8), (4, 4)]]
    asg = assign_yolov3(targets, m.anchors, 3, m.strides, [o.shape[2:4] for o in outs])
    got = []
    for out, coder, a in zip(outs, m.coders(), asg):
        idx = (a["img"], a["anchor"], a["gy"], a["gx"])
        out[idx + (slice(0, 4),)] = coder.encode(
            a["boxes"], a["anchor"], torch.stack([a["gx"], a["gy"]], -1)
        )
        got.append((coder.decode(out[..., :4])[idx], a["boxes"]))
    dec = torch.cat([g[0] for g in got])
    ref = torch.cat([g[1] for g in got])
    assert len(ref) == 3
    torch.testing.assert_close(dec, ref, atol=1e-3, rtol=0)


def test_loss_terms_match_hand_computation():
    m = _model()
    torch.manual_seed(1)
    outs = [torch.randn(1, 3, h, w, 8) * 0.5 for h, w in [(16, 16), (8, 8), (4, 4)]]
    box = torch.tensor([[40.0, 20, 120, 110]])
    targets = [{"boxes": box, "labels": torch.tensor([2])}]
    m.ignore_thr = 1.01  # nothing ignored: objectness BCE over every prediction
    total, items = m.loss(outs, targets)
    # hand: best anchor by wh-IoU, its cell, its targets
    wh = box[0, 2:] - box[0, :2]
    inter = torch.minimum(wh, m.anchors).prod(1)
    k = int((inter / (wh.prod() + m.anchors.prod(1) - inter)).argmax())
    lvl, a = k // 3, k % 3
    s = m.strides[lvl]
    cx, cy = float(box[0, 0] + box[0, 2]) / 2 / s, float(box[0, 1] + box[0, 3]) / 2 / s
    gx, gy = int(cx), int(cy)
    p = outs[lvl][0, a, gy, gx]
    tw, th = torch.log(wh / m.anchors[k])
    scale = 2 - float(wh.prod()) / (128 * 128)
    want_box = scale * (
        (torch.sigmoid(p[0]) - (cx - gx)) ** 2 + (torch.sigmoid(p[1]) - (cy - gy)) ** 2
        + (p[2] - tw) ** 2 + (p[3] - th) ** 2
    )  # fmt: skip
    want_cls = F.binary_cross_entropy_with_logits(p[5:], torch.tensor([0.0, 0, 1]), reduction="sum")
    obj_sum = sum(
        F.binary_cross_entropy_with_logits(o[..., 4], torch.zeros_like(o[..., 4]), reduction="sum")
        for o in outs
    )
    want_obj = obj_sum - F.softplus(p[4]) + F.softplus(-p[4])  # the positive flips its target
    assert items["box"] == pytest.approx(float(want_box), rel=1e-4)
    assert items["cls"] == pytest.approx(float(want_cls), rel=1e-4)
    assert items["obj"] == pytest.approx(float(want_obj), rel=1e-4)
    assert float(total) == pytest.approx(float(want_box + want_cls + want_obj), rel=1e-4)


def test_ignored_prediction_has_no_objectness_loss():
    m = _model()
    box = torch.tensor([[40.0, 20, 120, 110]])
    targets = [{"boxes": box, "labels": torch.tensor([0])}]
    outs = [torch.zeros(1, 3, h, w, 8) for h, w in [(16, 16), (8, 8), (4, 4)]]
    coder = m.coders()[2]
    # A stride-32 prediction with a non-best anchor, decoded onto the gt box exactly.
    asg = assign_yolov3(targets, m.anchors, 3, m.strides, [(16, 16), (8, 8), (4, 4)])
    other = [a for a in range(3) if not (len(asg[2]["anchor"]) and asg[2]["anchor"][0] == a)][0]
    cell = coder.cells(box)
    t = coder.encode(box, torch.tensor([other]), cell)
    outs[2][0, other, cell[0, 1], cell[0, 0], :4] = t[0]
    obj = []
    for logit in (-5.0, 5.0):
        outs[2][0, other, cell[0, 1], cell[0, 0], 4] = logit
        obj.append(m.loss(outs, targets)[1]["obj"])
    assert obj[0] == pytest.approx(obj[1])
    m.ignore_thr = 1.01
    assert m.loss(outs, targets)[1]["obj"] > obj[1] + 4  # counted again: BCE(5, 0) ~ 5


def test_postprocess_returns_input_pixels():
    m = _model().eval()
    h, w = 96, 160
    outs = [torch.full((1, 3, h // s, w // s, 8), -15.0) for s in m.strides]
    gt = torch.tensor([[30.0, 20, 110, 70]])
    coder = m.coders()[1]
    cell = coder.cells(gt)
    outs[1][0, 2, cell[0, 1], cell[0, 0], :4] = coder.encode(gt, torch.tensor([2]), cell)[0]
    outs[1][0, 2, cell[0, 1], cell[0, 0], 4] = 9.0
    outs[1][0, 2, cell[0, 1], cell[0, 0], 6] = 9.0  # class 1
    det = m.postprocess(outs, conf=0.25)[0]
    assert det["labels"].tolist() == [1] and det["scores"][0] > 0.99
    torch.testing.assert_close(det["boxes"], gt, atol=1e-3, rtol=0)


def test_cspdarknet_backbone_and_tiny_variant():
    m = create_model("yolov3_tiny", num_classes=2, backbone="cspdarknet53")
    assert m.default_input_size == (3, 320, 320)
    out = m(torch.rand(1, 3, 64, 64))
    boxes = torch.tensor([[5.0, 5, 40, 50], [10, 10, 10, 20]])  # the second is degenerate
    total, _ = m.loss(out, [{"boxes": boxes, "labels": torch.tensor([1, 0])}])
    assert torch.isfinite(total)
    with pytest.raises(
        ConfigError, match=r"backbone must be one of \['cspdarknet53', 'darknet53'\], got 'vgg16'"
    ):
        create_model("yolov3", num_classes=2, backbone="vgg16")


def test_overfits_four_images():
    m = _model()
    torch.manual_seed(0)
    x = torch.rand(4, 3, 96, 96)
    targets = [
        {
            "boxes": torch.tensor([[10.0 + 5 * i, 12, 60 + 5 * i, 70]]),
            "labels": torch.tensor([i % 3]),
        }
        for i in range(4)
    ]
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        total, _ = m.loss(m(x), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert sum(losses[-3:]) / 3 < 0.3 * sum(losses[:3]) / 3
