"""YOLO training choices: the anchor-free loss with assigner=simota|atss uses exactly the
per-image assigners' matches and the documented targets (recomputed here by hand), label
smoothing in both YOLO losses equals BCE against the smoothed targets, and every assigner
trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.losses.box import distribution_focal_loss, iou_loss
from cvcraft.models import create_model
from cvcraft.models.detection.yolo_coder import encode_ltrb, yolo_decode
from cvcraft.models.detection.yolov3 import assign_yolov3
from cvcraft.ops.assigners import atss_assign, simota_assign
from cvcraft.ops.boxes import box_iou


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    images = torch.rand(2, 3, 64, 64) * 0.2
    targets = [
        {"boxes": torch.tensor([[8.0, 10, 40, 44], [30, 30, 60, 58]]),
         "labels": torch.tensor([0, 1])},
        {"boxes": torch.tensor([[20.0, 4, 50, 30]]), "labels": torch.tensor([1])},
    ]  # fmt: skip
    for i, t in enumerate(targets):
        for b in t["boxes"].long():
            images[i, :, b[1] : b[3], b[0] : b[2]] = 0.9
    return images, targets


def _reference_loss(model, out, targets, assigner, eps=0.0):
    """The anchor-free objective from the per-image assigner's matches, written out."""
    crit = model.criterion
    anchors, strides = out["anchors"], out["strides"]
    pred = yolo_decode(out["box"], anchors, strides).detach()
    scores = out["cls"].detach().sigmoid()
    c = out["cls"].shape[-1]
    cls_sum = box_sum = dfl_sum = norm = 0.0
    for i, t in enumerate(targets):
        if assigner == "simota":
            res = simota_assign(scores[i], pred[i], anchors, t["boxes"], t["labels"],
                                strides=strides[:, 0])  # fmt: skip
        else:
            half = strides * 2.5
            cells = torch.cat([anchors - half, anchors + half], 1)
            counts = [int((strides[:, 0] == s).sum()) for s in (8, 16, 32)]
            res = atss_assign(cells, counts, t["boxes"], gt_labels=t["labels"])
        pos = torch.nonzero(res.gt_index >= 0).squeeze(1)
        g = res.gt_index[pos]
        t_hat = box_iou(pred[i][pos], t["boxes"]).gather(1, g[:, None]).squeeze(1)
        target = torch.zeros_like(out["cls"][i])
        onehot = F.one_hot(t["labels"][g], c).float() * (1 - eps) + eps / 2
        target[pos] = onehot * t_hat[:, None]
        cls_sum = cls_sum + F.binary_cross_entropy_with_logits(
            out["cls"][i], target, reduction="sum"
        )
        pb = yolo_decode(out["box"][i : i + 1], anchors, strides)[0][pos]
        box_sum = box_sum + (iou_loss(pb, t["boxes"][g], "ciou", reduction="none") * t_hat).sum()
        ltrb = encode_ltrb(t["boxes"][g], anchors[pos], strides[pos], crit.reg_max)
        logits = out["box"][i][pos].reshape(-1, 4, crit.reg_max)
        dfl = distribution_focal_loss(logits, ltrb, reduction="none").mean(-1)
        dfl_sum = dfl_sum + (dfl * t_hat).sum()
        norm = norm + t_hat.sum()
    norm = max(float(norm), 1.0)
    gb, gc, gd = crit.gains
    parts = {"box": box_sum, "cls": cls_sum, "dfl": dfl_sum}
    return {k: g * float(v.detach()) / norm for (k, v), g in zip(parts.items(), (gb, gc, gd))}


@pytest.mark.parametrize("assigner", ["simota", "atss"])
def test_assigner_loss_equals_reference(assigner):
    images, targets = _batch()
    model = create_model("yolo_p", num_classes=2, assigner=assigner)
    assert model.criterion.assigner == assigner
    out = model(images)
    _, items = model.loss(out, targets)
    want = _reference_loss(model, out, targets, assigner)
    for k in ("box", "cls", "dfl"):
        assert items[k] == pytest.approx(want[k], rel=1e-4), k
    assert want["box"] > 0  # some cell was positive


def test_label_smoothing_anchor_free_equals_reference():
    images, targets = _batch(1)
    model = create_model("yolo_p", num_classes=2, assigner="atss", label_smoothing=0.2)
    out = model(images)
    _, items = model.loss(out, targets)
    want = _reference_loss(model, out, targets, "atss", eps=0.2)
    assert items["cls"] == pytest.approx(want["cls"], rel=1e-4)
    plain = create_model("yolo_p", num_classes=2, assigner="atss")
    plain.load_state_dict(model.state_dict())
    assert plain.loss(out, targets)[1]["cls"] != pytest.approx(items["cls"], rel=1e-3)


def test_label_smoothing_yolov3_equals_smoothed_bce():
    m = create_model("yolov3_tiny", num_classes=3, input_size=128, label_smoothing=0.1)
    plain = create_model("yolov3_tiny", num_classes=3, input_size=128)
    torch.manual_seed(1)
    outs = [torch.randn(1, 3, h, w, 8) * 0.5 for h, w in [(16, 16), (8, 8), (4, 4)]]
    targets = [{"boxes": torch.tensor([[40.0, 20, 120, 110]]), "labels": torch.tensor([2])}]
    got = m.loss(outs, targets)[1]["cls"]
    bce0 = plain.loss(outs, targets)[1]["cls"]
    # the one positive's class logits, through the assignment the model uses
    grids = [tuple(o.shape[2:4]) for o in outs]
    asg = assign_yolov3(targets, m.anchors, m.num_anchors, m.strides, grids)
    lvl = next(i for i, a in enumerate(asg) if len(a["img"]))
    a = asg[lvl]
    p = outs[lvl][a["img"], a["anchor"], a["gy"], a["gx"]][0, 5:]
    want = F.binary_cross_entropy_with_logits(p, torch.tensor([0.05, 0.05, 0.95]), reduction="sum")
    assert got == pytest.approx(float(want), rel=1e-5)
    want0 = F.binary_cross_entropy_with_logits(p, torch.tensor([0.0, 0, 1]), reduction="sum")
    assert bce0 == pytest.approx(float(want0), rel=1e-5)


@pytest.mark.parametrize("assigner", ["tal", "simota", "atss"])
def test_every_assigner_trains(assigner):
    images, targets = _batch(2)
    torch.manual_seed(0)
    model = create_model("yolo_p", num_classes=2, assigner=assigner, label_smoothing=0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        total, _ = model.loss(model(images), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_bad_choices():
    with pytest.raises(ConfigError, match="assigner 'ota'"):
        create_model("yolo_p", num_classes=2, assigner="ota")
    with pytest.raises(ConfigError, match="label_smoothing"):
        create_model("yolo_p", num_classes=2, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        create_model("yolov3_tiny", num_classes=2, label_smoothing=-0.1)
