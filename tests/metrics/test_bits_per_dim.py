"""Likelihood pieces in bits/dim: the Gaussian KL against torch.distributions, the discretised
Gaussian log-likelihood against a numerical integral of the normal density (scipy.quad) and
scipy's CDF differences, at random points and at the edge bins."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from cvcraft.metrics.bits_per_dim import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
)


def test_gaussian_kl_equals_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(2, 50, 7, generator=g, dtype=torch.float64)
    lv1, lv2 = 3 * torch.randn(2, 50, 7, generator=g, dtype=torch.float64)
    want = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()),
        torch.distributions.Normal(m2, (0.5 * lv2).exp()),
    )
    torch.testing.assert_close(gaussian_kl(m1, lv1, m2, lv2), want, rtol=1e-10, atol=1e-12)
    # the same distribution: exactly 0; a mean shift with unit variances: Δ²/2
    assert float(gaussian_kl(m1, lv1, m1, lv1).abs().max()) == 0.0
    z = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_kl(z + 2, z, z, z), z + 2.0)


def quad_log_prob(k: int, mean: float, std: float) -> float:
    """log ∫ over pixel k's bin of the N(mean, std²) density, by adaptive quadrature."""
    lo = -np.inf if k == 0 else (k - 0.5) / 127.5 - 1
    hi = np.inf if k == 255 else (k + 0.5) / 127.5 - 1
    pdf = stats.norm(mean, std).pdf
    if np.isinf(lo) or np.isinf(hi):  # quad on a half-line misses a narrow peak: split it
        mid = float(np.clip(mean, -1.0, 1.0))
        if np.isinf(lo):
            mid = min(mid, hi)
            val = integrate.quad(pdf, -np.inf, mid)[0] + integrate.quad(pdf, mid, hi)[0]
        else:
            mid = max(mid, lo)
            val = integrate.quad(pdf, lo, mid)[0] + integrate.quad(pdf, mid, np.inf)[0]
    else:
        val = integrate.quad(pdf, lo, hi, epsabs=0, epsrel=1e-12)[0]
    return math.log(val)


def test_discretized_gaussian_matches_numerical_integration():
    rng = np.random.default_rng(1)
    ks = np.concatenate([[0, 1, 127, 128, 254, 255], rng.integers(0, 256, 30)])
    means = rng.uniform(-1.2, 1.2, len(ks))
    stds = np.exp(rng.uniform(np.log(2e-3), np.log(1.0), len(ks)))
    # keep the integral above quad's floor (a bin 6+ σ from the mean: tested by CDFs below)
    keep = (np.abs((ks / 127.5 - 1) - means) / stds < 5) | (ks == 0) | (ks == 255)
    ks, means, stds = ks[keep], means[keep], stds[keep]
    assert len(ks) >= 10
    x = torch.tensor(ks / 127.5 - 1, dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(
        x, torch.tensor(means), torch.tensor(np.log(stds))
    ).numpy()
    want = [quad_log_prob(int(k), m, s) for k, m, s in zip(ks, means, stds)]
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


def test_discretized_gaussian_tails_and_normalisation():
    """Far tails against scipy's log-CDF differences (no cancellation), and the 256 bin
    probabilities of one Gaussian sum to 1."""
    x = torch.tensor([-1.0, 1.0, 0.0, 0.0, 1 - 2 / 255], dtype=torch.float64)
    mean = torch.tensor([0.5, -0.5, 0.9, -0.9, -0.9], dtype=torch.float64)
    std = torch.tensor([0.01, 0.02, 0.05, 0.05, 0.1], dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(x, mean, std.log()).numpy()
    for i in range(len(x)):
        xi, m, s = float(x[i]), float(mean[i]), float(std[i])
        lo = -np.inf if xi < -1 + 1e-9 else (xi - 1 / 255 - m) / s
        hi = np.inf if xi > 1 - 1e-9 else (xi + 1 / 255 - m) / s
        if lo > 0:  # upper tail: survival functions, computed in log space
            a, b = stats.norm.logsf(lo), stats.norm.logsf(hi)
        else:
            a, b = stats.norm.logcdf(hi), stats.norm.logcdf(lo)
        want = a + np.log1p(-np.exp(b - a))
        assert np.isfinite(got[i]) and got[i] < -40  # tens of σ away, still finite
        assert got[i] == pytest.approx(want, rel=1e-9), i
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for m, s in ((0.3, 0.2), (-1.0, 0.004), (0.0, 3.0)):
        lp = discretized_gaussian_log_likelihood(
            grid, torch.full_like(grid, m), torch.full_like(grid, math.log(s))
        )
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_bits_per_dim_is_nats_over_d_ln2():
    nats = torch.tensor([784 * math.log(2.0) * 8, 0.0])
    torch.testing.assert_close(bits_per_dim(nats, 784), torch.tensor([8.0, 0.0]))
    # a uniform decoder over 256 levels: exactly 8 bits per dimension
    uniform = -torch.full((2, 3, 4, 4), math.log(1 / 256)).flatten(1).sum(1)
    torch.testing.assert_close(bits_per_dim(uniform, 48), torch.full((2,), 8.0))
