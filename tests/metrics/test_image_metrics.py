import math

import numpy as np
import pytest
import skimage.measure as skme
import skimage.metrics as skm
import torch
from pytorch_msssim import ms_ssim as pm_ms_ssim
from sklearn.metrics import mutual_info_score

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.image import (
    average_gradient,
    entropy,
    fusion_mi,
    ms_ssim,
    mse,
    mutual_information,
    nrmse,
    psnr,
    qabf,
    rmse,
    spatial_frequency,
    ssim,
    standard_deviation,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_error_metrics_match_skimage(pair):
    a, b = pair
    assert mse(a, b) == pytest.approx(skm.mean_squared_error(a, b))
    assert rmse(a, b) == pytest.approx(math.sqrt(skm.mean_squared_error(a, b)))
    for norm in ("euclidean", "min-max", "mean"):
        assert nrmse(a, b, norm) == pytest.approx(skm.normalized_root_mse(a, b, normalization=norm))
    assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b))
    f, g = a / 255.0, b / 255.0
    assert psnr(f, g) == pytest.approx(skm.peak_signal_noise_ratio(f, g, data_range=1.0))
    assert psnr(a, a) == float("inf")


def test_ssim_and_ms_ssim_match_oracles(pair):
    a, b = pair
    ref = skm.structural_similarity(
        a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-12)
    rgb = np.random.default_rng(5).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    dark = (rgb * 0.8).astype(np.uint8)
    ref = skm.structural_similarity(
        rgb,
        dark,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )
    assert ssim(rgb, dark) == pytest.approx(ref, abs=1e-12)
    assert ssim(a / 255.0, a / 255.0) == pytest.approx(1.0)
    rgb = np.random.default_rng(1).integers(0, 256, (170, 175, 3), dtype=np.uint8)
    noisy = np.clip(rgb + np.random.default_rng(2).normal(0, 20, rgb.shape), 0, 255)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
    u = torch.from_numpy(noisy).permute(2, 0, 1)[None].double()
    assert ms_ssim(rgb, noisy, 255) == pytest.approx(
        pm_ms_ssim(t, u, data_range=255).item(), abs=1e-6
    )


def test_no_reference_metrics(pair):
    a, _ = pair
    assert entropy(a) == pytest.approx(skme.shannon_entropy(a))
    assert entropy(np.full((5, 5), 7, np.uint8)) == 0
    assert standard_deviation(a) == pytest.approx(np.std(a.astype(float)))
    # spatial frequency and average gradient from their definitions, loop by loop
    x = a[:12, :13].astype(float)
    h, w = x.shape
    rf = sum((x[i, j] - x[i, j - 1]) ** 2 for i in range(h) for j in range(1, w)) / (h * (w - 1))
    cf = sum((x[i, j] - x[i - 1, j]) ** 2 for i in range(1, h) for j in range(w)) / ((h - 1) * w)
    assert spatial_frequency(a[:12, :13]) == pytest.approx(math.sqrt(rf + cf))
    ag = sum(
        math.sqrt(((x[i, j + 1] - x[i, j]) ** 2 + (x[i + 1, j] - x[i, j]) ** 2) / 2)
        for i in range(h - 1)
        for j in range(w - 1)
    ) / ((h - 1) * (w - 1))
    assert average_gradient(a[:12, :13]) == pytest.approx(ag)


def test_mutual_information_matches_sklearn(pair):
    a, b = pair
    ref = mutual_info_score(a.ravel(), b.ravel()) / math.log(2)
    assert mutual_information(a, b) == pytest.approx(ref)
    assert mutual_information(a, a) == pytest.approx(entropy(a))
    c = np.random.default_rng(3).integers(0, 256, a.shape, dtype=np.uint8)
    assert fusion_mi(a, c, b) == pytest.approx(
        ref + mutual_info_score(c.ravel(), b.ravel()) / math.log(2)
    )


def _qabf_loop(a, b, f):
    """Q^{AB/F} straight from Xydeas & Petrovic, pixel by pixel (replicated-border Sobel)."""

    def sobel(x):
        p = np.pad(x.astype(float), 1, mode="edge")
        h, w = x.shape
        gx, gy = np.zeros((h, w)), np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                win = p[i : i + 3, j : j + 3]
                gx[i, j] = (win[:, 2] * [1, 2, 1]).sum() - (win[:, 0] * [1, 2, 1]).sum()
                gy[i, j] = (win[2] * [1, 2, 1]).sum() - (win[0] * [1, 2, 1]).sum()
        return gx, gy

    def polar(x):
        gx, gy = sobel(x)
        g = np.sqrt(gx**2 + gy**2)
        al = np.zeros_like(g)
        for idx in np.ndindex(g.shape):
            al[idx] = math.pi / 2 if gx[idx] == 0 else math.atan(gy[idx] / gx[idx])
        return g, al

    (ga, aa), (gb, ab), (gf, af) = polar(a), polar(b), polar(f)
    num = den = 0.0
    for idx in np.ndindex(ga.shape):
        total = 0.0
        for gs, as_ in ((ga[idx], aa[idx]), (gb[idx], ab[idx])):
            if gs == 0 and gf[idx] == 0:
                g = 1.0
            else:
                g = min(gs, gf[idx]) / max(gs, gf[idx])
            al = 1 - abs(as_ - af[idx]) / (math.pi / 2)
            q = 0.9994 / (1 + math.exp(-15 * (g - 0.5))) * 0.9879 / (1 + math.exp(-22 * (al - 0.8)))
            total += q * gs
        num += total
        den += ga[idx] + gb[idx]
    return num / den


def test_qabf_matches_the_loop_reference():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (14, 15), dtype=np.uint8)
    b = rng.integers(0, 256, (14, 15), dtype=np.uint8)
    f = ((a.astype(int) + b) // 2).astype(np.uint8)
    assert qabf(a, b, f) == pytest.approx(_qabf_loop(a, b, f), rel=1e-10)
    # a perfect copy keeps all edges: the product of the two sigmoids at G = A = 1
    top = 0.9994 / (1 + math.exp(-7.5)) * 0.9879 / (1 + math.exp(-4.4))
    assert qabf(a, a, a) == pytest.approx(top)
    assert qabf(a, b, f) < qabf(a, b, a)


def test_image_metric_errors(pair):
    a, b = pair
    with pytest.raises(DataError, match="one shape"):
        mse(a, b[:-1])
    with pytest.raises(DataError, match="non-empty"):
        psnr(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ConfigError, match="normalization"):
        nrmse(a, b, "max")
    with pytest.raises(DataError, match="single-channel"):
        entropy(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="one shape"):
        qabf(a, b, a[:-1])
    with pytest.raises(DataError, match="smaller than"):
        ssim(a[:8, :8], b[:8, :8])
