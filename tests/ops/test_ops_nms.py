"""NMS family: greedy/batched against torchvision, the rest against loops written here from
the papers' pseudo-code (Bodla 2017 Soft-NMS, YOLACT Fast NMS, SOLOv2 Matrix NMS, DIoU-NMS,
weighted NMS)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.ops.nms import NMS_METHODS, PER_CLASS_ABOVE, batched_nms, multiclass_nms, nms

# the module itself: the package attribute cvcraft.ops.nms is the nms() function
nms_module = importlib.import_module("cvcraft.ops.nms")
_class_offsets = nms_module._class_offsets


def clustered_boxes(
    n: int, seed: int, dtype=torch.float64, objects: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Detector-like output: jittered copies of a few objects, so boxes really overlap."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(objects, 2, generator=gen, dtype=dtype) * 200
    size = torch.rand(objects, 2, generator=gen, dtype=dtype) * 60 + 10
    which = torch.randint(0, objects, (n,), generator=gen)
    c = centre[which] + torch.randn(n, 2, generator=gen, dtype=dtype) * 6
    s = size[which] * (1 + 0.2 * torch.randn(n, 2, generator=gen, dtype=dtype)).clamp(min=0.3)
    boxes = torch.cat([c - s / 2, c + s / 2], 1)
    return boxes, torch.rand(n, generator=gen, dtype=dtype)


# --- references, one box pair at a time in plain Python --------------------------------


def iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def diou(a: list[float], b: list[float]) -> float:
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    return iou(a, b) - (dx * dx + dy * dy) / (cw * cw + ch * ch)


def by_score(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties by index


def soft_nms_ref(boxes, scores, nt, sigma, thresh, linear):
    """Bodla et al. 2017, Algorithm 1."""
    b, s = boxes.tolist(), scores.tolist()
    remaining = list(range(len(b)))
    kept, kept_scores = [], []
    while remaining:
        m = max(remaining, key=lambda i: s[i])  # first of equal maxima
        kept.append(m)
        kept_scores.append(s[m])
        remaining.remove(m)
        for i in remaining:
            o = iou(b[m], b[i])
            if linear:
                s[i] *= (1 - o) if o >= nt else 1.0
            else:
                s[i] *= math.exp(-(o * o) / sigma)
        remaining = [i for i in remaining if s[i] >= thresh]
    return kept, kept_scores


def greedy_ref(boxes, scores, thr, overlap):
    """Classic greedy NMS with a pluggable overlap measure; returns kept ids and clusters."""
    b, s = boxes.tolist(), scores.tolist()
    alive = by_score(s)
    kept, clusters = [], []
    while alive:
        m = alive.pop(0)
        cluster = [m] + [i for i in alive if overlap(b[m], b[i]) > thr]
        alive = [i for i in alive if i not in cluster]
        kept.append(m)
        clusters.append(cluster)
    return kept, clusters


def matrix_ref(boxes, scores, sigma, gaussian):
    """SOLOv2: decay_j = min over higher-scored i of f(iou_ij) / f(max_k iou_ki)."""
    b, s = boxes.tolist(), scores.tolist()
    order = by_score(s)

    def f(x):
        return math.exp(-(x * x) / sigma) if gaussian else 1 - x

    cmax = {}
    for r, i in enumerate(order):
        cmax[i] = max([iou(b[k], b[i]) for k in order[:r]], default=0.0)
    decayed = {}
    for r, j in enumerate(order):
        ratios = [f(iou(b[i], b[j])) / f(cmax[i]) for i in order[:r]]
        decayed[j] = s[j] * min(ratios + [1.0])
    return decayed


# --- greedy and batched against torchvision ---------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_greedy_matches_torchvision(seed: int) -> None:
    boxes, scores = clustered_boxes(300, seed, torch.float32)
    r = nms(boxes, scores, 0.5)
    expected = torchvision.ops.nms(boxes, scores, 0.5)
    assert torch.equal(r.keep, expected)
    assert torch.equal(r.scores, scores[expected]) and torch.equal(r.boxes, boxes[expected])


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("n", [60, 1200])  # 1200 boxes: torchvision switches to its class loop
def test_batched_greedy_matches_torchvision_with_ties(seed: int, n: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    boxes, _ = clustered_boxes(n, seed, torch.float32, objects=12)
    scores = torch.randint(0, 6, (n,), generator=gen).float() / 5  # many exact ties
    labels = torch.randint(0, 4, (n,), generator=gen)
    thr = [0.3, 0.5, 0.7][seed % 3]
    expected = torchvision.ops.batched_nms(boxes, scores, labels, thr)
    got = batched_nms(boxes, scores, labels, thr).keep
    # Same set; torchvision's per-class path re-sorts with an unstable sort, so the order
    # among exactly tied scores may differ — ours breaks ties by input index.
    assert sorted(got.tolist()) == sorted(expected.tolist())
    assert torch.equal(scores[got], scores[expected])
    order = [(-float(scores[i]), int(i)) for i in got]
    assert order == sorted(order)
    agnostic = batched_nms(boxes, scores, labels, thr, class_agnostic=True).keep
    assert torch.equal(agnostic, torchvision.ops.nms(boxes, scores, thr))


@pytest.mark.parametrize("n", [PER_CLASS_ABOVE, PER_CLASS_ABOVE + 1])
def test_batched_greedy_per_class_path_equals_the_offsets_path(n: int) -> None:
    """At and just above the switch to one NMS per class: the same boxes in the same
    best-first order (ties by input index) as one offset call over all classes."""
    gen = torch.Generator().manual_seed(n)
    boxes, _ = clustered_boxes(n, 7, torch.float32, objects=40)
    scores = torch.randint(0, 50, (n,), generator=gen).float() / 49  # ties across classes
    labels = torch.randint(0, 30, (n,), generator=gen)
    got = batched_nms(boxes, scores, labels, 0.5).keep
    order = torch.sort(scores, descending=True, stable=True).indices
    ref = order[torchvision.ops.nms(_class_offsets(boxes[order], labels[order]),
                                    torch.arange(n, 0, -1).float(), 0.5)]  # fmt: skip
    assert torch.equal(got, ref)


def test_score_threshold_max_det_and_top_k() -> None:
    boxes, scores = clustered_boxes(200, 11, torch.float32)
    r = nms(boxes, scores, 0.5, score_threshold=0.4, max_det=5)
    high = torch.nonzero(scores >= 0.4).squeeze(1)
    expected = high[torchvision.ops.nms(boxes[high], scores[high], 0.5)][:5]
    assert torch.equal(r.keep, expected)
    top = torch.sort(scores, descending=True).indices[:50]
    r = nms(boxes, scores, 0.5, top_k=50)
    assert torch.equal(r.keep, top[torchvision.ops.nms(boxes[top], scores[top], 0.5)])


# --- Soft-NMS ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["soft_linear", "soft_gaussian"])
def test_soft_nms_matches_bodla_pseudocode(seed: int, method: str) -> None:
    boxes, scores = clustered_boxes(80, seed)
    thr, sigma, floor = 0.3, 0.5, 0.05
    kept, kept_scores = soft_nms_ref(boxes, scores, thr, sigma, floor, method == "soft_linear")
    r = nms(boxes, scores, thr, method, sigma=sigma, score_threshold=floor)
    assert r.keep.tolist() == kept
    torch.testing.assert_close(r.scores, torch.tensor(kept_scores, dtype=torch.float64))
    assert (r.scores[:-1] >= r.scores[1:]).all()  # best first
    assert len(kept) < len(boxes)  # the floor really removed boxes


# --- Fast NMS -------------------------------------------------------------------------


def test_fast_nms_hand_case() -> None:
    # B overlaps A, C overlaps B but not A: greedy keeps A and C, Fast NMS only A because
    # B (itself suppressed) still suppresses C.
    boxes = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [7, 0, 17, 10], [30, 30, 40, 40]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.4).keep.tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.4, "fast").keep.tolist() == [0, 3]


@pytest.mark.parametrize("seed", range(8))
def test_fast_nms_keeps_a_subset_of_greedy(seed: int) -> None:
    boxes, scores = clustered_boxes(150, seed, torch.float32)
    greedy = set(nms(boxes, scores, 0.5).keep.tolist())
    fast = nms(boxes, scores, 0.5, "fast")
    assert set(fast.keep.tolist()) <= greedy
    assert (fast.scores[:-1] >= fast.scores[1:]).all()
    # and it is exactly "no higher-scored box overlaps more than t"
    b, s = boxes.tolist(), scores.tolist()
    ref = [
        j for j in by_score(s) if all(iou(b[i], b[j]) <= 0.5 for i in range(len(b)) if s[i] > s[j])
    ]
    assert fast.keep.tolist() == ref


# --- Matrix NMS -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_matrix_nms_matches_solov2_formula(seed: int, kernel: str) -> None:
    boxes, scores = clustered_boxes(60, seed)
    decayed = matrix_ref(boxes, scores, sigma=0.5, gaussian=kernel == "gaussian")
    r = nms(boxes, scores, method="matrix", kernel=kernel, sigma=0.5, score_threshold=0.05)
    expected = sorted((j for j in decayed if decayed[j] >= 0.05), key=lambda j: -decayed[j])
    assert r.keep.tolist() == expected
    torch.testing.assert_close(r.scores, torch.tensor([decayed[j] for j in expected]).double())


@pytest.mark.parametrize("method", ["fast", "matrix"])
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_blocked_upper_triangle_equals_one_block(
    method: str, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes, scores = clustered_boxes(90, 5)
    labels = torch.randint(0, 2, (90,), generator=torch.Generator().manual_seed(1))
    whole = batched_nms(boxes, scores, labels, 0.5, method, kernel=kernel)
    monkeypatch.setattr(nms_module, "IOU_BLOCK_ROWS", 7)  # 13 uneven row blocks
    blocked = batched_nms(boxes, scores, labels, 0.5, method, kernel=kernel)
    assert torch.equal(whole.keep, blocked.keep)
    torch.testing.assert_close(whole.scores, blocked.scores, atol=0, rtol=0)


# --- DIoU-NMS and weighted NMS -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_diou_nms_matches_reference_loop(seed: int) -> None:
    boxes, scores = clustered_boxes(120, seed)
    kept, _ = greedy_ref(boxes, scores, 0.4, diou)
    assert nms(boxes, scores, 0.4, "diou").keep.tolist() == kept


@pytest.mark.parametrize("seed", range(4))
def test_weighted_nms_matches_reference_loop(seed: int) -> None:
    boxes, scores = clustered_boxes(120, seed)
    kept, clusters = greedy_ref(boxes, scores, 0.5, iou)
    b, s = boxes.tolist(), scores.tolist()
    merged = []
    for m, cluster in zip(kept, clusters, strict=True):
        w = [s[i] * iou(b[m], b[i]) for i in cluster]
        merged.append([sum(wi * b[i][c] for wi, i in zip(w, cluster)) / sum(w) for c in range(4)])
    r = nms(boxes, scores, 0.5, "weighted")
    assert r.keep.tolist() == kept
    torch.testing.assert_close(r.boxes, torch.tensor(merged, dtype=torch.float64))
    torch.testing.assert_close(r.scores, scores[r.keep])


# --- exact boundaries: IoU equal to the threshold, tied scores, score at the floor ------


def grid_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer boxes on a 5-px grid (float64): every IoU is an exact ratio, so many pairs sit
    exactly at thresholds like 1/4, 1/3, 1/2; scores on a 5-value grid, so ties are common."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 12, (n, 2), generator=gen) * 5
    wh = torch.randint(1, 5, (n, 2), generator=gen) * 10
    boxes = torch.cat([xy, xy + wh], 1).double()
    return boxes, torch.randint(1, 6, (n,), generator=gen).double() / 5


BOUNDARY_THRESHOLDS = [0.25, 1 / 3, 0.5, 0.6]


def _hits_threshold(boxes: torch.Tensor, thr: float) -> bool:
    return bool((torchvision.ops.box_iou(boxes, boxes) == thr).triu(1).any())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", BOUNDARY_THRESHOLDS)
def test_greedy_at_exact_threshold_and_score_ties_matches_torchvision(seed, thr):
    """IoU == t is not suppressed (torchvision: IoU > t), and of two boxes with the same score
    the earlier index wins — the same keep list, in the same order, as torchvision."""
    boxes, scores = grid_boxes(80, seed)
    assert _hits_threshold(boxes, thr)
    r = nms(boxes, scores, thr)
    assert torch.equal(r.keep, torchvision.ops.nms(boxes, scores, thr))
    assert r.keep.tolist() == greedy_ref(boxes, scores, thr, iou)[0]
    labels = torch.randint(0, 3, (80,), generator=torch.Generator().manual_seed(seed))
    got = batched_nms(boxes, scores, labels, thr).keep
    expected = torchvision.ops.batched_nms(boxes, scores, labels, thr)
    assert sorted(got.tolist()) == sorted(expected.tolist())


def test_greedy_and_fast_hand_case_at_exact_threshold():
    # float64 so IoU 0.49 equals the threshold 0.49 to the last bit.
    a, b, c = [0.0, 0, 100, 100], [0.0, 0, 100, 50], [0.0, 51, 100, 100]
    boxes = torch.tensor([a, b, c, a], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.9], dtype=torch.float64)  # box 3 ties box 0
    # IoU(a, b) = 0.5, IoU(a, c) = 0.49, IoU(b, c) = 0: only the exact duplicate 3 goes.
    for method in ("greedy", "fast", "weighted"):
        assert nms(boxes, scores, 0.5, method).keep.tolist() == [0, 1, 2], method
        assert nms(boxes, scores, 0.49, method).keep.tolist() == [0, 2], method
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 1, 2]
    assert torchvision.ops.nms(boxes, scores, 0.49).tolist() == [0, 2]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", BOUNDARY_THRESHOLDS)
def test_fast_and_weighted_at_exact_threshold(seed, thr):
    boxes, scores = grid_boxes(60, seed)
    b, s = boxes.tolist(), scores.tolist()
    order = by_score(s)
    rank = {j: r for r, j in enumerate(order)}
    fast_ref = [j for j in order if all(iou(b[i], b[j]) <= thr for i in order[: rank[j]])]
    assert nms(boxes, scores, thr, "fast").keep.tolist() == fast_ref
    kept, clusters = greedy_ref(boxes, scores, thr, iou)
    merged = []
    for m, cluster in zip(kept, clusters, strict=True):
        w = [s[i] * iou(b[m], b[i]) for i in cluster]
        merged.append([sum(wi * b[i][c] for wi, i in zip(w, cluster)) / sum(w) for c in range(4)])
    r = nms(boxes, scores, thr, "weighted")
    assert r.keep.tolist() == kept
    torch.testing.assert_close(r.boxes, torch.tensor(merged, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.25, 0.5])
def test_soft_linear_at_exact_threshold_and_floor(seed, thr):
    """Bodla's linear decay applies from IoU >= t; a score equal to the floor survives.

    Decayed scores tie here (0.8 * (1 - 0.5) == 0.4); the library breaks such ties by the
    original score rank (candidates are pre-sorted, stably), so the reference loop runs on
    the pre-sorted boxes and its picks are mapped back."""
    boxes, scores = grid_boxes(40, seed)
    perm = torch.sort(scores, descending=True, stable=True).indices
    kept, kept_scores = soft_nms_ref(boxes[perm], scores[perm], thr, 0.5, 0.2, linear=True)
    kept = perm[kept].tolist()
    r = nms(boxes, scores, thr, "soft_linear", score_threshold=0.2)
    assert r.keep.tolist() == kept
    torch.testing.assert_close(r.scores, torch.tensor(kept_scores, dtype=torch.float64))
    assert (r.scores == 0.2).any()  # the floor itself is kept


def test_score_threshold_is_inclusive_and_top_k_breaks_ties_by_index():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    scores = torch.tensor([0.3, 0.5, 0.5, 0.29])
    assert nms(boxes, scores, 0.5, score_threshold=0.3).keep.tolist() == [1, 2, 0]
    assert nms(boxes, scores, 0.5, top_k=1).keep.tolist() == [1]
    assert nms(boxes, scores, 0.5, max_det=2).keep.tolist() == [1, 2]


# --- every method: class-aware = per class, empty input, bad names -------------------


@pytest.mark.parametrize("method", NMS_METHODS)
def test_batched_equals_per_class_runs(method: str) -> None:
    boxes, scores = clustered_boxes(120, 21)
    labels = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(0))
    kw = {"score_threshold": 0.02}
    got = batched_nms(boxes, scores, labels, 0.5, method, **kw)
    parts = []
    for c in range(3):
        idx = torch.nonzero(labels == c).squeeze(1)
        r = nms(boxes[idx], scores[idx], 0.5, method, **kw)
        parts += [(sc, int(idx[k]), bx) for k, sc, bx in zip(r.keep, r.scores, r.boxes)]
    parts.sort(key=lambda p: -float(p[0]))
    assert got.keep.tolist() == [p[1] for p in parts]
    torch.testing.assert_close(got.scores, torch.stack([p[0] for p in parts]))
    torch.testing.assert_close(got.boxes, torch.stack([p[2] for p in parts]))


@pytest.mark.parametrize("method", NMS_METHODS)
def test_empty_input(method: str) -> None:
    r = nms(torch.zeros(0, 4), torch.zeros(0), method=method)
    assert r.keep.shape == (0,) and r.scores.shape == (0,) and r.boxes.shape == (0, 4)
    r = batched_nms(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5, method
    )
    assert r.keep.numel() == 0


def test_bad_arguments_raise() -> None:
    boxes, scores = clustered_boxes(5, 0)
    with pytest.raises(ConfigError, match="unknown NMS method"):
        nms(boxes, scores, method="softer")
    with pytest.raises(ConfigError, match="kernel"):
        nms(boxes, scores, method="matrix", kernel="cosine")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        nms(boxes[:, :3], scores)
    with pytest.raises(ValueError, match="labels"):
        batched_nms(boxes, scores, torch.zeros(4, dtype=torch.long))


def _multiclass_reference(boxes, scores, conf, iou, max_det, size, min_size):
    """torchvision only: every (box, class) above conf, clip, drop small, batched NMS, cap."""
    out_b, out_s, out_l = [], [], []
    for cls in range(scores.shape[1]):
        keep = scores[:, cls] > conf
        b = boxes[keep, cls] if boxes.ndim == 3 else boxes[keep]
        b = torchvision.ops.clip_boxes_to_image(b, size)
        s = scores[keep, cls]
        big = ((b[:, 2:] - b[:, :2]) >= min_size).all(1)
        out_b.append(b[big]), out_s.append(s[big]), out_l.append(torch.full((int(big.sum()),), cls))
    b, s, lab = torch.cat(out_b), torch.cat(out_s), torch.cat(out_l)
    keep = torchvision.ops.batched_nms(b, s, lab, iou)[:max_det]
    return b[keep], s[keep], lab[keep]


@pytest.mark.parametrize("per_class_boxes", [False, True])
def test_multiclass_nms_matches_torchvision_pipeline(per_class_boxes):
    g = torch.Generator().manual_seed(5)
    n, c = 300, 4
    xy = torch.rand(n, 2, generator=g) * 90 - 10  # some boxes poke outside the 80x100 image
    wh = torch.rand(n, 2, generator=g) * 40 + 0.5
    boxes = torch.cat([xy, xy + wh], 1)
    if per_class_boxes:  # Fast R-CNN: one regressed box per class
        boxes = boxes[:, None] + torch.randn(n, c, 4, generator=g)
    scores = torch.rand(n, c, generator=g)
    got = multiclass_nms(boxes, scores, 0.3, 0.5, 60, (80, 100), min_size=1.0)
    rb, rs, rl = _multiclass_reference(boxes, scores, 0.3, 0.5, 60, (80, 100), 1.0)
    assert len(got["boxes"]) == 60  # the cap is reached
    torch.testing.assert_close(got["boxes"], rb)
    torch.testing.assert_close(got["scores"], rs)
    assert torch.equal(got["labels"], rl) and got["labels"].dtype == torch.int64


def test_multiclass_nms_threshold_is_strict_and_empty_input_is_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([[0.5, 0.2], [0.49, 0.7]])
    got = multiclass_nms(boxes, scores, 0.5, 0.5, 10)  # 0.5 itself is not above 0.5
    assert got["labels"].tolist() == [1] and got["scores"].tolist() == pytest.approx([0.7])
    empty = multiclass_nms(torch.zeros(0, 4), torch.zeros(0, 3), 0.1, 0.5, 10)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
