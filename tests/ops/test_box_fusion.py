"""Box ensembling equals the ``ensemble-boxes`` package (WBF with every conf_type, NMW,
soft voting, NMS) on random inputs and with IoU exactly at the threshold."""

import warnings

import numpy as np
import pytest

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.box_fusion import (
    fuse_boxes,
    nms_fusion,
    non_maximum_weighted,
    soft_nms_fusion,
    weighted_boxes_fusion,
)

eb = pytest.importorskip("ensemble_boxes", reason="the oracle package ensemble-boxes (dev extra)")
from ensemble_boxes.ensemble_boxes_nms import cpu_soft_nms_float  # noqa: E402


def random_models(seed: int, m: int = 3, n: int = 40, classes: int = 3):
    """M models' boxes in [0, 1], clustered around a few objects so they overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, (8, 2))
    sizes = rng.uniform(0.05, 0.3, (8, 2))
    boxes, scores, labels = [], [], []
    for _ in range(m):
        k = rng.integers(n // 2, n)
        obj = rng.integers(0, 8, k)
        c = centres[obj] + rng.normal(0, 0.02, (k, 2))
        s = sizes[obj] * rng.uniform(0.8, 1.2, (k, 2))
        b = np.clip(np.concatenate([c - s / 2, c + s / 2], 1), 0, 1)
        boxes.append(b)
        scores.append(rng.uniform(0.01, 1, k))
        labels.append((obj + rng.integers(0, 2, k)) % classes)
    return boxes, scores, labels


def canonical(b, s, lab):
    """Rows sorted by (label, score, box) so equal sets compare equal whatever the ties."""
    b, s, lab = np.asarray(b, float), np.asarray(s, float), np.asarray(lab, float)
    order = np.lexsort((b[:, 1], b[:, 0], s, lab))
    return b[order], s[order], lab[order]


def assert_same(ours, theirs, tol=2e-6):
    ob, os_, ol = ours
    tb, ts, tl = theirs
    assert len(ob) == len(tb)
    # ours are best first; theirs too (no ties on random scores), so compare in order
    np.testing.assert_allclose(os_, ts, rtol=tol, atol=1e-7)
    np.testing.assert_array_equal(ol, tl)
    np.testing.assert_allclose(ob, tb, rtol=tol, atol=1e-6)  # theirs are float32-rounded


@pytest.mark.parametrize("conf_type", ["avg", "max", "box_and_model_avg", "absent_model_aware_avg"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wbf_equals_ensemble_boxes(conf_type, seed):
    boxes, scores, labels = random_models(seed)
    w = [2.0, 1.0, 0.5]
    for thr, skip in ((0.55, 0.0), (0.4, 0.2), (0.7, 0.05)):
        ours = weighted_boxes_fusion(boxes, scores, labels, w, thr, skip, conf_type)
        theirs = eb.weighted_boxes_fusion(boxes, scores, labels, w, thr, skip, conf_type)
        assert len(ours[0]) < sum(len(b) for b in boxes)  # something was fused
        assert_same(ours, theirs)


def test_wbf_overflow_and_scale_invariance():
    boxes, scores, labels = random_models(5, m=4)
    ours = weighted_boxes_fusion(boxes, scores, labels, allows_overflow=True)
    theirs = eb.weighted_boxes_fusion(boxes, scores, labels, allows_overflow=True)
    assert_same(ours, theirs)
    capped = weighted_boxes_fusion(boxes, scores, labels)
    assert ours[1].sum() > capped[1].sum()  # clusters larger than M: the branch was exercised
    # pixel boxes fuse to the same boxes in pixels
    scale = np.array([640.0, 480.0, 640.0, 480.0])
    px = weighted_boxes_fusion([b * scale for b in boxes], scores, labels, allows_overflow=True)
    np.testing.assert_allclose(px[0] / scale, ours[0], rtol=1e-9)
    np.testing.assert_allclose(px[1], ours[1], rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_nmw_equals_ensemble_boxes(seed):
    boxes, scores, labels = random_models(seed)
    for w, thr in (([1, 1, 1], 0.55), ([3, 1, 2], 0.4)):
        ours = non_maximum_weighted(boxes, scores, labels, w, thr, 0.05)
        theirs = eb.non_maximum_weighted(boxes, scores, labels, w, thr, 0.05)
        assert len(ours[0]) < sum(len(b) for b in boxes)
        assert_same(ours, theirs)


def their_soft(boxes, scores, labels, weights, thr, sigma, thresh, method):
    """ensemble-boxes' soft-NMS keep set, with the decayed scores its kernel computes in
    place (its public soft_nms returns the kept boxes' undecayed scores)."""
    w = np.asarray(weights, float)
    b = np.concatenate(boxes)
    s = np.concatenate([np.asarray(si) * wi / w.sum() for si, wi in zip(scores, w)])
    lab = np.concatenate(labels)
    out_b, out_s, out_l = [], [], []
    for c in np.unique(lab):
        bc, sc = b[lab == c], s[lab == c].copy()
        keep = cpu_soft_nms_float(bc.copy(), sc, Nt=thr, sigma=sigma, thresh=thresh, method=method)
        out_b.append(bc[keep])
        out_s.append(sc[sc > thresh])  # sc was permuted into pick order and decayed
        out_l.append(np.full(len(keep), c))
    # cross-check the kept boxes against the public function
    pb, _, pl = eb.soft_nms(boxes, list(scores), labels, method, thr, sigma, thresh, list(weights))
    np.testing.assert_allclose(np.concatenate(out_b), pb)
    return np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)


