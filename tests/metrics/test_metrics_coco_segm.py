"""COCOEvaluator(iou_type="segm") vs pycocotools COCOeval(iouType="segm") (the oracle) on
coco128 with perturbed masks (missed, duplicated, shifted, eroded, wrong class, random blobs,
crowds), exact hand-made boundary cases, and the error paths naming file and annotation id."""

import contextlib
import copy
import functools
import io
import json

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.coco import METRIC_NAMES, SUMMARY_KEYS, COCOEvaluator, evaluate_coco_files

pycocotools = pytest.importorskip("pycocotools")
import pycocotools.mask as pmask  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _pycoco(gt: dict, results: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _assert_equal(gt: dict, results: list[dict]) -> dict:
    ref = _pycoco(gt, results)
    ev = COCOEvaluator(gt, iou_type="segm")
    ev.update(results)
    out = ev.compute()
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["precision"], ref.eval["precision"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(out["recall"], ref.eval["recall"], atol=1e-12, rtol=0)
    return out


def _rle(mask: np.ndarray) -> dict:
    r = pmask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


@functools.lru_cache(maxsize=1)
def _load_coco128(path: str, n_images: int) -> tuple[dict, tuple]:
    with open(path) as f:
        gt = json.load(f)
    keep = {im["id"] for im in gt["images"][:n_images]}
    gt["images"] = gt["images"][:n_images]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    # Crowds matter: every 9th annotation becomes a crowd stored as uncompressed RLE (as COCO
    # stores crowds), every 13th a crowd that keeps its polygons.
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    masks = []
    for i, a in enumerate(gt["annotations"]):
        m = coco.annToMask(a).astype(bool)
        masks.append(m)
        if i % 9 == 0:
            h, w = sizes[a["image_id"]]
            flat = m.ravel(order="F")
            change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
            counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
            if flat[0]:
                counts = [0] + counts
            a["segmentation"] = {"size": [h, w], "counts": counts}
            a["iscrowd"] = 1
        elif i % 13 == 0:
            a["iscrowd"] = 1
    return gt, tuple(masks)


@pytest.fixture
def coco128(shared_data, require_shared):
    path = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    require_shared(path)
    gt, masks = _load_coco128(str(path), 48)
    return copy.deepcopy(gt), masks


def _subset(gt: dict, masks, n: int) -> tuple[dict, list]:
    keep = {im["id"] for im in gt["images"][:n]}
    pairs = [(a, m) for a, m in zip(gt["annotations"], masks) if a["image_id"] in keep]
    sub = dict(gt, images=gt["images"][:n], annotations=[a for a, _ in pairs])
    return sub, [m for _, m in pairs]


def _shift(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(m)
    h, w = m.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = m[ys, xs]
    return out


def _erode(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:] &= m[:-1]
    out[:-1] &= m[1:]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    return out


def _perturbed(gt: dict, masks, seed: int, *, drop=0.2, dup=0.3, wrong=0.1, shift=0.15,
               n_random=0) -> list[dict]:  # fmt: skip
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    out = []
    for a, m in zip(gt["annotations"], masks):
        if rng.random() < drop:
            continue
        x, y, w, h = a["bbox"]
        for _ in range(1 + int(rng.random() < dup)):
            dy, dx = np.round(rng.normal(0, shift, 2) * [h, w]).astype(int)
            pm = _shift(m, int(dy), int(dx))
            if rng.random() < 0.3:
                pm = _erode(pm)
            cat = a["category_id"] if rng.random() >= wrong else int(rng.choice(cat_ids))
            score = round(float(rng.random()), 2)  # coarse: ties exercise tie-breaking
            out.append(
                {"image_id": a["image_id"], "category_id": cat, "segmentation": _rle(pm),
                 "score": score}
            )  # fmt: skip
    img_ids = list(sizes)
    for _ in range(n_random):
        img = int(rng.choice(img_ids))
        h, w = sizes[img]
        m = np.zeros((h, w), bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + rng.integers(1, 150), x0 : x0 + rng.integers(1, 150)] = True
        if rng.random() < 0.1:
            m[:] = False  # an empty mask: area 0, IoU 0 with everything
        out.append(
            {"image_id": img, "category_id": int(rng.choice(cat_ids)), "segmentation": _rle(m),
             "score": float(rng.random())}
        )  # fmt: skip
    return out


@pytest.mark.parametrize(
    "kw",
    [
        dict(seed=0),  # shifts + erosion + drops + duplicates + wrong classes
        dict(seed=1, shift=0.3, drop=0.1, n_random=150),  # + random and empty masks
    ],
)
def test_matches_pycocotools_segm_on_coco128(coco128, kw):
    gt, masks = coco128
    _assert_equal(gt, _perturbed(gt, masks, **kw))


def test_per_image_masks_batches_and_merge_equal_result_dicts(coco128):
    gt, masks = _subset(*coco128, 20)
    res = _perturbed(gt, masks, seed=2, n_random=20)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    by_img: dict[int, list[dict]] = {}
    for r in res:
        by_img.setdefault(r["image_id"], []).append(r)
    per_image = [
        {
            "image_id": img,
            "masks": torch.from_numpy(np.stack([pmask.decode(r["segmentation"]) for r in rs])),
            "scores": torch.tensor([r["score"] for r in rs], dtype=torch.float64),
            "labels": torch.tensor([cat_ids.index(r["category_id"]) for r in rs]),
        }
        for img, rs in by_img.items()
    ]
    flat = [r for rs in by_img.values() for r in rs]  # the same order as per_image
    ref = _pycoco(gt, flat)
    a = COCOEvaluator(gt, iou_type="segm")
    b = COCOEvaluator(gt, iou_type="segm")
    half = len(per_image) // 2
    for i in range(0, half, 5):
        a.update(per_image[i : min(i + 5, half)])
    b.update(per_image[half:])
    a.merge(b.state_dict())
    out = a.compute()
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["precision"], ref.eval["precision"], atol=1e-9, rtol=0)


def test_files_and_cli(tmp_path, coco128, capsys):
    from cvcraft.cli import main

    gt, masks = _subset(*coco128, 16)
    res = _perturbed(gt, masks, seed=3)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(res))
    ref = _pycoco(gt, res)
    out = evaluate_coco_files(gt_path, res_path, iou_type="segm")
    np.testing.assert_allclose([out[k] for k in SUMMARY_KEYS], ref.stats, atol=1e-4, rtol=0)
    main(["eval", "segm", f"gt={gt_path}", f"pred={res_path}"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = [METRIC_NAMES[k] for k in SUMMARY_KEYS]  # map, map50, ... as metrics.json
    np.testing.assert_allclose([printed[k] for k in names], ref.stats, atol=1e-4)


# ------------------------------------------------------------------- exact boundary cases


def _square(h, w, y0, x0, s):
    m = np.zeros((h, w), bool)
    m[y0 : y0 + s, x0 : x0 + s] = True
    return m


def _tiny_gt() -> dict:
    """Image 1 (40x50): a 10x10 square gt (polygon) and a 20x20 crowd region (RLE);
    image 2 (8x8): one 4x4 square of class b."""
    crowd = _rle(_square(40, 50, 20, 20, 20))
    return {
        "images": [{"id": 1, "height": 40, "width": 50}, {"id": 2, "height": 8, "width": 8}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100.0,
             "bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 400.0,
             "bbox": [20, 20, 20, 20], "segmentation": crowd},
            {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 0, "area": 16.0,
             "bbox": [2, 2, 4, 4], "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]},
        ],
    }  # fmt: skip


def test_iou_exactly_at_thresholds_and_crowd():
    """Against the 10x10 gt: a detection with IoU exactly 0.5 (a TP at t = 0.5 only) and one
    with IoU exactly 0.75 (a TP up to t = 0.75); a detection inside the crowd region is
    ignored (IoU = inter / det area = 1), an empty mask is a plain false positive."""
    h, w = 40, 50
    gt = _tiny_gt()
    half = _square(h, w, 0, 0, 10)
    half[:, 5:10] = False  # 50 of the gt's 100 pixels, nothing outside: IoU 0.5
    m75 = _square(h, w, 0, 0, 10)
    m75[0:5, 0:5] = False  # 75 pixels inside: IoU 0.75
    assert half.sum() == 50 and m75.sum() == 75
    inside_crowd = _square(h, w, 22, 22, 10)
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": _rle(half), "score": 0.9},
        {"image_id": 1, "category_id": 1, "segmentation": _rle(m75), "score": 0.8},
        {"image_id": 1, "category_id": 1, "segmentation": _rle(inside_crowd), "score": 0.95},
        {"image_id": 1, "category_id": 1, "segmentation": _rle(np.zeros((h, w), bool)),
         "score": 0.7},
        {"image_id": 2, "category_id": 2, "segmentation": _rle(_square(8, 8, 2, 2, 4)),
         "score": 0.5},
    ]  # fmt: skip
    out = _assert_equal(gt, results)
    # Class b: exact hit -> AP 1. Class a at t=0.5: the 0.9 det (IoU 0.5) is a TP -> AP 1;
    # t in (0.5, 0.75]: the first is an FP, the second a TP -> precision 1/2 at recall 1.
    ap_a = (1.0 + 5 * 0.5 + 4 * 0.0) / 10
    assert out["per_class"][0]["AP"] == pytest.approx(ap_a, abs=1e-12)
    assert out["per_class"][1]["AP"] == pytest.approx(1.0)


def test_masks_equal_to_the_gt_give_ap_one_and_empty_gives_zero():
    gt = _tiny_gt()
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": _rle(_square(40, 50, 0, 0, 10)),
         "score": 0.9},
        {"image_id": 2, "category_id": 2, "segmentation": _rle(_square(8, 8, 2, 2, 4)),
         "score": 0.5},
    ]  # fmt: skip
    out = _assert_equal(gt, results)
    assert out["AP"] == pytest.approx(1.0) and out["AR100"] == pytest.approx(1.0)
    assert COCOEvaluator(gt, iou_type="segm").compute()["AP"] == 0.0


