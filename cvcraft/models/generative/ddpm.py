"""DDPM: a small U-Net that predicts the noise in x_t, and its samplers (DDIM, ancestral).

The U-Net: a sinusoidal embedding of t (Transformer-style frequencies) -> MLP, added (with
an optional class embedding) inside every residual block; two resolutions (stride-2 down,
nearest-up + conv) with skip connections, and self-attention at the lowest one
(``attention=False`` drops it). ``forward(x_t, labels, t=t)`` is the training
pass (ε̂ for timesteps t); ``forward(z, labels)`` samples: z (N, C·H·W) is x_T, reversed with
``sampler`` ("ddim": ``sample_steps`` strided steps with η; "ddpm": every ancestral step).
Shapes: x (N, C, H, W) in [-1, 1], t (N,) int64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.metrics.bits_per_dim import bits_per_dim
from cvcraft.models.generative.diffusion import DiffusionSchedule
from cvcraft.models.generative.gan import GENERATIVE_CFG
from cvcraft.models.registry import register_model


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[sin(t·ω_i), cos(t·ω_i)], ω_i = 10000^(-i / (dim/2)): (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], 1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time(+class) embedding added in between; 1x1 skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class AttnBlock(nn.Module):
    """Self-attention over the H·W positions of a feature map (DDPM's block at low
    resolution): x + proj(softmax(QKᵀ/√d)V) on GroupNorm(x), ``heads`` heads. Attention mixes
    information across the whole image, which 3x3 convolutions reach only through depth."""

    def __init__(self, c: int, heads: int = 1) -> None:
        super().__init__()
        if c % heads:
            raise ConfigError(f"attention: {c} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = nn.GroupNorm(8, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (N, heads, d, HW) -> attention over positions
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                             v.transpose(-1, -2))  # fmt: skip
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class SmallUNet(nn.Module):
    """(x_t, t, labels) -> ε̂: res blocks at H and H/2 and H/4, skips joined by concatenation."""

    def __init__(self, in_chans: int, width: int, num_classes: int, attention: bool = True) -> None:
        super().__init__()
        c1, c2, c3, emb = width, 2 * width, 2 * width, 4 * width
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        # one row more than classes: the last is the "no label" row classifier-free guidance
        # trains (labels dropped to it) and samples against
        self.label_emb = nn.Embedding(num_classes + 1, emb) if num_classes else None
        self.null_label = num_classes
        self.inc = nn.Conv2d(in_chans, c1, 3, padding=1)
        self.down1, self.pool1 = ResBlock(c1, c1, emb), nn.Conv2d(c1, c1, 3, 2, 1)
        self.down2, self.pool2 = ResBlock(c1, c2, emb), nn.Conv2d(c2, c2, 3, 2, 1)
        self.mid = ResBlock(c2, c3, emb)
        self.mid_attn = AttnBlock(c3) if attention else nn.Identity()  # at H/4 only
        self.up2 = ResBlock(c3 + c2, c2, emb)
        self.up1 = ResBlock(c2 + c1, c1, emb)
        self.out = nn.Sequential(
            nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, in_chans, 3, padding=1)
        )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.width))  # (N, emb)
        if self.label_emb is not None:
            emb = emb + self.label_emb(labels)
        h1 = self.down1(self.inc(x), emb)  # (N, c1, H, W)
        h2 = self.down2(self.pool1(h1), emb)  # (N, c2, H/2, W/2)
        m = self.mid_attn(self.mid(self.pool2(h2), emb))  # (N, c3, H/4, W/4)
        u = F.interpolate(m, size=h2.shape[-2:], mode="nearest")
        u = self.up2(torch.cat([u, h2], 1), emb)
        u = F.interpolate(u, size=h1.shape[-2:], mode="nearest")
        return self.out(self.up1(torch.cat([u, h1], 1), emb))  # (N, C, H, W)


class DDPM(nn.Module):
    """A noise-prediction U-Net with its schedule; sampling is its no-``t`` forward."""

    family = "ddpm"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        width: int = 32,
        conditional: bool = False,
        beta_schedule: str = "linear",
        diffusion_steps: int = 1000,
        sampler: str = "ddim",
        sample_steps: int = 50,
        eta: float = 0.0,
        guidance: float = 1.0,
        attention: bool = True,
        clip: bool = True,
        clipped_eps: bool = True,
        **_: object,  # the task's GAN-only options (noise_dim, d_norm, spectral_norm)
    ) -> None:
        super().__init__()
        if img_size % 4:
            raise ConfigError(f"imgsz={img_size}: the DDPM U-Net halves twice; use a multiple of 4")
        if sampler not in ("ddim", "ddpm"):
            raise ConfigError(f"sampler={sampler!r} is not one of ddim, ddpm")
        self.unet = SmallUNet(in_chans, width, num_classes if conditional else 0, attention)
        # clip: x̂_0 and samples kept in the data range [-1, 1] (off for latent diffusion)
        self.schedule = DiffusionSchedule(beta_schedule, diffusion_steps, clip_x0=clip)
        self.clip = clip
        # DDIM: the direction term from the ε of the clipped x̂_0 (see DiffusionSchedule.
        # ddim_step); an under-trained ε̂ at large t overshoots x̂_0 far outside [-1, 1],
        # and the raw ε̂ carries that error on into grey, speckled samples
        self.clipped_eps = clipped_eps
        self.sampler, self.sample_steps, self.eta = sampler, sample_steps, eta
        self.guidance = guidance
        self.schedule.ddim_timesteps(sample_steps)  # validates the step count now
        self.conditional, self.num_classes = conditional, num_classes
        self.shape = (in_chans, img_size, img_size)
        self.noise_dim = in_chans * img_size * img_size  # z is x_T, flattened
        self.default_input_size = self.shape

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        if t is not None:
            return self.unet(x, t, labels)  # training: ε̂(x_t, t)
        return self.sample(x.view(-1, *self.shape), labels, seed)

    def eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """ε̂ for sampling. With ``guidance`` w ≠ 1 on a conditional model, classifier-free
        guidance (Ho & Salimans 2022): ε̂ = ε̂(x, ∅) + w·(ε̂(x, y) - ε̂(x, ∅)), both passes in
        one batch; w = 0 is unconditional, w = 1 plain conditional (one pass)."""
        if labels is None or self.guidance == 1.0:
            return self.unet(x, t, labels)
        null = torch.full_like(labels, self.unet.null_label)
        both = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        return uncond + self.guidance * (cond - uncond)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, labels: torch.Tensor | None, seed: int = 0) -> torch.Tensor:
        """Reverse x_T -> x_0; the ancestral/η noise comes from a generator seeded ``seed``."""
        s, n = self.schedule, len(x)
        g = torch.Generator().manual_seed(seed)
        if self.sampler == "ddpm":
            for t in range(s.steps - 1, -1, -1):
                eps = self.eps(x, torch.full((n,), t, device=x.device), labels)
                noise = torch.randn(x.shape, generator=g).to(x.device) if t > 0 else None
                x = s.ddpm_step(eps, t, x, noise)
            return x.clamp(-1, 1) if self.clip else x
        ts = s.ddim_timesteps(self.sample_steps)
        for i, t in enumerate(ts):
            eps = self.eps(x, torch.full((n,), t, device=x.device), labels)
            noise = torch.randn(x.shape, generator=g).to(x.device) if self.eta > 0 else None
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            x = s.ddim_step(eps, t, prev, x, self.eta, noise, self.clipped_eps)
        return x.clamp(-1, 1) if self.clip else x


def bound_timesteps(steps: int, strata: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified timesteps for the bound's sum over t = 1..T-1: ``strata`` K (capped at
    T - 1) equal ranges, one t per range at its fraction ``u`` (N, K) in [0, 1); returns t
    (N, K) and each range's size (K,), the weight that makes Σ_k n_k L_{t_k} an unbiased
    estimate of Σ_t L_t (exact when K = T - 1)."""
    k = min(strata, steps - 1)
    edges = 1 + torch.arange(k + 1) * (steps - 1) // k  # (K + 1,): 1 .. T
    sizes = edges[1:] - edges[:-1]
    t = edges[:-1] + (u[:, :k] * sizes).long().clamp_max(sizes - 1)
    return t, sizes


