"""Run-based mask IoU against pycocotools.mask.iou (the oracle), crowd included."""

import numpy as np
import pytest

from cvcraft.metrics.mask_iou import MaskRuns, mask_iou, runs_intersection

pmask = pytest.importorskip("pycocotools.mask")


def _ref_iou(a, b, crowd):
    enc = [pmask.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))) for m in (a, b)]
    return np.asarray(pmask.iou(enc[0], enc[1], crowd.astype(np.uint8).tolist())).reshape(
        len(a), len(b)
    )


@pytest.mark.parametrize("seed", range(3))
def test_mask_iou_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for t in range(30):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        a = rng.random((int(rng.integers(1, 6)), h, w)) < rng.random()
        b = rng.random((int(rng.integers(1, 6)), h, w)) < rng.random()
        a[0] = False  # an empty detection: IoU 0 even against a crowd
        if t % 3 == 0:
            b[-1] = a[-1]  # identical masks: IoU exactly 1
        crowd = rng.random(len(b)) < 0.4
        ours = mask_iou(a, b, crowd)
        assert np.array_equal(ours, _ref_iou(a, b, crowd))  # bit-identical division


def test_intersection_counts_and_runs_container():
    rng = np.random.default_rng(5)
    a = rng.random((7, 13, 11)) < 0.5
    b = rng.random((4, 13, 11)) < 0.3
    ra, rb = MaskRuns.from_masks(a), MaskRuns.from_masks(b)
    ia, ib = np.meshgrid(np.arange(7), np.arange(4), indexing="ij")
    inter = runs_intersection(ra, rb, ia, ib).reshape(7, 4)
    assert np.array_equal(inter, (a[:, None] & b[None]).sum((2, 3)))
    assert np.array_equal(ra.areas(), a.sum((1, 2)))
    keep = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    both = MaskRuns.concat([ra.select(keep), rb])
    assert np.array_equal(both.areas(), np.concatenate([a[keep], b]).sum((1, 2)))
    assert len(MaskRuns.from_masks(np.zeros((0, 3, 3), bool))) == 0
