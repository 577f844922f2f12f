"""Anchor-free YOLO (yolo_p/n/s/m): architecture parity with YOLOv8, DFL coding against hand
computations, the batched assigner against the per-image TOOD assigner, the loss at zero
error, postprocess against torchvision's batched NMS, and a 4-image overfit."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.base import Detector
from cvcraft.models.detection.yolo import SCALES
from cvcraft.models.detection.yolo_coder import (
    dfl_expectation,
    encode_ltrb,
    make_anchor_points,
    yolo_decode,
)
from cvcraft.models.detection.yolo_loss import pad_targets
from cvcraft.nn.fuse import fuse_model
from cvcraft.ops.assigners import batched_task_aligned_assign, task_aligned_assign

# yolov8 parameter counts at 80 classes (ultralytics' own numbers, their fixed 16-weight DFL
# conv excluded: ours computes the expectation with a matmul instead)
V8_PARAMS = {"n": 3157200 - 16, "s": 11166560 - 16, "m": 25902640 - 16}


def _two_bin_logits(dist: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Logits whose softmax is the two-bin distribution with expectation ``dist`` (..., 4)
    -> (..., 4 reg_max); the exact minimizer of DFL for that target."""
    left = dist.floor().long().clamp(max=reg_max - 2)
    w_right = dist - left
    prob = torch.zeros(*dist.shape, reg_max)
    prob.scatter_(-1, left[..., None], (1 - w_right)[..., None])
    prob.scatter_add_(-1, (left + 1)[..., None], w_right[..., None])
    return prob.clamp(min=1e-12).log().flatten(-2)


@pytest.mark.parametrize("scale", ["n", "s", "m"])
def test_param_counts_equal_yolov8(scale):
    model = create_model(f"yolo_{scale}", num_classes=80)
    assert isinstance(model, Detector)
    assert sum(p.numel() for p in model.parameters()) == V8_PARAMS[scale]


def test_param_count_matches_ultralytics_build():
    ultra = pytest.importorskip("ultralytics.nn.tasks")
    ref = ultra.DetectionModel("yolov8n.yaml", nc=7, verbose=False)
    ours = create_model("yolo_n", num_classes=7)
    # ultralytics' DFL 1x1 conv holds the fixed bin values 0..15 (16 weights)
    assert (
        sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) - 16
    )


def test_scale_table():
    assert SCALES["n"].ch(1024) == 256 and SCALES["m"].ch(1024) == 576
    assert SCALES["n"].n(6) == 2 and SCALES["m"].n(6) == 4 and SCALES["s"].n(3) == 1


def test_forward_shapes_non_square_and_bad_size():
    model = create_model("yolo_p", num_classes=5).eval()
    out = model(torch.rand(2, 3, 64, 96))
    n = 8 * 12 + 4 * 6 + 2 * 3
    assert out["box"].shape == (2, n, 64) and out["cls"].shape == (2, n, 5)
    assert out["anchors"].shape == (n, 2) and out["strides"].shape == (n, 1)
    with pytest.raises(ConfigError, match="multiples of 32"):
        model(torch.rand(1, 3, 64, 80))


def test_conv_bn_fusion_keeps_outputs():
    torch.manual_seed(0)
    model = create_model("yolo_p", num_classes=3).eval()
    for m in model.modules():  # non-trivial BN statistics so the fold does real work
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fused = fuse_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = model.decode(model(x)), fused.decode(fused(x))
    torch.testing.assert_close(out[0], ref[0], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out[1], ref[1], atol=1e-5, rtol=1e-4)


def test_anchor_points_hand_values():
    pts, strides = make_anchor_points([(2, 3), (1, 1)], (8, 16))
    expected = torch.tensor([[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8.0]])
    torch.testing.assert_close(pts, expected)
    assert strides.flatten().tolist() == [8] * 6 + [16]


