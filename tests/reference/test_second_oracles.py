"""The references as second, independent oracles of the library's own box ops and
evaluators: cvcraft.ops.boxes IoU family, cvcraft.ops.nms (greedy, class-aware, Soft-NMS),
cvcraft.metrics.voc (AP formulas and the VOCEvaluator) and cvcraft.metrics.coco's
COCOEvaluator (AP50 and AP@[.5:.95] on simple cases: one category, no crowd, < 100
detections per image). The existing tests check these against torchvision and
pycocotools; these share no code with either."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from refcheck import close

from cvcraft.metrics.coco import IOU_THRESHOLDS, COCOEvaluator
from cvcraft.metrics.voc import VOCEvaluator, interpolated_ap, voc_ap
from cvcraft.ops.boxes import pairwise_iou
from cvcraft.reference import boxes as rb

nms_module = importlib.import_module("cvcraft.ops.nms")


def random_boxes(rng: np.random.Generator, n: int, spread: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, spread, size=(n, 2))
    wh = rng.uniform(2, spread / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def jittered(rng: np.random.Generator, gts: np.ndarray, sigma: float) -> np.ndarray:
    wh = np.tile(gts[:, 2:] - gts[:, :2], 2)
    return gts + rng.normal(0, sigma, size=gts.shape) * wh


@pytest.mark.parametrize("kind", rb.IOU_KINDS)
def test_library_iou_family_equals_reference(kind):
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 12), random_boxes(rng, 9)
    ours = pairwise_iou(torch.tensor(a), torch.tensor(b), kind)
    close(rb.pairwise_iou(a, b, kind), ours, 1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_library_greedy_and_batched_nms_equal_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 60, spread=50)
    scores = rng.random(60)
    labels = rng.integers(0, 3, size=60)
    bt, st = torch.tensor(boxes), torch.tensor(scores)
    np.testing.assert_array_equal(
        nms_module.nms(bt, st, 0.45).keep.numpy(), rb.greedy_nms(boxes, scores, 0.45)
    )
    # class-aware: run the reference per class, then interleave all survivors by score
    keep = np.concatenate(
        [
            np.flatnonzero(labels == c)[
                rb.greedy_nms(boxes[labels == c], scores[labels == c], 0.45)
            ]
            for c in range(3)
        ]
    )
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    ours = nms_module.batched_nms(bt, st, torch.tensor(labels), 0.45).keep.numpy()
    np.testing.assert_array_equal(ours, keep)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("seed", range(2))
def test_library_soft_nms_equals_reference(method, seed):
    rng = np.random.default_rng(10 + seed)
    boxes = random_boxes(rng, 40, spread=40)
    scores = rng.random(40)
    keep, s = rb.soft_nms(boxes, scores, 0.3, 0.5, 0.01, method)
    ours = nms_module.nms(
        torch.tensor(boxes), torch.tensor(scores), 0.3, f"soft_{method}",
        score_threshold=0.01, sigma=0.5,
    )  # fmt: skip
    np.testing.assert_array_equal(ours.keep.numpy(), keep)
    close(ours.scores, s, 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_library_ap_formulas_equal_reference(seed):
    rng = np.random.default_rng(seed)
    tp = rng.random(40) < 0.6
    scores = rng.random(40)
    rec, prec = rb.precision_recall(tp, scores, num_gt=int(tp.sum()) + seed)
    assert voc_ap(rec, prec) == pytest.approx(rb.ap_all_points(rec, prec), abs=1e-12)
    assert voc_ap(rec, prec, use_07=True) == pytest.approx(rb.ap_n_points(rec, prec, 11), abs=1e-12)
    assert interpolated_ap(rec, prec, 101) == pytest.approx(
        rb.ap_n_points(rec, prec, 101), abs=1e-12
    )


def _scene(seed: int, images: int = 6, classes: int = 1):
    """Per image: gts with labels, and detections = jittered gts, duplicates, random FPs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        g = int(rng.integers(1, 6))
        gt = random_boxes(rng, g, spread=200)
        gl = rng.integers(0, classes, size=g)
        det = np.concatenate(
            [jittered(rng, gt, 0.08), jittered(rng, gt[: g // 2], 0.15), random_boxes(rng, 3, 200)]
        )
        det = np.clip(det, 0, None)
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        dl = np.concatenate([gl, gl[: g // 2], rng.integers(0, classes, size=3)])
        out.append((det, rng.random(len(det)), dl, gt, gl))
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method,points", [("area", "all"), ("11point", 11)])
def test_voc_evaluator_equals_reference_ap(seed, method, points):
    classes = 3
    scene = _scene(seed, images=8, classes=classes)
    ev = VOCEvaluator(classes, method=method)
    for det, sc, dl, gt, gl in scene:
        ev.update(det, sc, dl, gt, gl)
    got = ev.compute()["AP"]
    for c in range(classes):
        per_image = [(det[dl == c], sc[dl == c], gt[gl == c]) for det, sc, dl, gt, gl in scene]
        if sum(len(g) for *_, g in per_image) == 0:
            assert np.isnan(got[c])
            continue
        assert got[c] == pytest.approx(
            rb.average_precision(per_image, 0.5, points, "voc"), abs=1e-12
        )


def _coco_gt(scene) -> dict:
    images, anns = [], []
    for i, (*_, gt, _gl) in enumerate(scene):
        images.append({"id": i + 1, "width": 300, "height": 300})
        for b in gt:
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], w, h], "area": w * h})  # fmt: skip
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}


@pytest.mark.parametrize("seed", range(3))
def test_coco_evaluator_equals_reference_101_point_ap(seed):
    scene = _scene(100 + seed, images=7)
    ev = COCOEvaluator(_coco_gt(scene))
    ev.update(
        [{"image_id": i + 1, "boxes": det, "scores": sc, "labels": np.zeros(len(det), int)}
         for i, (det, sc, *_) in enumerate(scene)]
    )  # fmt: skip
    out = ev.compute()
    per_image = [(det, sc, gt) for det, sc, _dl, gt, _gl in scene]
    ref = [rb.average_precision(per_image, t, 101, "coco") for t in IOU_THRESHOLDS]
    assert out["AP50"] == pytest.approx(ref[0], abs=1e-12)
    assert out["AP"] == pytest.approx(np.mean(ref), abs=1e-12)
