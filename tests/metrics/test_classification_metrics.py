import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics import ClassificationMetrics, accuracy_topk, confusion_matrix


def _data(n=300, c=6, seed=0, ties=True, drop_pred_class=None):
    """Random probabilities; rounding creates many tied scores; optionally no sample is
    predicted as ``drop_pred_class``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 1.5
    target = rng.integers(0, c, size=n)
    logits[np.arange(n), target] += rng.normal(1.0, 1.0, size=n)  # informative scores
    if drop_pred_class is not None:
        logits[:, drop_pred_class] -= 20
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if ties:
        probs = np.round(probs, 1)
        probs /= probs.sum(1, keepdims=True)
    return probs.astype(np.float32), target


def _feed(probs, target, m, batches=4):
    for p, t in zip(np.array_split(probs, batches), np.array_split(target, batches)):
        m.update(torch.from_numpy(p), torch.from_numpy(t))
    return m.compute()


@pytest.mark.parametrize("ties", [False, True])
def test_against_sklearn(ties):
    probs, target = _data(ties=ties, drop_pred_class=4)
    c = probs.shape[1]
    pred = probs.argmax(1)  # numpy argmax also picks the first maximum on ties
    assert 4 not in pred  # a class with no predictions: precision 0/0 -> 0
    out = _feed(probs, target, ClassificationMetrics(c, topk=(1, 3, 5)))

    assert out["top1"] == pytest.approx(skm.accuracy_score(target, pred))
    if not ties:  # sklearn's top-k breaks ties toward the higher index; ours toward the lower
        for k in (3, 5):
            ref = skm.top_k_accuracy_score(target, probs, k=k, labels=range(c))
            assert out[f"top{k}"] == pytest.approx(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for avg in ("macro", "micro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(
                target, pred, average=avg, zero_division=0
            )
            assert out[f"precision_{avg}"] == pytest.approx(p)
            assert out[f"recall_{avg}"] == pytest.approx(r)
            assert out[f"f1_{avg}"] == pytest.approx(f)
        p, r, f, s = skm.precision_recall_fscore_support(
            target, pred, labels=range(c), average=None, zero_division=0
        )
    np.testing.assert_allclose(out["per_class_precision"], p)
    np.testing.assert_allclose(out["per_class_recall"], r)
    np.testing.assert_allclose(out["per_class_f1"], f)
    assert out["support"] == s.tolist()
    assert out["per_class_precision"][4] == 0.0
    assert out["confusion_matrix"] == skm.confusion_matrix(target, pred, labels=range(c)).tolist()
    ref_auc = skm.roc_auc_score(target, probs, multi_class="ovr", average="macro")
    assert out["roc_auc_ovr"] == pytest.approx(ref_auc, abs=1e-9)
    assert out["roc_auc_classes"] == c


def test_topk_with_ties_matches_stable_sort_reference():
    probs, target = _data(ties=True, seed=3)
    # Reference: stable sort by descending score, so tied classes keep index order.
    order = np.argsort(-probs, axis=1, kind="stable")
    for k in (1, 2, 3):
        ref = (order[:, :k] == target[:, None]).any(1).mean()
        (ours,) = accuracy_topk(torch.from_numpy(probs), torch.from_numpy(target), ks=(k,))
        assert ours == pytest.approx(ref)
    # Many ties really occur in this data, so the tie rule is exercised.
    assert (np.sort(probs, 1)[:, -1] == np.sort(probs, 1)[:, -2]).sum() > 5


def test_auc_skips_class_absent_from_targets():
    probs, target = _data(n=200, c=5, seed=1, ties=False)
    target[target == 2] = 0  # class 2 never occurs as a target ...
    probs[:, 2] = 0.0  # ... nor as a prediction
    probs /= probs.sum(1, keepdims=True)
    out = _feed(probs, target, ClassificationMetrics(5))
    refs = [skm.roc_auc_score(target == k, probs[:, k]) for k in (0, 1, 3, 4)]
    assert out["roc_auc_ovr"] == pytest.approx(np.mean(refs), abs=1e-9)
    assert out["roc_auc_classes"] == 4
    # Like sklearn's default, macro averages skip a class absent from targets and predictions
    # (averaging over all 5 labels would give 4/5 of the value).
    pred = probs.argmax(1)
    p, r, f, _ = skm.precision_recall_fscore_support(target, pred, average="macro", zero_division=0)
    assert out["precision_macro"] == pytest.approx(p)
    assert out["recall_macro"] == pytest.approx(r) and out["f1_macro"] == pytest.approx(f)
    _, r_all, _, _ = skm.precision_recall_fscore_support(
        target, pred, labels=range(5), average="macro", zero_division=0
    )
    assert out["recall_macro"] != pytest.approx(r_all)


def test_logits_soft_targets_loss_and_topk_cap():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, generator=g) * 4
    target = torch.randint(0, 3, (50,), generator=g)
    soft = torch.nn.functional.one_hot(target, 3).float() * 0.8 + 0.2 / 3
    m = ClassificationMetrics(3, topk=(1, 5))
    m.update(logits[:20], soft[:20], loss=torch.tensor(2.0))
    m.update(logits[20:], target[20:], loss=1.0)
    out = m.compute()
    assert out["top5"] == 1.0  # k capped at num_classes
    assert out["loss"] == pytest.approx((20 * 2.0 + 30 * 1.0) / 50)
    ref = skm.roc_auc_score(target.numpy(), logits.softmax(1).numpy(), multi_class="ovr")
    assert out["roc_auc_ovr"] == pytest.approx(ref, abs=1e-6)


def test_merge_equals_single_pass_and_reset():
    probs, target = _data(seed=5)
    whole = _feed(probs, target, ClassificationMetrics(6))
    a, b = ClassificationMetrics(6), ClassificationMetrics(6)
    a.update(torch.from_numpy(probs[:100]), torch.from_numpy(target[:100]))
    b.update(torch.from_numpy(probs[100:]), torch.from_numpy(target[100:]))
    merged = a.merge(b.state_dict()).compute()
    for key in ("top1", "top5", "f1_macro", "precision_weighted", "roc_auc_ovr"):
        assert merged[key] == pytest.approx(whole[key])
    assert merged["confusion_matrix"] == whole["confusion_matrix"]
    a.reset()
    assert a.count == 0 and int(a.confmat.sum()) == 0
    with pytest.raises(ConfigError, match="cannot merge metrics for 5 classes .* into 6 classes"):
        a.merge(ClassificationMetrics(5))


def test_pure_confusion_matrix_and_validation():
    pred = torch.tensor([0, 1, 2, 2, 1])
    tgt = torch.tensor([0, 2, 2, 1, 1])
    cm = confusion_matrix(pred, tgt, 3)
    assert cm.tolist() == skm.confusion_matrix(tgt.numpy(), pred.numpy(), labels=[0, 1, 2]).tolist()
    assert cm.dtype == torch.int64
    m = ClassificationMetrics(3)
    with pytest.raises(DataError, match="outside"):
        m.update(torch.randn(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match="num_classes"):
        m.update(torch.randn(2, 4), torch.tensor([0, 1]))
