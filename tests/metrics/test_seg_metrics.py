"""Segmentation metrics against scikit-learn on the same pixels."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from cvcraft.errors import DataError
from cvcraft.metrics.segmentation import (
    SegmentationMetrics,
    metrics_from_confusion,
    segmentation_confusion,
)


def _sk_reference(pred, target, k):
    keep = target != 255
    y, p = target[keep], pred[keep]
    labels = list(range(k))
    cm = skm.confusion_matrix(y, p, labels=labels)
    present = [c for c in labels if (y == c).any() or (p == c).any()]
    in_target = [c for c in labels if (y == c).any()]
    iou = skm.jaccard_score(y, p, labels=labels, average=None, zero_division=0)
    t = cm.sum(1)
    return {
        "cm": cm,
        "pixel_acc": skm.accuracy_score(y, p),
        "class_acc": skm.recall_score(y, p, labels=labels, average=None, zero_division=0),
        "mean_acc": skm.recall_score(y, p, labels=in_target, average="macro", zero_division=0),
        "iou": iou,
        "miou": skm.jaccard_score(y, p, labels=present, average="macro", zero_division=0),
        "fwiou": float((t * iou).sum() / t.sum()),
        "dice": skm.f1_score(y, p, labels=labels, average=None, zero_division=0),
        "mdice": skm.f1_score(y, p, labels=present, average="macro", zero_division=0),
        "present": present,
        "in_target": in_target,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 6
    target = rng.integers(0, k - 1, (5, 12, 13))  # class k-1 never in the target
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, k, target.shape))
    target[rng.random(target.shape) < 0.1] = 255
    if seed == 2:
        pred[pred == 3] = 0  # class 3 never predicted
    acc = SegmentationMetrics(k)
    for i in range(0, 5, 2):  # streamed in batches of 2, 2, 1
        logits = torch.nn.functional.one_hot(torch.from_numpy(pred[i : i + 2]), k).movedim(-1, 1)
        acc.update(logits.float(), torch.from_numpy(target[i : i + 2]))
    got = acc.compute()
    ref = _sk_reference(pred.ravel(), target.ravel(), k)
    assert np.array_equal(np.array(got["confusion_matrix"]), ref["cm"])
    assert got["pixel_acc"] == pytest.approx(ref["pixel_acc"], abs=1e-12)
    assert got["mean_acc"] == pytest.approx(ref["mean_acc"], abs=1e-12)
    assert got["miou"] == pytest.approx(ref["miou"], abs=1e-12)
    assert got["fwiou"] == pytest.approx(ref["fwiou"], abs=1e-12)
    assert got["mdice"] == pytest.approx(ref["mdice"], abs=1e-12)
    for key in ("iou", "dice"):
        ours = np.array(got[key])
        assert np.allclose(ours[ref["present"]], ref[key][ref["present"]], atol=1e-12)
    ca = np.array(got["class_acc"])
    assert np.allclose(ca[ref["in_target"]], ref["class_acc"][ref["in_target"]], atol=1e-12)
    assert np.isnan(ca[k - 1])  # never in the target: no class accuracy


@pytest.mark.parametrize("seed", [0, 1])
def test_class_absent_from_both_target_and_prediction_is_left_out(seed):
    """Class 2 is in neither target nor prediction, class 4 only predicted, class 3 only in
    the target: mIoU / mDice average the classes present in either (scikit-learn's macro over
    those labels), mean accuracy the classes in the target; class 2 is NaN, never 0 or 1."""
    rng = np.random.default_rng(seed)
    k = 5
    target = rng.choice([0, 1, 3], (3, 10, 11))
    pred = np.where(rng.random(target.shape) < 0.5, target, rng.choice([0, 1, 4], target.shape))
    target[rng.random(target.shape) < 0.1] = 255
    acc = SegmentationMetrics(k)
    acc.update(torch.nn.functional.one_hot(torch.from_numpy(pred), k).movedim(-1, 1).float(),
               torch.from_numpy(target))  # fmt: skip
    got = acc.compute()
    ref = _sk_reference(pred.ravel(), target.ravel(), k)
    assert ref["present"] == [0, 1, 3, 4] and ref["in_target"] == [0, 1, 3]
    assert got["miou"] == pytest.approx(ref["miou"], abs=1e-12)
    assert got["mdice"] == pytest.approx(ref["mdice"], abs=1e-12)
    assert got["mean_acc"] == pytest.approx(ref["mean_acc"], abs=1e-12)
    assert got["fwiou"] == pytest.approx(ref["fwiou"], abs=1e-12)
    for key in ("iou", "dice", "class_acc"):
        assert np.isnan(got[key][2]), key
    assert got["iou"][4] == 0.0 and np.isnan(got["class_acc"][4])  # predicted, never right
    # The mean over all five with class 2 counted as 0 (or 1) would differ from the oracle.
    assert got["miou"] != pytest.approx(np.nansum(got["iou"]) / k)


def test_ignore_index_is_left_out_and_bad_labels_raise():
    target = torch.tensor([[[0, 1, 255, 255]]])
    pred = torch.tensor([[[0, 0, 1, 1]]])
    cm = segmentation_confusion(pred, target, 2)
    assert cm.tolist() == [[1, 0], [1, 0]]
    m = metrics_from_confusion(cm)
    assert m["pixel_acc"] == 0.5
    assert m["miou"] == pytest.approx((0.5 + 0.0) / 2)
    with pytest.raises(DataError, match="outside"):
        segmentation_confusion(pred, torch.tensor([[[0, 7, 0, 0]]]), 2)


def test_empty_accumulator_is_zero():
    m = SegmentationMetrics(3).compute()
    assert m["miou"] == 0.0 and m["pixel_acc"] == 0.0
