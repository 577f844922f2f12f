"""Assigners vs oracles: torchvision Matcher, hand-built ATSS, reference loops, brute force."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection._utils import Matcher

from cvcraft.errors import ConfigError
from cvcraft.ops.assigners import (
    IGNORE,
    NEGATIVE,
    atss_assign,
    batched_task_aligned_assign,
    hungarian_match,
    max_iou_assign,
    simota_assign,
    task_aligned_assign,
)


def _boxes(n: int, g: torch.Generator, size: float = 100.0, dtype=torch.float32) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 2 + 4
    return torch.cat([xy, xy + wh], 1).to(dtype)


def _jitter(boxes: torch.Tensor, g: torch.Generator, scale: float) -> torch.Tensor:
    return boxes + torch.randn(boxes.shape, generator=g, dtype=boxes.dtype) * scale


def _tv_iou(a, b):
    return torchvision.ops.box_iou(a.double(), b.double())


# ----------------------------------------------------------------------------- max IoU


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [(0.5, 0.4), (0.7, 0.3)])
@pytest.mark.parametrize("low_quality", [True, False])
def test_max_iou_matches_torchvision_matcher(seed, thr, low_quality):
    g = torch.Generator().manual_seed(seed)
    gts = _boxes(5, g)
    priors = torch.cat([_boxes(60, g), _jitter(gts.repeat(3, 1), g, 6.0)])
    priors = torch.cat([priors, priors[:7]])  # exact duplicates -> ties in the per-gt maximum
    ours = max_iou_assign(priors, gts, thr[0], thr[1], allow_low_quality=low_quality)
    ref = Matcher(thr[0], thr[1], low_quality)(torchvision.ops.box_iou(gts, priors))
    assert torch.equal(ours.gt_index, ref)
    assert (ours.gt_index == IGNORE).any() or thr == (0.5, 0.4)  # the (0.7, 0.3) band is used
    assert torch.allclose(ours.quality, torchvision.ops.box_iou(priors, gts).max(1).values)


def _grid_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """Integer boxes on a 5-px grid, float64: IoUs are exact ratios that hit 1/4, 1/3, 1/2."""
    xy = torch.randint(0, 12, (n, 2), generator=g) * 5
    wh = torch.randint(1, 5, (n, 2), generator=g) * 10
    return torch.cat([xy, xy + wh], 1).double()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [(0.5, 0.5), (0.5, 1 / 3), (1 / 3, 0.25), (0.5, 0.25)])
@pytest.mark.parametrize("low_quality", [True, False])
def test_max_iou_at_exact_thresholds_matches_torchvision_matcher(seed, thr, low_quality):
    """Priors whose best IoU equals pos_thr are positive, equal to neg_thr ignored (not
    negative); per-gt maxima tie often (duplicates); one gt overlaps no prior at all (its
    maximum is 0, so the Matcher 'rescues' every prior to its own best gt)."""
    g = torch.Generator().manual_seed(seed)
    gts = torch.cat([_grid_boxes(6, g), torch.tensor([[500.0, 500, 510, 510]]).double()])
    priors = _grid_boxes(80, g)
    iou = torchvision.ops.box_iou(gts, priors)
    assert (iou.max(0).values == thr[0]).any() and (iou.max(0).values == thr[1]).any()
    ours = max_iou_assign(priors, gts, thr[0], thr[1], allow_low_quality=low_quality)
    ref = Matcher(thr[0], thr[1], low_quality)(iou)
    assert torch.equal(ours.gt_index, ref)
    assert torch.equal(ours.quality, iou.max(0).values)


def test_max_iou_hand_case_at_exact_thresholds():
    gts = torch.tensor([[0.0, 0, 100, 100]])
    priors = torch.tensor([[0.0, 0, 100, 50], [0.0, 0, 100, 40], [0.0, 0, 100, 39]])  # .5 .4 .39
    r = max_iou_assign(priors, gts, 0.5, 0.4, allow_low_quality=False)
    assert r.gt_index.tolist() == [0, IGNORE, NEGATIVE]
    r = max_iou_assign(priors, gts, 0.5, 0.4, min_pos_iou=0.5)  # the best prior is rescued...
    assert r.gt_index.tolist() == [0, IGNORE, NEGATIVE]
    r = max_iou_assign(priors[1:], gts, 0.5, 0.4, min_pos_iou=0.4)  # ...also at min_pos_iou
    assert r.gt_index.tolist() == [0, NEGATIVE]


def test_max_iou_min_pos_iou_and_labels():
    gts = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    priors = torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70], [200, 200, 210, 210]])
    labels = torch.tensor([7, 3])
    # gt 1's best prior has IoU 0.25: rescued at min_pos_iou 0.2, not at 0.3
    r = max_iou_assign(priors, gts, 0.5, 0.4, min_pos_iou=0.2, gt_labels=labels)
    assert r.gt_index.tolist() == [0, 1, NEGATIVE]
    assert r.labels.tolist() == [7, 3, -1]
    r = max_iou_assign(priors, gts, 0.5, 0.4, min_pos_iou=0.3, gt_labels=labels)
    assert r.gt_index.tolist() == [0, NEGATIVE, NEGATIVE]
    assert r.quality.tolist() == pytest.approx([1.0, 0.25, 0.0])
    empty = max_iou_assign(priors, torch.zeros(0, 4))
    assert empty.gt_index.tolist() == [NEGATIVE] * 3 and empty.num_gts == 0
    with pytest.raises(ConfigError, match=r"neg_thr 0\.5 must be <= pos_thr 0\.3"):
        max_iou_assign(priors, gts, 0.3, 0.5)


# ----------------------------------------------------------------------------- ATSS


def _grid(n: int, stride: float, side: float) -> torch.Tensor:
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * stride
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    cx, cy = cx.reshape(-1), cy.reshape(-1)
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def test_atss_hand_built():
    anchors = _grid(3, 10.0, 10.0)  # centres 5, 15, 25; row-major
    gts = torch.tensor([[0.0, 0, 20, 20], [10, 10, 28, 28]], dtype=torch.float64)
    r = atss_assign(anchors, [9], gts, topk=4, gt_labels=torch.tensor([1, 2]))
    # gt 0: the 4 nearest anchors (0, 1, 3, 4) all have IoU 100/400, std 0 -> all pass.
    # gt 1: candidates 4, 5, 7, 8 with IoU 100/324, 80/344, 80/344, 64/360; only anchor 4
    # clears mean + std, and it overlaps gt 1 more than gt 0 (0.309 > 0.25) -> gt 1.
    ious = [100 / 324, 80 / 344, 80 / 344, 64 / 360]
    thr = statistics.mean(ious) + statistics.stdev(ious)
    assert ious[0] >= thr > ious[1]
    assert r.gt_index.tolist() == [0, 0, -1, 0, 1, -1, -1, -1, -1]
    assert r.labels.tolist() == [1, 1, -1, 1, 2, -1, -1, -1, -1]
    assert r.quality[4].item() == pytest.approx(100 / 324)


def _atss_reference(anchors, levels, gts, topk):
    iou = _tv_iou(anchors, gts).tolist()
    ac = ((anchors[:, :2] + anchors[:, 2:]) / 2).tolist()
    n, m = len(anchors), len(gts)
    pos = [[False] * m for _ in range(n)]
    for j, (x1, y1, x2, y2) in enumerate(gts.tolist()):
        gx, gy = (x1 + x2) / 2, (y1 + y2) / 2
        cand, start = [], 0
        for count in levels:
            idx = range(start, start + count)
            cand += sorted(idx, key=lambda i: math.hypot(ac[i][0] - gx, ac[i][1] - gy))[:topk]
            start += count
        vals = [iou[i][j] for i in cand]
        thr = statistics.mean(vals) + statistics.stdev(vals)
        for i in cand:
            inside = x1 < ac[i][0] < x2 and y1 < ac[i][1] < y2
            pos[i][j] = iou[i][j] >= thr and inside
    out = []
    for i in range(n):
        js = [j for j in range(m) if pos[i][j]]
        out.append(max(js, key=lambda j: iou[i][j]) if js else -1)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_atss_matches_reference_loop(seed):
    g = torch.Generator().manual_seed(seed)
    levels = [_grid(16, 8.0, 32.0), _grid(8, 16.0, 64.0), _grid(4, 32.0, 128.0)]
    anchors = _jitter(torch.cat(levels), g, 0.5)  # break exact distance ties
    gts = _boxes(6, g, size=110.0, dtype=torch.float64)
    r = atss_assign(anchors, [len(lv) for lv in levels], gts, topk=9)
    assert r.gt_index.tolist() == _atss_reference(anchors, [len(lv) for lv in levels], gts, 9)
    assert r.num_pos >= 6


# ----------------------------------------------------------------------------- SimOTA


def _simota_reference(scores, boxes, centres, strides, gts, labels, radius=2.5):
    n, m = len(boxes), len(gts)
    iou = _tv_iou(boxes, gts)
    in_box = [[False] * m for _ in range(n)]
    in_ctr = [[False] * m for _ in range(n)]
    for i in range(n):
        px, py = centres[i].tolist()
        for j, (x1, y1, x2, y2) in enumerate(gts.tolist()):
            gx, gy, r = (x1 + x2) / 2, (y1 + y2) / 2, radius * float(strides[i])
            in_box[i][j] = x1 < px < x2 and y1 < py < y2
            in_ctr[i][j] = abs(px - gx) < r and abs(py - gy) < r
    valid = [i for i in range(n) if any(in_box[i][j] or in_ctr[i][j] for j in range(m))]
    cost = {}
    for i in valid:
        for j in range(m):
            onehot = F.one_hot(labels[j], scores.shape[1]).to(scores.dtype)
            c = F.binary_cross_entropy(scores[i], onehot, reduction="sum").item()
            c += 3.0 * -math.log(iou[i, j].item() + 1e-8)
            c += 0.0 if (in_box[i][j] and in_ctr[i][j]) else 1e5
            cost[i, j] = c
    claims = {i: [] for i in valid}
    for j in range(m):
        top = sorted((iou[i, j].item() for i in valid), reverse=True)[:10]
        k = max(1, int(sum(top)))
        for i in sorted(valid, key=lambda i: cost[i, j])[:k]:
            claims[i].append(j)
    out = [-1] * n
    for i, js in claims.items():
        if js:
            out[i] = min(js, key=lambda j: cost[i, j])
    return out


@pytest.mark.parametrize("seed", range(4))
def test_simota_matches_reference_loop(seed):
    g = torch.Generator().manual_seed(seed)
    gts = _boxes(4, g, size=90.0, dtype=torch.float64)
    labels = torch.randint(0, 5, (4,), generator=g)
    # priors: two levels of points; predictions near the gts so IoUs are informative
    pts = [(torch.arange(s, dtype=torch.float64) + 0.5) * (128 / s) for s in (16, 8)]
    centres = torch.cat([torch.cartesian_prod(p, p).flip(1) for p in pts])
    strides = torch.cat([torch.full((256,), 8.0), torch.full((64,), 16.0)]).double()
    near = gts[torch.randint(0, 4, (len(centres),), generator=g)]
    boxes = _jitter(near, g, 8.0)
    boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:] - 1), boxes[:, 2:]], 1)
    scores = torch.rand(len(centres), 5, generator=g, dtype=torch.float64) * 0.98 + 0.01
    r = simota_assign(scores, boxes, centres, gts, labels, strides=strides)
    ref = _simota_reference(scores, boxes, centres, strides, gts, labels)
    assert r.gt_index.tolist() == ref
    assert r.num_pos >= 4
    pos = r.pos_mask
    assert torch.equal(r.labels[pos], labels[r.gt_index[pos]])


def test_simota_dynamic_k_floor_of_one():
    gts = torch.tensor([[40.0, 40, 60, 60]], dtype=torch.float64)
    p = (torch.arange(12, dtype=torch.float64) + 0.5) * 8
    centres = torch.cartesian_prod(p, p).flip(1)
    # every prediction overlaps the gt weakly (IoU <= 0.14), so the top-10 IoUs sum below 2
    shift = torch.linspace(14, 18, len(centres), dtype=torch.float64)[:, None]
    boxes = gts + torch.cat([shift, shift, shift, shift], 1)
    scores = torch.full((len(centres), 2), 0.5, dtype=torch.float64)
    labels = torch.tensor([1])
    r = simota_assign(scores, boxes, centres, gts, labels, strides=8.0)
    assert r.num_pos == 1
    iou = _tv_iou(boxes, gts)[:, 0]
    assert iou.topk(10).values.sum() < 2
    ref = _simota_reference(scores, boxes, centres, torch.full((144,), 8.0), gts, labels)
    assert r.gt_index.tolist() == ref


# ----------------------------------------------------------------------------- TOOD


def _tal_reference(scores, boxes, points, gts, labels, topk, alpha, beta):
    n, m = len(boxes), len(gts)
    iou = _tv_iou(boxes, gts)
    metric = torch.zeros(n, m, dtype=torch.float64)
    inside = torch.zeros(n, m, dtype=torch.bool)
    for i in range(n):
        px, py = points[i].tolist()
        for j, (x1, y1, x2, y2) in enumerate(gts.tolist()):
            inside[i, j] = x1 < px < x2 and y1 < py < y2
            if inside[i, j]:
                metric[i, j] = scores[i, labels[j]] ** alpha * iou[i, j] ** beta
    claims = {i: [] for i in range(n)}
    for j in range(m):
        ranked = sorted(range(n), key=lambda i: -metric[i, j].item())[:topk]
        for i in ranked:
            if inside[i, j] and metric[i, j] > 0:
                claims[i].append(j)
    assign = [max(js, key=lambda j: iou[i, j].item()) if js else -1 for i, js in claims.items()]
    targets = [0.0] * n
    for j in range(m):
        mine = [i for i in range(n) if assign[i] == j]
        if not mine:
            continue
        t_max = max(metric[i, j].item() for i in mine)
        u_max = max(iou[i, j].item() for i in mine)
        for i in mine:
            targets[i] = metric[i, j].item() / (t_max + 1e-9) * u_max
    return assign, targets


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("topk", [5, 13])
def test_task_aligned_matches_reference_loop(seed, topk):
    g = torch.Generator().manual_seed(seed)
    gts = _boxes(5, g, size=90.0, dtype=torch.float64)
    labels = torch.randint(0, 4, (5,), generator=g)
    p = (torch.arange(16, dtype=torch.float64) + 0.5) * 8
    points = torch.cartesian_prod(p, p).flip(1)
    near = gts[torch.randint(0, 5, (len(points),), generator=g)]
    boxes = _jitter(near, g, 10.0)
    boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:] - 1), boxes[:, 2:]], 1)
    scores = torch.rand(len(points), 4, generator=g, dtype=torch.float64)
    r = task_aligned_assign(scores, boxes, points, gts, labels, topk=topk, alpha=1.0, beta=6.0)
    ref_assign, ref_targets = _tal_reference(scores, boxes, points, gts, labels, topk, 1.0, 6.0)
    assert r.gt_index.tolist() == ref_assign
    assert torch.allclose(r.extras["score_targets"], torch.tensor(ref_targets, dtype=torch.float64))
    assert r.num_pos > 5
    # each gt's best positive gets that gt's best IoU as its score target (where t_max is
    # well above the 1e-9 guard in the division)
    checked = 0
    for j in r.gt_index[r.pos_mask].unique().tolist():
        mine = r.gt_index == j
        if r.extras["align_metric"][mine].max() > 1e-6:
            got = r.extras["score_targets"][mine].max().item()
            assert got == pytest.approx(r.quality[mine].max().item(), rel=1e-3)
            checked += 1
    assert checked >= 1


def test_task_aligned_conflict_goes_to_higher_iou():
    gts = torch.tensor([[0.0, 0, 40, 40], [10, 10, 50, 50]])
    points = torch.tensor([[25.0, 25.0], [5.0, 5.0]])
    boxes = torch.tensor([[10.0, 10, 50, 50], [0, 0, 30, 30]])
    scores = torch.tensor([[1.0, 0.01], [0.9, 0.1]])
    # point 0: t(A) = 1 * 900/2300 > t(B) = 0.01 * 1, but IoU(B) = 1 > IoU(A) -> B
    r = task_aligned_assign(scores, boxes, points, gts, torch.tensor([0, 1]), topk=2, beta=1.0)
    assert r.gt_index.tolist() == [1, 0]
    assert r.extras["align_metric"].tolist() == pytest.approx([0.01, 0.9 * 900 / 1600])
    assert r.extras["score_targets"].tolist() == pytest.approx([1.0, 900 / 1600], rel=1e-5)


# ----------------------------------------------------------------------------- DETR


def _detr_cost(logits, boxes, labels, gt_boxes):
    prob = logits.softmax(-1)[:, labels]
    l1 = (boxes[:, None, :] - gt_boxes[None]).abs().sum(-1)
    to_xyxy = lambda b: torchvision.ops.box_convert(b, "cxcywh", "xyxy")  # noqa: E731
    giou = torchvision.ops.generalized_box_iou(to_xyxy(boxes), to_xyxy(gt_boxes))
    return -prob + 5 * l1 - 2 * giou


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("q,m", [(5, 3), (6, 2), (4, 4)])
def test_hungarian_equals_brute_force(seed, q, m):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(q, 4, generator=g, dtype=torch.float64)
    ctr = torch.rand(q + m, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2
    wh = torch.rand(q + m, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05
    boxes = torch.cat([ctr, wh], 1)
    pred, gt = boxes[:q], boxes[q:]
    labels = torch.randint(0, 3, (m,), generator=g)
    r = hungarian_match(logits, pred, labels, gt)
    cost = _detr_cost(logits, pred, labels, gt)
    best = min(
        (sum(cost[p, j].item() for j, p in enumerate(perm)), perm)
        for perm in itertools.permutations(range(q), m)
    )
    expected = [-1] * q
    for j, p in enumerate(best[1]):
        expected[p] = j
    assert r.gt_index.tolist() == expected
    assert r.extras["cost"].sum().item() == pytest.approx(best[0])
    assert r.num_pos == m


def test_empty_gts_give_all_negative():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]])
    none = torch.zeros(0, 4)
    no_labels = torch.zeros(0, dtype=torch.int64)
    scores, pts = torch.full((2, 3), 0.5), (boxes[:, :2] + boxes[:, 2:]) / 2
    results = [
        atss_assign(boxes, [2], none),
        simota_assign(scores, boxes, pts, none, no_labels, strides=8.0),
        task_aligned_assign(scores, boxes, pts, none, no_labels),
        hungarian_match(torch.zeros(2, 4), boxes / 20, no_labels, none),
    ]
    for r in results:
        assert r.gt_index.tolist() == [NEGATIVE, NEGATIVE] and r.num_gts == 0


# Outputs of the former per-image task_aligned_assign (its own implementation, before it became
# a view of the batched one), frozen on random cases by that code at commit 2ee32e7; five of
# the seven cases have anchors claimed by several gts, one has no gts.
TAL_CASES = Path(__file__).parent / "data" / "task_aligned_assign_cases.npz"


def _tal_cases() -> list[dict[str, torch.Tensor]]:
    data = np.load(TAL_CASES)
    n = len({k.split("_")[0] for k in data.files})
    return [
        {
            k.split("_", 1)[1]: torch.from_numpy(data[k])
            for k in data.files
            if k.startswith(f"c{i}_")
        }
        for i in range(n)
    ]


def test_task_aligned_assign_reproduces_the_former_per_image_outputs():
    cases = _tal_cases()
    assert len(cases) == 7
    for c in cases:
        topk, alpha, beta = c["params"].tolist()
        r = task_aligned_assign(
            c["scores"], c["boxes"], c["anchors"], c["gts"], c["labels"],
            topk=int(topk), alpha=alpha, beta=beta,
        )  # fmt: skip
        assert torch.equal(r.gt_index, c["out_gt_index"])
        assert torch.equal(r.labels, c["out_labels"])
        torch.testing.assert_close(r.quality, c["out_quality"])
        torch.testing.assert_close(r.extras["score_targets"], c["out_score_targets"])
        torch.testing.assert_close(r.extras["align_metric"], c["out_align_metric"])


def test_batched_task_aligned_assign_with_padding_rows_equals_the_former_outputs():
    for c in _tal_cases():  # each case as a batch of one with 3 masked-out padding gts
        topk, alpha, beta = c["params"].tolist()
        m, pad = len(c["gts"]), 3
        gts = torch.cat([c["gts"], torch.rand(pad, 4) * 50])[None]
        labels = torch.cat([c["labels"], torch.zeros(pad, dtype=torch.int64)])[None]
        mask = (torch.arange(m + pad) < m)[None]
        r = batched_task_aligned_assign(
            c["scores"][None], c["boxes"][None], c["anchors"], gts, labels, mask,
            topk=int(topk), alpha=alpha, beta=beta,
        )  # fmt: skip
        assert torch.equal(r.gt_index[0], c["out_gt_index"])
        torch.testing.assert_close(r.score_targets[0], c["out_score_targets"])
        torch.testing.assert_close(r.align_metric[0], c["out_align_metric"])


# ----------------------------------------------------------------------------- exact boundaries


def _on_grid_gts(g: torch.Generator, n: int, step: float, offset: float) -> torch.Tensor:
    """Gts whose edges lie exactly on prior-centre rows/columns (offset + k * step) and whose
    centres fall on a multiple of ``step``: centres on an edge, and centre offsets of exactly
    2.5 strides, then occur."""
    lo = torch.randint(1, 10, (n, 2), generator=g).double() * step + offset
    size = (torch.randint(0, 4, (n, 2), generator=g).double() * 2 + 1) * step  # odd multiple
    return torch.cat([lo, lo + size], 1)


@pytest.mark.parametrize("seed", range(4))
def test_atss_with_centres_exactly_on_gt_edges_matches_reference_loop(seed):
    """Anchor centres on a gt's edge are not inside it (strict); the gt centres sit off the
    grid by (1.5, 2.75) so no two candidates tie in distance at the top-k cut."""
    g = torch.Generator().manual_seed(seed)
    levels = [_grid(16, 8.0, 32.0), _grid(8, 16.0, 64.0)]  # centres 4 + 8k and 8 + 16k
    anchors = torch.cat(levels)
    gts = _on_grid_gts(g, 5, 8.0, 4.0)
    gts[:, 2:] += torch.tensor([3.0, 5.5], dtype=torch.float64)  # centre off the grid
    counts = [len(lv) for lv in levels]
    ac, gc = (anchors[:, :2] + anchors[:, 2:]) / 2, (gts[:, :2] + gts[:, 2:]) / 2
    d = torch.cdist(ac, gc)
    for s, c in zip(np.cumsum([0, *counts[:-1]]), counts):  # precondition: no tie at the cut
        top = d[s : s + c].sort(0).values
        assert (top[9] > top[8]).all()
    on_edge = (ac[:, None, 0] == gts[None, :, 0]) & (ac[:, None, 1] > gts[None, :, 1])
    assert on_edge.any()
    r = atss_assign(anchors, counts, gts, topk=9)
    assert r.gt_index.tolist() == _atss_reference(anchors, counts, gts, 9)
    assert r.num_pos >= 5


@pytest.mark.parametrize("seed", range(4))
def test_simota_with_centres_on_edges_and_at_the_radius_matches_reference_loop(seed):
    """Prior centres at 4 + 8k; gt edges on those centres (not inside: strict) and gt centres
    on multiples of 8, so some priors are exactly 2.5 strides (20 px) from a gt centre (not
    in the centre region: strict)."""
    g = torch.Generator().manual_seed(seed)
    gts = _on_grid_gts(g, 3, 8.0, 4.0)
    labels = torch.randint(0, 4, (3,), generator=g)
    p = torch.arange(16, dtype=torch.float64) * 8 + 4
    centres = torch.cartesian_prod(p, p).flip(1)
    strides = torch.full((len(centres),), 8.0, dtype=torch.float64)
    gc = (gts[:, :2] + gts[:, 2:]) / 2
    off = (centres[:, None] - gc[None]).abs()
    assert ((off == 20).any(-1) & (off <= 20).all(-1)).any()  # at the radius exactly
    assert (centres[:, None, 0] == gts[None, :, 0]).any()  # on a gt's left edge
    near = gts[torch.randint(0, 3, (len(centres),), generator=g)]
    boxes = _jitter(near, g, 6.0)
    boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:] - 1), boxes[:, 2:]], 1)
    scores = torch.rand(len(centres), 4, generator=g, dtype=torch.float64) * 0.98 + 0.01
    r = simota_assign(scores, boxes, centres, gts, labels, strides=strides)
    assert r.gt_index.tolist() == _simota_reference(scores, boxes, centres, strides, gts, labels)
    assert r.num_pos >= 3
