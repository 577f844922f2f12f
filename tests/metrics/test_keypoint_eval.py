"""OKS and COCO keypoint AP against pycocotools ``COCOeval(iouType="keypoints")`` on the
same predictions: random scenes (crowds, unlabelled people, every area range, > 20 detections
per image, score ties), OKS exactly on the thresholds, and a JSON file round trip."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from cvcraft.errors import DataError
from cvcraft.metrics.keypoints import (
    COCO_SIGMAS,
    KPT_SUMMARY_KEYS,
    COCOKeypointEvaluator,
    oks,
    pck_hits,
)

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _pycoco(gt: dict, results: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results))
        e = COCOeval(coco, dt, "keypoints")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _assert_equal(gt: dict, results: list[dict]) -> dict:
    ours = COCOKeypointEvaluator(gt)
    ours.update(results)
    got = ours.compute()
    ref = _pycoco(gt, results).stats
    for key, want in zip(KPT_SUMMARY_KEYS, ref):
        assert got[key] == pytest.approx(want, abs=1e-10), key
    assert got["map"] == got["AP"] and got["map50"] == got["AP50"]
    return got


def _person(rng, x, y, scale, labelled=True):
    kp = np.zeros((17, 3))
    kp[:, 0] = x + rng.uniform(0, scale, 17)
    kp[:, 1] = y + rng.uniform(0, 2 * scale, 17)
    kp[:, 2] = rng.choice([0, 1, 2], 17, p=[0.2, 0.3, 0.5]) if labelled else 0
    kp[kp[:, 2] == 0, :2] = 0  # COCO stores unlabelled points as 0, 0, 0
    return kp


def _scene(seed, n_images=6):
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for img in range(1, n_images + 1):
        images.append({"id": img, "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 6))):
            scale = float(rng.choice([10, 40, 120]))  # small, medium, large people
            x, y = rng.uniform(0, 400, 2)
            labelled = rng.random() > 0.1
            kp = _person(rng, x, y, scale, labelled)
            w, h = scale * 1.2, scale * 2.4
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": 1,
                         "keypoints": kp.ravel().tolist(),
                         "num_keypoints": int((kp[:, 2] > 0).sum()),
                         "bbox": [x - 5, y - 5, w, h], "area": float(w * h * rng.uniform(0.5, 1)),
                         "iscrowd": int(rng.random() < 0.08)})  # fmt: skip
            for _ in range(int(rng.integers(0, 3))):  # detections near this person
                det = _person(rng, x, y, scale)
                det[:, :2] = np.where(kp[:, 2:] > 0, kp[:, :2], det[:, :2])
                det[:, :2] += rng.normal(0, rng.choice([0.02, 0.1, 0.3]) * scale, (17, 2))
                det[:, 2] = 1
                results.append(
                    {
                        "image_id": img,
                        "category_id": 1,
                        "keypoints": det.ravel().tolist(),
                        "score": float(np.round(rng.random(), 1)),
                    }
                )  # ties
        for _ in range(int(rng.integers(0, 4))):  # false positives
            det = _person(rng, *rng.uniform(0, 500, 2), 30)
            det[:, 2] = 1
            results.append({"image_id": img, "category_id": 1, "keypoints": det.ravel().tolist(),
                            "score": float(rng.random())})  # fmt: skip
    cats = [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)]}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, results


@pytest.mark.parametrize("seed", range(4))
def test_keypoint_ap_equals_pycocotools_on_random_scenes(seed):
    gt, results = _scene(seed)
    got = _assert_equal(gt, results)
    assert got["AP"] > 0  # the scenes do contain matches


def test_more_than_20_detections_per_image():
    gt, _ = _scene(7, n_images=1)
    rng = np.random.default_rng(1)
    kp = np.asarray(gt["annotations"][0]["keypoints"]).reshape(17, 3) if gt["annotations"] else None
    if kp is None:
        pytest.skip("scene without people")
    results = []
    for _ in range(30):
        det = kp.copy()
        det[:, :2] += rng.normal(0, 3, (17, 2))
        results.append({"image_id": 1, "category_id": 1, "keypoints": det.ravel().tolist(),
                        "score": float(rng.random())})  # fmt: skip
    _assert_equal(gt, results)


def test_oks_exactly_on_each_threshold():
    """n of m labelled keypoints exact and the rest far away (exp underflows to 0) gives
    OKS = n / m exactly: 0.5, 0.6, 0.7, 0.75, 0.8, 0.9 sit on a threshold (>= matches)."""
    images, anns, results = [], [], []
    for img, (n, m) in enumerate([(2, 4), (3, 5), (7, 10), (3, 4), (4, 5), (9, 10), (1, 2)], 1):
        images.append({"id": img})
        kp = np.zeros((17, 3))
        kp[:m, 0] = np.arange(m) * 10 + 100
        kp[:m, 1] = 200
        kp[:m, 2] = 2
        anns.append({"id": img, "image_id": img, "category_id": 1, "keypoints": kp.ravel().tolist(),
                     "num_keypoints": m, "bbox": [90, 190, 100, 100], "area": 5000.0,
                     "iscrowd": 0})  # fmt: skip
        det = kp.copy()
        det[n:m, :2] += 1e6
        det[:, 2] = 1
        results.append({"image_id": img, "category_id": 1, "keypoints": det.ravel().tolist(),
                        "score": 0.5 + img / 100})  # fmt: skip
        got = oks(det[None], kp[None], np.array([5000.0]))[0, 0]
        assert got == n / m
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    got = _assert_equal(gt, results)
    assert 0 < got["AP"] < 1


def test_oks_matches_a_loop_oracle_including_unlabelled_gts():
    rng = np.random.default_rng(3)
    gt = np.stack([_person(rng, 50, 50, 40), _person(rng, 80, 20, 40, labelled=False)])
    det = gt[[0, 0, 1]].copy()
    det[:, :, :2] = rng.uniform(0, 200, (3, 17, 2))
    area, box = np.array([900.0, 1600.0]), np.array([[40, 40, 30, 60], [70, 10, 40, 40.0]])
    got = oks(det, gt, area, box)
    var = (2 * COCO_SIGMAS) ** 2
    for i in range(3):
        for j in range(2):
            v = gt[j, :, 2] > 0
            if v.any():
                e = (det[i, :, 0] - gt[j, :, 0]) ** 2 + (det[i, :, 1] - gt[j, :, 1]) ** 2
                e = (e / var / (area[j] + np.spacing(1)) / 2)[v]
            else:
                x0, y0, w, h = box[j]
                dx = np.maximum(0, x0 - w - det[i, :, 0]) + np.maximum(0, det[i, :, 0] - x0 - 2 * w)
                dy = np.maximum(0, y0 - h - det[i, :, 1]) + np.maximum(0, det[i, :, 1] - y0 - 2 * h)
                e = (dx**2 + dy**2) / var / (area[j] + np.spacing(1)) / 2
            assert got[i, j] == pytest.approx(np.exp(-e).mean(), rel=1e-12)


def test_json_files_per_image_dicts_and_merge(tmp_path):
    gt, results = _scene(11)
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(gt))
    whole = COCOKeypointEvaluator(path)
    whole.update(results)
    a, b = COCOKeypointEvaluator(path), COCOKeypointEvaluator(path)
    a.update(results[::2])
    b.update([{"image_id": r["image_id"], "keypoints": np.reshape(r["keypoints"], (1, 17, 3)),
               "scores": [r["score"]]} for r in results[1::2]])  # fmt: skip
    a.merge(b.state_dict())
    want, got = whole.compute(), a.compute()
    for k in KPT_SUMMARY_KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_keypoint_count_mismatch_names_the_annotation():
    gt, _ = _scene(0)
    bad = copy.deepcopy(gt)
    bad["annotations"][1]["keypoints"] = bad["annotations"][1]["keypoints"][:-3]
    with pytest.raises(
        DataError, match="annotation 1 .* has 16 keypoints where the skeleton has 17"
    ):
        COCOKeypointEvaluator(bad)
    ev = COCOKeypointEvaluator(gt)
    with pytest.raises(DataError, match="not 3 x 17"):
        ev.update([{"image_id": 1, "category_id": 1, "keypoints": [0.0] * 30, "score": 1.0}])


def test_pck_matches_a_loop_oracle_at_the_boundary():
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(0, 100, (4, 17, 2)), rng.integers(0, 3, (4, 17, 1))], -1)
    norm = np.array([50.0, 20.0, 0.0, 35.0])
    pred = gt[..., :2] + rng.normal(0, 6, (4, 17, 2))
    pred[0, 0] = gt[0, 0, :2] + [6.0, 8.0]  # exactly 0.2 * 50 = 10 away: counts as correct
    gt[0, 0, 2] = 2
    hits, total = pck_hits(pred, gt, norm, 0.2)
    want_hits = want_total = 0
    for n in range(4):
        for k in range(17):
            if gt[n, k, 2] > 0 and norm[n] > 0:
                want_total += 1
                want_hits += np.hypot(*(pred[n, k] - gt[n, k, :2])) <= 0.2 * norm[n]
    assert (hits, total) == (want_hits, want_total) and hits < total
    with pytest.raises(DataError, match="disagree"):
        pck_hits(pred, gt, norm[:2])


def _grid_person(x0: float, y0: float, w: int, h: int) -> np.ndarray:
    """17 labelled keypoints on an integer grid spanning exactly w x h from (x0, y0)."""
    kp = np.zeros((17, 3))
    kp[:, 0] = x0 + np.linspace(0, w, 17).round()
    kp[:, 1] = y0 + np.r_[0, np.linspace(0, h, 16).round()]
    kp[:, 2] = 2
    return kp


@pytest.mark.parametrize("seed", range(4))
def test_areas_exactly_on_the_range_boundaries(seed):
    """Gt ``area`` exactly 32^2 and 96^2 (in both of the neighbouring ranges: pycocotools'
    bounds are inclusive), and false positives whose keypoint extent is exactly 32 x 32 or
    96 x 96 (ignored outside a range only when strictly outside) or one pixel either side,
    a random subset per image with scores among the true positives', so a detection moving
    across a bound changes APm/APl."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    areas = [32.0**2, 96.0**2, 32.0**2 - 1, 96.0**2 + 1, 5000.0, 20000.0]
    for img in range(1, 5):
        images.append({"id": img})
        for j, area in enumerate(rng.permutation(areas)):
            kp = _grid_person(40 + 150 * (j % 3), 40 + 150 * (j // 3), 30, 60)
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": 1,
                         "keypoints": kp.ravel().tolist(), "num_keypoints": 17,
                         "bbox": [kp[:, 0].min(), kp[:, 1].min(), 30, 60], "area": area,
                         "iscrowd": 0})  # fmt: skip
            if rng.random() < 0.7:  # found: exact (OKS 1) or half the points (OKS 0.5)
                det = kp.copy()
                if rng.random() < 0.4:
                    det[::2, :2] += 1e6
                results.append({"image_id": img, "category_id": 1,
                                "keypoints": det.ravel().tolist(),
                                "score": float(rng.uniform(0.1, 0.9))})  # fmt: skip
        for side in (32, 96, 31, 97, 33, 95):  # false positives far from every person
            if rng.random() < 0.5:  # a random subset: no two boundary effects cancel
                continue
            det = _grid_person(1000 + side, 1000, side, side)
            assert np.ptp(det[:, 0]) == side and np.ptp(det[:, 1]) == side
            results.append({"image_id": img, "category_id": 1, "keypoints": det.ravel().tolist(),
                            "score": float(rng.uniform(0.1, 0.9))})  # fmt: skip
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    got = _assert_equal(gt, results)
    assert 0 < got["APm"] < 1 and 0 < got["APl"] < 1
