"""Class-imbalance tools: weights vs scikit-learn, samplers deterministic in (seed, epoch),
resampling counts, repeated items augmented differently, loader integration."""

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from cvcraft.data import ArrayData, ClassifyDataset, build_loader, set_epoch
from cvcraft.data.sampling import (
    ClassBalancedBatchSampler,
    RepeatAwareDataset,
    ResampledEpochSampler,
    WeightedEpochSampler,
    build_sampler,
    class_weights,
    label_distribution,
    repeat_counts,
    resample_indices,
    sample_weights,
)
from cvcraft.errors import ConfigError, DataError

LABELS = np.array([0] * 60 + [1] * 25 + [2] * 10 + [3] * 5)


def test_inverse_weights_match_sklearn_balanced():
    ref = compute_class_weight("balanced", classes=np.arange(4), y=LABELS)
    np.testing.assert_allclose(class_weights(LABELS, "inverse"), ref)


def test_sqrt_weights_and_per_sample_mean():
    w = class_weights(LABELS, "sqrt")
    counts = np.bincount(LABELS)
    ratio = w * np.sqrt(counts)
    np.testing.assert_allclose(ratio, ratio[0])  # w_c proportional to 1/sqrt(n_c)
    for mode in ("inverse", "sqrt"):
        np.testing.assert_allclose(sample_weights(LABELS, mode).mean(), 1.0)
    # an empty class gets weight 0; "none" is 1 for present classes
    np.testing.assert_array_equal(class_weights([0, 0, 2], "inverse", 3) > 0, [True, False, True])
    np.testing.assert_array_equal(class_weights([0, 0, 2], "none", 3), [1, 0, 1])
    with pytest.raises(
        ConfigError, match="class weight mode 'log': use one of none, inverse, sqrt"
    ):
        class_weights(LABELS, "log")


def test_label_distribution_report():
    d = label_distribution(LABELS, ["cat", "dog", "eel", "fox", "gnu"])
    ref = Counter(LABELS.tolist())
    assert d.as_dict()["counts"] == {"cat": ref[0], "dog": ref[1], "eel": ref[2], "fox": ref[3],
                                     "gnu": 0}  # fmt: skip
    assert d.imbalance == 12.0
    np.testing.assert_allclose(d.fractions.sum(), 1.0)
    text = str(d)
    assert "cat" in text and "60" in text and "gnu" in text.splitlines()[-1]
    with pytest.raises(DataError, match=r"labels span \[0, 7\] but there are 2 classes"):
        label_distribution([0, 7], ["a", "b"])


def test_repeat_counts_matches_loop():
    idx = np.random.default_rng(0).integers(0, 7, 200)
    seen: Counter = Counter()
    ref = []
    for i in idx:
        ref.append(seen[i])
        seen[i] += 1
    np.testing.assert_array_equal(repeat_counts(idx), ref)


def test_weighted_sampler_deterministic_and_balanced():
    s = WeightedEpochSampler(sample_weights(LABELS, "inverse"), num_samples=20000, seed=3)
    a = list(s)
    assert a == list(s)  # same (seed, epoch)
    s.set_epoch(1)
    b = list(s)
    assert a != b
    assert all(k[0] == 1 for k in b)
    idx = np.array([k[1] for k in b])
    freq = np.bincount(LABELS[idx], minlength=4) / len(idx)
    np.testing.assert_allclose(freq, 0.25, atol=0.015)  # inverse weights: classes equally drawn
    np.testing.assert_array_equal([k[2] for k in b], repeat_counts(idx))


def test_weighted_sampler_ddp_shards_cover_the_draw():
    w = sample_weights(LABELS, "sqrt")
    full = WeightedEpochSampler(w, seed=1).indices()
    parts = [WeightedEpochSampler(w, seed=1, num_replicas=2, rank=r).indices() for r in range(2)]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.sort(full))


def test_resample_indices_counts():
    idx = resample_indices(LABELS, 0, target="max")
    np.testing.assert_array_equal(np.bincount(LABELS[idx]), [60] * 4)
    per_item = np.bincount(idx, minlength=len(LABELS))
    for c in range(4):  # every item of a class appears floor or ceil(60 / n_c) times
        k = per_item[LABELS == c]
        assert k.max() - k.min() <= 1
    idx = resample_indices(LABELS, 0, target="min")
    np.testing.assert_array_equal(np.bincount(LABELS[idx]), [5] * 4)
    assert len(np.unique(idx)) == len(idx)  # undersampling never repeats
    idx = resample_indices(LABELS, 0, ratios={3: 4.0, 0: 0.5})
    np.testing.assert_array_equal(np.bincount(LABELS[idx]), [30, 25, 10, 20])
    with pytest.raises(
        ConfigError, match="resample_indices: give exactly one of ratios= or target="
    ):
        resample_indices(LABELS, 0)


def test_resampled_sampler_fresh_per_epoch():
    s = ResampledEpochSampler(LABELS, target="min", seed=0)
    e0 = s.indices()
    s.set_epoch(1)
    e1 = s.indices()
    assert len(e0) == len(e1) == len(s) == 20
    assert set(e0) != set(e1)  # different majority items each epoch


def test_class_balanced_batches():
    s = ClassBalancedBatchSampler(LABELS, 10, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 10
    for b in batches:
        counts = np.bincount(LABELS[[k[1] for k in b]], minlength=4)
        assert sorted(counts) == [2, 2, 3, 3]  # 10 // 4 each + 2 extra distinct classes
    assert batches == list(s)
    keys = [k for b in batches for k in b]
    # minority class 3 (5 items) drawn ~25 times: each copy has its own repeat number
    assert len(set(keys)) == len(keys)
    fox = [k for k in keys if LABELS[k[1]] == 3]
    assert max(k[2] for k in fox) >= 4
    s.set_epoch(2)
    assert list(s) != batches


def _dataset(cls):
    rng = np.random.default_rng(0)
    data = ArrayData(
        rng.integers(0, 255, (100, 8, 8, 3), dtype=np.uint8), LABELS, list("abcd"), "t"
    )

    def noise(sample, g):  # a random transform: the output shows the generator used
        return sample.replace(image=np.full_like(sample.image, int(g.integers(0, 255))))

    return cls(data, noise, seed=5)


def test_repeat_aware_dataset():
    plain, rep = _dataset(ClassifyDataset), _dataset(RepeatAwareDataset)
    np.testing.assert_array_equal(rep[(2, 95, 0)].image, plain[(2, 95)].image)
    np.testing.assert_array_equal(rep[(2, 95)].image, plain[(2, 95)].image)
    views = {int(rep[(2, 95, r)].image[0, 0, 0]) for r in range(6)}
    assert len(views) >= 5  # copies of one image are different augmented views


@pytest.mark.parametrize("kind", ["weighted", "sqrt", "balanced", "oversample", "undersample"])
def test_build_loader_with_sampler(kind):
    ds = _dataset(RepeatAwareDataset)
    sampler = build_sampler(kind, LABELS, seed=0, batch_size=8)
    loader = build_loader(ds, 8, shuffle=True, seed=0, drop_last=True, sampler=sampler)
    set_epoch(loader, 1)
    first = [b["index"].clone() for b in loader]
    set_epoch(loader, 1)
    again = [b["index"].clone() for b in loader]
    assert len(first) == len(loader) > 0
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert build_sampler("random", LABELS) is None
    with pytest.raises(ConfigError, match="sampler='nope': use one of random, weighted"):
        build_sampler("nope", LABELS)
