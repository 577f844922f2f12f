"""Likelihood of 8-bit images in bits per dimension: the pieces of a VAE's ELBO and of the
DDPM variational bound (Ho et al. 2020, §3.3), and the conversion to bits/dim.

- KL of two diagonal Gaussians: ½ (log v₂/v₁ + (v₁ + (μ₁ - μ₂)²) / v₂ - 1), per element.
- The discretised Gaussian decoder: pixels k ∈ {0..255} live in [-1, 1] as x = k/127.5 - 1;
  P(x) = Φ((x + 1/255 - μ)/σ) - Φ((x - 1/255 - μ)/σ), the edge bins reaching to ∓∞ so the 256
  probabilities sum to 1. A discrete likelihood: no dequantisation noise is added.
- bits/dim = -log p(x) (nats) / (D · ln 2), D = C·H·W.
Shapes: any broadcastable tensors (element-wise); ``bits_per_dim`` reduces (N, ...) -> (N,).
"""

from __future__ import annotations

import math

import torch
from torch.special import log_ndtr

BIN = 1.0 / 255.0  # half the width of one of the 256 bins in [-1, 1]


def gaussian_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(μ₁, e^{logvar₁}) ‖ N(μ₂, e^{logvar₂})) element-wise, in nats."""
    return 0.5 * (
        logvar2 - logvar1 + (logvar1 - logvar2).exp() + (mean1 - mean2).pow(2) * (-logvar2).exp()
        - 1.0
    )  # fmt: skip


def _log_diff_ndtr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Φ(b) - Φ(a)) for a < b without cancellation: in the upper tail it uses the
    mirrored form Φ(-a) - Φ(-b), and log(e^u - e^v) = u + log(1 - e^{v-u})."""
    upper = a > 0
    hi = torch.where(upper, log_ndtr(-a), log_ndtr(b))
    lo = torch.where(upper, log_ndtr(-b), log_ndtr(a))
    return hi + torch.log(-torch.expm1(lo - hi))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log P(x) of 8-bit pixels ``x`` (on the grid k/127.5 - 1, k = 0..255) under N(μ, σ²)
    integrated over each pixel's bin; element-wise, in nats (≤ 0)."""
    inv = torch.exp(-log_std)
    lo = torch.where(x < -1 + BIN, torch.full_like(x, -math.inf), (x - BIN - mean) * inv)
    hi = torch.where(x > 1 - BIN, torch.full_like(x, math.inf), (x + BIN - mean) * inv)
    return _log_diff_ndtr(lo, hi)


def bits_per_dim(nats: torch.Tensor, dims: int) -> torch.Tensor:
    """-log p in nats per image (N,) -> bits per dimension (N,): nats / (D ln 2)."""
    return nats / (dims * math.log(2.0))
