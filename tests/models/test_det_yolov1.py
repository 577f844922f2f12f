"""YOLOv1: encode/decode round trip, the paper's loss against a loop-by-loop reference,
postprocess in input pixels, and overfitting four images."""

import math

import torch
import torch.nn.functional as F

from cvcraft.models import create_model
from cvcraft.models.detection.yolov1 import yolov1_decode, yolov1_encode

TINY = {"backbone_kw": {"widths": (8, 16, 16, 32)}, "hidden": 64, "head_channels": 16}


def _model(**kw):
    torch.manual_seed(0)
    return create_model("yolov1", num_classes=3, **{**TINY, **kw})


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_loss(pred, targets, s, nb, nc, size, l_coord=5.0, l_noobj=0.5):
    """The paper's loss written out cell by cell (one object per cell)."""
    h, w = size
    total = 0.0
    for n, t in enumerate(targets):
        owner = {}
        for box, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
            cx, cy = (box[0] + box[2]) / 2 / w * s, (box[1] + box[3]) / 2 / h * s
            owner[(int(cy), int(cx))] = (box, lab, cx - int(cx), cy - int(cy))
        for i in range(s):
            for j in range(s):
                v = pred[n, i, j]
                boxes = [torch.sigmoid(v[5 * b : 5 * b + 5]).tolist() for b in range(nb)]
                if (i, j) not in owner:
                    total += l_noobj * sum(bx[4] ** 2 for bx in boxes)
                    continue
                gt, lab, ox, oy = owner[(i, j)]
                ious = []
                for bx in boxes:
                    cx, cy = (bx[0] + j) / s * w, (bx[1] + i) / s * h
                    bw, bh = bx[2] ** 2 * w, bx[3] ** 2 * h
                    ious.append(_iou([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], gt))
                r = max(range(nb), key=lambda b: ious[b])
                bx = boxes[r]
                tw, th = math.sqrt((gt[2] - gt[0]) / w), math.sqrt((gt[3] - gt[1]) / h)
                total += l_coord * ((bx[0] - ox) ** 2 + (bx[1] - oy) ** 2)
                total += l_coord * ((bx[2] - tw) ** 2 + (bx[3] - th) ** 2)
                total += (bx[4] - ious[r]) ** 2
                total += l_noobj * sum(boxes[b][4] ** 2 for b in range(nb) if b != r)
                p = F.softmax(v[5 * nb :], -1).tolist()
                total += sum((p[c] - (c == lab)) ** 2 for c in range(nc))
    return total / len(targets)


def test_encode_decode_round_trip():
    size, s = (96, 160), 5
    boxes = torch.tensor([[3.0, 4, 50, 90], [100, 10, 159, 40], [60, 50, 70, 60]])
    cell, t = yolov1_encode(boxes, s, size)
    pred = torch.zeros(1, s, s, 1, 4)
    pred[0, cell[:, 0], cell[:, 1], 0] = t
    dec = yolov1_decode(pred, size)[0, cell[:, 0], cell[:, 1], 0]
    torch.testing.assert_close(dec, boxes)
    assert ((t[:, :2] >= 0) & (t[:, :2] < 1)).all()


def test_forward_shape_and_loss_matches_reference():
    m = _model(grid=4, boxes_per_cell=2)
    x = torch.rand(2, 3, 128, 96)
    out = m(x)
    assert out["pred"].shape == (2, 4, 4, 5 * 2 + 3) and out["image_size"] == (128, 96)
    targets = [
        {
            "boxes": torch.tensor([[5.0, 10, 40, 60], [50, 70, 90, 120]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.tensor([[20.0, 20, 80, 100]]), "labels": torch.tensor([1])},
    ]
    total, items = m.loss(out, targets)
    ref = _reference_loss(out["pred"].detach(), targets, 4, 2, 3, (128, 96))
    assert abs(float(total.detach()) - ref) < 1e-4 * max(1.0, ref)
    assert set(items) == {"box", "obj", "noobj", "cls"}
    total.backward()
    assert m.backbone.conv1.weight.grad.abs().sum() > 0


def test_empty_targets_give_only_noobj_loss():
    m = _model(grid=3)
    out = m(torch.rand(1, 3, 64, 64))
    total, items = m.loss(
        out, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    )
    conf = torch.sigmoid(out["pred"][..., [4, 9]])
    torch.testing.assert_close(total, 0.5 * (conf**2).sum())
    assert items["box"] == 0 and items["cls"] == 0


def test_postprocess_returns_input_pixels():
    m = _model(grid=4, boxes_per_cell=2).eval()
    size = (96, 160)
    gt = torch.tensor([[30.0, 20, 110, 70]])
    cell, t = yolov1_encode(gt, 4, size)
    pred = torch.full((1, 4, 4, 13), -12.0)  # every box confidence ~0
    i, j = cell[0].tolist()
    pred[0, i, j, :4] = torch.logit(t[0])  # box 0 of the responsible cell
    pred[0, i, j, 4] = 8.0
    pred[0, :, :, 10:] = torch.tensor([0.0, 9.0, 0.0])  # class 1 everywhere
    det = m.postprocess({"pred": pred, "image_size": size}, conf=0.25)[0]
    assert len(det["boxes"]) == 1 and det["labels"].tolist() == [1]
    torch.testing.assert_close(det["boxes"], gt, atol=1e-3, rtol=0)
    assert det["scores"][0] > 0.99


def test_overfits_four_images():
    m = _model(grid=4, dropout=0.0)
    torch.manual_seed(0)
    x = torch.rand(4, 3, 96, 96)
    targets = [
        {
            "boxes": torch.tensor([[10.0 + 5 * i, 12, 60 + 5 * i, 70]]),
            "labels": torch.tensor([i % 3]),
        }
        for i in range(4)
    ]
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        total, _ = m.loss(m(x), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert sum(losses[-3:]) / 3 < 0.3 * sum(losses[:3]) / 3
