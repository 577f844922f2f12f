"""FID and KID against torchmetrics' math on the same features; the evaluators' streaming
and merged states against one pass; conditional accuracy and the class histogram by hand."""

import numpy as np
import pytest
import torch
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.kid import poly_mmd

from cvcraft.errors import ConfigError
from cvcraft.metrics.generative import (
    ConditionalAccuracy,
    FIDEvaluator,
    KIDEvaluator,
    frechet_distance,
    kernel_inception_distance,
)


def feats(seed, n, d, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    return (torch.randn(n, d, generator=g) @ mix + shift).double()


@pytest.mark.parametrize("d", [1, 8, 40])
def test_fid_equals_torchmetrics(d):
    real, fake = feats(0, 300, d), feats(1, 250, d, shift=0.3)
    ev = FIDEvaluator()
    ev.reset()
    for i in range(0, 300, 64):  # streaming sums, uneven batches
        ev.update(None, {"real_feats": real[i : i + 64], "fake_feats": fake[i : i + 64]})
    want = _compute_fid(real.mean(0), torch.cov(real.T).reshape(d, d),
                        fake.mean(0), torch.cov(fake.T).reshape(d, d))  # fmt: skip
    assert ev.compute()["fid"] == pytest.approx(float(want), rel=1e-6, abs=1e-9)


def test_fid_boundaries():
    x = feats(2, 100, 6)
    mu, cov = x.mean(0), torch.cov(x.T)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    # equal covariances: only the mean term is left
    assert frechet_distance(mu, cov, mu + 2, cov) == pytest.approx(4 * 6, rel=1e-9)
    with pytest.raises(ConfigError, match="FID needs >= 2 samples"):
        ev = FIDEvaluator()
        ev.reset()
        ev.update(None, {"real_feats": x[:1], "fake_feats": x[:1]})
        ev.compute()


def test_kid_equals_torchmetrics_poly_mmd():
    real, fake = feats(3, 60, 16), feats(4, 50, 16, shift=0.5)
    # subsets of the whole sets: KID is exactly one unbiased MMD² (order does not matter)
    mean, std = kernel_inception_distance(real, fake, subsets=3, subset_size=50)
    sub = kernel_inception_distance(real[:50], fake, subsets=1, subset_size=50)[0]
    assert sub == pytest.approx(float(poly_mmd(real[:50], fake)), rel=1e-9)
    # random subsets: each is torchmetrics' MMD on those rows
    g = torch.Generator().manual_seed(0)
    vals = []
    for _ in range(3):
        r = real[torch.randperm(60, generator=g)[:50]]
        f = fake[torch.randperm(50, generator=g)[:50]]
        vals.append(float(poly_mmd(r, f)))
    assert mean == pytest.approx(np.mean(vals), rel=1e-9)
    assert std == pytest.approx(np.std(vals), rel=1e-9)
    # same distribution -> KID near 0 (unbiased: can be slightly negative)
    x = feats(5, 800, 8)  # one distribution, two halves
    same = kernel_inception_distance(x[:400], x[400:], subsets=5, subset_size=200)
    moved = kernel_inception_distance(x[:400], x[400:] + 0.5, subsets=5, subset_size=200)
    assert abs(same[0]) < 0.1 * moved[0]


def test_merge_equals_one_pass():
    real, fake = feats(7, 90, 5), feats(8, 90, 5, 1.0)
    logits, labels = torch.randn(90, 3), torch.randint(0, 3, (90,))
    whole = [FIDEvaluator(), KIDEvaluator(subsets=4, subset_size=40), ConditionalAccuracy(3)]
    parts = [[FIDEvaluator(), KIDEvaluator(subsets=4, subset_size=40), ConditionalAccuracy(3)]
             for _ in range(2)]  # fmt: skip
    out = {"real_feats": real, "fake_feats": fake, "fake_logits": logits, "fake_labels": labels}
    for e in whole:
        e.reset()
        e.update(None, out)
    for r, evs in enumerate(parts):
        sl = slice(45 * r, 45 * (r + 1))
        for e in evs:
            e.reset()
            e.update(None, {k: v[sl] for k, v in out.items()})
    for a, b in zip(parts[0], parts[1]):
        a.merge(b.state_dict())
    for a, w in zip(parts[0], whole):
        ca, cw = a.compute(), w.compute()
        for k in cw:
            assert ca[k] == pytest.approx(cw[k], rel=1e-9), k


def test_conditional_accuracy_and_histogram():
    ev = ConditionalAccuracy(3)
    ev.reset()
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 5.0, 0], [5.0, 0, 0]])
    ev.update(None, {"fake_logits": logits, "fake_labels": torch.tensor([0, 1, 2, 0])})
    out = ev.compute()
    assert out["cond_acc"] == 0.75 and out["class_hist"] == [0.5, 0.5, 0.0]
    assert out["min_class_share"] == 0.0
    ev.reset()
    ev.update(None, {"fake_logits": logits})  # unconditional: histogram only
    assert "cond_acc" not in ev.compute()
    with pytest.raises(ConfigError, match="gives 3 classes, the generator 4"):
        e4 = ConditionalAccuracy(4)
        e4.reset()
        e4.update(None, {"fake_logits": logits})
