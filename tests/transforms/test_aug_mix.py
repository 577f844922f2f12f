"""MixupCutmix: soft targets sum to 1 and match the pixels shown; lam ~ Beta; loss pairing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.classification import SoftTargetCrossEntropy, cross_entropy
from cvcraft.transforms.labels import smooth_labels
from cvcraft.transforms.mix import MixupCutmix, cutmix_box

N, K, H, W = 8, 10, 12, 20


def _batch():
    # image i is the constant value i, label i: any output pixel tells which image it came from
    images = torch.arange(N, dtype=torch.uint8).reshape(N, 1, 1, 1).expand(N, 3, H, W).clone()
    return images, torch.arange(N)


@pytest.mark.parametrize("seed", range(12))
def test_cutmix_targets_equal_pixel_shares(seed):
    images, labels = _batch()
    mix = MixupCutmix(K, cutmix_alpha=1.0)
    x, y = mix(images, labels, np.random.default_rng(seed))
    assert x.dtype == torch.uint8
    torch.testing.assert_close(y.sum(1), torch.ones(N))
    for i in range(N):
        share = torch.bincount(x[i, 0].flatten().long(), minlength=K).float() / (H * W)
        # the soft target of every class equals the fraction of pixels coming from it
        torch.testing.assert_close(y[i], share, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(6))
def test_mixup_pixels_and_targets(seed):
    images, labels = _batch()
    mix = MixupCutmix(K, mixup_alpha=0.4)
    params = mix.make_params(N, H, W, np.random.default_rng(seed))
    x, y = mix(images, labels, np.random.default_rng(seed))
    assert params.mode == "mixup"
    lam, perm = params.lam, params.perm
    expect = lam * np.arange(N) + (1 - lam) * perm  # hand-computed pixel value per image
    torch.testing.assert_close(x[:, 0, 0, 0], torch.tensor(expect, dtype=torch.float32))
    ref = np.zeros((N, K), np.float32)
    ref[np.arange(N), np.arange(N)] += lam
    ref[np.arange(N), perm] += 1 - lam
    torch.testing.assert_close(y, torch.from_numpy(ref))


def test_label_smoothing_and_rows_sum_to_one():
    images, labels = _batch()
    eps = 0.1
    mix = MixupCutmix(K, mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=eps)
    for seed in range(10):
        _, y = mix(images, labels, np.random.default_rng(seed))
        torch.testing.assert_close(y.sum(1), torch.ones(N))
        assert float(y.min()) >= eps / K - 1e-7
    # an unmixed batch (prob=0) gets exactly the smoothed one-hot targets
    off = MixupCutmix(K, mixup_alpha=1.0, prob=0.0, label_smoothing=eps)
    x, y = off(images, labels, np.random.default_rng(0))
    assert torch.equal(x, images)
    torch.testing.assert_close(y, smooth_labels(labels, K, eps))


def test_mixup_loss_equals_lam_weighted_hard_losses():
    # Zhang et al.'s criterion: lam * CE(z, y_i) + (1 - lam) * CE(z, y_j)
    images, labels = _batch()
    mix = MixupCutmix(K, mixup_alpha=1.0)
    params = mix.make_params(N, H, W, np.random.default_rng(3))
    y = mix.targets(labels, params)
    logits = torch.randn(N, K, generator=torch.Generator().manual_seed(0))
    perm = torch.as_tensor(params.perm)
    ref = params.lam * F.cross_entropy(logits, labels) + (1 - params.lam) * F.cross_entropy(
        logits, labels[perm]
    )
    torch.testing.assert_close(SoftTargetCrossEntropy()(logits, y), ref)
    torch.testing.assert_close(cross_entropy(logits, y), ref)


def test_lambda_follows_beta_distribution():
    mix = MixupCutmix(K, mixup_alpha=0.4)
    rng = np.random.default_rng(0)
    lams = [mix.make_params(4, H, W, rng).lam for _ in range(2000)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.01


def test_switch_prob_and_prob():
    mix = MixupCutmix(K, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0)
    rng = np.random.default_rng(0)
    assert {mix.make_params(N, H, W, rng).mode for _ in range(50)} == {"cutmix"}
    mix = MixupCutmix(K, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.0)
    assert {mix.make_params(N, H, W, rng).mode for _ in range(50)} == {"mixup"}
    mix = MixupCutmix(K, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.3)
    modes = [mix.make_params(N, H, W, rng).mode for _ in range(2000)]
    assert abs(np.mean([m != "none" for m in modes]) - 0.3) < 0.04
    assert abs(np.mean([m == "cutmix" for m in modes]) - 0.15) < 0.03


def test_cutmix_box_clipped_area():
    rng = np.random.default_rng(1)
    for _ in range(200):
        lam = float(rng.uniform())
        y1, y2, x1, x2 = cutmix_box(H, W, lam, rng)
        assert 0 <= y1 <= y2 <= H and 0 <= x1 <= x2 <= W
        # never larger than nominal (1 - lam) * H * W
        assert (y2 - y1) * (x2 - x1) <= (1 - lam) * H * W + 1e-9


def test_same_rng_same_batch_and_input_untouched():
    images, labels = _batch()
    before = images.clone()
    mix = MixupCutmix(K, mixup_alpha=1.0, cutmix_alpha=1.0)
    a = mix(images, labels, np.random.default_rng([0, 3, 7, 1]))
    b = mix(images, labels, np.random.default_rng([0, 3, 7, 1]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(images, before)


def test_errors():
    with pytest.raises(ConfigError, match="mixup=-1 .* Beta alphas must be >= 0"):
        MixupCutmix(K, mixup_alpha=-1)
    with pytest.raises(ConfigError, match=r"mix_prob=1\.5 must be in \[0, 1\]"):
        MixupCutmix(K, prob=1.5)
    mix = MixupCutmix(3, mixup_alpha=1.0)
    with pytest.raises(DataError, match="num_classes=3"):
        mix(torch.zeros(2, 3, 4, 4), torch.tensor([0, 5]), np.random.default_rng(0))