def test_dfl_decode_hand_computation():
    reg_max = 16
    logits = torch.full((1, 1, 4 * reg_max), -1e4)
    # edge l: softmax 0.25 on bin 2, 0.75 on bin 3 -> 2.75; t: uniform over 16 bins -> 7.5
    logits[0, 0, 2] = math.log(0.25)
    logits[0, 0, 3] = math.log(0.75)
    logits[0, 0, 16:32] = 0.0
    logits[0, 0, 32 + 1] = 0.0  # r: all mass on bin 1
    logits[0, 0, 48 + 15] = 0.0  # b: all mass on bin 15
    torch.testing.assert_close(dfl_expectation(logits), torch.tensor([[[2.75, 7.5, 1.0, 15.0]]]))
    anchor, stride = torch.tensor([[100.0, 50.0]]), torch.tensor([[8.0]])
    box = yolo_decode(logits, anchor, stride)
    expected = [100 - 2.75 * 8, 50 - 7.5 * 8, 100 + 1 * 8, 50 + 15 * 8]
    torch.testing.assert_close(box, torch.tensor([[expected]]))


def test_encode_decode_round_trip():
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(50, 2, generator=g) * 300 + 100
    strides = torch.tensor([8.0, 16.0, 32.0])[torch.randint(0, 3, (50,), generator=g)][:, None]
    ltrb = torch.rand(50, 4, generator=g) * 14.5 + 0.2  # inside the 16-bin range
    boxes = torch.cat([anchors - ltrb[:, :2] * strides, anchors + ltrb[:, 2:] * strides], 1)
    enc = encode_ltrb(boxes, anchors, strides, 16)
    torch.testing.assert_close(enc, ltrb, atol=1e-4, rtol=0)
    dec = yolo_decode(_two_bin_logits(enc, 16)[None], anchors, strides)[0]
    torch.testing.assert_close(dec, boxes, atol=1e-3, rtol=0)


def test_batched_assigner_equals_per_image_tood():
    g = torch.Generator().manual_seed(3)
    b, n, c = 3, 120, 4
    anchors = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(b, n, 2, generator=g) * 30 + 5
    pred_boxes = torch.cat([anchors - wh / 2, anchors + wh / 2], -1)
    pred_scores = torch.rand(b, n, c, generator=g)
    targets = []
    for k in (3, 0, 5):  # an image without objects pads to zero rows
        xy = torch.rand(k, 2, generator=g) * 60
        twh = torch.rand(k, 2, generator=g) * 40 + 10
        targets.append(
            {
                "boxes": torch.cat([xy, xy + twh], 1),
                "labels": torch.randint(0, c, (k,), generator=g),
            }
        )
    gt_boxes, gt_labels, gt_mask = pad_targets(targets)
    kw = {"topk": 10, "alpha": 0.5, "beta": 6.0}
    gt_index, t_hat, _ = batched_task_aligned_assign(
        pred_scores, pred_boxes, anchors, gt_boxes, gt_labels, gt_mask, **kw
    )
    assert (gt_index >= 0).sum() > 5
    for i, t in enumerate(targets):
        ref = task_aligned_assign(
            pred_scores[i], pred_boxes[i], anchors, t["boxes"], t["labels"], **kw
        )
        assert torch.equal(gt_index[i], ref.gt_index)
        torch.testing.assert_close(t_hat[i], ref.extras["score_targets"])


def _single_object_outputs(model, box, label, size=128):
    """Forward-dict whose predictions equal the target at the positive cells: two-bin DFL
    logits decoding exactly to ``box`` everywhere, and class logits saturated on ``label``."""
    out = model(torch.zeros(1, 3, size, size))
    anchors, strides = out["anchors"], out["strides"]
    n = len(anchors)
    ltrb = encode_ltrb(box.expand(n, 4), anchors, strides, model.reg_max)
    box_logits = _two_bin_logits(ltrb, model.reg_max)[None]
    cls = torch.full((1, n, model.num_classes), -20.0)
    return {"box": box_logits, "cls": cls, "anchors": anchors, "strides": strides}


