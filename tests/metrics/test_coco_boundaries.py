"""COCOEvaluator vs pycocotools at the exact boundaries: IoU equal to each threshold, gt and
detection areas equal to 32^2 / 96^2, score ties at the maxDets cut and across images, crowd
regions at the threshold, and IoU ties between two gts. Jittered data never lands on these."""

import contextlib
import copy
import io

import numpy as np
import pytest

from cvcraft.metrics.coco import SUMMARY_KEYS, COCOEvaluator

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _gt(anns: list[tuple], n_images: int, n_cats: int = 2) -> dict:
    """anns: (image_id, category_id, [x, y, w, h], area or None (= w*h), iscrowd)."""
    return {
        "images": [{"id": i} for i in range(1, n_images + 1)],
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": img,
                "category_id": cat,
                "bbox": [float(v) for v in box],
                "area": float(box[2] * box[3] if area is None else area),
                "iscrowd": int(crowd),
            }
            for k, (img, cat, box, area, crowd) in enumerate(anns)
        ],
    }


def _res(dets: list[tuple]) -> list[dict]:
    """dets: (image_id, category_id, [x, y, w, h], score)."""
    return [
        {"image_id": i, "category_id": c, "bbox": [float(v) for v in b], "score": float(s)}
        for i, c, b, s in dets
    ]


