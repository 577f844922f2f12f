"""The anchor-YOLO targets and loss against reference loops and torchvision's CIoU loss."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, complete_box_iou_loss

from cvcraft.errors import ConfigError
from cvcraft.models.detection.yolo_anchor_loss import AnchorYoloLoss, build_anchor_targets
from cvcraft.models.detection.yolo_grid_coder import cell_grid, grid_boxes

ANCHORS = [torch.tensor([[10.0, 13], [16, 30], [33, 23]]),
           torch.tensor([[30.0, 61], [62, 45], [59, 119]]),
           torch.tensor([[116.0, 90], [156, 198], [373, 326]])]  # fmt: skip
STRIDES = (8, 16, 32)
GRIDS = [(16, 20), (8, 10), (4, 5)]  # a 128 x 160 image


def _targets(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in (4, 0, 3):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([160.0, 128.0])
        wh = torch.rand(n, 2, generator=g) * 120 + 4
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).clamp(min=0)
        boxes[:, 2:] = torch.minimum(boxes[:, 2:], torch.tensor([160.0, 128.0]))
        out.append({"boxes": boxes, "labels": torch.randint(0, 3, (n,), generator=g)})
    return out


def _reference_ratio_targets(targets):
    """YOLOv5's build_targets as a loop: shape ratio < 4, the centre cell and the neighbour
    cells on the near sides (not beyond the grid's first/last cell)."""
    rows = set()
    for lvl, (anc, s, (h, w)) in enumerate(zip(ANCHORS, STRIDES, GRIDS)):
        for b, t in enumerate(targets):
            for box, label in zip(t["boxes"].tolist(), t["labels"].tolist()):
                bw, bh = box[2] - box[0], box[3] - box[1]
                gx, gy = (box[0] + box[2]) / 2 / s, (box[1] + box[3]) / 2 / s
                for a, (pw, ph) in enumerate(anc.tolist()):
                    r = max(bw / pw, pw / bw, bh / ph, ph / bh)
                    if r >= 4.0:
                        continue
                    cells = [(int(gx), int(gy))]
                    if gx % 1 < 0.5 and gx > 1:
                        cells.append((int(gx) - 1, int(gy)))
                    if gy % 1 < 0.5 and gy > 1:
                        cells.append((int(gx), int(gy) - 1))
                    if gx % 1 > 0.5 and w - gx > 1:
                        cells.append((int(gx) + 1, int(gy)))
                    if gy % 1 > 0.5 and h - gy > 1:
                        cells.append((int(gx), int(gy) + 1))
                    for cx, cy in cells:
                        rows.add((lvl, b, a, min(cy, h - 1), min(cx, w - 1), label,
                                  tuple(round(v, 3) for v in box)))  # fmt: skip
    return rows


def _rows(levels):
    rows = set()
    for lvl, d in enumerate(levels):
        for i in range(len(d["img"])):
            rows.add((lvl, int(d["img"][i]), int(d["anchor"][i]), int(d["gy"][i]),
                      int(d["gx"][i]), int(d["labels"][i]),
                      tuple(round(v, 3) for v in d["boxes"][i].tolist())))  # fmt: skip
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ratio_targets_equal_reference_loop(seed):
    t = _targets(seed)
    got = _rows(build_anchor_targets(t, ANCHORS, STRIDES, GRIDS, "ratio"))
    assert got == _reference_ratio_targets(t) and len(got) > 0


def test_best_match_is_one_positive_per_gt():
    t = _targets(3)
    levels = build_anchor_targets(t, ANCHORS, STRIDES, GRIDS, "best")
    assert sum(len(d["img"]) for d in levels) == sum(len(x["boxes"]) for x in t)


def test_v5_loss_equals_reference_with_torchvision_ciou():
    torch.manual_seed(0)
    c = 3
    outs = [torch.randn(3, 3, h, w, 5 + c) for h, w in GRIDS]
    t = _targets(4)
    crit = AnchorYoloLoss(c, param="v5", match="ratio")
    total, parts = crit(outs, t, ANCHORS, STRIDES, (1.0, 1.0, 1.0))
    levels = build_anchor_targets(t, ANCHORS, STRIDES, GRIDS, "ratio")
    lbox = lobj = lcls = 0.0
    for lvl, (o, d) in enumerate(zip(outs, levels)):
        tobj = torch.zeros(o.shape[:4])
        if len(d["img"]):
            p = o[d["img"], d["anchor"], d["gy"], d["gx"]]
            s, anc = STRIDES[lvl], ANCHORS[lvl][d["anchor"]]
            cx = (2 * p[:, 0].sigmoid() - 0.5 + d["gx"]) * s
            cy = (2 * p[:, 1].sigmoid() - 0.5 + d["gy"]) * s
            wh = (2 * p[:, 2:4].sigmoid()) ** 2 * anc
            pbox = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2,
                                cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], 1)  # fmt: skip
            lbox += complete_box_iou_loss(pbox, d["boxes"], reduction="mean")
            iou = box_iou(pbox, d["boxes"]).diagonal().clamp(min=0)
            for i, (b, a, gy, gx) in enumerate(zip(d["img"], d["anchor"], d["gy"], d["gx"])):
                tobj[b, a, gy, gx] = iou[i]  # loop: the last write wins, as in the loss
            lcls += F.binary_cross_entropy_with_logits(p[:, 5:], F.one_hot(d["labels"], c).float())
        lobj += F.binary_cross_entropy_with_logits(o[..., 4], tobj) * (4.0, 1.0, 0.4)[lvl]
    imgsz = 160
    assert parts["box"] == pytest.approx(float(lbox) * 0.05, rel=1e-4)
    assert parts["obj"] == pytest.approx(float(lobj) * (imgsz / 640) ** 2, rel=1e-4)
    assert parts["cls"] == pytest.approx(float(lcls) * 0.5 * c / 80, rel=1e-4)
    assert float(total) == pytest.approx(sum(parts.values()), rel=1e-5)


def test_v4_coding_reaches_cell_borders():
    t = torch.tensor([[-30.0, -30, 0, 0], [30.0, 30, 0, 0]])
    cells, anc = torch.zeros(2, 2), torch.ones(2, 2)
    b = grid_boxes(t, cells, anc, 1.0, "v4", 1.2)  # centre range (-0.1, 1.1)
    assert b[0, 0] + 0.5 == pytest.approx(-0.1, abs=1e-5) and b[1, 0] + 0.5 == pytest.approx(1.1)
    b2 = grid_boxes(t, cells, anc, 1.0, "v2")
    assert b2[0, 0] + 0.5 == pytest.approx(0.0, abs=1e-5)
    grid = cell_grid(2, 3, t)
    assert grid[1, 2].tolist() == [2.0, 1.0]  # (cx, cy)


def test_errors():
    with pytest.raises(ConfigError, match="matching"):
        AnchorYoloLoss(3, match="center")
    with pytest.raises(ConfigError, match="parameterisation"):
        grid_boxes(torch.zeros(1, 4), torch.zeros(1, 2), torch.ones(1, 2), 8, "v9")
    crit = AnchorYoloLoss(2)
    outs = [torch.zeros(1, 3, h, w, 7) for h, w in GRIDS]
    bad = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([5])}]
    with pytest.raises(ConfigError, match="num_classes"):
        crit(outs, bad, ANCHORS, STRIDES, (1.0,) * 3)
