"""OHEM: the selection against a reference loop (ties, IoU exactly at the threshold, exact
counts), the per-RoI loss against torch's own functions, and Faster R-CNN's ``sampler=ohem``
against the same steps done by hand."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.ops.ohem import ohem_sample, roi_losses


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _loop(boxes, losses, num, thr):
    """Hardest first (ties: lower index), skip a box overlapping a kept one by IoU > thr."""
    order = sorted(range(len(losses)), key=lambda i: (-losses[i], i))
    kept = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= thr for j in kept):
            kept.append(i)
    return kept[:num]


def _grid_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 12, (n, 2), generator=g).float()
    wh = torch.randint(1, 6, (n, 2), generator=g).float()
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("num", [0, 1, 7, 1000])
def test_selection_equals_the_reference_loop(seed, thr, num):
    boxes = _grid_boxes(80, seed)
    # few distinct values: many ties, broken by index
    losses = torch.randint(0, 5, (80,), generator=torch.Generator().manual_seed(seed)).float()
    got = ohem_sample(boxes, losses, num, thr).tolist()
    assert got == _loop(boxes.tolist(), losses.tolist(), num, thr)


def test_iou_exactly_at_the_threshold_is_kept():
    # IoU with box 0: 0.5 and 0.4; box 2 with box 1: 0.8
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 4]])
    losses = torch.tensor([3.0, 2.0, 1.0])
    assert ohem_sample(boxes, losses, 10, 0.5).tolist() == [0, 1]  # 0.5 is not > 0.5
    assert ohem_sample(boxes, losses, 10, 0.45).tolist() == [0, 2]
    assert ohem_sample(boxes, losses, 2, 1.0).tolist() == [0, 1]  # exact count, hardest first
    equal = torch.tensor([1.0, 1.0, 1.0])  # all tied: index order
    assert ohem_sample(boxes, equal, 3, 1.0).tolist() == [0, 1, 2]


def test_roi_losses_match_torch_per_roi():
    g = torch.Generator().manual_seed(0)
    r, k = 40, 5
    logits = torch.randn(r, k, generator=g)
    labels = torch.randint(0, k, (r,), generator=g)
    targets = torch.randn(r, 4, generator=g)
    for deltas in (torch.randn(r, 4 * k, generator=g), torch.randn(r, 4, generator=g)):
        got = roi_losses(logits, deltas, labels, targets, beta=1 / 9)
        for i in range(r):
            ref = F.cross_entropy(logits[i : i + 1], labels[i : i + 1])
            if labels[i] > 0:
                d = deltas[i].view(-1, 4)[labels[i] if deltas.shape[1] > 4 else 0]
                ref = ref + F.smooth_l1_loss(d, targets[i], beta=1 / 9, reduction="sum")
            torch.testing.assert_close(got[i], ref)


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match=r"boxes must be \(N, 4\)"):
        ohem_sample(torch.zeros(3, 5), torch.zeros(3), 2)
    with pytest.raises(ConfigError, match="nms_iou"):
        ohem_sample(torch.zeros(3, 4), torch.zeros(3), 2, nms_iou=1.5)
    with pytest.raises(ConfigError, match="same R"):
        roi_losses(torch.zeros(3, 2), torch.zeros(3, 8), torch.zeros(2, dtype=torch.long),
                   torch.zeros(3, 4))  # fmt: skip
    with pytest.raises(ConfigError, match="sampler='hard'"):
        create_model("fasterrcnn_resnet18_fpn", num_classes=2, sampler="hard")


def test_faster_rcnn_ohem_sampler_takes_the_hardest_rois():
    torch.manual_seed(0)
    m = create_model(
        "fasterrcnn_resnet18_fpn", num_classes=3, fpn_channels=16, representation=32,
        backbone_kw={"widths": (8, 16, 16, 32)}, sampler="ohem", roi_batch=16,
    )  # fmt: skip
    x = torch.rand(2, 3, 64, 96)
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [50, 20, 90, 60]]),
         "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[20.0, 10, 44, 40]]), "labels": torch.tensor([1])},
    ]  # fmt: skip
    out = m(x, targets)
    # by hand: all proposals + gts, assigned, scored, NMS on the loss, the 16 hardest
    feats = m.backbone(m.normalize(x))
    cands = [torch.cat([p, t["boxes"]]) for p, t in zip(m(x)["proposals"], targets)]
    labels, reg = m._assign_all(cands, targets)
    with torch.no_grad():
        loss = roi_losses(*m.box_head(feats, cands), labels, reg)
    start = 0
    for c, rois in zip(cands, out["proposals"]):
        keep = _loop(c.tolist(), loss[start : start + len(c)].tolist(), 16, 0.7)
        torch.testing.assert_close(rois, c[keep])
        start += len(c)
    assert all(len(r) == 16 for r in out["proposals"])
    total, _ = m.loss(out, targets)
    total.backward()
    assert m.cls_score.weight.grad.abs().sum() > 0