@pytest.mark.parametrize("decay,code", [("gaussian", 2), ("linear", 1)])
def test_soft_voting_equals_ensemble_boxes(decay, code):
    boxes, scores, labels = random_models(4)
    w = [2.0, 1.0, 1.0]
    for thr, sigma, thresh in ((0.5, 0.5, 0.001), (0.3, 0.1, 0.05)):
        ours = soft_nms_fusion(boxes, scores, labels, w, thr, sigma, thresh, decay)
        theirs = their_soft(boxes, scores, labels, w, thr, sigma, thresh, code)
        assert len(ours[0]) < sum(len(b) for b in boxes)
        o, t = canonical(*ours), canonical(*theirs)
        np.testing.assert_allclose(o[1], t[1], rtol=1e-12)
        np.testing.assert_array_equal(o[2], t[2])
        np.testing.assert_allclose(o[0], t[0], rtol=0, atol=0)


def test_nms_equals_ensemble_boxes():
    boxes, scores, labels = random_models(6)
    for w in ([1, 2, 1], None):
        ours = nms_fusion(boxes, scores, labels, w, 0.5)
        theirs = eb.nms(boxes, list(scores), labels, 0.5, w)  # it rescales the list in place
        o, t = canonical(*ours), canonical(*theirs)
        assert len(o[0]) < sum(len(b) for b in boxes)
        for a, b in zip(o, t):
            np.testing.assert_allclose(a, b, rtol=1e-12)


# Boundary: two boxes with IoU exactly 0.5 (dyadic coordinates, exact in floating point):
# [0, 0, 0.5, 1] and [0, 0, 1, 1] overlap by 0.5 / 1. At iou_thr = 0.5 they must NOT match
# (every method matches on IoU > t); just below 0.5 they must.
EDGE_BOXES = [np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[0.0, 0.0, 0.5, 1.0]])]
EDGE_SCORES = [np.array([0.75]), np.array([0.5])]
EDGE_LABELS = [np.array([1]), np.array([1])]