@torch.no_grad()
def ddpm_bits_per_dim(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor | None,
    generators: list[torch.Generator],
    strata: int,
) -> torch.Tensor:
    """The variational bound of 8-bit images ``x0`` (N, C, H, W) in bits/dim (N,): L_T and the
    decoder term L_0 exactly, Σ_{t≥1} L_t from ``strata`` stratified timesteps (see
    ``bound_timesteps``); each image's t and ε come from its own generator. The model is the
    conditional ε̂ (no guidance: a guided ε̂ is not a likelihood model)."""
    s, n = model.schedule, len(x0)
    k = min(strata, s.steps - 1)
    u = torch.stack([torch.rand(k, generator=g) for g in generators])
    noise = torch.stack([torch.randn((k + 1, *x0.shape[1:]), generator=g) for g in generators])
    t_mid, sizes = bound_timesteps(s.steps, k, u)
    t = torch.cat([torch.zeros(n, 1, dtype=torch.int64), t_mid], 1).to(x0.device)  # (N, K+1)
    weight = torch.cat([torch.ones(1), sizes.double()]).to(x0.device)  # L_0 once, L_t by n_k
    xs = x0.repeat_interleave(k + 1, 0)  # (N·(K+1), C, H, W), item-major
    ts, eps = t.flatten(), noise.to(x0.device).flatten(0, 1)
    ys = None if labels is None else labels.repeat_interleave(k + 1, 0)
    x_t = s.q_sample(xs, ts, eps)
    terms = s.bound_term(xs, x_t, ts, model.unet(x_t, ts, ys)).view(n, k + 1)
    nats = s.prior_kl(x0) + (terms * weight).sum(1)
    return bits_per_dim(nats, x0[0].numel())


_CFG = GENERATIVE_CFG


@register_model(default_cfg=_CFG)
def ddpm(num_classes: int = 10, in_chans: int = 1, **kw: object) -> DDPM:
    """DDPM with ε-prediction on a small U-Net (DDIM or ancestral sampling)."""
    return DDPM(num_classes, in_chans, **kw)  # type: ignore[arg-type]


@register_model(default_cfg=_CFG)
def cddpm(num_classes: int = 10, in_chans: int = 1, **kw: object) -> DDPM:
    """Class-conditional DDPM (a class embedding added to the time embedding)."""
    return DDPM(num_classes, in_chans, conditional=True, **kw)  # type: ignore[arg-type]
