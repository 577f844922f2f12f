"""VOC AP: hand-computed curves for both methods, difficult handling, and pycocotools AP50
(the oracle) in the setup where VOC matching with 101-point interpolation equals it."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from cvcraft.errors import ConfigError
from cvcraft.metrics.coco import box_iou_coco
from cvcraft.metrics.voc import VOCEvaluator, interpolated_ap, match_voc, voc_ap


def test_voc_ap_hand_computed():
    # 4 positives; detections TP FP TP TP FP.
    tp = np.cumsum([1, 0, 1, 1, 0])
    fp = np.cumsum([0, 1, 0, 0, 1])
    rec, prec = tp / 4, tp / (tp + fp)
    # envelope: 1 up to recall .25, then .75 up to .75; recall 1 never reached
    assert voc_ap(rec, prec) == pytest.approx(0.25 * 1 + 0.5 * 0.75)
    # r = 0, .1, .2 -> 1; r = .3 ... .7 -> .75; r = .8, .9, 1 -> 0
    assert voc_ap(rec, prec, use_07=True) == pytest.approx((3 * 1 + 5 * 0.75) / 11)
    assert interpolated_ap(rec, prec, 101) == pytest.approx((26 * 1 + 50 * 0.75) / 101)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0 and voc_ap(np.zeros(0), np.zeros(0), True) == 0.0


def test_evaluator_difficult_and_duplicates():
    ev = VOCEvaluator(num_classes=2, class_names=["a", "b"])
    gt1 = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    dets1 = np.array([[0, 0, 10, 10], [0, 0, 10, 9.5], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    # .9 hits A (TP), .8 hits A again (FP), .7 hits difficult B (ignored), .6 hits nothing (FP)
    ev.update(dets1, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], gt1, [0, 0], [False, True])
    ev.update(np.array([[5, 5, 15, 15]], float), [0.5], [0], np.array([[5, 5, 15, 15]], float), [0])
    out = ev.compute()
    # kept: .9 TP, .8 FP, .6 FP, .5 TP; 2 positives -> rec .5 .5 .5 1, prec 1 .5 .33 .5
    assert out["AP"][0] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert np.isnan(out["AP"][1]) and out["mAP"] == pytest.approx(0.75)
    assert out["per_class"][0]["num_gt"] == 2
    ev07 = VOCEvaluator(2, method="11point")
    ev07.update(dets1, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], gt1, [0, 0], [False, True])
    ev07.update(
        np.array([[5, 5, 15, 15]], float), [0.5], [0], np.array([[5, 5, 15, 15]], float), [0]
    )
    assert ev07.compute()["AP"][0] == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    with pytest.raises(
        ConfigError, match=r"method='trapezoid'; use one of \('area', '11point', '101point'\)"
    ):
        VOCEvaluator(2, method="trapezoid")


def test_match_takes_best_gt_even_if_taken():
    """VOC rule: a detection whose best gt is taken is a FP, not offered another gt."""
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 12]], float)
    det = np.array([[0, 0, 10, 10], [0, 0, 10, 10.2]], float)
    tp, fp = match_voc(det, [0.9, 0.8], [1, 1], gt, [1, 1])
    assert tp.tolist() == [True, False] and fp.tolist() == [False, True]


def _pycoco_ap50(gt, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def test_101point_equals_pycocotools_ap50(shared_data):
    """Equal by definition when: no crowd gts, area range "all", <= 100 detections per image
    and class, and no detection with IoU >= .5 to two gts of its class (then COCO's "best
    free gt" and VOC's "best gt" coincide). Detections breaking the last rule are dropped."""
    pytest.importorskip("pycocotools")
    path = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    gt = json.loads(path.read_text())
    images = gt["images"][:64]
    keep = {im["id"] for im in images}
    anns = [dict(a, iscrowd=0, segmentation=[]) for a in gt["annotations"] if a["image_id"] in keep]
    gt = {"images": images, "annotations": anns, "categories": gt["categories"]}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    rng = np.random.default_rng(0)
    ev = VOCEvaluator(len(cat_ids), method="101point")
    results = []
    for im in images:
        g = [a for a in anns if a["image_id"] == im["id"]]
        gxywh = np.array([a["bbox"] for a in g], float).reshape(-1, 4)
        glab = np.array([cat_ids.index(a["category_id"]) for a in g], int)
        src = np.repeat(np.arange(len(g)), 1 + (rng.random(len(g)) < 0.4))
        src = src[rng.random(len(src)) > 0.15]
        d = gxywh[src] + rng.normal(0, 0.12, (len(src), 4)) * gxywh[src][:, [2, 3, 2, 3]]
        d[:, 2:] = np.maximum(d[:, 2:], 1.0)
        dlab = glab[src].copy()
        flip = rng.random(len(src)) < 0.1
        dlab[flip] = rng.integers(0, len(cat_ids), flip.sum())
        n_rand = 3
        d = np.concatenate(
            [d, np.c_[rng.uniform(0, 400, (n_rand, 2)), rng.uniform(5, 200, (n_rand, 2))]]
        )
        dlab = np.concatenate([dlab, rng.integers(0, len(cat_ids), n_rand)])
        if len(g):
            iou = box_iou_coco(d, gxywh, np.zeros(len(g), bool))
            ambiguous = ((iou >= 0.5) & (dlab[:, None] == glab[None, :])).sum(1) > 1
            d, dlab = d[~ambiguous], dlab[~ambiguous]
        score = rng.random(len(d))
        xyxy = np.c_[d[:, :2], d[:, :2] + d[:, 2:]]
        ev.update(xyxy, score, dlab, np.c_[gxywh[:, :2], gxywh[:, :2] + gxywh[:, 2:]], glab)
        results += [
            {
                "image_id": im["id"],
                "category_id": cat_ids[l],
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "score": float(s),
            }
            for b, l, s in zip(xyxy, dlab, score)
        ]
    ours = ev.compute()
    ref = _pycoco_ap50(gt, results)
    p50 = ref.eval["precision"][0, :, :, 0, -1]  # (R, K)
    ref_ap = np.where((p50 > -1).all(0), p50.mean(0), np.nan)
    np.testing.assert_allclose(ours["AP"], ref_ap, atol=1e-9, equal_nan=True)
    assert ours["mAP"] == pytest.approx(ref.stats[1], abs=1e-4)
