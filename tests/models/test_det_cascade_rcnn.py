"""Cascade R-CNN: no torchvision twin, so each stage's pieces are checked on their own.

Oracles: a brute-force Python loop for the per-stage IoU assignment (integer boxes, IoU
exactly 0.5 / 0.6 / 0.7); torchvision's ``BoxCoder`` with each stage's weights for the targets
and the decoding between stages; torchvision's ``RoIHeads.postprocess_detections`` for the
final detections; and our Faster R-CNN, which a one-stage cascade at IoU 0.5 must equal.
"""

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import clip_boxes_to_image

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.cascade_rcnn import STAGE_IOUS, STAGE_WEIGHTS, refine_boxes
from cvcraft.ops.coders import DeltaCoder

C = 3
TINY = {"fpn_channels": 16, "representation": 32, "backbone_kw": {"widths": (8, 16, 16, 32)}}
SIZE = (64, 96)


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [50, 20, 90, 60]]),
         "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[20.0, 10, 44, 40]]), "labels": torch.tensor([1])},
    ]  # fmt: skip


def _cascade(**kw):
    torch.manual_seed(0)
    m = create_model("cascade_rcnn_resnet18_fpn", num_classes=C, **TINY, **kw)
    with torch.no_grad():  # heads off their init so every stage's output matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _loop_label(box, gts, labels, thr) -> int:
    """Brute force: best gt (first on ties) if its IoU >= thr, label + 1, else 0."""
    best, best_j = -1.0, -1
    for j, g in enumerate(gts):
        v = _iou(box, g)
        if v > best:
            best, best_j = v, j
    return int(labels[best_j]) + 1 if best_j >= 0 and best >= thr else 0


def _boundary_proposals() -> torch.Tensor:
    """Integer boxes at IoU exactly 0.5, 0.6, 0.7 with the 10x10 gt at (0, 0) (heights 5, 6,
    7 of 10), just around those values (heights 4..9), plus random integer boxes."""
    g = torch.Generator().manual_seed(3)
    exact = torch.tensor([[0.0, 0, 10, h] for h in range(4, 10)])
    xy = torch.randint(0, 40, (60, 2), generator=g).float()
    wh = torch.randint(2, 25, (60, 2), generator=g).float()
    return torch.cat([exact, torch.cat([xy, xy + wh], 1)])


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_stage_assignment_matches_a_loop_at_its_threshold(stage):
    m = _cascade(roi_batch=10_000)  # keep every candidate: the assignment, not the sampling
    gts = torch.tensor([[0.0, 0, 10, 10], [20, 20, 36, 30]])
    t = [{"boxes": gts, "labels": torch.tensor([2, 0])}]
    props = _boundary_proposals()
    thr, coder = m.stage_ious[stage], m.stage_coders[stage]
    assert thr == STAGE_IOUS[stage] and coder.weights == STAGE_WEIGHTS[stage]
    rois, labels, reg = m.sample_rois([props], t, thr, coder)
    rows = rois[0].tolist()
    expect = [_loop_label(r, gts.tolist(), [2, 0], thr) for r in rows]
    assert labels.tolist() == expect
    assert len(rows) == len(props) + len(gts)  # proposals + the gts themselves
    # the exact-boundary rows: height h of 10 has IoU h / 10 -> positive iff h / 10 >= thr
    for h in range(4, 10):
        i = rows.index([0.0, 0.0, 10.0, float(h)])
        assert (labels[i] > 0) == (h / 10 >= thr)
    # eval-mode assignment (every proposal, no gts added) agrees with the loop too
    lab_all, _ = m._assign_all([props], t, thr, coder)
    assert lab_all.tolist() == [_loop_label(r, gts.tolist(), [2, 0], thr) for r in props.tolist()]
    # regression targets: torchvision's BoxCoder with the stage's weights, positives only
    pos = labels > 0
    best = [int(_iou(r, gts[0].tolist()) < _iou(r, gts[1].tolist())) for r in rows]
    matched = gts[torch.tensor(best)]
    ref = BoxCoder(STAGE_WEIGHTS[stage]).encode_single(matched[pos], rois[0][pos])
    torch.testing.assert_close(reg[pos], ref)


@pytest.mark.parametrize("agnostic", [True, False])
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_refine_boxes_matches_torchvision_boxcoder(stage, agnostic):
    g = torch.Generator().manual_seed(stage)
    n, k = 50, C + 1
    xy = torch.rand(n, 2, generator=g) * 80
    rois = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 40], 1)
    logits = torch.randn(n, k, generator=g)
    deltas = torch.randn(n, 4 if agnostic else 4 * k, generator=g) * 3
    labels = torch.randint(0, k, (n,), generator=g)
    got = refine_boxes(rois, logits, deltas, DeltaCoder(STAGE_WEIGHTS[stage]), SIZE, labels)
    if agnostic:
        d = deltas
    else:  # positives regress with their gt class, the rest with the best foreground class
        cls = torch.where(labels > 0, labels, logits[:, 1:].argmax(1) + 1)
        d = deltas.view(n, k, 4)[torch.arange(n), cls]
    ref = BoxCoder(STAGE_WEIGHTS[stage]).decode_single(d, rois)
    torch.testing.assert_close(got, clip_boxes_to_image(ref, SIZE))