@pytest.mark.parametrize("box_kind", ["ciou", "siou"])
def test_loss_at_zero_error_is_minimal(box_kind):
    torch.manual_seed(0)
    model = create_model("yolo_p", num_classes=3, loss_kw={"box_kind": box_kind})
    box = torch.tensor([[40.0, 36.0, 88.0, 100.0]])
    target = [{"boxes": box, "labels": torch.tensor([1])}]
    out = _single_object_outputs(model, box, 1)
    _, items = model.loss(out, target)
    # decoded boxes equal the gt -> 1 - CIoU = 1 - SIoU = 0
    assert items["box"] < 1e-5
    # DFL at its minimum: the entropy of the two-bin targets of the positive cells
    fg, t_hat, _ = batched_task_aligned_assign(
        out["cls"].sigmoid(),
        yolo_decode(out["box"], out["anchors"], out["strides"]),
        out["anchors"],
        box[None],
        torch.tensor([[1]]),
        torch.tensor([[True]]),
    )
    pos = fg[0] >= 0
    enc = encode_ltrb(box.expand(int(pos.sum()), 4), out["anchors"][pos], out["strides"][pos], 16)
    w = enc - enc.floor()
    ent = -(w * w.clamp(min=1e-12).log() + (1 - w) * (1 - w).clamp(min=1e-12).log()).mean(-1)
    expected_dfl = 1.5 * (ent * t_hat[0][pos]).sum() / t_hat.sum().clamp(min=1)
    assert items["dfl"] == pytest.approx(float(expected_dfl), abs=1e-4)
    # moving the predicted boxes away from the gt raises every box term
    shifted = dict(out, box=out["box"].roll(1, dims=-1))
    _, worse = model.loss(shifted, target)
    assert worse["box"] > items["box"] + 0.01 and worse["dfl"] > items["dfl"] + 0.01


def test_loss_empty_targets_and_label_check():
    model = create_model("yolo_p", num_classes=2)
    out = model(torch.rand(2, 3, 64, 64))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    total, items = model.loss(out, [empty, empty])
    total.backward()
    assert items["box"] == 0 and items["dfl"] == 0 and items["cls"] > 0
    bad = {"boxes": torch.tensor([[1.0, 1, 30, 30]]), "labels": torch.tensor([2])}
    with pytest.raises(ConfigError, match="num_classes"):
        model.loss(model(torch.rand(2, 3, 64, 64)), [bad, empty])


def test_postprocess_matches_torchvision_batched_nms():
    torch.manual_seed(1)
    model = create_model("yolo_p", num_classes=4).eval()
    out = model(torch.rand(2, 3, 96, 96))
    out["cls"] = torch.randn_like(out["cls"]) * 2  # spread the scores across the threshold
    dets = model.postprocess(out, conf=0.3, iou=0.5, max_det=50)
    boxes, scores = model.decode(out)
    for i, det in enumerate(dets):
        cell, label = torch.nonzero(scores[i] > 0.3, as_tuple=True)
        s = scores[i][cell, label]
        keep = torchvision.ops.batched_nms(boxes[i][cell], s, label, 0.5)[:50]
        torch.testing.assert_close(det["boxes"], boxes[i][cell][keep])
        torch.testing.assert_close(det["scores"], s[keep])
        assert torch.equal(det["labels"], label[keep])
        assert det["labels"].dtype == torch.int64 and len(det["boxes"]) <= 50


def test_overfit_four_images_loss_decreases():
    torch.manual_seed(0)
    model = create_model("yolo_p", num_classes=2)
    images = torch.rand(4, 3, 64, 64) * 0.2
    targets = []
    for i in range(4):
        x0, y0 = 4 + 8 * i, 30 - 6 * i
        images[i, :, y0 : y0 + 24, x0 : x0 + 20] = 0.9  # a bright rectangle is the object
        box = torch.tensor([[x0, y0, x0 + 20, y0 + 24]], dtype=torch.float32)
        targets.append({"boxes": box, "labels": torch.tensor([i % 2])})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        total, _ = model.loss(model(images), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
