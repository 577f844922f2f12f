"""The DDPM noise schedule and its samplers (Ho et al. 2020; DDIM: Song et al. 2021).

Forward process: q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I), ᾱ_t = Π_{s≤t} (1 - β_s). A network
predicts the noise ε in x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε (ε-prediction), from which
x̂_0 = (x_t - √(1 - ᾱ_t) ε̂) / √ᾱ_t.
- Ancestral (DDPM) step: x_{t-1} ~ q(x_{t-1} | x_t, x̂_0) = N(μ̃, β̃_t I) with
  μ̃ = √ᾱ_{t-1} β_t / (1 - ᾱ_t) x̂_0 + √α_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t) x_t and
  β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) β_t.
- DDIM step (t -> s < t): x_s = √ᾱ_s x̂_0 + √(1 - ᾱ_s - σ²) ε̂ + σ z, with
  σ = η √((1 - ᾱ_s) / (1 - ᾱ_t)) √(1 - ᾱ_t / ᾱ_s); η = 0 is deterministic, and ᾱ of the step
  before 0 is 1.
Schedules: ``linear`` β from 1e-4 to 0.02 (scaled by 1000 / T); ``cosine`` (Nichol & Dhariwal
2021) β_t = min(1 - f((t+1)/T) / f(t/T), 0.999), f(u) = cos²((u + 0.008) / 1.008 · π/2).
Variational bound (Ho et al. §3.3), in nats per image: L = L_T + Σ_{t≥1} L_t + L_0 with
L_T = KL(q(x_T | x_0) ‖ N(0, I)), L_t = KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t)) where p
is N(μ̃(x_t, x̂_0), β̃_t) — the ancestral sampler's step, x̂_0 unclipped — and L_0 = -log
p(x_0 | x_1) under the discretised Gaussian decoder N(μ̃, β_1) (β̃ is 0 there). Timesteps
are 0-based here: index t is the paper's t + 1.
Tensors: x (N, C, H, W), t (N,) int64 or an int.
"""

from __future__ import annotations

import math

import torch

from cvcraft.errors import ConfigError
from cvcraft.metrics.bits_per_dim import discretized_gaussian_log_likelihood, gaussian_kl

BETA_SCHEDULES = ("linear", "cosine")


def make_betas(kind: str, steps: int) -> torch.Tensor:
    """β_1..β_T (T = ``steps``) as float32."""
    if steps < 2:
        raise ConfigError(f"diffusion steps={steps} must be >= 2")
    if kind == "linear":
        scale = 1000 / steps  # keeps the total noise comparable for other T
        return torch.linspace(1e-4 * scale, 0.02 * scale, steps, dtype=torch.float32)
    if kind == "cosine":
        u = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999).float()
    raise ConfigError(f"beta schedule {kind!r} is not one of {', '.join(BETA_SCHEDULES)}")


