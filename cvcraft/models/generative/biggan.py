"""A small BigGAN-style class-conditional GAN (Brock et al. 2019) for 28-64 px images.

The pieces that make BigGAN what it is, at MNIST/CIFAR scale:
- **conditional BatchNorm** in G: each norm is BN without affine, then a per-class gain and
  bias, γ = 1 + W_γ e_y and β = W_β e_y from a shared class embedding e_y — the label steers
  every layer, not just the input;
- residual up-blocks in G (BN-ReLU-upsample-conv3, BN-ReLU-conv3; skip: upsample + conv1);
- a **projection discriminator** with **spectral norm** on every layer (``cgan_proj``'s D);
- trained with the **hinge** loss (``loss=hinge spectral_norm=true``, the task's defaults for
  this model are not changed: pass them).
Shapes: z (N, noise_dim), labels (N,) int64 -> images (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.generative.gan import GAN, GENERATIVE_CFG, DCGANDiscriminator, upsample_steps
from cvcraft.models.registry import register_model

CLASS_EMBED = 32  # size of the shared class embedding the conditional norms read


class ConditionalBatchNorm2d(nn.Module):
    """BN without affine, then γ = 1 + W_γ e, β = W_β e per sample from a class embedding e."""

    def __init__(self, channels: int, embed_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(embed_dim, channels, bias=False)
        self.bias = nn.Linear(embed_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        g = 1.0 + self.gain(e)[:, :, None, None]
        return self.bn(x) * g + self.bias(e)[:, :, None, None]


class UpBlock(nn.Module):
    """CBN-ReLU-upsample×2-conv3, CBN-ReLU-conv3, plus an upsampled conv1 skip."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int) -> None:
        super().__init__()
        self.n1, self.c1 = ConditionalBatchNorm2d(c_in, embed_dim), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.n2, self.c2 = (
            ConditionalBatchNorm2d(c_out, embed_dim),
            nn.Conv2d(c_out, c_out, 3, 1, 1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.n1(x, e)), scale_factor=2.0, mode="nearest")
        h = self.c2(F.relu(self.n2(self.c1(h), e)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class BigGANGenerator(nn.Module):
    """z -> Linear -> (ch, s, s) -> k residual up-blocks with conditional BN -> BN-ReLU-conv3
    -> tanh."""

    def __init__(
        self, noise_dim: int, out_chans: int, img_size: int, width: int, num_classes: int
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError("the BigGAN-style generator is class-conditional: it needs classes")
        k = upsample_steps(img_size)
        self.start = img_size // 2**k
        self.ch = width * 2 ** (k - 1)
        self.embed = nn.Embedding(num_classes, CLASS_EMBED)  # shared by every CBN
        self.project = nn.Linear(noise_dim, self.ch * self.start**2)
        blocks, c = [], self.ch
        for _ in range(k):
            blocks.append(UpBlock(c, max(c // 2, width), CLASS_EMBED))
            c = max(c // 2, width)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, out_chans, 3, 1, 1), nn.Tanh()
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ConfigError("the BigGAN-style generator needs labels (class= when sampling)")
        e = self.embed(labels)
        x = self.project(z).view(-1, self.ch, self.start, self.start)
        for block in self.blocks:
            x = block(x, e)
        return self.out(x)


class BigGAN(GAN):
    """BigGAN-style G with a projection discriminator (spectral norm from ``spectral_norm``)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 32,
        noise_dim: int = 64,
        width: int = 32,
        d_norm: str = "none",
        spectral_norm: bool = True,
    ) -> None:
        nn.Module.__init__(self)
        self.generator = BigGANGenerator(noise_dim, in_chans, img_size, width, num_classes)
        self.discriminator = DCGANDiscriminator(
            in_chans, img_size, width, num_classes, d_norm, spectral_norm, projection=True
        )
        self.num_classes, self.conditional, self.noise_dim = num_classes, True, noise_dim
        self.default_input_size = (in_chans, img_size, img_size)
        g = self.generator
        g.noise_dim, g.conditional, g.num_classes = noise_dim, True, num_classes
        g.default_input_size = self.default_input_size


_CFG = GENERATIVE_CFG


@register_model(default_cfg=_CFG)
def biggan_small(num_classes: int = 10, in_chans: int = 1, **kw: object) -> BigGAN:
    """A small BigGAN-style model: conditional BN and residual blocks in G, a projection D;
    train with loss=hinge spectral_norm=true."""
    return BigGAN(num_classes, in_chans, **kw)  # type: ignore[arg-type]