# ------------------------------------------------------------------------------ bad input


def test_bad_ground_truth_names_file_and_annotation_id(tmp_path):
    gt = _tiny_gt()
    gt["annotations"][2]["segmentation"] = [[2, 2, 6, 2]]  # 2 points
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=r"gt\.json: annotation id 3 .*2 points"):
        COCOEvaluator(p, iou_type="segm")
    gt = _tiny_gt()
    gt["annotations"][1]["segmentation"] = _rle(np.zeros((30, 50), bool))
    with pytest.raises(DataError, match=r"annotation id 2 .*RLE of size 30x50.*40x50"):
        COCOEvaluator(gt, iou_type="segm")
    gt = _tiny_gt()
    gt["annotations"][1]["segmentation"] = {"size": [40, 50], "counts": [5, 7]}
    with pytest.raises(DataError, match=r"annotation id 2 .*malformed RLE.*sum to 12"):
        COCOEvaluator(gt, iou_type="segm")
    gt = _tiny_gt()
    del gt["images"][1]["height"]
    with pytest.raises(DataError, match=r"images\[1\].*'height'"):
        COCOEvaluator(gt, iou_type="segm")
    with pytest.raises(DataError, match="needs a segm state"):
        COCOEvaluator(_tiny_gt(), iou_type="segm").merge(COCOEvaluator(_tiny_gt()).state_dict())
    with pytest.raises(ConfigError, match="iou_type"):
        COCOEvaluator(_tiny_gt(), iou_type="mask")