def _at(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast over ``like`` (N, ...)."""
    v = values.to(like.device)[torch.as_tensor(t, device=like.device)]
    return v.view(-1, *([1] * (like.ndim - 1))) if v.ndim else v


class DiffusionSchedule:
    """β, α, ᾱ of a T-step forward process and the steps that reverse it."""

    def __init__(self, kind: str = "linear", steps: int = 1000, clip_x0: bool = True) -> None:
        self.kind, self.steps, self.clip_x0 = kind, steps, clip_x0
        self.betas = make_betas(kind, steps)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1), self.alphas_cumprod[:-1]])

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor
    ) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε."""
        a = _at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor
    ) -> torch.Tensor:
        """x̂_0 from ε̂, clipped to [-1, 1] when ``clip_x0`` (the data range)."""
        a = _at(self.alphas_cumprod, t, x_t)
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    def posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean μ̃ and variance β̃_t of q(x_{t-1} | x_t, x_0)."""
        a_bar, a_prev = _at(self.alphas_cumprod, t, x_t), _at(self.alphas_cumprod_prev, t, x_t)
        # α_t as ᾱ_t / ᾱ_{t-1} (equal to 1 - β_t; the form a strided sampler needs, and the
        # one diffusers evaluates, so float32 round-off agrees too)
        alpha = a_bar / a_prev
        beta = 1 - alpha
        # the two coefficients first: near t = 0, 1 - ᾱ_t is tiny and dividing a sum by it
        # would amplify float32 round-off
        c0 = a_prev.sqrt() * beta / (1 - a_bar)
        ct = alpha.sqrt() * (1 - a_prev) / (1 - a_bar)
        mean = c0 * x0 + ct * x_t
        var = ((1 - a_prev) / (1 - a_bar) * beta).clamp(min=1e-20)
        return mean, var

    def ddpm_step(
        self, eps: torch.Tensor, t: int, x_t: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1} (no noise at t = 0)."""
        mean, var = self.posterior(self.predict_x0(x_t, t, eps), x_t, t)
        if t == 0 or noise is None:
            return mean
        return mean + var.sqrt() * noise

    def ddim_timesteps(self, n: int) -> list[int]:
        """``n`` evenly strided timesteps, last first: T/n·(n-1), ..., T/n, 0."""
        if not 1 <= n <= self.steps:
            raise ConfigError(f"sampling steps={n} must be in 1..{self.steps}")
        stride = self.steps // n
        return [i * stride for i in range(n - 1, -1, -1)]

    def ddim_step(
        self,
        eps: torch.Tensor,
        t: int,
        prev_t: int,
        x_t: torch.Tensor,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        clipped_eps: bool = False,
    ) -> torch.Tensor:
        """One DDIM step x_t -> x_{prev_t}; ``prev_t`` < 0 means the clean end (ᾱ = 1).

        ``clipped_eps``: the direction term uses ε re-derived from the clipped x̂_0,
        (x_t - √ᾱ_t x̂_0) / √(1 - ᾱ_t), so x_s is a point of the forward process of the x̂_0
        it moves to (guided-diffusion's DDIM sampler; diffusers' ``use_clipped_model_output``);
        off, the raw ε̂ (diffusers' default)."""
        a_t = self.alphas_cumprod[t]
        a_s = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        x0 = self.predict_x0(x_t, t, eps)
        if clipped_eps and self.clip_x0:
            eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
        x_s = a_s.sqrt() * x0 + (1 - a_s - sigma**2).sqrt() * eps
        if eta > 0 and noise is not None:
            x_s = x_s + sigma * noise
        return x_s

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) ‖ N(0, I)) summed per image: (N, ...) -> (N,)."""
        a = self.alphas_cumprod[-1].double()
        mean, logvar = a.sqrt() * x0.double(), torch.log1p(-a).expand(x0.shape)
        zero = torch.zeros_like(mean)
        return gaussian_kl(mean, logvar, zero, zero).flatten(1).sum(1)

    def bound_term(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """L_t per image (N,) for per-image timesteps ``t`` (N,), given ε̂(x_t, t): the KL of
        the true posterior to the model's step where t > 0, the decoder's -log p(x_0 | x_1)
        where t = 0. Computed in float64."""
        x0, x_t, eps = x0.double(), x_t.double(), eps.double()
        a = _at(self.alphas_cumprod.double(), t, x_t)
        x0_hat = (x_t - (1 - a).sqrt() * eps) / a.sqrt()  # unclipped: the bound's model
        true_mean, var = self.posterior(x0, x_t, t)
        model_mean, _ = self.posterior(x0_hat, x_t, t)
        logvar = var.log().expand(x0.shape)
        kl = gaussian_kl(true_mean, logvar, model_mean, logvar).flatten(1).sum(1)
        log_std = 0.5 * torch.log(self.betas[0].double()).expand(x0.shape)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, log_std).flatten(1).sum(1)
        return torch.where(t.to(kl.device) == 0, nll, kl)
