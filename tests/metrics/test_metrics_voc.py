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


def test_101point_equals_pycocotools_ap50(shared_data, require_shared):
    """Equal by definition when: no crowd gts, area range "all", <= 100 detections per image
    and class, and no detection with IoU >= .5 to two gts of its class (then COCO's "best
    free gt" and VOC's "best gt" coincide). Detections breaking the last rule are dropped."""
    pytest.importorskip("pycocotools")
    path = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    require_shared(path)
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


def _devkit_reference(images, num_classes, use_07):
    """The VOC devkit's per-class loop, written out: detections of a class over all images
    by descending score; each takes its image's highest-IoU gt of that class (the first on
    ties); IoU >= 0.5 (cvcraft's documented ``>=``) -> a difficult gt makes it neither TP nor
    FP, an untaken gt a TP (now taken), a taken gt a FP; below 0.5 or no gt -> FP. AP by the
    devkit's envelope loop (area) or its 11 recall points."""
    aps = []
    for c in range(num_classes):
        dets, npos, taken = [], 0, {}
        for i, (pb, ps, pl, gb, gl, gd) in enumerate(images):
            npos += sum(1 for l, d in zip(gl, gd) if l == c and not d)
            taken[i] = [False] * len(gb)
            dets += [(s, i, b) for b, s, l in zip(pb, ps, pl) if l == c]
        dets.sort(key=lambda t: -t[0])  # stable: ties keep image then input order
        tp, fp = [], []
        for _, i, b in dets:
            _, _, _, gb, gl, gd = images[i]
            best, jbest = -1.0, -1
            for j, g in enumerate(gb):
                if gl[j] != c:
                    continue
                iw = min(b[2], g[2]) - max(b[0], g[0])
                ih = min(b[3], g[3]) - max(b[1], g[1])
                inter = max(iw, 0) * max(ih, 0)
                union = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                if inter / union > best:
                    best, jbest = inter / union, j
            if jbest >= 0 and best >= 0.5:
                if gd[jbest]:
                    continue
                tp.append(0 if taken[i][jbest] else 1)
                fp.append(1 - tp[-1])
                taken[i][jbest] = True
            else:
                tp.append(0)
                fp.append(1)
        if npos == 0:
            aps.append(float("nan"))
            continue
        rec, prec, ctp, cfp = [], [], 0, 0
        for t, f in zip(tp, fp):
            ctp, cfp = ctp + t, cfp + f
            rec.append(ctp / npos)
            prec.append(ctp / (ctp + cfp))
        if use_07:
            total = 0.0
            for r in [k / 10 for k in range(11)]:
                total += max([p for p, q in zip(prec, rec) if q >= r], default=0.0) / 11
            aps.append(total)
            continue
        mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
        for k in range(len(mpre) - 2, -1, -1):
            mpre[k] = max(mpre[k], mpre[k + 1])
        aps.append(sum((mrec[k + 1] - mrec[k]) * mpre[k + 1] for k in range(len(mrec) - 1)))
    return np.array(aps)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["area", "11point"])
def test_iou_exactly_half_and_difficult_against_the_devkit_loop(seed, method):
    """Boxes on a 5-px grid with one side moved by a multiple of 5, so IoUs land exactly on
    0.5 (10x10 vs 10x5 or 10x20) and just off it; a third of the gts are difficult, some
    detections have equal IoU with two gts (first wins), duplicates make taken-gt FPs."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(5):
        n = int(rng.integers(1, 6))
        xy = rng.integers(0, 12, (n, 2)) * 25.0
        gb = np.c_[xy, xy + 10 + 5 * rng.integers(0, 3, (n, 2))]
        gl = rng.integers(0, 2, n)
        gd = rng.random(n) < 0.33
        src = rng.integers(0, n, int(rng.integers(1, 9)))
        pb = gb[src].copy()
        side = rng.integers(0, 4, len(src))  # grow or shrink one side by 5 px steps
        pb[np.arange(len(src)), side] += rng.choice([-5.0, 0.0, 5.0, 10.0, 15.0], len(src))
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 5)
        pl = np.where(rng.random(len(src)) < 0.85, gl[src], 1 - gl[src])
        ps = rng.permutation(20)[: len(src)] / 20 + 0.01  # distinct scores
        images.append((pb, ps, pl, gb, gl, gd))
    # a hand case in every scene: two gts the detection overlaps by exactly 0.5 each, the
    # first difficult (so the detection is ignored, not matched to the second)
    images.append((np.array([[0.0, 0, 10, 10]]), np.array([0.005]), np.array([0]),
                   np.array([[0.0, 0, 10, 5], [0, 5, 10, 10]]), np.array([0, 0]),
                   np.array([True, False])))  # fmt: skip
    ious = []
    ev = VOCEvaluator(2, method=method)
    for pb, ps, pl, gb, gl, gd in images:
        ev.update(pb, ps, pl, gb, gl, gd)
        ious.append(box_iou_coco(*(np.c_[b[:, :2], b[:, 2:] - b[:, :2]] for b in (pb, gb)),
                                 np.zeros(len(gb), bool)).ravel())  # fmt: skip
    assert (np.concatenate(ious) == 0.5).sum() >= 2  # the boundary does occur
    want = _devkit_reference(images, 2, use_07=method == "11point")
    np.testing.assert_allclose(ev.compute()["AP"], want, atol=1e-12, equal_nan=True)
