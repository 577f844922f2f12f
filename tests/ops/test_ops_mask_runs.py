"""Run-length mask helpers of cvcraft.ops.masks against pycocotools.mask (the oracle):
polygon rasterization pixel-identical to ``frPyObjects`` + ``merge`` on every coco128 polygon
and on random polygons (negative and out-of-image coordinates, repeated vertices)."""

import json

import numpy as np
import pytest

from cvcraft.ops.masks import (
    counts_to_runs,
    mask_to_counts,
    mask_to_runs,
    polygons_to_mask_coco,
    runs_to_mask,
    runs_union,
)

pmask = pytest.importorskip("pycocotools.mask")


def _ref(polys, h, w):
    return pmask.decode(pmask.merge(pmask.frPyObjects(polys, h, w))).astype(bool)


def test_polygons_pixel_identical_to_pycocotools_on_coco128(shared_data, require_shared):
    path = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    require_shared(path)
    gt = json.loads(path.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    n = 0
    for a in gt["annotations"][::3]:
        if isinstance(a["segmentation"], list):
            h, w = sizes[a["image_id"]]
            ours = polygons_to_mask_coco(a["segmentation"], h, w)
            assert np.array_equal(ours, _ref(a["segmentation"], h, w)), a["id"]
            n += 1
    assert n > 250


@pytest.mark.parametrize("seed", range(4))
def test_random_polygons_pixel_identical_to_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for i in range(150):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            xy = rng.uniform(-4, 34, (int(rng.integers(3, 10)), 2))
            if i % 3 == 0:
                xy = np.round(xy * 2) / 2  # vertices on half-pixels: exact ties in rounding
            if i % 5 == 0:
                xy[1] = xy[0]  # a repeated vertex (zero-length edge)
            parts.append(xy.ravel().tolist())
        assert np.array_equal(polygons_to_mask_coco(parts, h, w), _ref(parts, h, w)), (seed, i)


def test_runs_round_trip_and_union():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 20, 2))
        a, b = rng.random((2, h, w)) < rng.random()
        s, e = mask_to_runs(a)
        assert np.array_equal(runs_to_mask(s, e, h, w), a)
        assert np.array_equal(counts_to_runs(mask_to_counts(a))[0], s)
        # union against numpy's OR, with overlapping and touching runs
        sb, eb = mask_to_runs(b)
        su, eu = runs_union(np.concatenate([s, sb]), np.concatenate([e, eb]))
        ref_s, ref_e = mask_to_runs(a | b)
        assert np.array_equal(su, ref_s) and np.array_equal(eu, ref_e)
    su, eu = runs_union(np.array([0, 3, 5]), np.array([3, 6, 9]))  # touching + overlapping
    assert su.tolist() == [0] and eu.tolist() == [9]
