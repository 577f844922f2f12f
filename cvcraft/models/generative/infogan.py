"""InfoGAN (Chen et al. 2016): latent codes the generator must keep recoverable, so they
come to mean something (digit class, slant, stroke width) without any label.

The noise vector the task draws, z ~ N(0, I) of size ``z_dim + n_cont + n_cat``, is split
into the codes with the right distributions, exactly:
- the incompressible noise: the first ``z_dim`` values;
- continuous codes c ~ U(-1, 1): ``erf(z / √2)`` of the next ``n_cont`` (Φ(z)·2 − 1 of a
  standard normal is uniform);
- a categorical code c ~ Cat(1/n_cat): the argmax of the last ``n_cat`` (iid normals are
  each the largest equally often).
So sampling, fixed-noise grids and checkpoints work as for any GAN. The discriminator shares
its trunk with a Q head that predicts the codes from an image (categorical logits and the
continuous means); minimising ``losses.gan.info_loss`` for G and Q maximises a lower bound
on the mutual information I(c; G(z, c)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.generative.gan import GAN, GENERATIVE_CFG, DCGANDiscriminator, DCGANGenerator
from cvcraft.models.registry import register_model


class InfoGenerator(nn.Module):
    """z (N, z_dim + n_cont + n_cat) -> codes -> DCGAN generator (categorical code embedded)."""

    def __init__(
        self, z_dim: int, n_cat: int, n_cont: int, out_chans: int, img_size: int, width: int
    ) -> None:
        super().__init__()
        self.z_dim, self.n_cat, self.n_cont = z_dim, n_cat, n_cont
        self.net = DCGANGenerator(z_dim + n_cont, out_chans, img_size, width, n_cat)

    def codes(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(categorical index (N,), continuous codes (N, n_cont) in (-1, 1)) of ``z``."""
        a, b = self.z_dim, self.z_dim + self.n_cont
        return z[:, b:].argmax(1), torch.erf(z[:, a:b] / math.sqrt(2.0))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cat, cont = self.codes(z)
        return self.net(torch.cat([z[:, : self.z_dim], cont], 1), cat)


class InfoDiscriminator(DCGANDiscriminator):
    """DCGAN's unconditional D plus a Q head on the same features: ``forward(x, with_q=True)``
    returns (logit (N,), categorical logits (N, n_cat), continuous means (N, n_cont))."""

    def __init__(self, in_chans: int, img_size: int, width: int, n_cat: int, n_cont: int,
                 norm: str = "batch", spectral_norm: bool = False) -> None:  # fmt: skip
        super().__init__(in_chans, img_size, width, 0, norm, spectral_norm)
        feat = self.head.in_features
        self.n_cat, self.n_cont = n_cat, n_cont
        self.q_head = nn.Sequential(
            nn.Linear(feat, 128), nn.LeakyReLU(0.2, inplace=True), nn.Linear(128, n_cat + n_cont)
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, labels: torch.Tensor | None = None, with_q: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        logit = self.head(h).squeeze(1)
        if not with_q:
            return logit
        q = self.q_head(h)
        return logit, q[:, : self.n_cat], q[:, self.n_cat :]


class InfoGAN(GAN):
    """An unconditional DCGAN pair with InfoGAN's codes (module docstring)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        noise_dim: int = 62,
        width: int = 64,
        n_cat: int = 10,
        n_cont: int = 2,
        d_norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        if n_cat < 2 or n_cont < 0:
            raise ConfigError(f"InfoGAN needs n_cat >= 2 and n_cont >= 0, got {n_cat}, {n_cont}")
        total = noise_dim + n_cont + n_cat
        self.generator = InfoGenerator(noise_dim, n_cat, n_cont, in_chans, img_size, width)
        self.discriminator = InfoDiscriminator(
            in_chans, img_size, width, n_cat, n_cont, d_norm, spectral_norm
        )
        self.num_classes, self.conditional, self.noise_dim = num_classes, False, total
        self.default_input_size = (in_chans, img_size, img_size)
        g = self.generator
        g.noise_dim, g.conditional, g.num_classes = total, False, num_classes
        g.default_input_size = self.default_input_size


_CFG = GENERATIVE_CFG


@register_model(default_cfg=_CFG)
def infogan(num_classes: int = 10, in_chans: int = 1, **kw: object) -> InfoGAN:
    """InfoGAN: DCGAN with a categorical and continuous latent codes and a Q head on D."""
    return InfoGAN(num_classes, in_chans, **kw)  # type: ignore[arg-type]