@pytest.mark.parametrize("thr,fused", [(0.5, False), (0.4999999, True)])
def test_threshold_boundary_equals_ensemble_boxes(thr, fused):
    args = (EDGE_BOXES, EDGE_SCORES, EDGE_LABELS)
    wbf = weighted_boxes_fusion(*args, iou_thr=thr)
    assert len(wbf[0]) == (1 if fused else 2)
    assert_same(wbf, eb.weighted_boxes_fusion(*args, iou_thr=thr), tol=0)
    nmw = non_maximum_weighted(*args, iou_thr=thr)
    assert len(nmw[0]) == (1 if fused else 2)
    assert_same(nmw, eb.non_maximum_weighted(*args, iou_thr=thr), tol=0)
    nms = nms_fusion(*args, iou_thr=thr)
    assert len(nms[0]) == (1 if fused else 2)
    theirs = eb.nms(*args, iou_thr=thr)
    np.testing.assert_array_equal(canonical(*nms)[1], canonical(*theirs)[1])
    # linear soft voting decays the worse box by 1 - IoU only above the threshold
    soft = soft_nms_fusion(*args, [1, 1], iou_thr=thr, decay="linear")
    t = their_soft(*args, [1, 1], thr, 0.5, 0.001, 1)
    np.testing.assert_array_equal(canonical(*soft)[1], canonical(*t)[1])
    assert soft[1].min() == (0.25 * 0.5 if fused else 0.25)


def test_wbf_fused_box_by_hand():
    """Two models agree on one object: the fused box is their score-weighted mean, the
    score their mean (both models present)."""
    b, s, lab = weighted_boxes_fusion(
        [np.array([[0.0, 0.0, 4.0, 4.0]]), np.array([[1.0, 1.0, 5.0, 5.0]])],
        [np.array([0.9]), np.array([0.3])],
        [np.array([0]), np.array([0])],
        iou_thr=0.3,
    )
    np.testing.assert_allclose(b, [[0.25, 0.25, 4.25, 4.25]])  # (0.9*0 + 0.3*1) / 1.2
    np.testing.assert_allclose(s, [0.6])
    assert lab.tolist() == [0]


def test_empty_and_labels_apart():
    e = np.zeros((0, 4))
    out = weighted_boxes_fusion([e, e], [np.zeros(0)] * 2, [np.zeros(0)] * 2)
    assert out[0].shape == (0, 4) and len(out[1]) == 0
    for method in ("wbf", "nmw", "soft_nms", "nms"):
        b, _, lab = fuse_boxes(
            method, [np.array([[0, 0, 1, 1.0]]), np.array([[0, 0, 1, 1.0]])],
            [np.array([0.5]), np.array([0.6])], [np.array([0]), np.array([1])],
        )  # fmt: skip
        assert sorted(lab.tolist()) == [0, 1], method  # same box, two labels: never fused


def test_bad_input_errors():
    ok_b, ok_s, ok_l = [np.array([[0, 0, 1, 1.0]])], [np.array([0.5])], [np.array([0])]
    with pytest.raises(DataError, match="x2 < x1"):
        weighted_boxes_fusion([np.array([[1, 0, 0, 1.0]])], ok_s, ok_l)
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        weighted_boxes_fusion([np.zeros((1, 3))], ok_s, ok_l)
    with pytest.raises(DataError, match="one boxes/scores/labels list per model"):
        weighted_boxes_fusion(ok_b, ok_s * 2, ok_l)
    with pytest.raises(ConfigError, match="weights"):
        weighted_boxes_fusion(ok_b, ok_s, ok_l, weights=[1, 2])
    with pytest.raises(ConfigError, match="conf_type"):
        weighted_boxes_fusion(ok_b, ok_s, ok_l, conf_type="mean")
    with pytest.raises(ConfigError, match="method"):
        fuse_boxes("vote", ok_b, ok_s, ok_l)
    with pytest.raises(DataError, match="finite"):
        weighted_boxes_fusion(ok_b, [np.array([np.nan])], ok_l)


def test_skip_threshold_drops_weak_boxes_for_every_method():
    boxes, scores, labels = random_models(7)
    for method in ("wbf", "nmw", "soft_nms", "nms"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            all_ = fuse_boxes(method, boxes, scores, labels, skip_box_thr=0.0)
            some = fuse_boxes(method, boxes, scores, labels, skip_box_thr=0.5)
        assert len(some[0]) < len(all_[0]), method