def test_inference_chains_stages_and_averages_scores_like_torchvision_postprocess():
    m = _cascade().eval()
    x = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = m(x)
        dets = m.postprocess(out, conf=0.05, iou=0.5, max_det=100)
    st = out["stages"]
    assert len(st) == 3 and out["proposals"] is st[2]["rois"]
    for i in range(2):  # stage i+1's input = stage i's boxes, decoded by BoxCoder(w_i)
        rois = torch.cat(st[i]["rois"])
        ref = BoxCoder(STAGE_WEIGHTS[i]).decode_single(st[i]["box_deltas"], rois)
        ref = clip_boxes_to_image(ref, SIZE)
        torch.testing.assert_close(torch.cat(st[i + 1]["rois"]), ref)
    # final: mean of the stages' softmax scores, last stage's boxes -> torchvision's RoIHeads
    probs = torch.stack([s["cls_logits"].softmax(-1) for s in st]).mean(0)
    heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100)
    heads.box_coder = BoxCoder(STAGE_WEIGHTS[2])
    deltas = st[2]["box_deltas"].repeat(1, C + 1)  # agnostic: one box for every class
    boxes, scores, labels = heads.postprocess_detections(
        probs.log(), deltas, st[2]["rois"], [SIZE, SIZE]
    )
    assert sum(len(b) for b in boxes) > 0
    for d, b, s, lab in zip(dets, boxes, scores, labels):
        torch.testing.assert_close(d["boxes"], b)
        torch.testing.assert_close(d["scores"], s)
        assert torch.equal(d["labels"], lab - 1)


def test_training_stages_resample_from_the_previous_stage_boxes():
    m = _cascade(roi_batch=64)
    x = torch.rand(2, 3, *SIZE)
    targets = _targets()
    torch.manual_seed(2)
    out = m(x, targets)
    st = out["stages"]
    for i in range(2):
        prev = refine_boxes(
            torch.cat(st[i]["rois"]), st[i]["cls_logits"], st[i]["box_deltas"],
            m.stage_coders[i], SIZE, st[i]["roi_labels"],
        ).split([len(r) for r in st[i]["rois"]])  # fmt: skip
        for img, (p, r, t) in enumerate(zip(prev, st[i + 1]["rois"], targets)):
            pool = torch.cat([p.detach(), t["boxes"]])
            d = (r[:, None] - pool[None]).abs().amax(-1).min(1).values  # each RoI is in the pool
            assert d.max() < 1e-4, (i, img)
            assert len(r) <= 64
    total, items = m.loss(out, targets)
    w = dict(zip(["", "2", "3"], (1.0, 0.5, 0.25)))
    expect = items["rpn_cls"] + items["rpn_box"]
    expect += sum(w[s] * (items[f"cls{s}"] + items[f"box{s}"]) for s in w)
    assert total.item() == pytest.approx(expect, rel=1e-5)
    total.backward()
    for head in (m, *m.stage_heads):
        assert head.cls_score.weight.grad.abs().sum() > 0
        assert head.bbox_pred.weight.grad.abs().sum() > 0


def test_one_stage_at_iou_half_is_faster_rcnn():
    kw = dict(TINY, roi_batch=64)
    torch.manual_seed(0)
    faster = create_model("fasterrcnn_resnet18_fpn", num_classes=C, **kw)
    one = create_model(
        "cascade_rcnn_resnet18_fpn", num_classes=C, stage_ious=(0.5,),
        stage_weights=((10, 10, 5, 5),), stage_loss_weights=(1.0,), class_agnostic=False, **kw,
    )  # fmt: skip
    with torch.no_grad():
        for p in faster.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert one.load_state_dict(faster.state_dict()) is not None  # strict: the same keys
    x = torch.rand(2, 3, *SIZE)
    targets = _targets()
    for mode in ("train", "eval"):
        faster.train(mode == "train")
        one.train(mode == "train")
        torch.manual_seed(7)
        a = faster(x, targets)
        torch.manual_seed(7)
        b = one(x, targets)
        for k in ("cls_logits", "box_deltas"):
            assert torch.equal(a[k], b[k])
        torch.manual_seed(8)  # the RPN loss samples anchors
        la, ia = faster.loss(a, targets)
        torch.manual_seed(8)
        lb, ib = one.loss(b, targets)
        assert torch.equal(la, lb) and ia == ib
    with torch.no_grad():
        da = faster.postprocess(a, conf=0.05)
        db = one.postprocess(b, conf=0.05)
    for p, q in zip(da, db):
        assert len(p["boxes"]) > 0
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(p[k], q[k])


def test_bad_stage_configuration_is_refused():
    with pytest.raises(ConfigError, match="one entry per stage"):
        create_model("cascade_rcnn_resnet18_fpn", num_classes=C, stage_ious=(0.5, 0.6), **TINY)
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\]"):
        create_model("cascade_rcnn_resnet18_fpn", num_classes=C, stage_ious=(0.5, 0.6, 1.5), **TINY)
    with pytest.raises(ConfigError, match="sampler='ohem'"):
        create_model("cascade_rcnn_resnet18_fpn", num_classes=C, sampler="ohem", **TINY)
    with pytest.raises(ConfigError, match="roi_iou=0.6 is stage 1's threshold"):
        create_model("cascade_rcnn_resnet18_fpn", num_classes=C, roi_iou=0.6, **TINY)
