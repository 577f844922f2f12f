"""Bits/dim of the VAE (its discrete ELBO) and of DDPM (the variational bound of Ho et al.)
against hand computations on tiny models: per-term KLs from torch.distributions, the
discretised decoder from scipy's normal CDF, Ho et al.'s μ_θ form (eq. 11) for the model's
step, and the stratified sum over t against its exact expectation."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cvcraft.models.generative.ddpm import DDPM, bound_timesteps, ddpm_bits_per_dim
from cvcraft.models.generative.vae import VAE, vae_bits_per_dim

Normal = torch.distributions.Normal


def pixels(shape, seed):
    """8-bit images in [-1, 1], including both edge levels."""
    k = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed))
    k.view(-1)[:2] = torch.tensor([0, 255])
    return k.double() / 127.5 - 1


def hand_log_prob(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """log of Φ(upper) - Φ(lower) over each pixel's bin, scipy in float64 (edges to ±∞); above
    the mean as the survival-function difference Q(lower) - Q(upper), which keeps its digits."""
    lo = np.where(x < -1 + 1e-9, -np.inf, (x - 1 / 255 - mean) / std)
    hi = np.where(x > 1 - 1e-9, np.inf, (x + 1 / 255 - mean) / std)
    upper = stats.norm.sf(lo) - stats.norm.sf(hi)
    return np.log(np.where(lo > 0, upper, stats.norm.cdf(hi) - stats.norm.cdf(lo)))


@pytest.mark.parametrize("recon_std", [1.0, 0.1])
def test_vae_bits_per_dim_equals_a_hand_computed_elbo(recon_std):
    torch.manual_seed(0)
    vae = VAE(num_classes=3, in_chans=1, img_size=8, noise_dim=3, width=8).eval()
    x = pixels((4, 1, 8, 8), 1)
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        recon, mu, logvar = vae(x.float(), None, eps=eps)
    got = vae_bits_per_dim(x, recon.double(), mu.double(), logvar.double(), recon_std)
    # by hand: one z per image (no importance weights), the decoder's bins by scipy, KL to
    # the prior by torch.distributions
    ll = hand_log_prob(x.numpy(), recon.double().numpy(), recon_std).reshape(4, -1).sum(1)
    q = Normal(mu.double(), (0.5 * logvar.double()).exp())
    kl = torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).sum(1).numpy()
    want = (kl - ll) / (64 * math.log(2))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    # a perfect reconstruction with σ → small leaves only the KL (and ~0 bits per pixel)
    sharp = vae_bits_per_dim(x, x, mu.double(), logvar.double(), 1e-4)  # bin = 39 σ
    np.testing.assert_allclose(sharp.numpy(), kl / (64 * math.log(2)), rtol=1e-6, atol=1e-9)


def tiny_ddpm(steps=8):
    torch.manual_seed(0)
    return DDPM(num_classes=3, in_chans=1, img_size=8, width=8, conditional=True,
                beta_schedule="cosine", diffusion_steps=steps, sample_steps=2).eval()  # fmt: skip


def test_ddpm_bound_with_every_timestep_equals_the_hand_computed_sum():
    model = tiny_ddpm(8)
    T, n = 8, 3
    x0 = pixels((n, 1, 8, 8), 3)
    labels = torch.tensor([0, 2, 1])
    got = ddpm_bits_per_dim(
        model, x0.float(), labels, [torch.Generator().manual_seed(10 + i) for i in range(n)], 99
    )  # strata capped at T - 1 = 7: the exact sum
    b = model.schedule.betas.double()
    a = 1 - b
    ab = torch.cumprod(a, 0)
    want = []
    for i in range(n):
        g = torch.Generator().manual_seed(10 + i)
        torch.rand(T - 1, generator=g)  # the strata fractions (unused when every t is taken)
        noise = torch.randn((T, 1, 8, 8), generator=g).double()
        x = x0[i : i + 1]
        # L_T: q(x_T | x_0) against N(0, I)
        total = torch.distributions.kl_divergence(
            Normal(ab[-1].sqrt() * x, (1 - ab[-1]).sqrt()), Normal(0.0, 1.0)
        ).sum()
        for t in range(T):
            x_t = ab[t].sqrt() * x + (1 - ab[t]).sqrt() * noise[t : t + 1]
            with torch.no_grad():
                e = model.unet(x_t.float(), torch.tensor([t]), labels[i : i + 1]).double()
            mu_theta = (x_t - b[t] / (1 - ab[t]).sqrt() * e) / a[t].sqrt()  # Ho et al. eq. 11
            if t == 0:  # the discretised decoder N(μ_θ(x_1), β_1)
                lp = hand_log_prob(x.numpy(), mu_theta.numpy(), math.sqrt(float(b[0])))
                total = total - float(lp.sum())
                continue
            var = (1 - ab[t - 1]) / (1 - ab[t]) * b[t]
            mu_true = (ab[t - 1].sqrt() * b[t] * x + a[t].sqrt() * (1 - ab[t - 1]) * x_t) / (
                1 - ab[t]
            )
            kl = torch.distributions.kl_divergence(
                Normal(mu_true, var.sqrt()), Normal(mu_theta, var.sqrt())
            )
            total = total + kl.sum()
        want.append(float(total) / (64 * math.log(2)))
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-4)
    assert all(w > 0 for w in want)


def test_stratified_timesteps_are_an_unbiased_estimate_of_the_sum():
    """Over a fine, even grid of fractions u, Σ_k n_k L_{t_k} averages to Σ_{t≥1} L_t exactly,
    for uneven strata too (T - 1 = 9 split in 4)."""
    steps, k = 10, 4
    m = 3 * 2 * 4 * 5 * 7  # a multiple of every stratum size
    u = ((torch.arange(m) + 0.5) / m)[:, None].expand(m, k)
    t, sizes = bound_timesteps(steps, k, u)
    assert int(sizes.sum()) == steps - 1 and t.min() == 1 and t.max() == steps - 1
    L = torch.rand(steps, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    est = (L[t] * sizes.double()).sum(1).mean()
    assert float(est) == pytest.approx(float(L[1:].sum()), rel=1e-12)
    # K = T - 1 strata: every t exactly once, whatever u is
    t_all, s_all = bound_timesteps(steps, 50, torch.rand(2, 50))
    assert t_all.tolist() == [list(range(1, steps))] * 2 and s_all.tolist() == [1] * (steps - 1)
