"""Autoanchor: best possible recall equals a plain reference loop (YOLOv5's ratio rule,
boxes exactly at the 1/thr boundary included), and k-means anchors replace the model's
only when that recall is low and they do better."""

import numpy as np
import pytest

from cvcraft.errors import DataError
from cvcraft.ops.anchors import autoanchor, ratio_recall


def reference_bpr(wh, anchors, thr):
    """For each box, is there an anchor with both side ratios in (1/thr, thr]? A loop."""
    hit = 0
    for w, h in wh:
        ok = False
        for aw, ah in anchors:
            rw, rh = w / aw, h / ah
            worst = min(rw, 1 / rw, rh, 1 / rh)
            if worst > 1 / thr:
                ok = True
        hit += ok
    return hit / len(wh)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bpr_equals_reference_loop(seed):
    rng = np.random.default_rng(seed)
    wh = rng.uniform(2, 300, (300, 2))
    anchors = rng.uniform(5, 200, (9, 2))
    for thr in (2.0, 4.0, 6.0):
        assert ratio_recall(wh, anchors, thr) == reference_bpr(wh, anchors, thr)
    # exact boundary: w / aw = 4 exactly is not a match at thr = 4 (1/4 is not > 1/4)
    edge = np.array([[40.0, 10.0], [39.0, 10.0], [2.5, 10.0], [2.6, 10.0]])
    one = np.array([[10.0, 10.0]])
    assert ratio_recall(edge, one, 4.0) == reference_bpr(edge, one, 4.0) == 0.5


def test_autoanchor_keeps_good_anchors():
    rng = np.random.default_rng(0)
    anchors = np.array([[10, 13], [30, 60], [120, 90]], float)
    wh = anchors[rng.integers(0, 3, 400)] * rng.uniform(0.7, 1.4, (400, 2))
    res = autoanchor(wh, anchors)
    assert not res.replaced and res.bpr_before == res.bpr_after == 1.0
    np.testing.assert_array_equal(res.anchors, anchors.astype(np.float32))
    assert "kept" in res.note


def test_autoanchor_replaces_bad_anchors_with_better_recall():
    rng = np.random.default_rng(1)
    shapes = np.array([[8, 40], [60, 12], [150, 150]], float)
    wh = shapes[rng.integers(0, 3, 500)] * rng.uniform(0.8, 1.25, (500, 2))
    bad = np.array([[300, 300], [310, 290], [280, 320]], float)  # all far too big
    res = autoanchor(wh, bad, generations=50)
    assert res.replaced
    assert res.bpr_before == reference_bpr(wh[(wh >= 2).all(1)], bad, 4.0) < 0.98
    assert res.bpr_after == reference_bpr(wh, res.anchors.astype(np.float64), 4.0)
    assert res.bpr_after > 0.98
    assert (np.diff(res.anchors.prod(1)) >= 0).all()  # sorted by area, as models expect
    with pytest.raises(DataError, match="no training box"):
        autoanchor(np.ones((5, 2)), bad)
