"""GANs as generator + discriminator pairs: an MLP GAN, DCGAN and the conditional cGAN.

- DCGAN (Radford et al. 2016): the generator projects z to a small map and doubles it with
  stride-2 transposed convolutions + BN + ReLU up to the image, ending in tanh (images in
  [-1, 1]); the discriminator halves with stride-2 convolutions + LeakyReLU(0.2) (no
  pooling, no BN on the first layer) to one logit.
- cGAN (Mirza & Osindero 2014): a label embedding is joined to the noise (G) and, as one
  extra image plane, to the discriminator's input.

A registered constructor returns a :class:`GAN` holding both networks; the ``generate``
task trains ``gan.generator`` as its primary model (EMA, best.pt) and the discriminator as a
second part with its own optimizer. Spectral normalisation on every D layer is an option.
Shapes: z (N, noise_dim), labels (N,) int64, images (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.nn.spectral_norm import spectral_norm as apply_sn

D_NORMS = ("batch", "none")
EMBED_DIM = 16  # the generator's label code size


def upsample_steps(img_size: int) -> int:
    """How many ×2 steps take a 3..7 px start map to ``img_size`` (28 -> 2 from 7, 32 -> 3
    from 4, 64 -> 4 from 4)."""
    k = 0
    while img_size % 2 ** (k + 1) == 0 and img_size // 2 ** (k + 1) >= 3 and k < 6:
        k += 1
    if k == 0 or img_size // 2**k > 7:
        raise ConfigError(
            f"imgsz={img_size}: a DCGAN needs a size of the form s·2^k with s in 3..7 "
            "(e.g. 28, 32, 48, 64)"
        )
    return k


class DCGANGenerator(nn.Module):
    """z (+ label code) -> Linear -> (ch, s, s) BN ReLU -> k × [ConvT 4/2 (BN ReLU)] -> tanh."""

    def __init__(
        self, noise_dim: int, out_chans: int, img_size: int, width: int, num_classes: int
    ) -> None:
        super().__init__()
        k = upsample_steps(img_size)
        self.start = img_size // 2**k
        self.ch = width * 2 ** (k - 1)
        # a small label code (not noise-sized), so the noise keeps its share of the input
        self.embed = nn.Embedding(num_classes, EMBED_DIM) if num_classes else None
        in_dim = noise_dim + (EMBED_DIM if num_classes else 0)
        self.project = nn.Linear(in_dim, self.ch * self.start**2, bias=False)
        # BN per channel over (batch, s, s) after the reshape, as DCGAN's first layer does
        self.project_norm = nn.Sequential(nn.BatchNorm2d(self.ch), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c = self.ch
        for _ in range(k - 1):
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(inplace=True),
            ]
            c //= 2
        layers += [nn.ConvTranspose2d(c, out_chans, 4, 2, 1), nn.Tanh()]
        self.up = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], 1)  # (N, noise_dim + EMBED_DIM)
        x = self.project(z).view(-1, self.ch, self.start, self.start)  # (N, ch, s, s)
        return self.up(self.project_norm(x))  # (N, C, H, W)


class DCGANDiscriminator(nn.Module):
    """image (+ label plane) -> k × [Conv 4/2 (+ BN) + LeakyReLU 0.2] -> Linear -> logit.

    ``projection=True`` (Miyato & Koyama 2018) reads the label at the end instead of as an
    input plane: logit = w·φ(x) + b + ⟨e_y, φ(x)⟩ with φ(x) the flattened features and e_y a
    learned class embedding — the form BigGAN uses; it conditions without diluting the input.
    """

    def __init__(
        self,
        in_chans: int,
        img_size: int,
        width: int,
        num_classes: int,
        norm: str = "batch",
        spectral_norm: bool = False,
        projection: bool = False,
    ) -> None:
        super().__init__()
        if norm not in D_NORMS:
            raise ConfigError(f"d_norm={norm!r} is not one of {', '.join(D_NORMS)}")
        if projection and not num_classes:
            raise ConfigError("a projection discriminator needs classes (a conditional GAN)")
        k = upsample_steps(img_size)
        self.img_size = img_size
        self.projection = projection
        # the label as one extra input plane: a learned img_size² map per class
        plane = bool(num_classes) and not projection
        self.embed = nn.Embedding(num_classes, img_size * img_size) if plane else None
        c_in = in_chans + (1 if plane else 0)
        layers: list[nn.Module] = []
        c = width
        for i in range(k):
            conv = nn.Conv2d(c_in, c, 4, 2, 1, bias=i == 0 or norm == "none")
            layers.append(apply_sn(conv) if spectral_norm else conv)
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, c * 2
        self.features = nn.Sequential(*layers)
        feat = c_in * (img_size // 2**k) ** 2
        head = nn.Linear(feat, 1)
        self.head = apply_sn(head) if spectral_norm else head
        self.proj = None
        if projection:
            proj = nn.Embedding(num_classes, feat)
            nn.init.normal_(proj.weight, std=feat**-0.5)
            self.proj = apply_sn(proj) if spectral_norm else proj

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            plane = self.embed(labels).view(-1, 1, self.img_size, self.img_size)
            x = torch.cat([x, plane], 1)  # (N, C+1, H, W)
        h = self.features(x).flatten(1)
        out = self.head(h).squeeze(1)  # (N,)
        if self.proj is not None:
            out = out + (self.proj(labels) * h).sum(1)  # the class projection ⟨e_y, φ(x)⟩
        return out


class MLPGenerator(nn.Module):
    """z (+ label embedding) -> 2 hidden ReLU layers -> C·H·W -> tanh (the original GAN)."""

    def __init__(
        self, noise_dim: int, out_chans: int, img_size: int, width: int, num_classes: int
    ) -> None:
        super().__init__()
        self.shape = (out_chans, img_size, img_size)
        self.embed = nn.Embedding(num_classes, EMBED_DIM) if num_classes else None
        in_dim = noise_dim + (EMBED_DIM if num_classes else 0)
        self.net = nn.Sequential(
            nn.Linear(in_dim, width), nn.ReLU(inplace=True),
            nn.Linear(width, 2 * width), nn.ReLU(inplace=True),
            nn.Linear(2 * width, out_chans * img_size * img_size), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], 1)
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
    """flattened image (+ label embedding) -> 2 hidden LeakyReLU layers -> logit."""

    def __init__(
        self,
        in_chans: int,
        img_size: int,
        width: int,
        num_classes: int,
        norm: str = "none",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if norm not in D_NORMS:
            raise ConfigError(f"d_norm={norm!r} is not one of {', '.join(D_NORMS)}")
        d = in_chans * img_size * img_size
        self.embed = nn.Embedding(num_classes, d) if num_classes else None
        sizes = [d * (2 if num_classes else 1), 2 * width, width, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = nn.Linear(a, b)
            layers.append(apply_sn(lin) if spectral_norm else lin)
            if i < len(sizes) - 2:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        if self.embed is not None:
            x = torch.cat([x, self.embed(labels)], 1)
        return self.net(x).squeeze(1)


class GAN(nn.Module):
    """A generator and its discriminator, built together so their sizes agree.

    ``forward(z, labels)`` is the generator's (what sampling needs); ``conditional`` says
    whether both networks read labels. ``default_input_size`` is the image (C, H, W).
    """

    family = "gan"

    def __init__(
        self,
        kind: str,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        noise_dim: int = 64,
        width: int = 64,
        conditional: bool = False,
        d_norm: str = "batch",
        spectral_norm: bool = False,
        projection: bool = False,
    ) -> None:
        super().__init__()
        if conditional and num_classes < 1:
            raise ConfigError("a conditional GAN needs num_classes >= 1")
        n_cls = num_classes if conditional else 0
        gen, disc = {"dcgan": (DCGANGenerator, DCGANDiscriminator),
                     "mlp": (MLPGenerator, MLPDiscriminator)}[kind]  # fmt: skip
        self.generator = gen(noise_dim, in_chans, img_size, width, n_cls)
        d_kw = {"projection": True} if projection else {}
        self.discriminator = disc(in_chans, img_size, width, n_cls, d_norm, spectral_norm, **d_kw)
        self.num_classes = num_classes
        self.conditional = conditional
        self.noise_dim = noise_dim
        self.default_input_size = (in_chans, img_size, img_size)
        # the generator alone is what a checkpoint and sampling keep: it knows its inputs
        g = self.generator
        g.noise_dim, g.conditional, g.num_classes = noise_dim, conditional, num_classes
        g.default_input_size = self.default_input_size

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, labels)


# The defaults every adversarial / diffusion model registers with (Adam 2e-4, inputs in
# [-1, 1]); the other generative modules import this one dict.
GENERATIVE_CFG = {"optimizer": "adam", "lr": 2e-4, "weight_decay": 0.0,
                  "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # fmt: skip
_CFG = GENERATIVE_CFG


@register_model(default_cfg=_CFG)
def dcgan(num_classes: int = 10, in_chans: int = 1, **kw: object) -> GAN:
    """DCGAN (transposed-conv G with BN/ReLU/tanh, strided-conv D with LeakyReLU)."""
    return GAN("dcgan", num_classes, in_chans, **kw)  # type: ignore[arg-type]


@register_model(default_cfg=_CFG)
def cgan(num_classes: int = 10, in_chans: int = 1, **kw: object) -> GAN:
    """Class-conditional DCGAN: label embedding joined to z and to D's input."""
    return GAN("dcgan", num_classes, in_chans, conditional=True, **kw)  # type: ignore[arg-type]


@register_model(default_cfg=_CFG)
def cgan_proj(num_classes: int = 10, in_chans: int = 1, **kw: object) -> GAN:
    """Class-conditional DCGAN with a projection discriminator (Miyato & Koyama 2018): the
    label enters D as ⟨e_y, φ(x)⟩ at the end; G as cgan's."""
    return GAN("dcgan", num_classes, in_chans, conditional=True, projection=True, **kw)  # type: ignore[arg-type]


@register_model(default_cfg=_CFG)
def mlp_gan(num_classes: int = 10, in_chans: int = 1, **kw: object) -> GAN:
    """The original fully connected GAN (Goodfellow et al. 2014), optionally conditional."""
    kw.setdefault("d_norm", "none")
    kw.setdefault("width", 256)
    return GAN("mlp", num_classes, in_chans, **kw)  # type: ignore[arg-type]
