"""Variational autoencoder (Kingma & Welling 2014), optionally class-conditional.

The encoder maps x to q(z|x) = N(μ, diag σ²); a sample z = μ + σ·ε (the reparameterisation:
ε ~ N(0, I) is the only random input, so gradients reach μ and σ) is decoded back to x̂.
Training minimises the negative ELBO: reconstruction + β·KL(q(z|x) ‖ N(0, I)), with
KL = -½ Σ (1 + log σ² - μ² - σ²). Sampling decodes z ~ N(0, I).

``forward(z, labels)`` decodes (the generator interface sampling and predict share with the
GANs); ``forward(x, labels, eps=ε)`` is the training pass (x̂, μ, log σ²), kept in one
``forward`` so a DDP wrapper sees it. Shapes: x (N, C, H, W) in [-1, 1], z/μ/log σ² (N, D).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cvcraft.metrics.bits_per_dim import bits_per_dim, discretized_gaussian_log_likelihood
from cvcraft.models.generative.gan import DCGANGenerator, upsample_steps
from cvcraft.models.registry import register_model


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent dims: (N, D) -> (N,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def vae_bits_per_dim(
    x: torch.Tensor,
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    recon_std: float = 1.0,
) -> torch.Tensor:
    """-ELBO in bits/dim of 8-bit images ``x`` (in [-1, 1]) for a VAE whose decoder is the
    discretised Gaussian N(x̂, σ²) over each pixel's bin (σ = ``recon_std``, the σ of the
    training loss ‖x̂ - x‖² / 2σ²), with one z ~ q(z|x) behind ``recon``:
    (-Σ log P(x_i | z) + KL(q(z|x) ‖ N(0, I))) / (D ln 2). (N, C, H, W), (N, D_z) -> (N,)."""
    log_std = torch.full_like(recon, math.log(recon_std))
    nll = -discretized_gaussian_log_likelihood(x, recon, log_std).flatten(1).sum(1)
    return bits_per_dim(nll + kl_to_standard_normal(mu, logvar), x[0].numel())


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with σ = exp(½ log σ²)."""
    return mu + (0.5 * logvar).exp() * eps


class ConvEncoder(nn.Module):
    """image (+ label plane) -> k × [Conv 4/2 + BN + LeakyReLU] -> Linear -> (μ, log σ²)."""

    def __init__(
        self, in_chans: int, img_size: int, width: int, latent_dim: int, num_classes: int
    ) -> None:
        super().__init__()
        k = upsample_steps(img_size)
        self.img_size = img_size
        self.embed = nn.Embedding(num_classes, img_size * img_size) if num_classes else None
        c_in, c = in_chans + (1 if num_classes else 0), width
        layers: list[nn.Module] = []
        for _ in range(k):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c),
                       nn.LeakyReLU(0.2, inplace=True)]  # fmt: skip
            c_in, c = c, c * 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * (img_size // 2**k) ** 2, 2 * latent_dim)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.embed is not None:
            x = torch.cat([x, self.embed(labels).view(-1, 1, self.img_size, self.img_size)], 1)
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=1)  # (N, D) each
        return mu, logvar.clamp(-20, 10)  # keeps exp(log σ²) finite early in training


AE_KINDS = ("vae", "ae", "sparse", "denoise")


class VAE(nn.Module):
    """A convolutional VAE; the decoder is DCGAN's generator (latent in place of noise).

    ``kind`` picks the autoencoder: ``vae`` (sampled z), or a deterministic one whose code is
    the encoder's μ — ``ae`` (reconstruction only), ``sparse`` (plus an activation penalty,
    ``losses.autoencoder``) and ``denoise`` (the training step corrupts the input, the
    target stays clean). All share the encoder, the decoder and the sampling interface.
    """

    family = "vae"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        noise_dim: int = 16,
        width: int = 32,
        conditional: bool = False,
        kind: str = "vae",
    ) -> None:
        super().__init__()
        if kind not in AE_KINDS:
            raise ValueError(f"autoencoder kind {kind!r} is not one of {', '.join(AE_KINDS)}")
        self.kind = kind
        n_cls = num_classes if conditional else 0
        self.encoder = ConvEncoder(in_chans, img_size, width, noise_dim, n_cls)
        self.decoder = DCGANGenerator(noise_dim, in_chans, img_size, width, n_cls)
        self.noise_dim, self.conditional, self.num_classes = noise_dim, conditional, num_classes
        self.default_input_size = (in_chans, img_size, img_size)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if eps is None:
            return self.decoder(x, labels)  # x is z here: (N, D) -> (N, C, H, W)
        mu, logvar = self.encoder(x, labels)
        z = reparameterize(mu, logvar, eps) if self.kind == "vae" else mu  # AEs: the code is μ
        return self.decoder(z, labels), mu, logvar


_CFG = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
        "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # fmt: skip


@register_model(default_cfg=_CFG)
def vae(num_classes: int = 10, in_chans: int = 1, **kw: object) -> VAE:
    """Convolutional VAE (ELBO = reconstruction + β·KL)."""
    for gan_only in ("d_norm", "spectral_norm"):  # the task passes them to every model
        kw.pop(gan_only, None)
    return VAE(num_classes, in_chans, **kw)  # type: ignore[arg-type]


@register_model(default_cfg=_CFG)
def cvae(num_classes: int = 10, in_chans: int = 1, **kw: object) -> VAE:
    """Conditional VAE: the label joins the encoder's input and the decoder's latent."""
    for gan_only in ("d_norm", "spectral_norm"):
        kw.pop(gan_only, None)
    return VAE(num_classes, in_chans, conditional=True, **kw)  # type: ignore[arg-type]


def _autoencoder(kind: str, num_classes: int, in_chans: int, kw: dict) -> VAE:
    for gan_only in ("d_norm", "spectral_norm"):
        kw.pop(gan_only, None)
    return VAE(num_classes, in_chans, kind=kind, **kw)


@register_model(default_cfg=_CFG)
def ae(num_classes: int = 10, in_chans: int = 1, **kw: object) -> VAE:
    """Convolutional autoencoder: code = encoder(x), loss = reconstruction."""
    return _autoencoder("ae", num_classes, in_chans, kw)


@register_model(default_cfg=_CFG)
def sparse_ae(num_classes: int = 10, in_chans: int = 1, **kw: object) -> VAE:
    """Sparse autoencoder: reconstruction + ``sparsity``·(KL to ρ, or L1) on the code."""
    return _autoencoder("sparse", num_classes, in_chans, kw)


@register_model(default_cfg=_CFG)
def denoising_ae(num_classes: int = 10, in_chans: int = 1, **kw: object) -> VAE:
    """Denoising autoencoder: reconstruct x from x + N(0, noise_std²) (Vincent et al. 2008)."""
    return _autoencoder("denoise", num_classes, in_chans, kw)
