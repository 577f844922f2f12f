"""Reference IoU family, NMS and AP vs torchvision.ops (and hand-worked cases): random
boxes, identical / touching / disjoint / nested boxes, and a precision-recall curve
worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.ops as tvo
from refcheck import close

from cvcraft.errors import ConfigError
from cvcraft.reference import boxes as rb


def random_boxes(rng: np.random.Generator, n: int, spread: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, spread, size=(n, 2))
    wh = rng.uniform(1, spread / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


EDGE = np.array(
    [
        [0, 0, 10, 10],
        [0, 0, 10, 10],  # identical
        [10, 0, 20, 10],  # touching
        [30, 30, 40, 35],  # disjoint
        [2, 2, 5, 8],  # nested
        [-5, -5, 1, 1],  # negative coordinates
    ],
    dtype=np.float64,
)

TV = {
    "iou": tvo.box_iou,
    "giou": tvo.generalized_box_iou,
    "diou": tvo.distance_box_iou,
    "ciou": tvo.complete_box_iou,
}


@pytest.mark.parametrize("kind", rb.IOU_KINDS)
@pytest.mark.parametrize("n,m", [(7, 5), (1, 9), (20, 20)])
def test_iou_family_equals_torchvision(kind, n, m):
    # torchvision adds eps = 1e-7 to the CIoU/DIoU denominators, hence 1e-6 and not 1e-9
    rng = np.random.default_rng(n * m)
    a, b = random_boxes(rng, n), random_boxes(rng, m)
    close(rb.pairwise_iou(a, b, kind), TV[kind](torch.tensor(a), torch.tensor(b)), 1e-6)
    close(rb.pairwise_iou(EDGE, EDGE, kind), TV[kind](torch.tensor(EDGE), torch.tensor(EDGE)), 1e-6)


def test_iou_hand_values():
    iou = rb.pairwise_iou(EDGE[:1], EDGE)[0]
    close(iou, [1.0, 1.0, 0.0, 0.0, 18 / 100, 1 / 135], 1e-12)
    # GIoU of touching boxes: IoU 0, enclosing box 200, union 200 -> 0
    assert rb.pairwise_iou(EDGE[:1], EDGE[2:3], "giou")[0, 0] == pytest.approx(0.0)


@pytest.mark.parametrize("n,thr", [(30, 0.5), (80, 0.3), (50, 0.7), (1, 0.5)])
def test_greedy_nms_equals_torchvision(n, thr):
    rng = np.random.default_rng(n)
    boxes = random_boxes(rng, n, spread=60)
    scores = rng.random(n)
    expected = tvo.nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
    np.testing.assert_array_equal(rb.greedy_nms(boxes, scores, thr), expected)


def test_greedy_nms_boundary_iou_equal_to_threshold_is_kept():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)  # IoU exactly 1/3
    scores = np.array([0.9, 0.8])
    np.testing.assert_array_equal(rb.greedy_nms(boxes, scores, 1 / 3), [0, 1])
    np.testing.assert_array_equal(rb.greedy_nms(boxes, scores, 0.33), [0])
    np.testing.assert_array_equal(tvo.nms(torch.tensor(boxes), torch.tensor(scores), 0.33), [0])


def test_soft_nms_decays_instead_of_dropping():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7])
    keep, s = rb.soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    np.testing.assert_array_equal(keep, [0, 2, 1])
    close(s, [0.9, 0.7, 0.8 * np.exp(-(0.9**2) / 0.5)], 1e-12)
    keep, s = rb.soft_nms(boxes, scores, iou_threshold=0.5, method="linear")
    np.testing.assert_array_equal(keep, [0, 2, 1])
    close(s, [0.9, 0.7, 0.8 * 0.1], 1e-12)


def test_ap_by_hand():
    # 3 gts; ranked detections TP, FP, TP, FP, TP -> recall 1/3, 1/3, 2/3, 2/3, 1,
    # precision 1, 1/2, 2/3, 1/2, 3/5
    rec = np.array([1, 1, 2, 2, 3]) / 3
    prec = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert rb.ap_all_points(rec, prec) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # 11-point: r in {0, .1, .2, .3} -> 1; {.4 .. .6} -> 2/3; {.7 .. 1} -> 3/5
    assert rb.ap_n_points(rec, prec, 11) == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 3 / 5) / 11)
    tp = np.array([True, False, True, False, True])
    r2, p2 = rb.precision_recall(tp, np.array([0.9, 0.8, 0.7, 0.6, 0.5]), 3)
    close(r2, rec, 1e-12)
    close(p2, prec, 1e-12)


def test_matching_rules_differ_where_the_best_gt_is_taken():
    gts = np.array([[0, 0, 10, 10], [0, 1, 10, 11]], float)
    dets = np.array([[0, 0, 10, 10], [0, 0.5, 10, 10.5]], float)  # both prefer gt 0
    scores = np.array([0.9, 0.8])
    np.testing.assert_array_equal(rb.match_detections(dets, scores, gts, 0.5, "voc"), [1, 0])
    np.testing.assert_array_equal(rb.match_detections(dets, scores, gts, 0.5, "coco"), [1, 1])


def test_box_errors():
    with pytest.raises(ConfigError, match="unknown IoU kind 'siou'"):
        rb.pairwise_iou(EDGE, EDGE, "siou")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        rb.greedy_nms(np.zeros((3, 5)), np.zeros(3), 0.5)
    with pytest.raises(ConfigError, match="soft_nms method"):
        rb.soft_nms(EDGE, np.ones(6), method="matrix")
    with pytest.raises(ConfigError, match="match rule"):
        rb.match_detections(EDGE, np.ones(6), EDGE, rule="pascal")
