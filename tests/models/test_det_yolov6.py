"""YOLOv6: parameter counts and whole-network outputs against ultralytics' yolov6 build
(weights copied position by position after both are fused), exact re-parameterisation of
the whole model with random BN statistics, SIoU as the box loss against a hand-written
formula, the assigner choices, and a few training steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import iou_loss
from cvcraft.models import create_model
from cvcraft.nn.fuse import fuse_model
from cvcraft.nn.repvgg import RepVGGBlock, reparameterize_model


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _rep_extra(model: nn.Module) -> int:
    """Parameters a RepVGG block has beyond one conv-BN (ultralytics' plain Conv in the same
    place): the 1x1 branch (weights + BN) and the identity BN."""
    extra = 0
    for m in model.modules():
        if isinstance(m, RepVGGBlock):
            extra += m.c_in * m.c_out + 2 * m.c_out
            extra += 2 * m.c_in if m.identity is not None else 0
    return extra


def _ultra(scale: str, nc: int):
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    return tasks.DetectionModel(f"yolov6{scale}.yaml", nc=nc, verbose=False)


@pytest.mark.parametrize("scale", ["n", "s"])
def test_param_counts_equal_ultralytics_yolov6(scale):
    ref, ours = _ultra(scale, 80), create_model(f"yolov6_{scale}", num_classes=80)
    # training form: ultralytics builds each RepVGG position as one conv-BN
    assert _count(ours) == _count(ref) - 16 + _rep_extra(ours)  # 16 = their fixed DFL conv
    ref.eval().fuse(verbose=False)
    fused = fuse_model(reparameterize_model(ours))
    assert _count(fused) == _count(ref) - 16
    assert scale != "n" or _count(fused) == 4495376


def test_fused_outputs_equal_ultralytics_with_copied_weights():
    torch.manual_seed(0)
    ref = _ultra("n", 5).eval().fuse(verbose=False)
    ours = fuse_model(reparameterize_model(create_model("yolov6_n", num_classes=5)))
    theirs = [p for n, p in ref.named_parameters() if ".dfl." not in n]
    mine = list(ours.parameters())
    assert [p.shape for p in mine] == [p.shape for p in theirs]  # same layers, same order
    with torch.no_grad():
        for p, q in zip(mine, theirs):  # converter by position: both registries are in order
            q.normal_(0, 0.1)
            p.copy_(q)
        x = torch.rand(2, 3, 96, 128)
        y = ref(x)
        y = y[0] if isinstance(y, (tuple, list)) else y  # (B, 4 + C, N) xywh + scores
        boxes, scores = ours.decode(ours(x))
    xywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
    torch.testing.assert_close(xywh, y[:, :4].transpose(1, 2), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(scores, y[:, 4:].transpose(1, 2), rtol=1e-4, atol=1e-5)


def test_reparameterised_model_equals_training_form_in_eval():
    torch.manual_seed(0)
    model = create_model("yolov6_p", num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # random BN statistics so the fold does real work
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        reparameterize_model(model)
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for b in model.backbone.modules()
                   if isinstance(b, RepVGGBlock) for m in b.modules())  # fmt: skip
    torch.testing.assert_close(after["box"], before["box"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after["cls"], before["cls"], rtol=1e-4, atol=1e-4)


def _siou_paper(a, b, theta=4.0):
    """SIoU from Gevorgyan (2022) section by section, scalar math: angle cost with arcsin,
    distance cost with gamma = 2 - angle, shape cost, IoU - (distance + shape) / 2."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    wa, ha, wb, hb = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    iou = inter / (wa * ha + wb * hb - inter)
    cx = ((bx1 + bx2) - (ax1 + ax2)) / 2
    cy = ((by1 + by2) - (ay1 + ay2)) / 2
    sigma = math.hypot(cx, cy)
    sin_alpha = abs(cy) / sigma
    angle = 1 - 2 * math.sin(math.asin(sin_alpha) - math.pi / 4) ** 2
    cw = max(ax2, bx2) - min(ax1, bx1)
    ch = max(ay2, by2) - min(ay1, by1)
    gamma = 2 - angle
    dist = (1 - math.exp(-gamma * (cx / cw) ** 2)) + (1 - math.exp(-gamma * (cy / ch) ** 2))
    ow, oh = abs(wa - wb) / max(wa, wb), abs(ha - hb) / max(ha, hb)
    shape = (1 - math.exp(-ow)) ** theta + (1 - math.exp(-oh)) ** theta
    return iou - (dist + shape) / 2


@pytest.mark.parametrize("a,b", [
    ([0, 0, 10, 10], [2, 3, 14, 11]),     # overlapping, diagonal offset
    ([0, 0, 10, 10], [20, 0, 25, 10]),    # disjoint, horizontal (angle 0)
    ([0, 0, 4, 8], [5, 9, 9, 17]),        # disjoint, 45-degree-ish
    ([1, 1, 5, 3], [0.5, 2, 7, 9]),       # different aspect ratios
    ([0, 0, 10, 10], [3, 0, 13, 10]),     # same size, pure x offset
])  # fmt: skip
def test_yolov6_box_loss_is_siou_by_the_paper(a, b):
    model = create_model("yolov6_p", num_classes=2)
    assert model.criterion.box_kind == "siou"
    ta = torch.tensor([a], dtype=torch.float64)
    tb = torch.tensor([b], dtype=torch.float64)
    expected = 1 - _siou_paper(a, b)
    assert iou_loss(ta, tb, "siou").item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("assigner", ["tal", "simota", "atss"])
def test_training_steps_run_with_each_assigner(assigner):
    torch.manual_seed(0)
    model = create_model("yolov6_p", num_classes=2, assigner=assigner).train()
    x = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0], [2, 2, 14, 18]]),
         "labels": torch.tensor([0, 1])},
    ]  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), 2e-3)
    losses = []
    for _ in range(6):
        total, items = model.loss(model(x), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert set(items) == {"box", "cls", "dfl"} and all(math.isfinite(v) for v in losses)
    # SimOTA / ATSS re-assign as predictions move (the positives' count changes), so only the
    # task-aligned run is compared end to start; every run must have positives (box > 0)
    assert items["box"] > 0
    assert assigner != "tal" or losses[-1] < losses[0]


def test_bad_config_and_input_size():
    with pytest.raises(ConfigError, match="scale"):
        from cvcraft.models.detection.yolov6 import YOLOv6

        YOLOv6("q")
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("yolov6_p", num_classes=0)
    with pytest.raises(ConfigError, match="multiples of 32"):
        create_model("yolov6_p", num_classes=2).eval()(torch.rand(1, 3, 64, 80))