def test_bad_results_name_file_and_entry(tmp_path):
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(_tiny_gt()))
    good = {"image_id": 1, "category_id": 1, "segmentation": _rle(np.ones((40, 50))),
            "score": 0.5}  # fmt: skip
    wrong_size = dict(good, segmentation=_rle(np.ones((40, 49))))
    res_path.write_text(json.dumps([good, wrong_size]))
    with pytest.raises(DataError, match=r"res\.json: results\[1\] \(image_id 1\).*40x49"):
        evaluate_coco_files(gt_path, res_path, iou_type="segm")
    res_path.write_text(json.dumps([good, dict(good, segmentation=None)]))
    with pytest.raises(DataError, match=r"res\.json: results\[1\].*needs 'segmentation'"):
        evaluate_coco_files(gt_path, res_path, iou_type="segm")
    ev = COCOEvaluator(_tiny_gt(), iou_type="segm")
    with pytest.raises(DataError, match=r"entry 0 \(image_id 2\).*\(N, 8, 8\)"):
        ev.update([{"image_id": 2, "masks": np.zeros((1, 8, 9), bool), "scores": [1.0],
                    "labels": [0]}])  # fmt: skip
    with pytest.raises(DataError, match="1 masks, 2 scores"):
        ev.update([{"image_id": 2, "masks": np.zeros((1, 8, 8), bool), "scores": [1.0, 0.5],
                    "labels": [0]}])  # fmt: skip