def _check(gt: dict, res: list[dict]) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ref = COCOeval(coco, coco.loadRes(copy.deepcopy(res)), "bbox")
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    ev = COCOEvaluator(gt)
    ev.update(res)
    out = ev.compute()
    np.testing.assert_allclose(out["precision"], ref.eval["precision"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(out["recall"], ref.eval["recall"], atol=1e-12, rtol=0)
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-12, rtol=0)
    return out


def test_iou_exactly_at_every_threshold():
    """Image k: a 100x100 gt and a detection inside it covering k/20 of it (IoU = k/20 to the
    last bit, for k = 9..20), plus one hair below (k/20 - 1e-4). A `>` for `>=` (or the
    reverse) changes which threshold each image counts at."""
    anns, dets = [], []
    img = 0
    for k in range(9, 21):
        for shrink in (0.0, 0.01):  # 0.01 px narrower: IoU just below k/20
            img += 1
            anns.append((img, 1, [0, 0, 100, 100], None, 0))
            dets.append((img, 1, [0, 0, 5 * k - shrink, 100], 0.3 + 0.02 * k + shrink))
    out = _check(_gt(anns, img), _res(dets))
    # Exactly-at-threshold detections are TP at that threshold: AP50 counts k >= 10 exact.
    assert out["recall"][0, 0, 0, 2] == pytest.approx(21 / 24)


def test_crowd_iou_exactly_at_threshold_is_ignored_not_fp():
    """Crowd IoU = inter / detection area: 0.5 exactly absorbs the detection at t=0.5 only."""
    anns = [(1, 1, [0, 0, 100, 100], None, 1), (1, 1, [300, 300, 50, 50], None, 0)]
    dets = [
        (1, 1, [50, 0, 100, 100], 0.9),  # half inside the crowd: IoU_crowd = 0.5 exactly
        (1, 1, [75, 0, 100, 100], 0.8),  # a quarter inside: 0.25 -> FP at every threshold
        (1, 1, [0, 0, 100, 100], 0.7),  # fully inside: ignored everywhere
        (1, 1, [300, 300, 50, 50], 0.6),  # the regular gt
    ]
    _check(_gt(anns, 1), _res(dets))


def test_regular_gt_wins_over_crowd_with_higher_iou():
    """A detection overlapping a crowd (IoU 1) and a regular gt (IoU 0.6): COCO takes the
    regular gt; the next detection then finds the regular gt taken and falls into the crowd."""
    anns = [(1, 1, [0, 0, 100, 100], None, 1), (1, 1, [0, 0, 60, 100], None, 0)]
    dets = [(1, 1, [0, 0, 100, 100], 0.9), (1, 1, [0, 0, 60, 100], 0.8)]
    out = _check(_gt(anns, 1), _res(dets))
    assert out["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("b_first", [False, True])
@pytest.mark.parametrize("a_area", [None, 500.0])
def test_iou_tie_between_two_gts(b_first, a_area):
    """Det 1 sits halfway between gts A and B (IoU 0.905 with each); det 2 equals A. COCO
    gives the tie to the later gt in file order, unless only one of them is non-ignored in
    the area range (A's ``area`` field 500 makes it small: ignored in medium/large). Whether
    det 2 then finds A free decides its TP/FP at the high thresholds."""
    a = (1, 1, [0, 0, 100, 100], a_area, 0)
    b = (1, 1, [10, 0, 100, 100], None, 0)
    anns = [b, a] if b_first else [a, b]
    dets = [(1, 1, [5, 0, 100, 100], 0.9), (1, 1, [0, 0, 100, 100], 0.8)]
    _check(_gt(anns, 1), _res(dets))


@pytest.mark.parametrize("side", [32, 96])
def test_areas_exactly_at_the_range_boundaries(side):
    """Gt ``area`` fields and unmatched detection box areas at exactly 32^2 / 96^2 (inclusive
    in both neighbouring ranges), and a hair either side."""
    s = float(side)
    anns, dets = [], []
    for k, area in enumerate([s * s, s * s - 1e-6, s * s + 1e-6]):
        anns.append((k + 1, 1, [0, 0, s, s], area, 0))
        dets.append((k + 1, 1, [0, 0, s, s], 0.9 - 0.1 * k))  # matches its gt
        # Unmatched detections whose box area sits at / around the boundary: FP or ignored
        # depending on the range's inclusive bounds.
        w = [s, s - 1e-3, s + 1e-3][k]
        dets.append((k + 1, 1, [500, 500, w, s], 0.85 - 0.1 * k))
    out = _check(_gt(anns, 3, 1), _res(dets))
    # Both neighbouring ranges hold a gt at the boundary, so both are defined.
    lower, upper = ("APs", "APm") if side == 32 else ("APm", "APl")
    assert out[lower] != -1 and out[upper] != -1


def test_score_ties_at_the_max_dets_cut():
    """Twelve detections of one image with the same score: which one the maxDets=1 and 10 cuts
    keep is the input order (stable sort). Also ties across images (ordered by image id)."""
    anns = [(1, 1, [20 * k, 0, 15, 15], None, 0) for k in range(12)]
    anns += [(2, 1, [0, 0, 15, 15], None, 0), (3, 1, [0, 0, 15, 15], None, 0)]
    # image 1: misses first, then hits, all scored 0.5; the cut decides recall at 1 and 10.
    dets = [(1, 1, [20 * k, 100, 15, 15], 0.5) for k in range(3)]
    dets += [(1, 1, [20 * k, 0, 15, 15], 0.5) for k in range(11)]
    dets += [(3, 1, [0, 0, 15, 15], 0.5), (2, 1, [0, 40, 15, 15], 0.5)]
    out = _check(_gt(anns, 3, 1), _res(dets))
    assert out["AR1"] == pytest.approx(1 / 14)  # image 1's first det misses; image 3 hits


@pytest.mark.parametrize("seed", range(12))
def test_random_grid_data_with_many_exact_boundaries(seed):
    """Integer boxes on a coarse grid (IoUs are exact ratios that hit the thresholds often),
    gt areas snapped to 32^2 / 96^2, crowds, duplicate gts, scores with ties, >100 dets."""
    rng = np.random.default_rng(seed)
    n_img = 6
    anns = []
    for img in range(1, n_img + 1):
        for _ in range(rng.integers(0, 12)):
            w, h = 10 * rng.integers(1, 13, 2)
            x, y = 10 * rng.integers(0, 30, 2)
            area = rng.choice([None, 32.0**2, 96.0**2, 32.0**2 + 1, 96.0**2 - 1])
            anns.append((img, int(rng.integers(1, 3)), [x, y, w, h], area, rng.random() < 0.1))
            if rng.random() < 0.1:
                anns.append(anns[-1])  # duplicate gt: IoU ties between gts
    dets = []
    for img, cat, (x, y, w, h), _, _ in anns:
        for _ in range(rng.integers(0, 3)):
            # Shrink one side to k/20 of it: IoU = k/20 exactly (k = 9..20), or shift by a
            # grid step for a rational IoU.
            k = rng.integers(9, 21)
            if rng.random() < 0.5:
                box = [x, y, w * k / 20, h]
            else:
                box = [x + 5 * rng.integers(-2, 3), y + 5 * rng.integers(-2, 3), w, h]
            c = cat if rng.random() < 0.9 else 3 - cat
            dets.append((img, c, box, rng.integers(1, 6) / 5))
    for _ in range(110 if seed % 3 == 0 else 5):  # over maxDets=100 in image 1
        w, h = 10 * rng.integers(1, 10, 2)
        dets.append((1, 1, [10 * rng.integers(0, 30), 10 * rng.integers(0, 30), w, h],
                     rng.integers(1, 6) / 5))  # fmt: skip
    _check(_gt(anns, n_img), _res(dets))
