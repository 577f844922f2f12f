"""A small latent diffusion model (Rombach et al. 2022; the idea behind Stable Diffusion) at
MNIST scale: DDPM trained in the latent space of a frozen autoencoder.

The first stage is a trained ``vae``/``ae`` run (``first_stage=RUN/best.pt``): images are
encoded to the mean code μ (N, D), scaled by ``latent_scale`` (1 / the codes' std on the
training set, so the diffusion sees roughly unit-variance data) and laid out as a
(1, √D, √D) map for the DDPM U-Net. Sampling runs the reverse diffusion in that space and
decodes the result with the first stage's decoder. The autoencoder stays frozen (eval mode,
no gradients); only the U-Net trains. D must be a square with a side divisible by 4
(16 -> 4x4, 64 -> 8x8). Shapes: images (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.generative.ddpm import DDPM
from cvcraft.models.generative.gan import GENERATIVE_CFG
from cvcraft.models.generative.vae import VAE
from cvcraft.models.registry import register_model


class LatentDDPM(nn.Module):
    """A frozen autoencoder (``first_stage``) and a DDPM on its codes."""

    family = "ddpm"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        vae: dict[str, Any] | None = None,
        width: int = 32,
        conditional: bool = False,
        **ddpm_kw: Any,
    ) -> None:
        super().__init__()
        vae = dict(vae or {"noise_dim": 16, "width": 32, "kind": "vae"})
        latent = int(vae.get("noise_dim", 16))
        side = math.isqrt(latent)
        if side * side != latent or side % 4:
            raise ConfigError(
                f"latent diffusion needs a square latent with a side divisible by 4 "
                f"(16, 64, ...); the first stage has {latent}"
            )
        for gan_only in ("d_norm", "spectral_norm", "noise_dim"):
            ddpm_kw.pop(gan_only, None)
        self.first_stage = VAE(num_classes, in_chans, img_size, **vae)
        self.first_stage.requires_grad_(False)
        ddpm_kw["clip"] = False  # latents are not confined to [-1, 1]
        self.ddpm = DDPM(num_classes, 1, side, width, conditional, **ddpm_kw)
        self.register_buffer("latent_scale", torch.ones(()))
        self.side, self.latent = side, latent
        self.conditional, self.num_classes = conditional, num_classes
        self.noise_dim = latent  # z is the latent x_T, flattened
        self.default_input_size = (in_chans, img_size, img_size)

    # the DDPM interface the task and the samplers use
    @property
    def schedule(self) -> Any:
        return self.ddpm.schedule

    @property
    def unet(self) -> nn.Module:
        return self.ddpm.unet

    def train(self, mode: bool = True) -> LatentDDPM:
        super().train(mode)
        self.first_stage.eval()  # frozen: its BatchNorm statistics never move
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> scaled latent maps (N, 1, side, side): μ · ``latent_scale``."""
        fs = self.first_stage
        mu, _ = fs.encoder(images, labels if fs.conditional else None)
        return (mu * self.latent_scale).view(-1, 1, self.side, self.side)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled latent maps -> images in [-1, 1]."""
        fs = self.first_stage
        z = latents.flatten(1) / self.latent_scale
        return fs.decoder(z, labels if fs.conditional else None)

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        if t is not None:
            return self.ddpm.unet(x, t, labels)  # training: ε̂ on latent maps
        latents = self.ddpm.sample(x.view(-1, 1, self.side, self.side), labels, seed)
        return self.decode(latents, labels)


_CFG = GENERATIVE_CFG


@register_model(default_cfg=_CFG)
def ldm(num_classes: int = 10, in_chans: int = 1, **kw: object) -> LatentDDPM:
    """Latent diffusion: a DDPM on a frozen VAE's codes (train with first_stage=RUN/best.pt)."""
    return LatentDDPM(num_classes, in_chans, **kw)  # type: ignore[arg-type]


@register_model(default_cfg=_CFG)
def cldm(num_classes: int = 10, in_chans: int = 1, **kw: object) -> LatentDDPM:
    """Class-conditional latent diffusion (the DDPM reads the class; guidance works)."""
    return LatentDDPM(num_classes, in_chans, conditional=True, **kw)  # type: ignore[arg-type]
