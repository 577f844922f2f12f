"""COCOEvaluator vs pycocotools COCOeval (the oracle) on coco128 with varied predictions,
plus a hand-made case with a known AP and the error paths."""

import contextlib
import copy
import functools
import io
import json

import numpy as np
import pytest
import torch

from cvcraft.errors import DataError
from cvcraft.metrics.coco import SUMMARY_KEYS, COCOEvaluator, evaluate_coco_files

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _pycoco(gt: dict, results: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _ours(gt: dict, results: list[dict]) -> dict:
    ev = COCOEvaluator(gt)
    ev.update(results)
    return ev.compute()


def _assert_equal(gt: dict, results: list[dict]) -> dict:
    ref = _pycoco(gt, results)
    out = _ours(gt, results)
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["precision"], ref.eval["precision"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(out["recall"], ref.eval["recall"], atol=1e-12, rtol=0)
    return out


@functools.lru_cache(maxsize=1)
def _load_coco128(path: str) -> dict:
    with open(path) as f:
        gt = json.load(f)
    for a in gt["annotations"]:
        a.pop("segmentation", None)  # not needed for bbox evaluation; keeps deep copies cheap
    # Make crowd regions matter: mark every 15th annotation a crowd (the file has 10).
    for a in gt["annotations"][::15]:
        a["iscrowd"] = 1
    return gt


@pytest.fixture
def coco128(shared_data, require_shared) -> dict:
    path = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    require_shared(path)
    return copy.deepcopy(_load_coco128(str(path)))


def _jittered(
    gt: dict, seed: int, *, drop=0.2, dup=0.3, wrong=0.1, sigma=0.1, n_random=0, empty_frac=0.0
):
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    img_ids = [im["id"] for im in gt["images"]]
    empty = set(rng.choice(img_ids, int(empty_frac * len(img_ids)), replace=False).tolist())
    out = []
    for a in gt["annotations"]:
        if a["image_id"] in empty or rng.random() < drop:
            continue
        for _ in range(1 + int(rng.random() < dup)):
            x, y, w, h = a["bbox"]
            j = rng.normal(0, sigma, 4) * [w, h, w, h]
            cat = a["category_id"] if rng.random() >= wrong else int(rng.choice(cat_ids))
            box = [x + j[0], y + j[1], max(w + j[2], 0.5), max(h + j[3], 0.5)]
            # Scores on a coarse grid so ties occur and tie-breaking is exercised.
            out.append(
                {
                    "image_id": a["image_id"],
                    "category_id": cat,
                    "bbox": box,
                    "score": round(rng.random(), 2),
                }
            )
    for _ in range(n_random):
        w, h = rng.uniform(2, 300, 2)
        img = int(rng.choice([i for i in img_ids if i not in empty]))
        out.append(
            {
                "image_id": img,
                "category_id": int(rng.choice(cat_ids)),
                "bbox": [*rng.uniform(0, 500, 2), w, h],
                "score": float(rng.random()),
            }
        )
    return out


@pytest.mark.parametrize(
    "kw",
    [
        dict(seed=0),  # jitter + drops + duplicates + wrong categories
        dict(seed=1, sigma=0.25, n_random=400, empty_frac=0.2),  # + random boxes, empty images
    ],
)
def test_matches_pycocotools_on_coco128(coco128, kw):
    _assert_equal(coco128, _jittered(coco128, **kw))


def test_matches_pycocotools_duplicates_and_many_detections_per_image(coco128):
    """Near-duplicates of every gt, and over 100 detections in one image (maxDets cut)."""
    rng = np.random.default_rng(3)
    res = _jittered(coco128, seed=2, drop=0.0, dup=0.9, wrong=0.0, sigma=0.03)
    img = coco128["images"][0]["id"]
    cat = coco128["categories"][0]["id"]
    for _ in range(150):
        res.append(
            {
                "image_id": img,
                "category_id": cat,
                "bbox": [*rng.uniform(0, 300, 2), *rng.uniform(5, 200, 2)],
                "score": float(rng.random()),
            }
        )
    _assert_equal(coco128, res)


def _subset(gt: dict, n: int) -> dict:
    keep = {im["id"] for im in gt["images"][:n]}
    anns = [a for a in gt["annotations"] if a["image_id"] in keep]
    return {"images": gt["images"][:n], "annotations": anns, "categories": gt["categories"]}


def test_tensor_updates_in_batches_and_merge_equal_result_dicts(coco128):
    coco128 = _subset(coco128, 40)
    res = _jittered(coco128, seed=4, n_random=40)
    cat_ids = sorted(c["id"] for c in coco128["categories"])
    by_img: dict[int, list[dict]] = {}
    for r in res:
        by_img.setdefault(r["image_id"], []).append(r)
    per_image = []
    for img, rs in by_img.items():
        xywh = torch.tensor([r["bbox"] for r in rs], dtype=torch.float64)
        per_image.append(
            {
                "image_id": img,
                "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                "scores": torch.tensor([r["score"] for r in rs]),
                "labels": torch.tensor([cat_ids.index(r["category_id"]) for r in rs]),
            }
        )
    # The result dicts pycocotools sees, in the same order, with the same xywh arithmetic.
    flat = []
    for p in per_image:
        b = p["boxes"].numpy()
        for bb, s, lab in zip(b, p["scores"].numpy(), p["labels"].numpy()):
            flat.append(
                {
                    "image_id": p["image_id"],
                    "category_id": cat_ids[lab],
                    "bbox": [bb[0], bb[1], bb[2] - bb[0], bb[3] - bb[1]],
                    "score": float(s),
                }
            )
    ref = _pycoco(coco128, flat)
    a, b = COCOEvaluator(coco128), COCOEvaluator(coco128)
    half = len(per_image) // 2
    for i in range(0, half, 7):  # several batches
        a.update(per_image[i : min(i + 7, half)])
    b.update(per_image[half:])
    a.merge(b.state_dict())
    out = a.compute()
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-4, rtol=0)
    assert len(out["per_class"]) == 80 and out["per_class"][0]["name"] == "person"
    ref_cls = ref.eval["precision"][:, :, :, 0, -1]
    for k, pc in enumerate(out["per_class"]):
        v = ref_cls[:, :, k]
        assert pc["AP"] == pytest.approx(v[v > -1].mean() if (v > -1).any() else -1.0, abs=1e-9)


def test_files_and_unknown_category(tmp_path, coco128):
    coco128 = _subset(coco128, 24)
    res = _jittered(coco128, seed=5)
    extra = dict(res[0], category_id=9999)  # not in the gt: pycocotools ignores it
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(coco128))
    res_path.write_text(json.dumps(res + [extra]))
    out = evaluate_coco_files(gt_path, res_path)
    ref = _pycoco(coco128, res + [extra])
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-4, rtol=0)
    assert out["unknown_category_detections"] == 1


def _tiny_gt() -> dict:
    return {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 100, 100],
                "area": 10000,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "bbox": [200, 200, 100, 100],
                "area": 10000,
                "iscrowd": 0,
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 2,
                "bbox": [0, 0, 20, 20],
                "area": 400,
                "iscrowd": 0,
            },
        ],
    }


def test_hand_made_known_ap():
    """Class a: dets (score) 0.9 exact hit, 0.8 miss, 0.7 exact hit -> precision 1, 1/2, 2/3;
    envelope 1 up to recall .5, 2/3 up to 1 -> AP = (51*1 + 50*2/3)/101 at every threshold.
    Class b: one exact hit -> AP 1. Class b is small, a is large."""
    res = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [400, 400, 100, 100], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100], "score": 0.7},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.5},
    ]
    out = _assert_equal(_tiny_gt(), res)
    ap_a = (51 * 1 + 50 * 2 / 3) / 101
    assert out["AP"] == pytest.approx((ap_a + 1) / 2, abs=1e-12)
    assert out["APs"] == pytest.approx(1.0) and out["APl"] == pytest.approx(ap_a, abs=1e-12)
    assert out["APm"] == -1.0  # no medium gt: undefined
    assert out["AR1"] == pytest.approx((0.5 + 1) / 2)  # one det per image: a finds 1 of 2
    assert out["AR100"] == pytest.approx(1.0)
    assert [c["AP"] for c in out["per_class"]] == pytest.approx([ap_a, 1.0])


def test_crowd_absorbs_detections_and_category_without_gt_is_skipped():
    gt = _tiny_gt()
    gt["categories"].append({"id": 3, "name": "c"})  # no gt -> skipped (-1), not 0
    gt["annotations"].append(
        {
            "id": 4,
            "image_id": 2,
            "category_id": 1,
            "bbox": [100, 100, 200, 200],
            "area": 40000,
            "iscrowd": 1,
        }
    )
    res = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100], "score": 0.8},
        # inside the crowd region: ignored, neither TP nor FP, both of them
        {"image_id": 2, "category_id": 1, "bbox": [110, 110, 50, 50], "score": 0.95},
        {"image_id": 2, "category_id": 1, "bbox": [150, 150, 60, 60], "score": 0.85},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.5},
        {"image_id": 2, "category_id": 3, "bbox": [0, 0, 20, 20], "score": 0.5},
    ]
    out = _assert_equal(gt, res)
    assert out["AP"] == pytest.approx(1.0) and out["per_class"][2]["AP"] == -1.0


def test_empty_predictions_give_zero():
    out = COCOEvaluator(_tiny_gt()).compute()
    assert out["AP"] == 0.0 and out["AR100"] == 0.0


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "image_id 7"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, r"results\[1\].*bbox"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, r"results\[1\].*'score'"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}, "negative"),
    ],
)
def test_bad_results_name_the_entry(tmp_path, bad, match):
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(_tiny_gt()))
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
    res_path.write_text(json.dumps([good, bad]))
    with pytest.raises(DataError, match=match) as e:
        evaluate_coco_files(gt_path, res_path)
    assert "res.json" in str(e.value) or "image_id 7" in str(e.value)


def test_bad_ground_truth_names_the_entry():
    gt = _tiny_gt()
    del gt["annotations"][2]["area"]
    with pytest.raises(DataError, match=r"annotations\[2\].*'area'"):
        COCOEvaluator(gt)
    gt = _tiny_gt()
    gt["annotations"][1]["image_id"] = 99
    with pytest.raises(DataError, match=r"annotations\[1\].*image_id"):
        COCOEvaluator(gt)
